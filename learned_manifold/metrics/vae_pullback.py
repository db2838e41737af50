"""The VAE latent pullback metric (Arvanitidis et al. 2018; SPEC §7, §11) as a co-metric field on ``R^d``.

With the decoder mean ``μ`` and std ``σ`` of a `learned_manifold.vae.VAE` (both ``R^d → R^D``, data units), the
expected pullback metric is

    ``M(z) = J_μ(z)ᵀ J_μ(z) + J_σ(z)ᵀ J_σ(z) + εI = J_f(z)ᵀ J_f(z) + εI``,  ``f = [μ, σ]: R^d → R^{2D}``,

large where the decoder changes fast or where its std grows (off the data), so latent geodesics avoid the
regions the decoder does not know. In the co-metric protocol (`CoMetricField`) ``G := M^{-1}`` and ``δ = 0``
(``ε ≥ 0`` is the regulariser, as in `TangentialMetric`):

* ``metric(z, v) = M v``: matrix-free, one JVP and one VJP of ``f`` (``O(D d)`` per point after the passes);
* ``apply(z, w) = M^{-1} w``: the dense ``d × d`` matrix from ``d`` JVPs, then a batched solve (``d`` is small).

Curve energies of a discrete latent path ``z_0 … z_{T−1}`` (SPEC §11), chosen by ``energy``:

* ``"metric"`` (the project's form, SPEC §6): ``Σ_i Δ_iᵀ M(z_{i+½}) Δ_i = Σ_i ‖J_f(z_{i+½}) Δ_i‖² + ε‖Δ_i‖²``,
  one JVP per segment;
* ``"decoded"`` (Jacobian-free): ``Σ_i ‖μ(z_{i+1}) − μ(z_i)‖² + ‖σ(z_{i+1}) − σ(z_i)‖² + ε‖Δ_i‖²``, one
  decoder pass per point. The two agree to second order in the segment length (the central difference
  ``f(z + Δ/2) − f(z − Δ/2) = J_f(z) Δ + O(‖Δ‖³)``), so they converge together on a fine path. Neither carries
  the factor ``T − 1`` of a curve on ``[0, 1]``: the geodesic solver scales energies by their initial value.

`learned_manifold.geodesics.geodesic` uses the field's `VAEPullbackMetric.segment_energies` (the hook of
`geodesic_solvers.segment_energies`), so ``geodesic(VAEPullbackMetric(vae, energy="decoded"), z0, z1)`` minimises
the Jacobian-free energy; `LearnedDataManifold`, the flows and the optimisers use ``apply`` and ``metric``.

Starts: given the data's latent codes (``codes=``), the field holds them like `KNNCDC` holds its data, and
``geodesic``'s ``init="auto"`` starts on the shortest path through their k-NN graph. Without them it starts on the
latent straight line, which between codes on either side of a hole in the codes (a circle's codes form a loop)
runs through the hole; the solver can end in a local minimum off the data there, with long latent steps whose
midpoints miss where the decoder's spread grows (measured on the circle in R¹⁰: 0.40 off the circle from the
straight start, 0.012 from the graph start, ``benchmarks/results/cpu/latent.md``). `latent_graph_path` builds the
same start by hand.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..checks import as_index
from ..precision import full_precision
from ..spectral_grad import tie_eps, tie_safe_eigh, within_terms
from ..user_warnings import warn_user
from .base import CoMetricField, check_points, check_scalar, check_vectors

if TYPE_CHECKING:  # imported lazily below: learned_manifold.vae itself imports this package's base module
    from ..vae import VAE

__all__ = ["CURVE_ENERGIES", "VAEPullbackMetric", "latent_graph_path"]

CURVE_ENERGIES = ("metric", "decoded")
"""Discrete curve energies of `VAEPullbackMetric` (module docstring)."""


class VAEPullbackMetric(CoMetricField):
    """Latent co-metric ``G = M^{-1}``, ``M = J_μᵀJ_μ + J_σᵀJ_σ + εI`` of a VAE's decoder (SPEC §11).

    The VAE is a registered submodule, so the field follows ``.to(device/dtype)``. It is frozen **in place**: the
    constructor calls ``vae.requires_grad_(False).eval()`` on the very module given (not a copy), so a VAE still
    being trained stops receiving gradients (autograd's "does not require grad", or its parameters silently
    skipped). To keep training it, pass ``copy.deepcopy(vae)`` (and build a new field from the new weights later).
    The VAE stays in eval mode whatever ``.train()`` is called on (the field, a `LearnedDataManifold` or a user
    module holding it, `train`): the geometry has no dropout or batch statistics.

    Args:
        vae: a `VAE` or the path of a VAE file (`learned_manifold.load_vae`); a `VAE` given is frozen in place
            (above).
        eps: ``ε ≥ 0`` added to ``M`` (``apply`` needs ``M`` invertible; the decoder's Jacobian has full rank
            ``d`` wherever it is not degenerate, so the default is 0).
        energy: ``"metric"`` or ``"decoded"``, the curve energy geodesics minimise (module docstring).
        codes: ``(N, d)`` latent codes of the data (e.g. ``vae.encode(x_train)``), or ``None``: with them,
            geodesics start on the data by default (module docstring).

    Attributes:
        dim: the latent dimension ``d``. delta: ``0``. centred: ``True`` (fit for paths). low_rank: ``False``.

    Example:
        >>> import torch
        >>> from learned_manifold.metrics import VAEPullbackMetric
        >>> from learned_manifold.vae import VAE, VAEConfig
        >>> _ = torch.manual_seed(0)
        >>> vae = VAE(VAEConfig(data_shape=(10,), latent_dim=2, hidden=16)).double()  # untrained; or load_vae(path)
        >>> field = VAEPullbackMetric(vae)  # or VAEPullbackMetric("vae.lvae")
        >>> z, v = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
        >>> M = field.pullback(z)  # dense J_fᵀJ_f, f = [μ, σ]: d × d per point
        >>> M.shape, field.log_volume(z).shape  # ½ log det M: the background of the latent pictures
        (torch.Size([5, 2, 2]), torch.Size([5]))
        >>> torch.allclose(field.metric(z, v), (M @ v.unsqueeze(-1)).squeeze(-1))  # matrix-free: one JVP, one VJP
        True
        >>> torch.allclose(field.apply(z, field.metric(z, v)), v)  # apply is G v = M⁻¹ v
        True
        >>> path = torch.linspace(-1, 1, 129, dtype=torch.float64)[:, None] * torch.tensor([1.0, 0.5]).double()
        >>> metric_energy = field.segment_energies(path[None]).sum()
        >>> decoded_energy = VAEPullbackMetric(vae, energy="decoded").segment_energies(path[None]).sum()
        >>> bool(abs(metric_energy - decoded_energy) < 1e-3 * metric_energy)  # the two energies agree on fine paths
        True
    """

    centred = True
    low_rank = False
    dim: int  # the latent dimension ``d`` (never ``None``)

    def __init__(self, vae: VAE | str | os.PathLike, *, eps: float = 0.0, energy: str = "metric",
                 codes: Tensor | None = None) -> None:
        from ..vae import VAE
        from ..vae_file import load_vae

        super().__init__()
        if isinstance(vae, (str, os.PathLike)):
            vae = load_vae(vae)
        if not isinstance(vae, VAE):
            raise TypeError(f"vae must be a VAE or the path of a VAE file, got {type(vae).__name__}")
        if energy not in CURVE_ENERGIES:
            raise ValueError(f"energy must be one of {CURVE_ENERGIES}, got {energy!r}")
        self.vae = vae.requires_grad_(False).eval()
        self.dim = vae.latent_dim
        self.eps = check_scalar(eps, "eps", allow_zero=True)
        self.energy = energy
        self.data_graph = None  # the codes as a `KNNCDC`, whose k-NN graph geodesics start on (module docstring)
        if codes is not None:
            from .knn import KNNCDC

            check_points(codes, self.dim, "codes")
            if codes.shape[0] < 2 or not bool(torch.isfinite(codes).all()):
                raise ValueError(f"codes must hold at least 2 finite latent codes, got {tuple(codes.shape)}")
            self.data_graph = KNNCDC(codes.detach(), k=min(10, codes.shape[0]), sigma=1.0,  # σ: unused by graphs
                                     persistent=False)  # the caller's codes: not copied into state_dict

    def train(self, mode: bool = True) -> VAEPullbackMetric:
        """`torch.nn.Module.train` for the field's other submodules (the codes' graph); the frozen VAE stays in
        eval mode (``.train()`` on a module holding the field had put it in train mode, against the README)."""
        super().train(mode)
        self.vae.eval()
        return self

    @full_precision
    def embed(self, z: Tensor) -> Tensor:
        """``f(z) = [μ(z), σ(z)]`` flat, data units: ``(B, d)`` → ``(B, 2D)`` in the dtype of ``z``."""
        dtype = self.vae.scale.dtype
        return self.vae.mean_and_std(z.to(dtype)).to(z.dtype)

    @full_precision
    def jacobian(self, z: Tensor) -> Tensor:
        """``J_f(z)`` by ``d`` batched JVPs: ``(B, d)`` → ``(B, 2D, d)``."""
        check_points(z, self.dim, "z")
        z = z.contiguous()  # torch.func refuses a primal whose rows share memory (a point broadcast by expand)
        eye = torch.eye(self.dim, dtype=z.dtype, device=z.device)
        cols = [torch.func.jvp(self.embed, (z,), (eye[i].expand_as(z),))[1] for i in range(self.dim)]
        return torch.stack(cols, dim=-1)

    @full_precision
    def pullback(self, z: Tensor) -> Tensor:
        """The dense metric ``M(z) = J_fᵀJ_f + εI``: ``(B, d)`` → ``(B, d, d)`` (``O(D d²)`` per point)."""
        J = self.jacobian(z)
        M = J.transpose(-1, -2) @ J
        if self.eps:
            M = M + self.eps * torch.eye(self.dim, dtype=z.dtype, device=z.device)
        return M

    @full_precision
    def metric(self, x: Tensor, v: Tensor) -> Tensor:
        """``M v = J_fᵀ(J_f v) + εv`` by one JVP and one VJP: ``(B, d)``, ``(B, d)`` → ``(B, d)``."""
        check_vectors(x, v, self.dim, "v")
        x = x.contiguous()  # as in `jacobian`
        _, vjp_fn = torch.func.vjp(self.embed, x)
        out = vjp_fn(torch.func.jvp(self.embed, (x,), (v,))[1])[0]
        return out + self.eps * v if self.eps else out

    def _spectrum(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Eigenvalues ``(B, d)`` ascending, eigenvectors ``(B, d, d)`` of ``M(z)``, the within-tie terms
        ``E = WᵀMW − Λ`` ``(B, d, d)`` (exactly 0 in value, `spectral_grad.within_terms`) and which points have a
        numerically singular ``M`` ``(B,)``: smallest eigenvalue at most ``16 d ε λ_max`` (``ε`` of the dtype:
        below that the eigenvalue is rounding of ``J_fᵀJ_f``), or ``M = 0``. A ``d × d`` latent matrix.

        The decomposition is `spectral_grad.tie_safe_eigh` (the same values as ``torch.linalg.eigh``): a plain
        ``eigh``'s derivative divides by ``λ_i − λ_j``, NaN where ``M`` has tied eigenvalues (a flat decoder
        region: ``M = εI``; an isometric decoder), although ``M^{-1} w`` and ``log det M`` are smooth there.
        """
        M = self.pullback(z)
        values, vectors = tie_safe_eigh(M, tie_eps(M.dtype))
        within = within_terms(M, values, vectors, torch.ones_like(values, dtype=torch.bool))
        top = values[:, -1]
        singular = (values[:, 0] <= 16 * self.dim * torch.finfo(values.dtype).eps * top) | (top <= 0)
        return values, vectors, within, singular

    @full_precision
    def apply(self, x: Tensor, w: Tensor) -> Tensor:
        """``M^{-1} w`` from the eigenpairs of the dense ``d × d`` ``M``: ``(B, d)``, ``(B, d)`` → ``(B, d)``.

        Derivatives (reverse and forward mode) are exact also where ``M`` has tied eigenvalues (`_spectrum`; a
        plain ``eigh`` had given NaN gradients there).

        Raises:
            ValueError: ``M`` is (numerically) singular at some point (a degenerate decoder there, or a latent
                dimension the data do not use): construct with ``eps > 0``. Before this check a solve returned
                values of 10¹⁸ there without complaint.
        """
        check_vectors(x, w, self.dim, "w")
        values, vectors, within, singular = self._spectrum(x)
        if bool(singular.any()):
            raise ValueError(f"the VAE pullback metric is singular at {int(singular.sum())} point(s) (smallest "
                             "eigenvalue of M at the rounding level of the largest); construct VAEPullbackMetric "
                             "with eps > 0")
        coords = vectors.transpose(-1, -2) @ w.unsqueeze(-1)  # (B, d, 1)
        # Λ^{-1} + L[E] (SPEC §5, `spectral_grad`): L[E]_ij = −E_ij / (λ_i λ_j) is 0 in value, so the values are
        # those of Λ^{-1} coords; its derivative restores the within-tie terms the tie-safe eigh drops.
        inverse = 1.0 / values
        divided = -(inverse.unsqueeze(-1) * inverse.unsqueeze(-2)) * within
        coef = coords / values.unsqueeze(-1) + divided @ coords
        return (vectors @ coef).squeeze(-1)

    @full_precision
    def dense(self, x: Tensor) -> Tensor:
        """Dense co-metric ``G = M^{-1}``: ``(B, d)`` → ``(B, d, d)``."""
        check_points(x, self.dim)
        eye = torch.eye(self.dim, dtype=x.dtype, device=x.device)
        return self.apply(x.repeat_interleave(self.dim, 0), eye.repeat(x.shape[0], 1)).reshape(
            x.shape[0], self.dim, self.dim).transpose(-1, -2)

    @full_precision
    def log_volume(self, z: Tensor) -> Tensor:
        """Log volume element ``½ log det M(z)``: ``(B, d)`` → ``(B,)`` (the background of paper Fig. 9);
        ``−inf`` where ``M`` is numerically singular (`_spectrum`), not the log of its rounding."""
        values, _, _, singular = self._spectrum(z)
        out = 0.5 * values.clamp_min(torch.finfo(values.dtype).tiny).log().sum(-1)
        return torch.where(singular, torch.full_like(out, float("-inf")), out)

    @full_precision
    def segment_energies(self, path: Tensor) -> Tensor:
        """Squared segment lengths of latent paths in the chosen curve energy: ``(B, T, d)`` → ``(B, T − 1)``.

        Called by `learned_manifold.geodesic_solvers.segment_energies` (so by `geodesic` and the flows' metric
        lengths); differentiable in ``path``.
        """
        b, t, d = path.shape
        step = path[:, 1:] - path[:, :-1]
        extra = self.eps * step.pow(2).sum(-1) if self.eps else 0.0
        if self.energy == "decoded":
            f = self.embed(path.reshape(-1, d)).reshape(b, t, -1)
            return (f[:, 1:] - f[:, :-1]).pow(2).sum(-1) + extra
        mid = (0.5 * (path[:, 1:] + path[:, :-1])).reshape(-1, d)
        jv = torch.func.jvp(self.embed, (mid,), (step.reshape(-1, d),))[1]
        return jv.pow(2).sum(-1).reshape(b, t - 1) + extra

    def extra_repr(self) -> str:
        return f"latent_dim={self.dim}, eps={self.eps}, energy={self.energy!r}"


