"""digits: the quick start. An SNN of the paper's kind (dual-exponential synapse filters, decaying-reset
neurons, spike-count readout) on scikit-learn's 8x8 handwritten digits, which ship with scikit-learn.

    python train.py --config=configs/digits.py

1257 / 270 / 270 train / dev / test images, pixel/16 copied over T = 16 steps, 64 -F-> N(256) -D -F-> N(10).
"""
from configs import default


def get_config():
    config = default.get_config()
    config.experiment = "digits"
    config.model.layers = "F N(256) D F N(10)"
    config.model.input_shape = (64,)
    config.data.name = "digits"
    config.data.length = 16
    config.data.encoding = "copy"
    config.train.learning_rate = 2e-3
    config.train.milestones = (30,)
    config.train.batch_size = 32
    config.train.epochs = 40
    return config
