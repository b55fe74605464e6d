"""snn_conv_1_nmnist_spike_pool: snn_conv_1_nmnist with each max-pool moved before its synapse filter, so that it
pools spikes, not filtered PSPs. Not a reference experiment: the variant to train for neuromorphic hardware,
since a max of binary spikes has an exact NIR form and a max of real PSPs has none (docs/nir.md).

    python train.py --config=configs/snn_conv_1_nmnist_spike_pool.py --config.data.root=/path/to/folder/with/NMNIST
    python -m iirsnn_jax.nir export --workdir=workdir/snn_conv_1_nmnist_spike_pool --out=nmnist.nir
"""
from configs import snn_conv_1_nmnist


def get_config():
    config = snn_conv_1_nmnist.get_config()
    config.experiment = "snn_conv_1_nmnist_spike_pool"
    config.model.layers = ("F C(32,3,1,1) F C(32,3,1,1) F C(64,3,1,1) P(2,2,1) F C(64,3,1,1) P(2,2,0) "
                           "flat F N(256) D F N(10)")
    return config
