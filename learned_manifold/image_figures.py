"""Pictures of the learned geometry of images (paper Figs. 3 and 5; SPEC §9), matplotlib, headless-safe.

Every function takes tensors in the user's units and image shape ``(C, H, W)`` (or flat with ``image_shape``),
returns the figure, and saves it as a PNG when ``path`` is given; a saved figure is then closed in pyplot, as in
`plotting`, so that many saves do not pile up open figures (the returned figure can still be saved again).
One-channel images are drawn in grey, two channels (grey and alpha, PIL's "LA") as their grey channel, three or
four channels as RGB(A); each image is shown on the value range of the data (``vmin``/``vmax``), each eigenvector
on a symmetric diverging scale.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from .plotting import _save

__all__ = [
    "plot_dimension_histogram",
    "plot_eigenvalue_curves",
    "plot_eigenvector_images",
    "plot_interpolation_strips",
]


def _as_images(x: Tensor, image_shape: Sequence[int]) -> np.ndarray:
    """``(n, ...)`` → ``(n, H, W)`` or ``(n, H, W, C)`` numpy, for ``imshow``."""
    shape = tuple(image_shape)
    if len(shape) == 2:
        shape = (1, *shape)
    arr = x.detach().reshape(-1, *shape).double().cpu().numpy()
    return arr[:, 0] if shape[0] in (1, 2) else arr.transpose(0, 2, 3, 1)  # grey (+ alpha): the grey channel


def _show(ax, img: np.ndarray, vmin: float, vmax: float, *, diverging: bool = False) -> None:
    if img.ndim == 3:  # RGB: rescale into [0, 1]
        img = np.clip((img - vmin) / max(vmax - vmin, 1e-12), 0, 1)
        ax.imshow(img)
    else:
        ax.imshow(img, cmap="RdBu_r" if diverging else "gray", vmin=vmin, vmax=vmax)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_eigenvector_images(x: Tensor, values: Tensor, vectors: Tensor, image_shape: Sequence[int], *,
                            n_vectors: int = 6, value_range: tuple[float, float] | None = None,
                            title: str = "Top eigenvectors of the learned co-metric G(x)",
                            path: str | os.PathLike | None = None) -> Figure:
    """Fig. 3a: per row a data point and the top ``n_vectors`` eigenvectors of ``G`` there, with eigenvalues.

    Args:
        x: ``(n, D)`` points; values: ``(n, r)`` descending eigenvalues; vectors: ``(n, D, r)``.
        image_shape: ``(C, H, W)`` or ``(H, W)``.
    """
    n = x.shape[0]
    k = min(n_vectors, vectors.shape[-1])
    imgs = _as_images(x, image_shape)
    lo, hi = value_range if value_range is not None else (float(imgs.min()), float(imgs.max()))
    fig, axes = plt.subplots(n, k + 1, figsize=(1.3 * (k + 1), 1.4 * n + 0.6), squeeze=False)
    for i in range(n):
        _show(axes[i, 0], imgs[i], lo, hi)
        axes[i, 0].set_ylabel(f"point {i}", fontsize=8)
        vec = _as_images(vectors[i, :, :k].T, image_shape)
        for j in range(k):
            bound = float(np.abs(vec[j]).max()) or 1.0
            _show(axes[i, j + 1], vec[j], -bound, bound, diverging=True)
            axes[i, j + 1].set_title(f"λ{j + 1}={float(values[i, j]):.2f}", fontsize=7)
    axes[0, 0].set_title("data point", fontsize=7)
    fig.suptitle(f"{title}\n(red +, blue −, each eigenvector on its own symmetric scale)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_eigenvalue_curves(values: Tensor, labels: Tensor | None = None, *, max_index: int | None = None,
                           title: str = "Cumulative eigenvalues of G per class",
                           class_names: Sequence[str] | None = None, path: str | os.PathLike | None = None) -> Figure:
    """Fig. 3b: the mean cumulative normalised eigenvalue curve ``Σ_{i≤k} λ_i / Σ λ`` per class (one curve when
    ``labels`` is None), with the index where 90% is reached marked (read from the whole spectrum, also where
    ``max_index`` plots only its start; "none" for spectra that are all zero). ``values``: ``(n, r)`` descending;
    ``labels``: ``(n,)``; ``class_names``: the name of each label value (an image folder's class folders, whose
    sorted names need not follow their numbers: folders 2, 9, 10 are labels 0, 1, 2 of names '10', '2', '9'),
    shown in the legend instead of the label values."""
    if labels is not None and tuple(labels.shape) != (values.shape[0],):
        raise ValueError(f"labels must have shape ({values.shape[0]},), one per spectrum, got {tuple(labels.shape)}")
    values = values.detach().double().cpu().clamp_min(0)
    total = values.sum(-1, keepdim=True)
    cum = (values.cumsum(-1) / total.clamp_min(1e-300)).numpy()
    zero = (total.squeeze(-1) <= 0).numpy()
    r = cum.shape[1] if max_index is None else min(max_index, cum.shape[1])
    lab = None if labels is None else labels.cpu().numpy()
    groups = {"all points": np.arange(cum.shape[0])} if lab is None else {
        f"class {c if class_names is None else class_names[c]}": np.flatnonzero(lab == c) for c in np.unique(lab)}
    fig, ax = plt.subplots(figsize=(6, 4))
    idx = np.arange(1, r + 1)
    for name, rows in groups.items():
        if rows.size == 0:
            continue
        whole = cum[rows].mean(0)
        k90 = "none" if bool(zero[rows].all()) else str(int(np.searchsorted(whole, 0.9 - 1e-12) + 1))
        ax.plot(idx, whole[:r], marker="o", markersize=2.5, label=f"{name} (90% at k={k90})")
    ax.axhline(0.9, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("number of eigenvalues k")
    ax.set_ylabel("cumulative share of Σλ")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _save(fig, path)


def plot_interpolation_strips(strips: Mapping[str, Tensor], image_shape: Sequence[int], *,
                              scores: Mapping[str, str] | None = None, n_frames: int = 9,
                              value_range: tuple[float, float] | None = None,
                              title: str = "Interpolations between two images",
                              path: str | os.PathLike | None = None) -> Figure:
    """Fig. 5: one row per method (e.g. LERP, flow, geodesic), ``n_frames`` images evenly spaced along the path.

    Args:
        strips: method name → path ``(T, D)`` (or ``(T, *image_shape)``).
        scores: method name → a short figure-of-merit string shown under the row's name.
    """
    names = list(strips)
    fig, axes = plt.subplots(len(names), n_frames, figsize=(1.1 * n_frames + 1.2, 1.25 * len(names) + 0.6),
                             squeeze=False)
    every = np.concatenate([_as_images(p, image_shape).ravel() for p in strips.values()])
    lo, hi = value_range if value_range is not None else (float(every.min()), float(every.max()))
    for i, name in enumerate(names):
        path_i = strips[name]
        frames = np.linspace(0, path_i.shape[0] - 1, n_frames).round().astype(int)
        imgs = _as_images(path_i[torch.as_tensor(frames)], image_shape)
        for j in range(n_frames):
            _show(axes[i, j], imgs[j], lo, hi)
            if i == len(names) - 1:
                axes[i, j].set_xlabel(f"t={frames[j] / max(path_i.shape[0] - 1, 1):.2f}", fontsize=7)
        label = name if scores is None or name not in scores else f"{name}\n{scores[name]}"
        axes[i, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(f"{title} (t=0 start, t=1 the path's last point; a flow may stop short of the end image)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_dimension_histogram(dims: Tensor, *, title: str = "Pointwise intrinsic dimension (largest eigengap)",
                             path: str | os.PathLike | None = None) -> Figure:
    """Histogram of the gap-rule dimension per point ``dims`` ``(n,)`` (SPEC §5), integer bins, with the lower
    median marked (the global dimension of SPEC §5: a dimension some point has; ``[9, 9, 10, 10]`` gives 9)."""
    d = dims.detach().cpu().numpy().astype(int)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    bins = np.arange(d.min(), d.max() + 2) - 0.5
    ax.hist(d, bins=bins, color="tab:blue", edgecolor="white")
    med = int(np.sort(d)[(d.size - 1) // 2])  # the lower median, as `geometry.global_dimension`
    ax.axvline(med, color="tab:red", linestyle="--", label=f"median {med:g}")
    ax.set_xlabel("intrinsic dimension")
    ax.set_ylabel("number of points")
    if d.max() - d.min() < 10:  # every dimension a tick (one dimension alone got fractional ticks)
        ax.set_xticks(np.arange(d.min(), d.max() + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"{title}\n{d.size} points", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
