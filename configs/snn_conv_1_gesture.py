"""snn_conv_1_gesture: the conv SNN on DVS128 Gesture, T = 50 bins spanning each sample (OR), 11 classes.

    python train.py --config=configs/snn_conv_1_gesture.py

Reference (SPEC 7): train 95.474, dev 85.156 (epoch 46), test 66.319; the paper quotes 96.09."""
from configs import default


def get_config():
    config = default.get_config()
    config.experiment = "snn_conv_1_gesture"
    config.model.layers = "F C(64,7,3,1) F C(32,3,3,0) F C(32,3,1,1) flat F N(256) D F N(11)"
    config.model.input_shape = (128, 128, 2)
    config.model.reference_spatial_order = "xy"
    config.data.name = "gesture"
    config.data.length = 50
    config.data.encoding = "or"
    config.train.batch_size = 128
    return config
