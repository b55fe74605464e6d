"""snn_mlp_1_poisson_input: snn_mlp_1 on Bernoulli rate-coded MNIST (p = pixel/255 per step).

    python train.py --config=configs/snn_mlp_1_poisson_input.py

Reference (SPEC 7): train 99.208, dev 98.628 (epoch 98), test 98.928."""
from configs import snn_mlp_1


def get_config():
    config = snn_mlp_1.get_config()
    config.experiment = "snn_mlp_1_poisson_input"
    config.data.encoding = "poisson"
    config.data.drop_remainder = True  # the reference trained with drop_last=True
    return config
