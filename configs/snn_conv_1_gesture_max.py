"""snn_conv_1_gesture_max: gesture, T = 30, per-bin counts of active 1 ms slots divided by the frame's max.

    python train.py --config=configs/snn_conv_1_gesture_max.py

Reference (SPEC 7): train 97.845, dev 75.781 (epoch 68), test 70.486."""
from configs import snn_conv_1_gesture


def get_config():
    config = snn_conv_1_gesture.get_config()
    config.experiment = "snn_conv_1_gesture_max"
    config.data.length = 30
    config.data.encoding = "max"  # per-frame counts divided by their maximum
    config.train.batch_size = 64
    return config
