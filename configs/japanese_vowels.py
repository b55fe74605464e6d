"""japanese_vowels: time-series classification (the paper's fourth task) on the UEA archive's JapaneseVowels,
which ships with sktime: no download, no data.root.

    python train.py --config=configs/japanese_vowels.py [--config.seed=K]
    python eval.py --workdir=DIR --checkpoint=latest --split=test      # the last epoch instead of the best dev

270 train / 370 test utterances of 9 speakers, 12 LPC cepstrum channels, 7..29 frames. Channels standardised
with train statistics, every frame repeated 3 times (T = 87, zeros after the end), 27 stratified train
samples held out as dev. Network: first-order (L) synapse filters with learned per-input coefficients,
decaying-reset neurons, spike-count readout: 12 -D-L-> N(128) -D-L-> N(128) -D-L-> N(9), dropout 0.5 also
on the input (for 243 training samples, a fresh input mask each step regularises best), AdamW.
The best checkpoint is the one with the lowest dev loss. Measured (README, "Time series"): test 97.43 % +- 0.56
over seeds 0-5 (97.75 % +- 0.34 at the last epoch; MiniRocket 98.38 %), 20 s a run on 2 CPU cores.
"""
from configs import default


def get_config():
    config = default.get_config()
    config.experiment = "japanese_vowels"
    config.model.layers = "D L N(128) D L N(128) D L N(9)"
    config.model.dropout_rate = 0.5
    config.model.input_shape = (12,)
    config.data.name = "uea"
    config.data.dataset = "JapaneseVowels"
    config.data.encoding = "copy"
    config.data.upsample = 3
    config.data.length = 87  # the longest series (29 frames) times upsample
    config.train.optimizer = "adamw"
    config.train.weight_decay = 0.05
    config.train.learning_rate = 1e-3
    config.train.milestones = (40,)
    config.train.batch_size = 16
    config.train.eval_batch_size = 128
    config.train.epochs = 60
    config.train.best_metric = "loss"  # 27 dev samples: accuracy moves in steps of 3.7 points, loss smoothly
    return config
