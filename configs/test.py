"""test: a tiny, fast configuration for the test suite (digits, 6 steps, 2 epochs, a small network)."""
from configs import digits


def get_config():
    config = digits.get_config()
    config.experiment = "test"
    config.model.layers = "F N(32) D F N(10)"
    config.data.length = 6
    config.data.prefetch = 2
    config.train.batch_size = 16
    config.train.eval_batch_size = 64
    config.train.epochs = 2
    config.train.progress_bar = False
    return config
