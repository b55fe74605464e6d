"""A run's directory: what it holds, who may write it, and whether a new command may continue it.

  <workdir>/config.json      the resolved config of the run (written once its settings are checked)
  <workdir>/metrics.jsonl    one JSON record per line (metrics.py)
  <workdir>/tensorboard/     TensorBoard events
  <workdir>/checkpoints/     Orbax checkpoints (checkpoint.py)
  <workdir>/run.lock         present while a train.py run uses the workdir: {"pid", "host", "started",
                             "heartbeat"}; the run refreshes "heartbeat" every minute or so, so that a
                             lock left by a machine that vanished (a preempted cloud VM, SIGKILL on another
                             host) goes stale after STALE_AFTER_S and a restart elsewhere takes it over

Paths are `etils.epath` paths, so a workdir may be a local folder or a bucket URL (gs://bucket/run, as on
cloud TPU VMs; epath reads gs:// through gcsfs). The two operations epath lacks, an exclusive create
(`open_exclusive`) and a move into a folder that does not exist yet (`move`), use the bucket's fsspec
filesystem directly. A train.py command on a workdir that holds a run continues it only when its config
equals the saved one, apart from the run-control fields (`RUN_CONTROL_FIELDS`); starting over is explicit
(`--overwrite`, which says what it deletes).
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time

import ml_collections
from etils import epath

from iirsnn_jax import config as config_lib
from iirsnn_jax.errors import WorkdirError

log = logging.getLogger("iirsnn_jax.training")
HEARTBEAT_EVERY_S = 60.0
STALE_AFTER_S = 600.0  # ten missed heartbeats: a lock of another host older than this is stale

# Fields that steer a run without changing what it computes: they may differ when a run is continued.
RUN_CONTROL_FIELDS = frozenset({
    "train.epochs", "train.progress_bar", "train.checkpoint_every_steps", "train.checkpoint_min_interval_s",
    "train.keep_checkpoints", "train.eval_batch_size", "train.sync_every_steps", "data.root", "data.cache",
    "data.cache_dir", "data.num_workers", "data.prefetch", "data.skip_corrupt", "train.cpu_scheduler",
})
RUN_FILES = ("config.json", "metrics.jsonl", "tensorboard", "checkpoints")


def is_url(path) -> bool:
    return "://" in str(path)


def open_exclusive(path: epath.Path):
    """A new file opened for writing bytes; FileExistsError when it exists. Locally O_EXCL; in a gs:// bucket
    an upload with the precondition "no generation yet" (ifGenerationMatch=0), through the bucket's fsspec
    filesystem because epath has no "x" mode."""
    if is_url(path):
        import fsspec

        filesystem, inner = fsspec.core.url_to_fs(str(path))
        return filesystem.open(inner, "xb")
    return open(path, "xb")


def move(source: epath.Path, target: epath.Path) -> None:
    """Renames a file or folder to `target`, whose folder need not exist. A bucket has no folders to create
    (and epath's rename insists on one): there the bucket's fsspec filesystem moves each object server-side."""
    if is_url(source):
        import fsspec

        filesystem, inner = fsspec.core.url_to_fs(str(source))
        filesystem.mv(inner, fsspec.core.url_to_fs(str(target))[1], recursive=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    source.rename(target)


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(saved: ml_collections.ConfigDict, new: ml_collections.ConfigDict) -> dict:
    """{dotted key: (saved value, new value)} of every field that differs (values compared as JSON)."""
    as_json = lambda c: flatten(json.loads(c.to_json_best_effort()))
    old, ours = as_json(saved), as_json(new)
    return {k: (old.get(k), ours.get(k)) for k in sorted(set(old) | set(ours)) if old.get(k) != ours.get(k)}


class Workdir:
    """The files of one run directory; see the module docstring."""

    def __init__(self, path):
        self.path = epath.Path(path)
        self.config_path = self.path / "config.json"
        self.lock_path = self.path / "run.lock"
        self._locked = False

    def __str__(self):
        return str(self.path)

    def has_run(self) -> bool:
        return self.config_path.exists()

    # -- the lock --------------------------------------------------------------------------------------------
    def lock(self) -> None:
        """Takes the workdir for this process by creating run.lock exclusively (also in a bucket); refuses when
        a live run holds it (a lock left by a dead process on this host is taken over, with a warning)."""
        self.path.mkdir(parents=True, exist_ok=True)
        now = round(time.time(), 3)
        mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": now, "heartbeat": now}
        for _ in range(2):
            if self._create_lock(mine):
                self._locked, self._lock_record, self._last_beat = True, mine, time.monotonic()
                return
            holder = self._read_lock()
            if holder is not None and not self._is_stale(holder):
                beat = holder.get("heartbeat")
                seen = (f", last heartbeat {max(time.time() - beat, 0):.0f} s ago" if isinstance(beat, (int, float))
                        else "")
                raise WorkdirError(
                    f"{self.path} is in use by another run (process {holder.get('pid')} on host "
                    f"{holder.get('host')}, started {time.ctime(holder.get('started', 0))}{seen}); wait for it to "
                    f"end, or use another --workdir. A lock of another host is taken over once its heartbeat is "
                    f"{STALE_AFTER_S:.0f} s old; if that process is gone, deleting {self.lock_path} lets this run "
                    f"start at once")
            log.warning("taking over the stale lock %s of %s", self.lock_path, holder)
            self.lock_path.unlink(missing_ok=True)
        raise WorkdirError(f"could not take the lock {self.lock_path}")

    def _create_lock(self, mine: dict) -> bool:
        """Writes run.lock only if it does not exist (one atomic step); False when it does."""
        try:
            with open_exclusive(self.lock_path) as f:
                f.write((json.dumps(mine) + "\n").encode())
        except FileExistsError:
            return False
        return True

    def _read_lock(self) -> dict | None:
        try:
            return json.loads(self.lock_path.read_text())
        except FileNotFoundError:
            return None
        except (ValueError, OSError):
            return {}  # unreadable: treated as stale below only on this host's terms

    def heartbeat(self) -> None:
        """Refreshes run.lock's heartbeat when the last one is HEARTBEAT_EVERY_S old (cheap to call often).
        The new content replaces the file whole (a rename, or one object upload), so a reader never sees
        half of it."""
        if not self._locked or time.monotonic() - self._last_beat < HEARTBEAT_EVERY_S:
            return
        self._last_beat = time.monotonic()
        self._lock_record = {**self._lock_record, "heartbeat": round(time.time(), 3)}
        text = json.dumps(self._lock_record) + "\n"
        if is_url(self.lock_path):
            self.lock_path.write_text(text)
            return
        staging = self.lock_path.with_name(f"{self.lock_path.name}.{os.getpid()}")
        staging.write_text(text)
        os.replace(staging, self.lock_path)

    @staticmethod
    def _is_stale(holder: dict) -> bool:
        """A lock of a process on this host that no longer runs, a lock of another host whose heartbeat is
        STALE_AFTER_S old, or an unreadable lock."""
        if not holder:
            return True
        if holder.get("host") != socket.gethostname():  # we cannot see the process: trust its heartbeat
            beat = holder.get("heartbeat")  # absent in locks of older versions: those count as live
            return isinstance(beat, (int, float)) and time.time() - beat > STALE_AFTER_S
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, KeyError, ValueError, TypeError):
            return False
        return False

    def unlock(self) -> None:
        if self._locked:
            holder = self._read_lock() or {}
            if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                self.lock_path.unlink(missing_ok=True)
            self._locked = False

    # -- the config ------------------------------------------------------------------------------------------
    def check_config(self, config: ml_collections.ConfigDict) -> None:
        """Refuses to continue a run whose saved config differs from `config` in a field that changes what
        the run computes; the error names each differing key with both values."""
        if not self.has_run():
            return
        try:
            saved = config_lib.read_run_config(self.path)
        except (ValueError, OSError) as error:
            raise WorkdirError(f"{self.config_path} cannot be read ({error}); use another --workdir, or "
                               "--overwrite to start over") from None
        differences = {k: v for k, v in config_differences(saved, config).items() if k not in RUN_CONTROL_FIELDS}
        if differences:
            lines = "\n".join(f"  {key}: saved {old!r}, now {new!r}" for key, (old, new) in differences.items())
            raise WorkdirError(f"{self.path} holds a run with other settings; continuing it would mix two "
                               f"experiments:\n{lines}\nUse another --workdir, or --overwrite to delete that run "
                               f"({', '.join(RUN_FILES)}) and start over. Only run-control fields may change "
                               f"when a run is continued: {', '.join(sorted(RUN_CONTROL_FIELDS))}.")

    def write_config(self, config: ml_collections.ConfigDict) -> None:
        """Writes config.json whole (a temporary file renamed over the old one)."""
        temporary = self.path / "config.json.tmp"
        temporary.write_text(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")
        temporary.replace(self.config_path)  # rename that may overwrite

    def overwrite(self) -> list[str]:
        """Deletes the run's files (RUN_FILES) and returns what was deleted."""
        deleted = []
        for name in RUN_FILES:
            target = self.path / name
            if target.exists():
                if target.is_dir():
                    target.rmtree()
                else:
                    target.unlink()
                deleted.append(str(target))
        return deleted
