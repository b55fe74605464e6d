"""ssc: Spiking Speech Commands (35 words, 700 cochlea channels), the SHD network scaled up, on channels
pooled by 5 (700 -> 140: five times less input work and a 1 GB instead of 5 GB frame cache for 75k samples).

    python train.py --config=configs/ssc.py --config.data.root=/path/to/folder/with/SSC

Data: <root>/SSC/ssc_train.h5, ssc_valid.h5 (dev) and ssc_test.h5 (tonic's layout; iirsnn_jax/data/speech.py):
75466 / 9981 / 20382 recordings. Input: spike counts of 140 channel groups in T = 100 frames of 10 ms.
140 -F-> N(512) -D -F-> N(512) -D -F-> N(35). Published SNNs with learned dynamics reach 70-80 % on SSC
(recurrent or with delays); this config is not yet measured on the real data (README, "Time series").
"""
from configs import shd


def get_config():
    config = shd.get_config()
    config.experiment = "ssc"
    config.model.layers = "F N(512) D F N(512) D F N(35)"
    config.model.input_shape = (140,)
    config.data.name = "ssc"
    config.data.channel_pool = 5
    config.train.milestones = (20,)
    config.train.epochs = 30
    return config
