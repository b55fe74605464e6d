"""snn_conv_1_gesture_avg: gesture, T = 30, per-bin counts of active 1 ms slots divided by the frame's sum.

    python train.py --config=configs/snn_conv_1_gesture_avg.py

Reference: the run never left chance level (train 8.19, dev 8.59), SPEC 6.11."""
from configs import default


def get_config():
    config = default.get_config()
    config.experiment = "snn_conv_1_gesture_avg"
    config.model.layers = "F C(64,7,3,1) F C(32,3,3,0) F C(32,3,1,1) flat F N(256) D F N(11)"
    config.model.input_shape = (128, 128, 2)
    config.model.reference_spatial_order = "xy"
    config.data.name = "gesture"
    config.data.length = 30
    config.data.encoding = "avg"
    config.train.batch_size = 64
    return config
