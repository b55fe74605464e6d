"""The defaults every experiment starts from: the config schema of the library (iirsnn_jax/config.py).

    python train.py --config=configs/default.py      # snn_mlp_1's network on MNIST with the shared defaults
"""
from iirsnn_jax.config import default_config


def get_config():
    return default_config()
