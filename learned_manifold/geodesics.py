"""Discrete geodesics of a co-metric field by energy minimisation (SPEC §6).

A path of ``T`` points ``x_0, …, x_{T−1}`` with fixed ends has the discrete energy

    ``E = Σ_i Δ_iᵀ g(x_{i+½}) Δ_i``,  ``Δ_i = x_{i+1} − x_i``,  ``x_{i+½} = (x_i + x_{i+1}) / 2``,

with ``g = (G + δI)^{-1}`` applied by the field's ``metric`` (Woodbury for low-rank fields, SPEC §5). The
interior points are optimised by autograd through the field. Minimisers have (nearly) equal metric segment
lengths, since ``E ≥ L² / (T − 1)`` with equality exactly for equal segments (Cauchy–Schwarz).

Paths that leave the data need a mean-centred field (SPEC §2): with an uncentred one the metric makes leaving the
data cheap and the geodesic cuts through empty space.

Example:
    >>> res = geodesic(field, x0, x1, n_points=32)          # x0, x1: (B, D)
    >>> res.path.shape, res.length, res.euclidean_length     # (B, 32, D), (B,), (B,)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .evaluation import lerp
from .metrics.base import CoMetricField, check_points

__all__ = [
    "GEODESIC_METHODS",
    "GeodesicMethod",
    "GeodesicResult",
    "geodesic",
    "path_energy",
    "segment_energies",
]


@dataclass(frozen=True)
class GeodesicMethod:
    """An entry of `GEODESIC_METHODS`: how to build the optimiser of the interior points.

    Attributes:
        make: ``make(params, lr)`` returns a ``torch.optim.Optimizer`` whose ``step(closure)`` is called once per
            iteration. The parameters are the interior points in units of the straight segment length
            ``‖x₁ − x₀‖ / (T − 1)`` (per pair), so ``lr`` is scale-free.
        lr: the default step for this method.
        tol: the default tolerance on the relative change of each pair's energy between iterations.
    """

    make: Callable[[list[Tensor], float], torch.optim.Optimizer]
    lr: float
    tol: float


def _make_lbfgs(params: list[Tensor], lr: float) -> torch.optim.Optimizer:
    # One L-BFGS iteration per ``step`` call; the curvature history lives in the optimiser's state between calls.
    return torch.optim.LBFGS(
        params,
        lr=lr,
        max_iter=1,
        max_eval=26,
        history_size=20,
        tolerance_grad=0.0,
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )


def _make_adam(params: list[Tensor], lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr)


GEODESIC_METHODS: dict[str, GeodesicMethod] = {
    "lbfgs": GeodesicMethod(make=_make_lbfgs, lr=1.0, tol=1e-9),
    "adam": GeodesicMethod(make=_make_adam, lr=0.1, tol=1e-7),
}
"""Optimisers of the discrete energy by name (the torchdiffeq ``SOLVERS`` pattern)."""


@dataclass
class GeodesicResult:
    """A batch of discrete geodesics (SPEC §6). A single pair given as ``(D,)`` vectors drops the batch axis.

    Attributes:
        path: ``(B, T, D)`` points, ends equal to ``x0`` and ``x1``; detached.
        energy: ``(B,)`` discrete energy ``Σ_i Δ_iᵀ g(x_{i+½}) Δ_i``.
        length: ``(B,)`` metric length ``Σ_i sqrt(Δ_iᵀ g(x_{i+½}) Δ_i)``.
        euclidean_length: ``(B,)`` Euclidean polyline length ``Σ_i ‖Δ_i‖``.
        initial_energy: ``(B,)`` energy of the initial path (LERP or the given ``init``).
        converged: ``(B,)`` bool, whether the relative change of the pair's energy fell below ``tol``.
        steps: optimiser iterations performed.
        method: the optimiser's name in `GEODESIC_METHODS`.
    """

    path: Tensor
    energy: Tensor
    length: Tensor
    euclidean_length: Tensor
    initial_energy: Tensor
    converged: Tensor
    steps: int
    method: str


def segment_energies(field: CoMetricField, path: Tensor) -> Tensor:
    """Squared metric lengths ``Δ_iᵀ g(x_{i+½}) Δ_i`` of the segments of a batch of paths.

    All segments of all paths go through one call of ``field.metric`` on ``(B·(T−1), D)`` points.

    Args:
        field: the co-metric field; ``g = (G + δI)^{-1}`` is ``field.metric``.
        path: ``(B, T, D)`` points, ``T ≥ 2``.

    Returns:
        ``(B, T − 1)``.
    """
    if path.ndim != 3 or path.shape[1] < 2:
        raise ValueError(f"path must have shape (B, T, D) with T >= 2, got {tuple(path.shape)}")
    b, t, d = path.shape
    step = (path[:, 1:] - path[:, :-1]).reshape(-1, d)
    mid = (0.5 * (path[:, 1:] + path[:, :-1])).reshape(-1, d)
    return (step * field.metric(mid, step)).sum(-1).reshape(b, t - 1)


def path_energy(field: CoMetricField, path: Tensor) -> tuple[Tensor, Tensor]:
    """Discrete energy and metric length of a batch of paths (SPEC §6).

    Args:
        field: the co-metric field.
        path: ``(B, T, D)``.

    Returns:
        ``(energy, length)``, each ``(B,)``: ``Σ_i Δ_iᵀ g Δ_i`` and ``Σ_i sqrt(Δ_iᵀ g Δ_i)``.
    """
    seg = segment_energies(field, path)
    return seg.sum(-1), seg.clamp_min(0.0).sqrt().sum(-1)


def _as_field(obj: object) -> CoMetricField:
    field = getattr(obj, "field", obj)
    if not isinstance(field, CoMetricField):
        raise TypeError(
            "geodesic needs a CoMetricField or an object with a `.field` holding one (e.g. LearnedDataManifold), "
            f"got {type(obj).__name__}"
        )
    return field


def _initial_path(init: Tensor | str, x0: Tensor, x1: Tensor, n_points: int | None, single: bool) -> Tensor:
    if isinstance(init, str):
        if init != "linear":
            raise ValueError(f"init must be 'linear' or a tensor path, got {init!r}")
        n = 16 if n_points is None else n_points
        if n < 2:
            raise ValueError(f"n_points counts both ends and must be >= 2, got {n}")
        return lerp(x0, x1, n)
    if not isinstance(init, Tensor):
        raise TypeError(f"init must be 'linear' or a Tensor, got {type(init).__name__}")
    path = init.detach().to(dtype=x0.dtype, device=x0.device)
    if single and path.ndim == 2:
        path = path.unsqueeze(0)
    b, d = x0.shape
    if path.ndim != 3 or path.shape[0] != b or path.shape[2] != d or path.shape[1] < 2:
        want = "(T, D)" if single else "(B, T, D)"
        raise ValueError(f"init path must have shape {want} with B={b}, D={d}, T >= 2; got {tuple(init.shape)}")
    if n_points is not None and path.shape[1] != n_points:
        raise ValueError(f"init path has {path.shape[1]} points but n_points={n_points}")
    scale = 1e-6 * (1.0 + torch.maximum(x0.abs().amax(), x1.abs().amax()))
    for k, end, name in ((0, x0, "x0"), (-1, x1, "x1")):
        gap = (path[:, k] - end).abs().amax()
        if gap > scale:
            raise ValueError(
                f"init path must {'start at x0' if k == 0 else 'end at x1'} (max gap {gap.item():.3g}); "
                f"a gradient-flow path need not reach x1 (SPEC §6): set init[..., -1, :] = {name} first"
            )
    path = path.clone()
    path[:, 0] = x0
    path[:, -1] = x1
    return path


def _path_preconditioner(m: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``L^{-1/2}`` of the path Laplacian ``L = tridiag(−1, 2, −1)`` on ``m`` interior points, ``(m, m)``.

    The energy's Hessian is about ``L ⊗ g`` (exactly so for a constant metric), so writing the interior points as
    ``L^{-1/2} v`` removes the ``O(T²)`` conditioning of the path and leaves only the metric's own. ``L`` is
    diagonalised by the sine transform: ``S_jk = sqrt(2/(m+1)) sin(jkπ/(m+1))``, ``λ_k = 4 sin²(kπ/(2(m+1)))``.
    """
    k = torch.arange(1, m + 1, dtype=torch.float64)
    s = (2.0 / (m + 1)) ** 0.5 * torch.sin(torch.outer(k, k) * torch.pi / (m + 1))
    inv_sqrt = 0.5 / torch.sin(k * torch.pi / (2 * (m + 1)))
    return ((s * inv_sqrt) @ s).to(dtype=dtype, device=device)


