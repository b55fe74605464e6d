"""snn_conv_1_mnist_poisson_input: snn_conv_1_mnist on Bernoulli rate-coded MNIST, batch 32.

    python train.py --config=configs/snn_conv_1_mnist_poisson_input.py

Reference (SPEC 7): train 99.822, dev 99.479 (epoch 93), test 99.519; the paper quotes 99.46 for MNIST."""
from configs import snn_conv_1_mnist


def get_config():
    config = snn_conv_1_mnist.get_config()
    config.experiment = "snn_conv_1_mnist_poisson_input"
    config.data.encoding = "poisson"
    config.train.batch_size = 32
    config.data.drop_remainder = True  # the reference trained with drop_last=True
    return config
