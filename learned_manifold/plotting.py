"""Plots of a learned geometry: tangent frames, eigen-spectra and paths (matplotlib, headless-safe).

Data of any dimension are drawn in 3-D: the first three coordinates when ``D ≤ 3`` (padded with zeros),
otherwise the top-3 principal axes of the data (a fixed linear view, so vectors map consistently).
Each function returns the ``matplotlib`` figure; pass ``path=`` to also save it as a PNG.

Every figure explains itself: labelled axes (coordinates, or principal axes with their share of the variance),
few ticks (integers on integer axes), a legend entry for everything drawn and only for what can be seen, start
and end markers on paths, and the figure's key number in its title or legend (the gap-rule dimension, each
path family's distance to the data); ``caption=`` adds the caller's own numbers (e.g. a tangent error against a
known truth) under the figure.
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from .dimension import global_dimension
from .evaluation import nearest_distance
from .geometry import intrinsic_dimension

__all__ = ["View3D", "plot_paths", "plot_spectrum", "plot_tangent_frames"]

VISIBLE_RATIO = 0.05
"""`plot_tangent_frames`: eigenvectors whose mean ``λ_k/λ₁`` is below this draw arrows too short to see; their
legend entry says so."""


class View3D:
    """A fixed linear map from ``R^D`` to ``R^3``: coordinates for ``D ≤ 3``, else the data's top-3 PCA axes.

    Attributes:
        labels: the three axis labels: ``"x₁"``, ``"x₂"``, ``"x₃"`` (``"unused (D = 2)"`` for padding), or
            ``"PC k (p% of variance)"`` for ``D > 3``.
    """

    def __init__(self, data: Tensor):
        flat = data.reshape(data.shape[0], -1).double().cpu()
        self.dim = flat.shape[1]
        self.mean = flat.mean(0) if self.dim > 3 else torch.zeros(self.dim, dtype=torch.float64)
        if self.dim > 3:
            # one-off PCA of the data for the view (not a hot path)
            _, s, vh = torch.linalg.svd(flat - self.mean, full_matrices=False)
            self.axes = vh[:3].T
            share = (s**2 / (s**2).sum().clamp_min(1e-300))[:3].tolist()
            self.labels = [f"PC {k + 1} ({100 * p:.0f}% of variance)" for k, p in enumerate(share)]
        else:
            self.axes = torch.eye(self.dim, 3, dtype=torch.float64)
            self.labels = [f"x{'₁₂₃'[k]}" if k < self.dim else f"unused (D = {self.dim})" for k in range(3)]

    def points(self, x: Tensor) -> np.ndarray:
        """``(n, D)`` → ``(n, 3)`` as a numpy array (what matplotlib takes)."""
        return ((x.detach().reshape(-1, self.dim).double().cpu() - self.mean) @ self.axes).numpy()

    def vectors(self, v: Tensor) -> np.ndarray:
        """``(n, D)`` → ``(n, 3)`` (linear part only)."""
        return (v.detach().reshape(-1, self.dim).double().cpu() @ self.axes).numpy()


def _save(fig: Figure, path: str | os.PathLike | None) -> Figure:
    """Save to ``path`` (and release the figure from pyplot's registry) or return it for display; `image_figures`
    saves through it too."""
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
    return fig


def _caption(fig, caption: str | None, y: float = 0.0) -> None:
    """Write ``caption`` under the figure at height ``y`` (figure units; ``bbox_inches="tight"`` keeps it in the
    saved PNG)."""
    if caption:
        fig.text(0.5, y, caption, ha="center", va="top", fontsize=9, wrap=True)


def _cloud_axes(view: View3D, data: Tensor, fig=None, position=111):
    """A 3-D axes showing ``data`` as a faint cloud: scaled to the data's extent (a flat direction is kept at
    least 30% of the longest, so its ticks do not pile up), labelled, with at most a few ticks per axis.
    ``position`` is anything ``fig.add_subplot`` takes (a three-digit number or a grid cell)."""
    fig = plt.figure(figsize=(6, 5.5)) if fig is None else fig
    ax = fig.add_subplot(position, projection="3d")
    cloud = view.points(data)
    ax.scatter(*cloud.T, s=2, alpha=0.25, color="0.5")
    extent = np.ptp(cloud, axis=0)
    longest = max(float(extent.max()), 1e-9)
    ax.set_box_aspect(np.maximum(extent, 0.3 * longest))
    for k, (axis, label) in enumerate(zip((ax.xaxis, ax.yaxis, ax.zaxis), view.labels, strict=True)):
        axis.set_major_locator(MaxNLocator(nbins=max(2, round(5 * max(extent[k], 0.3 * longest) / longest))))
        axis.set_label_text(label, fontsize=9)
        if k >= view.dim:  # padding axis of D < 3 data: nothing to read there
            axis.set_ticks([])
    ax.tick_params(labelsize=7, pad=0)
    return fig, ax


_SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def _lam(k: int) -> str:
    """``λ₃`` for ``k = 3``."""
    return "λ" + str(k).translate(_SUB)


def plot_tangent_frames(data: Tensor, points: Tensor, vectors: Tensor, values: Tensor, *, scale: float = 0.15,
                        title: str = "learned tangent frames", caption: str | None = None,
                        path: str | os.PathLike | None = None) -> Figure:
    """Data as a faint cloud; at ``points`` (black dots) the eigenvectors of ``G`` as arrows (SPEC §5).

    Arrow ``j`` at a point has length ``scale · λ_j/λ₁``, so normal directions with small eigenvalues show as
    short arrows; the legend gives each eigenvector's mean ``λ_j/λ₁`` and says when its arrows are too short
    to see (below `VISIBLE_RATIO`). The title gives the gap-rule dimension of the shown points.

    Args:
        data: ``(N, D)`` (or ``(N, *data_shape)``) points drawn as a cloud; they also fix the 3-D view.
        points: ``(n, D)`` points where frames are drawn.
        vectors: ``(n, D, k)`` eigenvectors (descending eigenvalues); the first four are drawn.
        values: ``(n, k)`` eigenvalues, descending.
        scale: arrow length of the top eigenvector, in data units.
        title: first line of the title.
        caption: text under the figure, e.g. the tangent error against a known truth.
        path: also save the figure there as a PNG (and release it from pyplot).

    Returns:
        The ``matplotlib`` figure.
    """
    view = View3D(data)
    fig, ax = _cloud_axes(view, data)
    p = view.points(points)
    ax.scatter(*p.T, s=6, color="k", depthshade=False, label=f"{p.shape[0]} points")
    rel = (values / values[:, :1].clamp_min(1e-12)).double().cpu().numpy()
    dims = intrinsic_dimension(values)
    d = global_dimension(values)  # the lower median (SPEC §5), as plot_spectrum
    colours = ["tab:red", "tab:blue", "tab:green", "tab:orange"]
    for j in range(min(vectors.shape[-1], len(colours))):
        mean_rel = float(rel[:, j].mean())
        label = f"eigenvector {j + 1}, mean {_lam(j + 1)}/λ₁ = {mean_rel:.2f}"
        if mean_rel < VISIBLE_RATIO:
            label += " (too short to see)"
        v = view.vectors(vectors[..., j]) * (scale * rel[:, j : j + 1])
        ax.quiver(*p.T, *v.T, color=colours[j], linewidth=1.2, label=label)
    ax.set_title(f"{title}\narrow length ∝ λₖ/λ₁; gap-rule dimension {d} at "
                 f"{float((dims == d).float().mean()):.0%} of these points", fontsize=10)
    ax.legend(loc="upper left", fontsize=7)
    _caption(fig, caption, y=0.1)  # the 3-D box leaves an empty band at the bottom of its axes
    return _save(fig, path)


def plot_spectrum(values: Tensor, *, true_dim: int | None = None, title: str = "eigen-spectrum of G",
                  caption: str | None = None, path: str | os.PathLike | None = None) -> Figure:
    """Mean ± std of the normalised eigenvalues ``λ_k/λ₁`` over points, and the pointwise gap-rule dimensions.

    Left: one bar per eigenvalue index (its mean over the points, printed above it when ``r ≤ 12``; whiskers
    ± 1 std over the points) and a dashed line at the gap of the global dimension (`dimension.global_dimension`:
    the lower median of the pointwise ones, SPEC §5). Right: how many points read each dimension (SPEC §5),
    titled with the share that reads ``true_dim`` when it is given, else the global dimension's.

    Args:
        values: ``(B, r)`` eigenvalues of ``G`` at ``B`` points, descending.
        true_dim: the known intrinsic dimension, if any.
        title: title of the left panel.
        caption: text under the figure.
        path: also save the figure there as a PNG.

    Returns:
        The ``matplotlib`` figure.
    """
    rel = (values / values[:, :1].clamp_min(1e-12)).double().cpu().numpy()
    n, r = rel.shape
    dims = intrinsic_dimension(values).cpu().numpy()
    d = global_dimension(values)  # the lower median (SPEC §5): np.median's mean, rounded half to even, was not
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    k = np.arange(1, r + 1)
    mean, std = rel.mean(0), rel.std(0)
    a1.bar(k, mean, color="tab:blue", alpha=0.8)
    a1.errorbar(k, mean, yerr=std, fmt="none", ecolor="k", capsize=3)
    if r <= 12:
        for kk, m, s in zip(k, mean, std, strict=True):
            a1.text(kk, min(m + s, 1.2) + 0.03, f"{m:.2f}", ha="center", fontsize=7)
    a1.axvline(d + 0.5, color="tab:red", linestyle="--", label=f"largest gap: d = {d} (lower median)")
    if r <= 20:
        a1.set_xticks(k)
    else:
        a1.xaxis.set_major_locator(MaxNLocator(integer=True))
    a1.set_ylim(0, 1.35)
    a1.set_xlabel("eigenvalue index k (descending)")
    a1.set_ylabel("λₖ / λ₁")
    a1.set_title(f"{title}\nbars: mean over {n} points, whiskers: ± 1 std", fontsize=10)
    a1.legend(loc="upper right", fontsize=8)
    low = 0.5 if dims.min() > 0 else -0.5  # points where G = 0 read dimension 0 (SPEC §5): counted too
    a2.hist(dims, bins=np.arange(low, r + 1.5), color="tab:green", alpha=0.8)
    a2.xaxis.set_major_locator(MaxNLocator(integer=True))
    a2.yaxis.set_major_locator(MaxNLocator(integer=True))
    a2.set_xlim(low, r + 0.5)
    if true_dim is not None:
        a2.axvline(true_dim, color="k", linestyle="--", label=f"true d = {true_dim}")
        a2.legend(fontsize=8)
        a2.set_title(f"pointwise dimension: the true d = {true_dim} at {float((dims == true_dim).mean()):.0%} "
                     f"of {n} points", fontsize=10)
    else:
        a2.set_title(f"pointwise dimension: d = {d} at {float((dims == d).mean()):.0%} of {n} points", fontsize=10)
    a2.set_xlabel("gap-rule dimension d (largest drop of λₖ/λ₁)")
    a2.set_ylabel("points")
    fig.tight_layout()
    _caption(fig, caption)
    return _save(fig, path)


def plot_paths(data: Tensor, paths: dict[str, Tensor], *, title: str = "interpolation paths",
               manifold: object | None = None, caption: str | None = None,
               path: str | os.PathLike | None = None) -> Figure:
    """Several families of paths over the data, and each family's distance to the data along the path (SPEC §6).

    Left: the data as a faint cloud, every path in its family's colour and style, each pair's start as a
    numbered black dot and each path's end as a cross in its family's colour (a flow that stops short of its
    target shows as a cross apart from the others). Right: the distance of the path points to the data (to
    ``manifold`` when given, else to the nearest data point), mean over pairs with a min–max band; the legend
    gives each family's largest distance and mean Euclidean length.

    Args:
        data: ``(N, D)`` (or ``(N, *data_shape)``) data points.
        paths: ``{label: (B, T, D)}`` (or ``(B, T, *data_shape)``) path families; pairs in the same order.
        title: the figure's title.
        manifold: optional ground truth with ``distance(x (n, D)) -> (n,)`` (e.g. a built-in data set's).
        caption: text under the figure.
        path: also save the figure there as a PNG.

    Returns:
        The ``matplotlib`` figure.
    """
    view = View3D(data)
    fig = plt.figure(figsize=(13, 5.2))
    grid = fig.add_gridspec(1, 2, width_ratios=[1.3, 1])
    _, ax = _cloud_axes(view, data, fig, grid[0])
    prof = fig.add_subplot(grid[1])
    flat_data = data.detach().reshape(data.shape[0], -1).double().cpu()
    styles = ["-", "--", ":", "-."]
    colours = ["tab:red", "0.2", "tab:blue", "tab:green"]
    starts = None
    for i, (label, family) in enumerate(paths.items()):
        fam = family.detach().reshape(family.shape[0], family.shape[1], -1).double().cpu()  # (B, T, D)
        b, t, _ = fam.shape
        flat = fam.reshape(b * t, -1)
        if manifold is not None:
            dist = torch.as_tensor(manifold.distance(flat.to(flat_data.dtype))).double().reshape(b, t)
        else:
            dist = nearest_distance(flat, flat_data).reshape(b, t)
        length = float((fam[:, 1:] - fam[:, :-1]).norm(dim=-1).sum(-1).mean())
        style, colour = styles[i % 4], colours[i % 4]
        for j in range(b):
            ax.plot(*view.points(fam[j]).T, style, color=colour, linewidth=1.4, label=label if j == 0 else None)
        ax.scatter(*view.points(fam[:, -1]).T, marker="x", s=40, color=colour, depthshade=False)
        frac = np.linspace(0.0, 1.0, t)
        dist = dist.numpy()
        prof.plot(frac, dist.mean(0), style, color=colour, linewidth=1.6,
                  label=f"{label}: largest {dist.max():.3f}, mean length {length:.2f}")
        prof.fill_between(frac, dist.min(0), dist.max(0), color=colour, alpha=0.12)
        starts = view.points(fam[:, 0]) if starts is None else starts
    if starts is not None:
        ax.scatter(*starts.T, marker="o", s=25, color="k", depthshade=False, label="start (pair number)")
        for j, s in enumerate(starts):
            ax.text(*s, f" {j + 1}", fontsize=7)
        ax.scatter([], [], marker="x", color="k", label="end of each path")
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title("paths over the data", fontsize=10)
    where = "the manifold" if manifold is not None else "the nearest data point"
    prof.set_xlabel("position along the path (0 = start, 1 = end; flows: t / t_end)")
    prof.set_ylabel(f"distance to {where}")
    prof.set_ylim(bottom=0)
    prof.set_title(f"distance to {where}: mean over pairs, band min–max", fontsize=10)
    prof.legend(loc="upper right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    _caption(fig, caption)
    return _save(fig, path)