def geodesic(
    field_or_manifold: CoMetricField | object,
    x0: Tensor,
    x1: Tensor,
    *,
    n_points: int | None = None,
    init: Tensor | str = "linear",
    steps: int = 500,
    lr: float | None = None,
    tol: float | None = None,
    method: str = "lbfgs",
) -> GeodesicResult:
    """Discrete geodesics between pairs of points by minimising the path energy (SPEC §6).

    The interior points are parametrised in units of each pair's straight segment length
    ``‖x₁ − x₀‖ / (T − 1)`` and each pair's energy is divided by its initial value, so ``lr`` and ``tol`` are
    scale-free. The energies of all segments of all pairs go through one batched ``field.metric`` call per
    evaluation; gradients flow through the field by autograd (computed with ``torch.autograd.grad``, so the
    field's own parameters get no ``.grad``). Works under ``torch.no_grad()``.

    Args:
        field_or_manifold: a `CoMetricField`, or an object whose ``.field`` is one (e.g. `LearnedDataManifold`).
            Use a mean-centred field (SPEC §2).
        x0: ``(B, D)`` start points, or ``(D,)`` for a single pair.
        x1: ``(B, D)`` end points, or ``(D,)``.
        n_points: points per path, both ends included; default 16 for ``init="linear"``, else the length of
            ``init`` (which must then agree).
        init: ``"linear"`` (straight line, LERP) or an initial path ``(B, T, D)`` (``(T, D)`` for a single pair),
            e.g. from a gradient flow; its ends must equal ``x0`` and ``x1``.
        steps: maximum optimiser iterations.
        lr: step of the optimiser in segment-length units; default from `GEODESIC_METHODS`.
        tol: stop when every pair's relative energy change between two iterations is below ``tol``
            (default from `GEODESIC_METHODS`).
        method: a key of `GEODESIC_METHODS` (``"lbfgs"`` or ``"adam"``).

    Returns:
        `GeodesicResult` with ``path`` ``(B, T, D)`` and per-pair energy, metric and Euclidean lengths.

    Raises:
        TypeError: if no co-metric field can be found.
        ValueError: for an unknown ``method``, bad shapes, or an ``init`` path whose ends are not ``x0``, ``x1``.
    """
    if method not in GEODESIC_METHODS:
        raise ValueError(f'Invalid method "{method}". Must be one of {{"' + '", "'.join(GEODESIC_METHODS) + '"}}.')
    spec = GEODESIC_METHODS[method]
    lr = spec.lr if lr is None else float(lr)
    tol = spec.tol if tol is None else float(tol)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    field = _as_field(field_or_manifold)

    single = isinstance(x0, Tensor) and x0.ndim == 1
    if single:
        x0 = x0.unsqueeze(0)
        x1 = x1.unsqueeze(0) if isinstance(x1, Tensor) else x1
    check_points(x0, field.dim, "x0")
    check_points(x1, field.dim, "x1")
    if x1.shape != x0.shape:
        raise ValueError(f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
    x0, x1 = x0.detach(), x1.detach().to(x0)

    path0 = _initial_path(init, x0, x1, n_points, single)
    n = path0.shape[1]
    scale = (x1 - x0).norm(dim=-1) / (n - 1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale)).view(-1, 1, 1)
    base = path0[:, 1:-1]
    u = torch.zeros_like(base, requires_grad=True)
    precond = _path_preconditioner(n - 2, x0.dtype, x0.device)

    def build(u_: Tensor) -> Tensor:
        offset = torch.einsum("ij,bjd->bid", precond, u_)
        return torch.cat([x0.unsqueeze(1), base + scale * offset, x1.unsqueeze(1)], dim=1)

    with torch.enable_grad():
        energy0 = segment_energies(field, path0).sum(-1).detach()
    norm = energy0.clamp_min(torch.finfo(energy0.dtype).tiny)
    converged = torch.zeros(x0.shape[0], dtype=torch.bool, device=x0.device)
    done = 0
    if n > 2 and steps > 0:
        opt = spec.make([u], lr)
        record: dict[str, Tensor] = {}

        def closure() -> Tensor:
            with torch.enable_grad():
                energy = segment_energies(field, build(u)).sum(-1)
                loss = (energy / norm).sum()
                (grad,) = torch.autograd.grad(loss, u)
            u.grad = grad.contiguous()
            if "start" not in record:
                record["start"] = energy.detach()
            return loss.detach()

        prev = energy0
        for it in range(steps):
            record.clear()
            opt.step(closure)
            done = it + 1
            current = record["start"]
            if it > 0:
                rel = (prev - current).abs() / prev.abs().clamp_min(torch.finfo(prev.dtype).tiny)
                converged |= rel < tol
                if bool(converged.all()):
                    break
            prev = current
    else:
        converged[:] = True

    with torch.no_grad():
        path = build(u.detach())
        energy, length = path_energy(field, path)
        euclid = (path[:, 1:] - path[:, :-1]).norm(dim=-1).sum(-1)
    result = GeodesicResult(
        path=path,
        energy=energy,
        length=length,
        euclidean_length=euclid,
        initial_energy=energy0,
        converged=converged,
        steps=done,
        method=method,
    )
    if single:
        for name in ("path", "energy", "length", "euclidean_length", "initial_energy", "converged"):
            setattr(result, name, getattr(result, name).squeeze(0))
    return result