@full_precision
def latent_graph_path(codes: Tensor, z0: Tensor, z1: Tensor, n_points: int, *, neighbours: int = 10) -> Tensor:
    """A start for VAE geodesics that follows the latent codes: the shortest path from ``z0`` to ``z1`` through
    the codes' symmetrised k-NN graph (`learned_manifold.geodesic_init.graph_path`), resampled to ``n_points``.

    Args:
        codes: ``(N, d)`` latent codes of the data (e.g. `VAE.encode` of the training set).
        z0, z1: ``(B, d)`` end points, or ``(d,)`` for a single pair (as `geodesic`), in the dtype of ``codes``.
        n_points: points per path, both ends included: an integer ``≥ 2``.
        neighbours: ``k`` of the graph, an integer ``≥ 1``.

    Returns:
        ``(B, n_points, d)`` (``(n_points, d)`` for ``(d,)`` ends); pass it as ``geodesic(field, z0, z1, init=path)``.
        A pair whose ends the graph does not join (codes in separate clusters, farther apart than
        `geodesic_graph.GRAPH_BRIDGE` times their median neighbour distance) gets the latent straight line between
        its ends, with a `geodesic_init.DisconnectedDataWarning` naming the pairs (as ``geodesic``'s graph start).

    Raises:
        TypeError: for a non-integer ``n_points`` or ``neighbours``.
        ValueError: for ``n_points`` below 2, ``neighbours`` below 1, or ends that are not ``(B, d)`` or ``(d,)``
            of the codes' ``d`` with the same shape.
    """
    from ..geodesic_init import DisconnectedDataWarning, graph_paths
    from .knn import KNNCDC

    if as_index(n_points) is None:
        raise TypeError(f"n_points (both ends included) must be an integer, got {type(n_points).__name__}")
    n_points = as_index(n_points)
    if n_points < 2:
        raise ValueError(f"n_points (both ends included) must be >= 2, got {n_points}")
    if as_index(neighbours) is None:
        raise TypeError(f"neighbours (k of the codes' graph) must be an integer, got {type(neighbours).__name__}")
    neighbours = as_index(neighbours)
    if neighbours < 1:
        raise ValueError(f"neighbours (k of the codes' graph) must be >= 1, got {neighbours}")
    d = codes.shape[-1]
    if z0.shape != z1.shape or z0.ndim not in (1, 2) or z0.shape[-1] != d:
        raise ValueError(f"z0 and z1 must both have shape (B, {d}) or ({d},) (the codes' dimension), got "
                         f"{tuple(z0.shape)} and {tuple(z1.shape)}")
    single = z0.ndim == 1
    if single:
        z0, z1 = z0.unsqueeze(0), z1.unsqueeze(0)
    graph = KNNCDC(codes, k=min(max(2, neighbours), codes.shape[0]), sigma=1.0)  # σ and k unused by the graph
    path, joined = graph_paths(graph, z0, z1, n_points, neighbours=neighbours)
    if not bool(joined.all()):
        cut = (~joined).nonzero().flatten().tolist()
        warn_user(f"latent_graph_path: the codes' k-NN graph does not join the ends of {len(cut)} of "
                  f"{len(joined)} pair(s) {cut[:10]}: they lie in different connected components of the graph "
                  "(separate clusters of codes), and their paths are the latent straight line through the empty "
                  "space between them, where the decoder knows nothing: no start along the codes",
                  DisconnectedDataWarning)
    return path.squeeze(0) if single else path
