"""snn_mlp_1: 784 -F-> N500 -D -F-> N500 -D -F-> N10 on MNIST, analog pixels copied over T = 25.

    python train.py --config=configs/snn_mlp_1.py

Reference (SPEC 7): train 99.252 (max), dev 98.58 (epoch 72), test 98.94."""
from configs import default


def get_config():
    config = default.get_config()
    config.experiment = "snn_mlp_1"
    config.model.layers = "F N(500) D F N(500) D F N(10)"
    config.model.input_shape = (784,)
    # XLA's concurrency-optimised scheduler: this step 1.05-1.08x faster, the same results (training/compiler.py)
    config.train.cpu_scheduler = "concurrency"
    return config
