"""A trained run read back from its workdir: config, trained network, metrics, and batches of a split.

`load_run(workdir)` reads DIR/config.json (the resolved config that train.py wrote), restores the Orbax
checkpoint ("best" by default) into a freshly built network, and reads DIR/metrics.jsonl. DIR may be a
local folder or a bucket URL (gs://bucket/run): every file is read through `etils.epath`. `run.forward`
runs the trained network (evaluation mode, zero initial state) on batch-major inputs and returns numpy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import jax
import ml_collections
import numpy as np
from etils import epath
from flax import nnx

from iirsnn_jax import config as config_lib, data, models
from iirsnn_jax.data import device_encoding
from iirsnn_jax.training import checkpoint, metrics, optimizer as optimizer_lib, steps


@dataclass
class TrainedRun:
    """A trained network with its config and metric records.

    model: the trained SpikingNetwork. step: optimizer steps of the restored checkpoint (None without one).
    records: every line of metrics.jsonl, in order.
    """

    workdir: epath.Path
    config: ml_collections.ConfigDict
    model: models.SpikingNetwork
    step: int | None
    records: list[dict]
    _forward: object = field(default=None, repr=False)

    @property
    def is_classifier(self) -> bool:
        return self.config.train.loss == "cross_entropy"

    @property
    def name(self) -> str:
        return str(self.config.experiment)

    def forward(self, inputs: np.ndarray) -> models.NetworkOutput:
        """Trained network on inputs [B, T, *S], evaluation mode; every array of the output as numpy."""
        if self._forward is None:
            graphdef, params, constants = nnx.split(self.model, nnx.Param, ...)

            @jax.jit
            def run(params, constants, x):
                out = nnx.merge(graphdef, params, constants)(x)
                return out._replace(state=())

            self._forward = lambda x: run(params, constants, x)
        return jax.device_get(self._forward(inputs))

    def batches(self, split: str = "dev", batch_size: int | None = None) -> Iterator[dict]:
        """The batches of `split` in order (no shuffling, no augmentation of dev/test), padding rows masked;
        "input" is the network's input [B, T, *S], as the steps make it on the device."""
        size = batch_size or self.config.train.eval_batch_size or self.config.train.batch_size
        pipeline = data.build(self.config, split, batch_size=int(size), shuffle=False, drop_remainder=False,
                              process_index=0, process_count=1)
        network_input = device_encoding.host_input_fn(self.config)  # what the network receives from a batch
        for batch in pipeline.epoch(0):
            yield {**batch, "input": network_input(batch)}


def load_run(workdir: str | epath.PathLike, which: str = "best") -> TrainedRun:
    """Restores checkpoint `which` ("best", "latest" or a step) of the run in workdir.

    A workdir without checkpoints gives the network at initialisation (step None), so that training curves
    of a run that saved none can still be drawn.
    """
    workdir = epath.Path(workdir)
    config = config_lib.read_run_config(workdir)
    model = models.build_model(config.model, seed=int(config.seed))
    optimizer = optimizer_lib.make_optimizer(config.train, steps_per_epoch=1)  # the state's structure only
    graphdef, target = steps.create_train_state(model, optimizer, int(config.train.batch_size))
    restored = checkpoint.restore_read_only(workdir, which, target, missing_ok=True)
    step = None
    if restored is not None:
        state, _ = restored
        model = nnx.merge(graphdef, state.params, state.constants)
        step = int(state.step)
    return TrainedRun(workdir, config, model, step, metrics.read_metrics(workdir))
