"""The Gaussian blob image manifold (SPEC §9): a synthetic image data set whose tangent spaces are known exactly.

A point is the ``side × side`` image ``I(p)[i, j] = exp(−((i − p₀)² + (j − p₁)²) / (2w²))`` of a blob centred at
``p = (p₀, p₁)`` (row, column, in pixels; pixel (i, j) sits at integer coordinates), flattened row-major to
``D = side²`` values (``(n, D)`` like every `SyntheticManifold`; `Blobs.as_images` gives the ``(n, 1, H, W)``
view). The chart is ``p`` (dimension 2) or ``(p, w)`` (dimension 3, ``chart_dim=3``). Because the images are the
pixel samples of a smooth function of the chart, the tangent space at ``I(c)`` is exactly the span of the pixel
derivatives ``∂I/∂c_k``, which are closed form; a tiny k×k Cholesky factor of their Gram matrix orthonormalises
them. Projection (the nearest image) is a matched-filter grid search (separable, no D×D work) followed by a few
damped Gauss–Newton steps on the chart, kept inside the chart box.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import SyntheticManifold, _check_n, _check_points, _sample_device, _work_dtype

__all__ = ["Blobs"]

_CHUNK = 1024  # images per block of the grid search (bounds its (chunk, m, m) correlation table)


class Blobs(SyntheticManifold):
    """Images of one Gaussian blob on a ``side × side`` grid; the chart is its centre (and optionally width).

    Samples draw the chart uniformly in a box that keeps the blob inside the picture: centres in
    ``[margin, side − 1 − margin]²`` and, with ``chart_dim=3``, widths in ``width_range``. The manifold has a
    boundary (the box's); `project` returns the nearest image whose chart lies in the box (found locally: a grid
    search of the matched filter, then Gauss–Newton).

    Args:
        side: H = W, so D = side² (16 → 256, 32 → 1024, 64 → 4096); at least 4.
        width: the blob's standard deviation w in pixels (default ``side / 8``); with ``chart_dim=3`` the centre
            of the default ``width_range``.
        chart_dim: 2 (centre) or 3 (centre and width).
        width_range: ``(w_min, w_max)`` for ``chart_dim=3`` (default ``(0.75 w, 1.25 w)``); not allowed for 2.
        margin: distance in pixels between the box of centres and the picture's edge (default ``2 w_max``).
        project_steps: Gauss–Newton steps of `project` after the grid search.

    Attributes:
        side: H = W.
        width: w (``chart_dim=2``) or the middle of ``width_range``.
        low, high: Tensor (k,), float64: the chart box.
        data_shape: ``(1, side, side)``.
    """

    def __init__(
        self,
        side: int = 16,
        width: float | None = None,
        *,
        chart_dim: int = 2,
        width_range: tuple[float, float] | None = None,
        margin: float | None = None,
        project_steps: int = 12,
    ) -> None:
        if isinstance(side, bool) or not isinstance(side, int) or side < 4:
            raise ValueError(f"side must be an integer >= 4, got {side!r}")
        if chart_dim not in (2, 3):
            raise ValueError(f"chart_dim must be 2 (centre) or 3 (centre and width), got {chart_dim!r}")
        width = side / 8 if width is None else float(width)
        if not (math.isfinite(width) and width > 0):
            raise ValueError(f"width must be a positive number of pixels, got {width!r}")
        if chart_dim == 2:
            if width_range is not None:
                raise ValueError("width_range is only used with chart_dim=3 (the width is then a coordinate)")
            w_lo = w_hi = width
        else:
            w_lo, w_hi = (0.75 * width, 1.25 * width) if width_range is None else map(float, width_range)
            if not (0 < w_lo < w_hi and math.isfinite(w_hi)):
                raise ValueError(f"width_range must be (w_min, w_max) with 0 < w_min < w_max, got {width_range!r}")
        margin = 2.0 * w_hi if margin is None else float(margin)
        if not (math.isfinite(margin) and 0 <= margin < (side - 1) / 2):
            raise ValueError(
                f"margin must be in [0, (side - 1) / 2) = [0, {(side - 1) / 2:g}) so that the box of centres is not "
                f"empty, got {margin!r} (default 2 × the largest width; lower the width or raise side)"
            )
        if not isinstance(project_steps, int) or project_steps < 0:
            raise ValueError(f"project_steps must be a non-negative integer, got {project_steps!r}")
        super().__init__(f"blobs{side}", chart_dim, side * side)
        self.side = side
        self.width = 0.5 * (w_lo + w_hi)
        self.margin = margin
        self.project_steps = project_steps
        lo = [margin, margin] + ([w_lo] if chart_dim == 3 else [])
        hi = [side - 1 - margin] * 2 + ([w_hi] if chart_dim == 3 else [])
        self.low = torch.tensor(lo, dtype=torch.float64)
        self.high = torch.tensor(hi, dtype=torch.float64)
        self.data_shape = (1, side, side)

    # --- images and charts ----------------------------------------------------------------------------

    def as_images(self, x: Tensor) -> Tensor:
        """The ``(n, 1, side, side)`` view of points ``x`` ``(n, D)`` (no copy)."""
        x = _check_points(x, self.ambient_dim)
        return x.reshape(x.shape[0], *self.data_shape)

    def _full_chart(self, chart: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Rows p₀, columns p₁ and widths w, each (n,), of a chart (n, k)."""
        if chart.shape[1] == 3:
            return chart[:, 0], chart[:, 1], chart[:, 2]
        return chart[:, 0], chart[:, 1], torch.full_like(chart[:, 0], self.width)

    def _render(self, chart: Tensor, jacobian: bool) -> tuple[Tensor, Tensor | None]:
        p0, p1, w = self._full_chart(chart)
        grid = torch.arange(self.side, dtype=chart.dtype, device=chart.device)
        di = grid - p0[:, None]  # (n, side): row offsets
        dj = grid - p1[:, None]  # (n, side): column offsets
        inv2 = 1.0 / (w * w)[:, None]
        gi = torch.exp(-0.5 * di * di * inv2)
        gj = torch.exp(-0.5 * dj * dj * inv2)
        img = gi[:, :, None] * gj[:, None, :]  # (n, side, side)
        if not jacobian:
            return img.reshape(chart.shape[0], -1), None
        cols = [img * (di * inv2)[:, :, None], img * (dj * inv2)[:, None, :]]  # ∂I/∂p₀, ∂I/∂p₁
        if chart.shape[1] == 3:  # ∂I/∂w = I · ((i − p₀)² + (j − p₁)²) / w³
            r2 = (di * di)[:, :, None] + (dj * dj)[:, None, :]
            cols.append(img * r2 * (inv2 / w[:, None])[:, :, None])
        jac = torch.stack(cols, dim=-1).reshape(chart.shape[0], self.ambient_dim, chart.shape[1])
        return img.reshape(chart.shape[0], -1), jac

    def _check_chart(self, chart: Tensor) -> Tensor:
        if not isinstance(chart, Tensor) or chart.ndim != 2 or chart.shape[1] != self.dim:
            shape = tuple(chart.shape) if isinstance(chart, Tensor) else type(chart).__name__
            raise ValueError(f"chart must be a Tensor of shape (n, {self.dim}), got {shape}")
        return chart if chart.is_floating_point() else chart.to(torch.get_default_dtype())

    def render(self, chart: Tensor) -> Tensor:
        """Images at chart coordinates (centre row, centre column[, width]), in pixels.

        Args:
            chart: Tensor (n, k), k = ``dim``; any values (the box only bounds sampling and projection).

        Returns:
            Tensor (n, D), same dtype and device as ``chart``; differentiable (autograd and ``torch.func``).
        """
        return self._render(self._check_chart(chart), jacobian=False)[0]

    def chart_jacobian(self, chart: Tensor) -> Tensor:
        """The closed-form derivatives ``∂I/∂c_k`` of `render`.

        Args:
            chart: Tensor (n, k).

        Returns:
            Tensor (n, D, k): column k is ``∂I/∂c_k`` (``I·(i − p₀)/w²``, ``I·(j − p₁)/w²``,
            ``I·((i − p₀)² + (j − p₁)²)/w³``).
        """
        return self._render(self._check_chart(chart), jacobian=True)[1]

    def sample_chart(
        self, n: int, *, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> Tensor:
        """Chart coordinates drawn uniformly in the box: Tensor (n, k), float64."""
        n = _check_n(n)
        dev = _sample_device(generator, device)
        u = torch.rand(n, self.dim, generator=generator, device=dev, dtype=torch.float64)
        c = self.low.to(dev) + u * (self.high - self.low).to(dev)
        return c if device is None else c.to(device)

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Tensor:
        chart = self.sample_chart(n, generator=generator)
        out_device = torch.device(device) if device is not None else chart.device
        return self.render(chart).to(device=out_device, dtype=dtype)

    # --- projection --------------------------------------------------------------------------------------

    def _grid_start(self, x: Tensor) -> Tensor:
        """Chart (n, k) of the nearest image over a grid of centres (spacing <= min(1, w_min / 2) pixels) and
        widths, by the separable matched filter: ``‖I(p) − x‖² = ‖g_a‖²‖g_b‖² − 2 (G X Gᵀ)[a, b] + ‖x‖²``."""
        lo, hi = self.low.tolist(), self.high.tolist()
        w_min = lo[2] if self.dim == 3 else self.width
        step = min(1.0, w_min / 2)
        m = int(math.ceil((hi[0] - lo[0]) / step)) + 1
        centres = torch.linspace(lo[0], hi[0], m, dtype=x.dtype, device=x.device)
        widths = torch.linspace(lo[2], hi[2], 5, dtype=x.dtype, device=x.device) if self.dim == 3 else None
        pix = torch.arange(self.side, dtype=x.dtype, device=x.device)
        images = x.reshape(-1, self.side, self.side)
        best: list[Tensor] = []
        for start in range(0, x.shape[0], _CHUNK):
            block = images[start : start + _CHUNK]
            cost = torch.full((block.shape[0],), math.inf, dtype=x.dtype, device=x.device)
            chart = x.new_zeros(block.shape[0], self.dim)
            for w in [self.width] if widths is None else widths.tolist():
                g = torch.exp(-0.5 * ((pix - centres[:, None]) / w) ** 2)  # (m, side): 1-D profiles
                norms = (g * g).sum(-1)  # (m,)
                corr = g @ block @ g.T  # (b, m, m)
                c = (norms[:, None] * norms[None, :] - 2 * corr).reshape(block.shape[0], -1)
                val, idx = c.min(dim=1)
                better = val < cost
                cost = torch.where(better, val, cost)
                chart[better, 0] = centres[idx[better] // m]
                chart[better, 1] = centres[idx[better] % m]
                if widths is not None:
                    chart[better, 2] = w
            best.append(chart)
        return torch.cat(best) if best else x.new_zeros(0, self.dim)

    def chart_of(self, x: Tensor) -> Tensor:
        """Chart coordinates of `project(x)`.

        Args:
            x: Tensor (n, D), any points.

        Returns:
            Tensor (n, k) in the chart box, in ``x``'s dtype (computed in float64 where the device allows).
        """
        x = _check_points(x, self.ambient_dim)
        wd = _work_dtype(x)
        xw = x.to(wd)
        low, high = self.low.to(xw), self.high.to(xw)
        chart = self._grid_start(xw)
        cost = ((self._render(chart, False)[0] - xw) ** 2).sum(-1)
        damping = torch.full_like(cost, 1e-3)
        eye = torch.eye(self.dim, dtype=wd, device=x.device)
        for _ in range(self.project_steps):  # Levenberg–Marquardt: Gauss–Newton, damped where it overshoots
            img, jac = self._render(chart, True)
            grad = torch.einsum("ndk,nd->nk", jac, img - xw)
            gram = jac.transpose(1, 2) @ jac
            lhs = gram + damping[:, None, None] * (gram * eye)
            trial = torch.maximum(torch.minimum(chart - torch.linalg.solve(lhs, grad), high), low)
            trial_cost = ((self._render(trial, False)[0] - xw) ** 2).sum(-1)
            better = trial_cost < cost
            chart = torch.where(better[:, None], trial, chart)
            cost = torch.where(better, trial_cost, cost)
            damping = torch.where(better, damping / 3, damping * 4).clamp(1e-9, 1e9)
        return chart.to(x.dtype)

    def project(self, x: Tensor) -> Tensor:
        x = _check_points(x, self.ambient_dim)
        chart = self.chart_of(x).to(_work_dtype(x))
        return self._render(chart, False)[0].to(x.dtype)

    def tangent_basis(self, x: Tensor) -> Tensor:
        """Orthonormal tangent basis ``J L⁻ᵀ`` at `project(x)`, with ``J = ∂I/∂c`` and ``JᵀJ = L Lᵀ`` (k × k).

        Args:
            x: Tensor (n, D).

        Returns:
            Tensor (n, D, k) with orthonormal columns, in ``x``'s dtype.
        """
        x = _check_points(x, self.ambient_dim)
        chart = self.chart_of(x).to(_work_dtype(x))
        jac = self._render(chart, True)[1]
        chol = torch.linalg.cholesky(jac.transpose(1, 2) @ jac)  # (n, k, k)
        basis_t = torch.linalg.solve_triangular(chol, jac.transpose(1, 2), upper=False)  # L⁻¹ Jᵀ: (n, k, D)
        return basis_t.transpose(1, 2).to(x.dtype)

    def __repr__(self) -> str:
        return f"Blobs(side={self.side}, width={self.width:g}, chart_dim={self.dim}, margin={self.margin:g})"
