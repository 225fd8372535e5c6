"""Matplotlib figures for the report (Agg backend, no display needed)."""
from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.tri as mtri  # noqa: E402
import numpy as np  # noqa: E402


def figure(ncols=1, nrows=1, size=(5.0, 3.6), **kw):
    fig, ax = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False, **kw)
    return fig, ax.ravel()


def save(fig, path):
    from rom.artefacts import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def fields(path, nodes, triangles, values, titles, cmap="viridis", label=""):
    """One tripcolor panel per nodal field."""
    tri = mtri.Triangulation(nodes[:, 0], nodes[:, 1], triangles)
    fig, axes = figure(len(values), size=(3.2, 3.0))
    for ax, v, t in zip(axes, values, titles):
        im = ax.tripcolor(tri, v, shading="gouraud", cmap=cmap)
        ax.set_aspect("equal")
        ax.set_title(t, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.8, label=label)
    save(fig, path)


def semilogy(path, curves: dict, xlabel, ylabel, title="", markers=True):
    """curves: label -> (x, y)."""
    fig, (ax,) = figure()
    for label, (x, y) in curves.items():
        ax.semilogy(x, np.maximum(y, 1e-300), "o-" if markers else "-", ms=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    save(fig, path)
