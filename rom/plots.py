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
    """One tripcolor panel per nodal field of a 2D triangle mesh."""
    tri = mtri.Triangulation(nodes[:, 0], nodes[:, 1], triangles)
    lines = max(t.count("\n") + 1 for t in titles) if titles else 1
    fig, axes = figure(len(values), size=(3.2, 2.8 + 0.15 * lines))
    for ax, v, t in zip(axes, values, titles):
        im = ax.tripcolor(tri, v, shading="gouraud", cmap=cmap)
        ax.set_aspect("equal")
        ax.set_title(t, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.8, label=label)
    save(fig, path)


def positive(y) -> np.ndarray:
    """Values for a log axis: zeros and negatives (exact zeros, round-off below zero) are not drawn,
    rather than clamped to a tiny number that would stretch the axis to 1e-300."""
    y = np.asarray(y, dtype=float)
    return np.where(y > 0, y, np.nan)


def integer_ticks(ax, axis="x"):
    """Basis sizes, term counts, ranks: integer ticks only."""
    from matplotlib.ticker import MaxNLocator

    getattr(ax, f"{axis}axis").set_major_locator(MaxNLocator(integer=True))


def basis_axes(ax, ylabel, title):
    """The axes of a quantity against the basis size: labels, log grid, legend, integer ticks."""
    ax.set_xlabel("basis size N")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    integer_ticks(ax)


STYLES = ("o-", "s--", "^-.", "v:", "D-", "x--")


def semilogy(path, curves: dict, xlabel, ylabel, title="", markers=True, integer_x=False, floor=None):
    """curves: label -> (x, y). Distinct line styles and marker sizes, so curves that coincide stay
    visible (the later one is drawn thinner on top); `floor` bounds the axis from below."""
    fig, (ax,) = figure()
    for i, (label, (x, y)) in enumerate(curves.items()):
        style = STYLES[i % len(STYLES)] if markers else "-"
        ax.semilogy(x, positive(y), style, ms=max(2.0, 5.0 - i), lw=max(0.8, 2.0 - 0.3 * i), label=label, alpha=0.9)
    finite = [positive(y)[np.isfinite(positive(y))] for _, y in curves.values()]
    finite = np.concatenate(finite) if finite else np.array([])
    if floor is not None and finite.size and finite.min() < floor:
        ax.set_ylim(bottom=floor)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if integer_x:
        integer_ticks(ax)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    save(fig, path)


def parameter_title(names, values, per_line: int = 3) -> str:
    """Every parameter of a sample, a few per line (titles must not drop any)."""
    pairs = [f"{n}={v:.3g}" for n, v in zip(names, values)]
    return "\n".join(", ".join(pairs[i:i + per_line]) for i in range(0, len(pairs), per_line))
