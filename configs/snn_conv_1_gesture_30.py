"""snn_conv_1_gesture_30: snn_conv_1_gesture with T = 30.

    python train.py --config=configs/snn_conv_1_gesture_30.py

Reference (SPEC 7): train 96.094, dev 85.938 (epoch 59), test 68.75."""
from configs import default


def get_config():
    config = default.get_config()
    config.experiment = "snn_conv_1_gesture_30"
    config.model.layers = "F C(64,7,3,1) F C(32,3,3,0) F C(32,3,1,1) flat F N(256) D F N(11)"
    config.model.input_shape = (128, 128, 2)
    config.model.reference_spatial_order = "xy"
    config.data.name = "gesture"
    config.data.length = 30
    config.data.encoding = "or"
    config.train.batch_size = 128
    return config
