"""Plots of a learned geometry: tangent frames, eigen-spectra and paths (matplotlib, headless-safe).

Data of any dimension are drawn in 3-D: the first three coordinates when ``D ≤ 3`` (padded with zeros),
otherwise the top-3 principal axes of the data (a fixed linear view, so vectors map consistently).
Each function returns the ``matplotlib`` figure; pass ``path=`` to also save it as a PNG.
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

from .geometry import intrinsic_dimension

__all__ = ["View3D", "plot_paths", "plot_spectrum", "plot_tangent_frames"]


class View3D:
    """A fixed linear map from ``R^D`` to ``R^3``: coordinates for ``D ≤ 3``, else the data's top-3 PCA axes."""

    def __init__(self, data: Tensor):
        flat = data.reshape(data.shape[0], -1).double().cpu()
        self.dim = flat.shape[1]
        self.mean = flat.mean(0) if self.dim > 3 else torch.zeros(self.dim, dtype=torch.float64)
        if self.dim > 3:
            # one-off PCA of the data for the view (not a hot path)
            _, _, vh = torch.linalg.svd(flat - self.mean, full_matrices=False)
            self.axes = vh[:3].T
        else:
            self.axes = torch.eye(self.dim, 3, dtype=torch.float64)

    def points(self, x: Tensor) -> np.ndarray:
        """``(n, D)`` → ``(n, 3)`` as a numpy array (what matplotlib takes)."""
        return ((x.detach().reshape(-1, self.dim).double().cpu() - self.mean) @ self.axes).numpy()

    def vectors(self, v: Tensor) -> np.ndarray:
        """``(n, D)`` → ``(n, 3)`` (linear part only)."""
        return (v.detach().reshape(-1, self.dim).double().cpu() @ self.axes).numpy()


def _save(fig, path: str | os.PathLike | None):
    """Save to ``path`` (and release the figure from pyplot's registry) or return it for display."""
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
    return fig


def _cloud_axes(view: View3D, data: Tensor):
    """A 3-D figure showing ``data`` as a faint cloud, with axes scaled to the data's extent."""
    fig = plt.figure(figsize=(6, 5.5))
    ax = fig.add_subplot(projection="3d")
    cloud = view.points(data)
    ax.scatter(*cloud.T, s=2, alpha=0.25, color="0.5")
    ax.set_box_aspect(np.ptp(cloud, axis=0) + 1e-9)
    return fig, ax


def plot_tangent_frames(data: Tensor, points: Tensor, vectors: Tensor, values: Tensor, *, scale: float = 0.15,
                        title: str = "learned tangent frames", path: str | os.PathLike | None = None):
    """Data as a faint cloud; at ``points`` ``(n, D)`` the eigenvectors ``(n, D, k)`` as arrows.

    Arrow ``j`` at a point has length ``scale · λ_j/λ₁`` (``values (n, k)``), so normal directions with small
    eigenvalues show as short arrows.
    """
    view = View3D(data)
    fig, ax = _cloud_axes(view, data)
    p = view.points(points)
    rel = (values / values[:, :1].clamp_min(1e-12)).double().cpu().numpy()
    colours = ["tab:red", "tab:blue", "tab:green", "tab:orange"]
    for j in range(min(vectors.shape[-1], len(colours))):
        v = view.vectors(vectors[..., j]) * (scale * rel[:, j : j + 1])
        ax.quiver(*p.T, *v.T, color=colours[j], linewidth=1.2, label=f"eigenvector {j + 1}")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def plot_spectrum(values: Tensor, *, true_dim: int | None = None, title: str = "eigen-spectrum of G",
                  path: str | os.PathLike | None = None):
    """Mean ± std of the normalised eigenvalues ``λ_k/λ₁`` over points, and the pointwise gap-rule dimensions."""
    rel = (values / values[:, :1].clamp_min(1e-12)).double().cpu().numpy()
    dims = intrinsic_dimension(values).cpu().numpy()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    k = np.arange(1, rel.shape[1] + 1)
    a1.bar(k, rel.mean(0), yerr=rel.std(0), color="tab:blue", alpha=0.8)
    a1.set_xlabel("k")
    a1.set_ylabel("λ_k / λ_1")
    a1.set_title(title)
    a2.hist(dims, bins=np.arange(0.5, rel.shape[1] + 1.5), color="tab:green", alpha=0.8)
    if true_dim is not None:
        a2.axvline(true_dim, color="k", linestyle="--", label=f"true d = {true_dim}")
        a2.legend()
    a2.set_xlabel("pointwise intrinsic dimension")
    a2.set_ylabel("points")
    fig.tight_layout()
    return _save(fig, path)


def plot_paths(data: Tensor, paths: dict[str, Tensor], *, title: str = "interpolation paths",
               path: str | os.PathLike | None = None):
    """Data as a faint cloud and several families of paths ``{label: (B, T, D)}`` in distinct colours."""
    view = View3D(data)
    fig, ax = _cloud_axes(view, data)
    styles = ["-", "--", ":", "-."]
    colours = ["tab:red", "0.2", "tab:blue", "tab:green"]
    for i, (label, family) in enumerate(paths.items()):
        for b in range(family.shape[0]):
            q = view.points(family[b])
            ax.plot(*q.T, styles[i % 4], color=colours[i % 4], linewidth=1.4, label=label if b == 0 else None)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)
