"""snn_mlp_1_non_zero: snn_mlp_1 with layer states carried across batches (SPEC 2.2).

    python train.py --config=configs/snn_mlp_1_non_zero.py

Reference (SPEC 7): train 99.116, dev 98.488 (epoch 93), test 98.858 (on 9984 samples, drop_last)."""
from configs import snn_mlp_1


def get_config():
    config = snn_mlp_1.get_config()
    config.experiment = "snn_mlp_1_non_zero"
    config.model.preserve_state = True  # layer states carried from batch to batch
    config.data.drop_remainder = True  # the reference trained with drop_last=True
    return config
