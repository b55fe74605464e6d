"""What every figure shares: headless figures of a fixed pixel size, a caption line, PNG output.

Figures are `matplotlib.figure.Figure` objects drawn on the Agg canvas directly, without pyplot: nothing
global is touched (no backend switch, no open-figure registry), so plots run on machines without a display
and inside tests. A figure's size is rounded up to quarter inches and saved at `DPI` without a tight
bounding box, so the PNG has exactly (size[0] * DPI, size[1] * DPI) pixels; `save` returns that size.
"""
from __future__ import annotations

import math
import textwrap
from typing import NamedTuple

import numpy as np
from etils import epath
from matplotlib.figure import Figure

DPI = 100
CAPTION_SIZE = 8.5
CHARS_PER_INCH = 15.5  # characters of the caption font per inch of line, a conservative estimate
LINE_HEIGHT = 0.16  # inches per caption line
# Colours used across figures: trained / initial, train / dev / test.
TRAINED, INITIAL = "tab:blue", "black"
SPLIT_COLOURS = {"train": "tab:blue", "dev": "tab:orange", "test": "tab:green"}


class Written(NamedTuple):
    """A PNG written by a plot function: its path and pixel size (width, height)."""

    path: epath.Path
    size: tuple[int, int]


def new_figure(width: float, height: float, caption: str) -> Figure:
    """A headless figure with constrained layout: width x height inches for the plots, and below them a band
    as tall as the caption (wrapped to the width) needs."""
    lines = textwrap.wrap(caption, width=int(width * CHARS_PER_INCH)) or [""]
    band = 0.08 + LINE_HEIGHT * len(lines)
    # Quarter inches are exact in binary and 25 pixels at DPI 100: the PNG has exactly size * DPI pixels.
    width, total = math.ceil(width * 4) / 4, math.ceil((height + band) * 4) / 4
    fig = Figure(figsize=(width, total), dpi=DPI, layout="constrained")
    fig.text(0.008, 0.04 / total, "\n".join(lines), fontsize=CAPTION_SIZE, color="0.25", ha="left", va="bottom")
    fraction = band / total
    fig.get_layout_engine().set(rect=(0.0, fraction, 1.0, 1.0 - fraction))
    return fig


def save(fig: Figure, path: epath.PathLike) -> Written:
    """Writes fig as a PNG of exactly its size in pixels (to a local file or a bucket URL); returns the path
    and pixel size."""
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:  # through the file object: matplotlib alone would write a local file
        fig.savefig(f, dpi=DPI, format="png", metadata={"Software": "iirsnn_jax.plots"})
    width, height = fig.get_size_inches()
    return Written(path, (int(round(width * DPI)), int(round(height * DPI))))


def flat_neurons(x: np.ndarray) -> np.ndarray:
    """[T, *F] -> [T, prod(F)], neurons numbered row-major in our layout ((h, w, c) for images)."""
    return np.asarray(x).reshape(x.shape[0], -1)


def draw_raster(ax, x: np.ndarray, *, max_points: int = 150_000, colour: str = "black") -> str:
    """Draws a [T, N] signal on ax, time on x and neuron index on y; returns a note for the axis label.

    Binary signals (spikes, events) are drawn as one dot per spike. Larger rasters keep every k-th neuron so
    that at most `max_points` dots are drawn (neuron indices stay true). Analog signals (e.g. pixel values
    copied over time) are drawn as an image with a colour bar.
    """
    x = flat_neurons(x).astype(np.float32)
    t_steps, n = x.shape
    ax.set_xlim(-0.5, t_steps - 0.5)
    ax.set_ylim(n - 0.5, -0.5)  # neuron 0 at the top, as an image
    if not np.isin(x, (0.0, 1.0)).all():
        image = ax.imshow(x.T, aspect="auto", interpolation="nearest", cmap="Greys",
                          extent=(-0.5, t_steps - 0.5, n - 0.5, -0.5))
        ax.figure.colorbar(image, ax=ax, pad=0.01, fraction=0.04, label="value")
        return ""
    stride = max(1, int(np.ceil(x.sum() / max_points)))
    t, neuron = np.nonzero(x[:, ::stride])
    fig = ax.figure
    row_pt = ax.get_position().height * fig.get_size_inches()[1] * 72.0 / max(n / stride, 1)  # points per neuron
    if row_pt >= 3.0:  # few neurons: a tick per spike, as tall as a row
        ax.scatter(t, neuron * stride, s=(0.8 * min(row_pt, 14.0)) ** 2, marker="|", c=colour,
                   linewidths=1.6, rasterized=True)
    else:
        ax.scatter(t, neuron * stride, s=float(np.clip(4.0 * row_pt, 1.5, 5.0)), marker="s", c=colour,
                   linewidths=0, rasterized=True)
    return f", every {stride}th shown" if stride > 1 else ""
