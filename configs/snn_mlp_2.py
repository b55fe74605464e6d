"""snn_mlp_2: snn_mlp_1 with first-order low-pass filters (tau 4) instead of dual-exponential ones.

    python train.py --config=configs/snn_mlp_2.py

Reference (SPEC 7): train 99.300, dev 98.66 (epoch 72), test 98.96."""
from configs import default


def get_config():
    config = default.get_config()
    config.experiment = "snn_mlp_2"
    config.model.layers = "L N(500) D L N(500) D L N(10)"
    config.model.input_shape = (784,)
    # XLA's concurrency-optimised scheduler: this step 1.07-1.10x faster, the same results (training/compiler.py)
    config.train.cpu_scheduler = "concurrency"
    return config
