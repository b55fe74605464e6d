"""Compiled CPU kernels, built on first use (spiking_scan: the spiking scan of neurons.py as an XLA FFI call)."""
