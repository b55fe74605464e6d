"""snn_conv_1_nmnist: the conv SNN on N-MNIST, 10 ms bins (OR), T = 30, input (34, 34, 2).

    python train.py --config=configs/snn_conv_1_nmnist.py

Reference (SPEC 7): train 99.998, dev 98.708 (epoch 89), test 98.558; the paper quotes 99.39."""
from configs import default


def get_config():
    config = default.get_config()
    config.experiment = "snn_conv_1_nmnist"
    config.model.layers = ("F C(32,3,1,1) F C(32,3,1,1) F C(64,3,1,1) F P(2,2,1) F C(64,3,1,1) F P(2,2,0) "
                           "flat F N(256) D F N(10)")
    config.model.input_shape = (34, 34, 2)
    config.model.reference_spatial_order = "xy"
    config.data.name = "nmnist"
    config.data.length = 30
    config.data.encoding = "or"
    config.train.batch_size = 48
    config.data.drop_remainder = True  # the reference trained with drop_last=True
    return config
