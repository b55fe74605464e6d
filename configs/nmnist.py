"""N-MNIST: the network users reach for first; the same as snn_conv_1_nmnist (SPEC 2.4).

    python train.py --config=configs/nmnist.py --config.data.root=/path/to/folder/with/NMNIST

Reference (SPEC 7): dev 98.708, test 98.558; the paper quotes 99.39.
"""
from configs import snn_conv_1_nmnist


def get_config():
    config = snn_conv_1_nmnist.get_config()
    config.experiment = "nmnist"
    return config
