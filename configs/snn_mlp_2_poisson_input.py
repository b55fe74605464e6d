"""snn_mlp_2_poisson_input: snn_mlp_2 on Bernoulli rate-coded MNIST.

    python train.py --config=configs/snn_mlp_2_poisson_input.py

Reference (SPEC 7): train 99.284, dev 98.748 (epoch 96), test 98.978."""
from configs import snn_mlp_2


def get_config():
    config = snn_mlp_2.get_config()
    config.experiment = "snn_mlp_2_poisson_input"
    config.data.encoding = "poisson"
    config.data.drop_remainder = True  # the reference trained with drop_last=True
    return config
