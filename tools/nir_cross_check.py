"""Run an exported network in another NIR framework (Norse on nirtorch) and compare with ours.

Two steps, in two environments (the torch frameworks' pins do not belong in ours):

  # 1. ours (repository venv): export the run, and write the test split's network inputs, labels and our spikes
  python tools/nir_cross_check.py prepare --workdir=/tmp/nir_digits --out=/tmp/nir_cross [--split=test]
  # 2. a separate venv: pip install torch==2.13.0 norse==1.1.0 nirtorch==2.6 nir==1.0.8
  /tmp/nirx/bin/python tools/nir_cross_check.py run --dir=/tmp/nir_cross

Step 2 first tries Norse's own `norse.torch.from_nir`, then runs the graph with nirtorch's graph interpreter
(`nirtorch.nir_to_torch`, which sums a node's inputs and feeds a cycle's closing edge from the previous step)
and Norse modules: Norse's importer for Affine, Linear, Conv2d and SumPool2d, Norse's `LIBoxCell` (its
forward-Euler leaky integrator) with the input scaled by r for LI, Norse's `heaviside` for Threshold; Flatten
shifted by one axis for the batch (NIR shapes have none). Results: docs/nir.md.
"""
import argparse
import json
from pathlib import Path


def prepare(workdir: str, out: str, split: str, checkpoint: str) -> None:
    import numpy as np

    from iirsnn_jax.nir import workdir as nir_workdir

    out_dir = Path(out)
    graph, run = nir_workdir.export_run(workdir, out_dir / "network.nir", checkpoint=checkpoint)
    inputs, labels, spikes = [], [], []
    for batch in run.batches(split):
        keep = np.asarray(batch["mask"], bool)
        output = run.forward(batch["input"])
        inputs.append(np.asarray(batch["input"])[keep].reshape(int(keep.sum()), -1, *run.model.input_shape))
        labels.append(np.asarray(batch["label"])[keep])
        spikes.append(np.asarray(output.spikes)[keep])
    np.savez_compressed(out_dir / "data.npz", inputs=np.concatenate(inputs), labels=np.concatenate(labels),
                        spikes=np.concatenate(spikes))
    print(f"wrote {out_dir}/network.nir ({len(graph.nodes)} nodes) and data.npz "
          f"({sum(len(x) for x in labels)} {split} samples), checkpoint step {run.step}")


def _norse_node_map(dt: float):
    import nir
    import torch
    from norse.torch.functional.heaviside import heaviside
    from norse.torch.module.leaky_integrator_box import LIBoxCell, LIBoxParameters
    from norse.torch.utils import import_nir as norse_import

    class ScaledLI(torch.nn.Module):
        """NIR LI: Norse's LIBoxCell (v += dt/tau (v_leak - v + input)) fed r * input."""

        def __init__(self, node):
            super().__init__()
            tensor = lambda a: torch.as_tensor(a, dtype=torch.float32)
            self.r = tensor(node.r)
            self.cell = LIBoxCell(LIBoxParameters(tau_mem_inv=1 / tensor(node.tau), v_leak=tensor(node.v_leak)),
                                  dt=dt)

        def forward(self, x, state=None):
            return self.cell(self.r * x, state)

    class Threshold(torch.nn.Module):
        def __init__(self, node):
            super().__init__()
            self.threshold = torch.as_tensor(node.threshold, dtype=torch.float32)

        def forward(self, x):
            return heaviside(x - self.threshold)

    class Scale(torch.nn.Module):
        def __init__(self, node):
            super().__init__()
            self.scale = torch.as_tensor(node.scale, dtype=torch.float32)

        def forward(self, x):
            return x * self.scale

    norse = lambda node: norse_import._import_norse_module(node, dt=dt)
    flatten = lambda node: torch.nn.Flatten(node.start_dim + 1, node.end_dim)  # + the batch axis
    return {nir.Input: lambda n: torch.nn.Identity(), nir.Output: lambda n: torch.nn.Identity(),
            nir.Affine: norse, nir.Linear: norse, nir.Conv2d: norse, nir.SumPool2d: norse, nir.Flatten: flatten,
            nir.LI: ScaledLI, nir.Threshold: Threshold, nir.Scale: Scale}


def run(directory: str, dt: float) -> dict:
    import nir
    import nirtorch
    import numpy as np
    import torch

    directory = Path(directory)
    graph = nir.read(directory / "network.nir")
    with np.load(directory / "data.npz") as data:
        inputs, labels, ours = data["inputs"], data["labels"], data["spikes"]
    try:
        import norse.torch

        norse.torch.from_nir(graph, dt=dt)
        norse_own = "imported"
    except Exception as error:  # record why Norse's own importer cannot take the graph
        norse_own = f"{type(error).__name__}: {error}"
    module = nirtorch.nir_to_torch(graph, _norse_node_map(dt))
    x = torch.as_tensor(inputs, dtype=torch.float32)
    if x.ndim == 5:  # ours [B, T, H, W, C] -> NIR [B, T, C, H, W]
        x = x.permute(0, 1, 4, 2, 3)
    state, steps = None, []
    with torch.no_grad():
        for t in range(x.shape[1]):
            out, state = module(x[:, t], state)
            steps.append(out.numpy())
    theirs = np.stack(steps, 1).reshape(ours.shape)
    counts_ours, counts_theirs = ours.sum(1), theirs.sum(1)
    accuracy = lambda counts: float(np.mean(np.argmax(counts, -1) == labels))
    result = {
        "samples": int(len(labels)), "steps": int(x.shape[1]), "dt": dt,
        "norse_from_nir": norse_own,
        "spike_agreement": float(np.mean(ours == theirs)),
        "differing_spike_slots": int(np.sum(ours != theirs)), "spike_slots": int(ours.size),
        "same_prediction": float(np.mean(np.argmax(counts_ours, -1) == np.argmax(counts_theirs, -1))),
        "accuracy_ours": accuracy(counts_ours), "accuracy_norse": accuracy(counts_theirs),
    }
    print(json.dumps(result, indent=1))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="export a run and write its inputs and spikes (repository venv)")
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--checkpoint", default="best")
    r = sub.add_parser("run", help="run the export in Norse/nirtorch and compare (torch venv)")
    r.add_argument("--dir", required=True)
    r.add_argument("--dt", type=float, default=1.0)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.workdir, args.out, args.split, args.checkpoint)
    else:
        run(args.dir, args.dt)


if __name__ == "__main__":
    main()
