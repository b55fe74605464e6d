"""associative_memory: 300 -F-> N500 -F-> N200 -F-> N500 -F-> N300 -O, tau 8/2, T = 300 (SPEC 2.6, 3).

Recalls ten binary 300x300 spike patterns from corrupted copies; loss = MSE between the filtered output and
the filtered, 4-step-delayed target. AdamW (lr 1e-3, weight decay 0.01), lr x0.1 at epoch 50, batch 32.

    python train.py --config=configs/associative_memory.py

Reference (SPEC 7): MSE train 0.0031 (last batch), dev 0.003688 (epoch 92), test 0.0042."""
from configs import default


def get_config():
    config = default.get_config()
    config.experiment = "associative_memory"
    config.seed = 0
    config.model.layers = "F N(500) F N(200) F N(500) F N(300) O"
    config.model.input_shape = (300,)
    config.model.tau_m = 8.0
    config.model.tau_s = 2.0
    config.model.output_tau_m = 8.0
    config.model.output_tau_s = 2.0
    config.data.name = "patterns"
    config.data.length = 300
    config.data.encoding = "copy"
    config.train.loss = "mse"
    config.train.optimizer = "adamw"
    config.train.learning_rate = 1e-3
    config.train.weight_decay = 0.01
    config.train.milestones = (50, 100, 150)
    config.train.batch_size = 32
    return config
