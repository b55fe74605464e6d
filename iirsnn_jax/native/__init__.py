"""Compiled CPU kernels for the scans, built on first use and called through XLA's FFI (library.py).

spiking_scan: neurons.spiking_scan's forward and reverse scans; linear_recurrence: recurrence.solve's
sequential solver and its adjoint. Each computes what its lax.scan computes, in the same float order.
buffer_cache: XLA's large per-step buffers kept mapped between steps (preloaded by train.py and the benchmark).
compiled: where the compiled libraries are cached.
"""
