"""Tiny event-camera datasets in tonic's on-disk layouts, written by the tests themselves, and configs that
read them.  Used by test_data_nmnist.py and test_data_gesture.py.

N-MNIST:     <root>/NMNIST/{Train,Test}/<digit>/<n>.bin, 5 bytes per event: x, y, p << 7 | t[22:16], t[15:8],
             t[7:0] (t in microseconds).
DVS Gesture: <root>/DVSGesture/ibmGesture{Train,Test}/user<NN>_<lighting>/<label>.npy, [E, 4] int arrays of
             (x, y, p, t_ms).
"""
from pathlib import Path

import numpy as np

from iirsnn_jax.experiments import load_config


def config_for(root, experiment: str, **data):
    """The experiment's config reading from `root`, caching under root/cache, with `data` fields overridden."""
    config = load_config(experiment)
    config.data.root = str(root)
    config.data.cache_dir = str(Path(root) / "cache")
    for key, value in data.items():
        config.data[key] = value
    return config


def event_folder(root, *parts) -> Path:
    """root/parts..., created."""
    folder = Path(root).joinpath(*parts)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# N-MNIST

def encode_nmnist_bin(x, y, p, t) -> bytes:
    """N-MNIST's 5-byte events of equal-length sequences x, y, p, t."""
    x, y, p, t = (np.asarray(a, np.int64) for a in (x, y, p, t))
    fields = [x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF]
    return np.stack(fields, 1).astype(np.uint8).tobytes()


def random_nmnist_events(rng, n=None):
    """(x, y, p, t) lists of n events (20-300 if None), t in µs sorted, spanning past 300 ms."""
    n = n or int(rng.integers(20, 300))
    t0 = int(rng.integers(0, 50000))
    t = np.sort(t0 + rng.integers(0, 360000, n))  # past 300 ms, so the crop matters
    return (rng.integers(0, 34, n).tolist(), rng.integers(0, 34, n).tolist(), rng.integers(0, 2, n).tolist(),
            t.tolist())


def write_nmnist(root, per_digit=(3, 2), seed=0):
    """per_digit (train, test) files per digit; returns {folder: [(path, label, events)]} in order.  Each
    folder also gets a dot file and a .txt file that readers must ignore."""
    rng, made = np.random.default_rng(seed), {}
    for folder, count in zip(("Train", "Test"), per_digit):
        made[folder] = []
        for digit in range(10):
            d = event_folder(root, "NMNIST", folder, str(digit))
            for k in range(count):
                ev = random_nmnist_events(rng)
                path = d / f"{k:05d}.bin"
                path.write_bytes(encode_nmnist_bin(*ev))
                made[folder].append((path, digit, ev))
        (Path(root) / "NMNIST" / folder / "0" / ".hidden.bin").write_bytes(b"xx")  # dot files are ignored
        (Path(root) / "NMNIST" / folder / "0" / "notes.txt").write_text("ignored, not .bin")
    return made


# DVS Gesture

def random_gesture(rng, n=None):
    """[E, 4] (x, y, p, t_ms) as tonic stores a gesture; times start anywhere and span 0.9-2 s (the reference
    crashes on gestures shorter than about T * T ms, real ones last 1.7-18 s)."""
    n = n or int(rng.integers(200, 2000))
    t = np.sort(int(rng.integers(0, 10 ** 6)) + rng.integers(0, int(rng.integers(900, 2000)), n))
    return np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n), t], 1)


def write_gesture(root, seed=0):
    """Gestures of labels 0, 3, 10 for two train users and one test user; returns
    {folder: {path: (label, events)}}."""
    rng, made = np.random.default_rng(seed), {}
    for folder, users in (("ibmGestureTrain", ("user01_fluorescent", "user02_led")),
                          ("ibmGestureTest", ("user24_natural",))):
        made[folder] = {}
        for user in users:
            d = event_folder(root, "DVSGesture", folder, user)
            for label in (0, 3, 10):
                ev = random_gesture(rng)
                np.save(d / f"{label}.npy", ev)
                made[folder][str(d / f"{label}.npy")] = (label, ev)
    return made
