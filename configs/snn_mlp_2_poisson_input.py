"""snn_mlp_2_poisson_input: snn_mlp_2 on Bernoulli rate-coded MNIST.

    python train.py --config=configs/snn_mlp_2_poisson_input.py

Reference (SPEC 7): train 99.284, dev 98.748 (epoch 96), test 98.978."""
from configs import default


def get_config():
    config = default.get_config()
    config.experiment = "snn_mlp_2_poisson_input"
    config.model.layers = "L N(500) D L N(500) D L N(10)"
    config.model.input_shape = (784,)
    config.data.encoding = "poisson"
    config.data.drop_remainder = True  # the reference trained with drop_last=True
    return config
