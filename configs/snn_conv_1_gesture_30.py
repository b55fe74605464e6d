"""snn_conv_1_gesture_30: snn_conv_1_gesture with T = 30.

    python train.py --config=configs/snn_conv_1_gesture_30.py

Reference (SPEC 7): train 96.094, dev 85.938 (epoch 59), test 68.75."""
from configs import snn_conv_1_gesture


def get_config():
    config = snn_conv_1_gesture.get_config()
    config.experiment = "snn_conv_1_gesture_30"
    config.data.length = 30
    return config
