"""snn_conv_1_gesture_avg: gesture, T = 30, per-bin counts of active 1 ms slots divided by the frame's sum.

    python train.py --config=configs/snn_conv_1_gesture_avg.py

Reference: the run never left chance level (train 8.19, dev 8.59), SPEC 6.11."""
from configs import snn_conv_1_gesture


def get_config():
    config = snn_conv_1_gesture.get_config()
    config.experiment = "snn_conv_1_gesture_avg"
    config.data.length = 30
    config.data.encoding = "avg"  # per-frame counts divided by their sum
    config.train.batch_size = 64
    return config
