"""shd: Spiking Heidelberg Digits (20 spoken digits, English and German, 700 cochlea channels), an SNN of
the paper's kind: dual-exponential synapse filters with learned per-input coefficients, decaying-reset
neurons, spike-count readout.

    python train.py --config=configs/shd.py --config.data.root=/path/to/folder/with/SHD

Data: <root>/SHD/shd_train.h5 and shd_test.h5 (tonic's layout; iirsnn_jax/data/speech.py). 8156 train
recordings, of which a seeded 10 % (816) are dev, 2264 test. Input: spike counts in T = 100 frames of 10 ms
(the first second; later spikes dropped), all 700 channels. 700 -F-> N(256) -D -F-> N(256) -D -F-> N(20).
Published SNNs with learned synaptic or neuron dynamics reach 90-96 % test accuracy on SHD (most with
recurrent connections or delays, which this feed-forward network lacks); this config is not yet measured
on the real data (README, "Time series").
"""
from configs import default


def get_config():
    config = default.get_config()
    config.experiment = "shd"
    config.model.layers = "F N(256) D F N(256) D F N(20)"
    config.model.input_shape = (700,)
    config.data.name = "shd"
    config.data.encoding = "count"
    config.data.length = 100
    config.data.bin_ms = 10.0
    config.data.channel_pool = 1
    config.train.learning_rate = 1e-3
    config.train.milestones = (40,)
    config.train.batch_size = 64
    config.train.eval_batch_size = 256
    config.train.epochs = 60
    return config
