"""Runs train.py in this process and sends it a signal when its training data reaches a chosen batch.

  python tests/signal_at_batch.py SIGNAL EPOCH BATCH PROCESS train.py [train.py flags...]

SIGNAL is a name (SIGTERM, SIGINT, SIGKILL); PROCESS is the --process_id that receives it (-1: every process).
Used by the tests to interrupt real train.py runs (one of several processes, or with Ctrl-C) at a known step.
"""
import os
import runpy
import signal
import sys

name, epoch, batch, process, script, *flags = sys.argv[1:]
epoch, batch, process = int(epoch), int(batch), int(process)
this_process = next((int(f.split("=", 1)[1]) for f in flags if f.startswith("--process_id=")), 0)
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))

from iirsnn_jax.data import pipeline  # noqa: E402

original = pipeline.Pipeline.epoch


def epoch_with_signal(self, e=0, start_batch=0):
    for i, item in enumerate(original(self, e, start_batch=start_batch), start=start_batch):
        if (self.source.split, e, i) == ("train", epoch, batch) and process in (-1, this_process):
            os.kill(os.getpid(), getattr(signal, name))
        yield item


pipeline.Pipeline.epoch = epoch_with_signal
sys.argv = [script, *flags]
runpy.run_path(script, run_name="__main__")
