"""snn_conv_1_gesture_max: gesture, T = 30, per-bin counts of active 1 ms slots divided by the frame's max.

    python train.py --config=configs/snn_conv_1_gesture_max.py

Reference (SPEC 7): train 97.845, dev 75.781 (epoch 68), test 70.486."""
from configs import default


def get_config():
    config = default.get_config()
    config.experiment = "snn_conv_1_gesture_max"
    config.model.layers = "F C(64,7,3,1) F C(32,3,3,0) F C(32,3,1,1) flat F N(256) D F N(11)"
    config.model.input_shape = (128, 128, 2)
    config.model.reference_spatial_order = "xy"
    config.data.name = "gesture"
    config.data.length = 30
    config.data.encoding = "max"
    config.train.batch_size = 64
    return config
