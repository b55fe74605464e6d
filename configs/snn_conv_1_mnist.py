"""snn_conv_1_mnist: the conv SNN on MNIST copied over T = 25, input (28, 28, 1).

    python train.py --config=configs/snn_conv_1_mnist.py

Reference (SPEC 7): train 99.84, dev 99.47 (epoch 99), test 99.59."""
from configs import default


def get_config():
    config = default.get_config()
    config.experiment = "snn_conv_1_mnist"
    config.model.layers = ("F C(32,3,1,1) F C(32,3,1,1) F C(64,3,1,1) F P(2,2,0) F C(64,3,1,1) F P(2,2,0) "
                           "flat F N(512) D F N(10)")
    config.model.input_shape = (28, 28, 1)
    return config
