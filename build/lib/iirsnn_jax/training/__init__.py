"""Training and evaluation: state, jitted steps, device mesh, Orbax checkpoints, metrics, the loop."""
