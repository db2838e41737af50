"""Self-consistency of a trained model without ground truth: factor network against denoiser (SPEC §2).

A mean-centred model holds two estimates of one object. The factor network gives ``G = AAᵀ ≈ Γᶜ_σ`` and the
denoiser gives ``x̂(y, σ)`` whose Jacobian is, by Tweedie's identity, ``∂x̂/∂y = Cov[x | y]/σ² = Γᶜ_σ(y)``
(SPEC §2). The two networks are trained by different losses, so where one of them is wrong they disagree,
and their disagreement can be measured on held-out points of the data alone.

How (``O(B r)`` network evaluations, nothing ``D × D``): at each point take the factor's eigenpairs
``(Λ, U)`` from the ``r × r`` Gram (SPEC §5), push the ``r`` eigenvectors through the denoiser's Jacobian
with forward-mode AD (``J U``: ``r`` JVPs), and form the Ritz matrix ``K = ½(UᵀJU + (UᵀJU)ᵀ)`` (``r × r``):
the denoiser's Γᶜ restricted to the factor's range. Then compare

* the spectra: ``‖K − diag(Λ)‖_F / ‖Λ‖`` (*spectral disagreement*);
* the tangent spaces: with ``d`` the smaller of the two gap-rule dimensions at the point, the projector
  distance between the factor's top-``d`` eigenvectors and the top-``d`` Ritz vectors of ``K`` (*tangent
  disagreement*, the same ``‖P − Q‖_F`` as the tangent error of SPEC §5, with the denoiser in place of the
  truth; at the larger dimension an extra direction kept by one network alone would go unseen when ``r = D``);
* the dimensions: the gap rule applied to ``Λ`` and to the Ritz values.

A model whose factor keeps a normal direction that its denoiser shrinks shows a large tangent disagreement.

The two networks can also fail *together*: when the denoiser cannot resolve a curved normal at small σ (it
would need a slope of ``1/σ`` along it), ``x̂`` does not shrink that normal, its Jacobian keeps it, and the
factor, trained on ``(x − x̂)/σ``, learns it too (SPEC §3: ``E[aaᵀ | y] = Γᶜ + bbᵀ``). Agreement alone cannot see
this, but the bandwidth can: on data that lie on a manifold the first normal eigenvalue of ``Γᶜ_σ`` *falls*
as ``σ`` falls (it is of order ``σ²`` times the curvature), while an unresolved normal *rises* towards 1. So the
report also gives the factor's relative ``(d+1)``-th eigenvalue ``λ_{d+1}/λ₁`` at ``σ`` and at ``σ/2``
(*normal growth*: the second minus the first).

A factor of rank ``r`` can only show what fits in ``r`` columns. When the denoiser keeps more directions than
that (S¹⁶ in R⁶⁴ at the default rank 16: its sphere's radial normal survived as a 17th eigenvalue 0.98 of
the denoiser's Jacobian), the factor's best rank-16 fit is an arbitrary 16-plane of the 17-dimensional span,
every point reads dimension 16, and the two networks agree on the factor's range. So the report also gives the
denoiser's largest eigenvalue *outside* the factor's range (*outside eigenvalue*: Rayleigh–Ritz on the block
Krylov space of ``4`` probes on the complement, ``12`` more JVPs per point); near 1 means the rank is too small
for what the denoiser sees, or the denoiser keeps a normal it should shrink.

Where the factor reads the data's full dimension ``D`` (the median of its gap-rule dimensions; at ``r ≥ D``), the
model has no normal direction and no complement: normal value, growth and outside eigenvalue are 0 by
construction, and two networks that both read every direction as tangent agree. The check then gives no verdict
(`ConsistencyReport.informative` false, ``trusted`` ``None``): models of S² and the torus trained 100 to 500 steps,
or at a σ range below the points' spacing, read dimension 3 with tangent errors 0.59–1.09 and had been called
trusted (tester B, s31). With ``r < D`` the outside eigenvalue still compares the two off the factor's range.

What this check cannot see: a shared failure whose normal does not grow as σ halves. On S⁸ in R⁶⁴ the
residual-trained factor and its denoiser both kept the sphere's 9-dimensional linear span (a Wiener filter,
whose normal eigenvalue is flat in σ) and agreed; a factor trained on the denoiser's Jacobian
(``factor_target="jacobian"``, the default) agrees with its denoiser by construction. The trainer and
``learned-manifold info --data`` therefore also run `learned_manifold.neighbour_check`, which compares the model
with an estimate from the data's own neighbours.

Measured (`tests/learned_manifold/test_diagnostics.py`, scratch runs noted in the closing note of issue 12):
an under-trained torus model in R³ (tangent error 0.37) has tangent disagreement 0.25 and normal growth 0.11; a
good one (0.04) 0.05 and 0.04; the swiss roll in R¹⁰ trained with the CLI defaults (tangent error 0.32, the
roll's normal surviving as a third eigenvalue) agrees with itself (0.05) but its third eigenvalue grows from
0.47 to 0.76 as σ halves: normal growth 0.29.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .consistency_text import consistency_reasons, consistency_verdict, no_verdict_reason
from .geometry import eigenpairs, intrinsic_dimension, projector_error, truncate_basis
from .metrics.base import check_count, check_finite_points, check_scalar
from .models import MetricModel
from .precision import full_precision
from .torch_quirks import load_forward_ad
from .unet import _Attention

__all__ = ["CHUNK_ELEMENTS", "JVP_BUDGET_BYTES", "ConsistencyReport", "DIMENSION_AGREEMENT", "GROWTH_THRESHOLD",
           "OUTSIDE_THRESHOLD", "TRUST_THRESHOLD", "consistency_reasons", "consistency_verdict", "jvp_item_bytes",
           "no_verdict_reason", "self_consistency"]

DIMENSION_AGREEMENT = 0.8
"""Smallest fraction of points at which factor and denoiser must read the same dimension (measured: ≥ 0.93); the
neighbour check (`learned_manifold.neighbour_check`) holds the model and the data's neighbours to the same one."""

TRUST_THRESHOLD = 0.2
"""Mean tangent disagreement above which a model is reported as not to be trusted (SPEC §5 units: a random
``d``-plane scores about ``sqrt(2d)``; the good models measured score about 0.05, a failing one 0.25)."""

GROWTH_THRESHOLD = 0.1
"""Mean normal growth (relative ``(d+1)``-th eigenvalue at ``σ/2`` minus at ``σ``) above which a model is
reported as not resolving its data at ``σ`` (good models measured: 0.04; failing ones: 0.11 and 0.29)."""

OUTSIDE_THRESHOLD = 0.1
"""Mean outside eigenvalue (the denoiser's largest eigenvalue off the factor's range) above which the factor is
reported as missing a direction the denoiser keeps (tangent eigenvalues are near 1, resolved normals near 0).
Measured: good S⁸, roll and torus models 0.0000–0.0001; the S¹⁶ model of the module docstring 0.98; an S¹⁶ model
with the norm feature, whose denoiser had learned the radius but whose rank-16 factor still leaned 0.2 of its
mass on it (tangent error 0.67), 0.27: the limit was 0.5 and called it trusted."""

OUTSIDE_PROBES = 4
"""Probe vectors per point of the outside eigenvalue's block Krylov space (`_outside_value`)."""

OUTSIDE_BLOCKS = 3
"""Blocks of the outside eigenvalue's Krylov space ``span{V, J V, J² V}``: ``3 · OUTSIDE_PROBES`` JVPs per point."""

CHUNK_ELEMENTS = 2**22
"""Entries of one ``(points · directions, D)`` batch of JVPs: `self_consistency` takes at most
``max(1, CHUNK_ELEMENTS // (max(r, OUTSIDE_PROBES) · D))`` points at a time (256 points at ``D`` = 6,912,
``r`` = 16 raised the peak memory by about 0.6 GB)."""

JVP_BUDGET_BYTES = 2**30
"""Estimated bytes (`jvp_item_bytes`) that one ``torch.func.jvp`` through the denoiser may take: `_denoiser_jvp`
pushes at most ``max(1, JVP_BUDGET_BYTES // jvp_item_bytes)`` images at a time. A point count alone does not bound
it: under forward-mode AD a UNet's attention runs the math kernel (`learned_manifold.unet._Attention`), whose
``T × T`` scores per image and head grow as ``D²`` (the "small" preset on 128×128 images attends over 64×64 tokens:
19 points × 4 directions in one JVP asked for 76 × 4096² floats, 5.1 GB, after training had finished)."""


@dataclass
class ConsistencyReport:
    """Factor network against denoiser Jacobian at ``B`` held-out points (all per point unless stated).

    Attributes:
        sigma: the bandwidth (data units) both networks were evaluated at.
        tangent_disagreement: ``(B,)`` projector distance between the two tangent estimates at the smaller
            of the two dimensions.
        spectral_disagreement: ``(B,)`` ``‖K − diag(Λ)‖_F / ‖Λ‖``.
        factor_values: ``(B, r)`` eigenvalues of ``AAᵀ``, descending.
        denoiser_values: ``(B, r)`` Ritz values of the denoiser Jacobian on the factor's range, descending.
        factor_dimension, denoiser_dimension: ``(B,)`` gap-rule dimensions of the two spectra.
        normal_value: ``(B,)`` the factor's relative eigenvalue ``λ_{d+1}/λ₁`` at ``σ`` (``d`` the factor's
            dimension at ``σ``; 0 where ``d = r``).
        normal_value_half: ``(B,)`` the same eigenvalue index at ``σ/2`` (when ``σ/2`` is below the model's
            training range: ``normal_value`` is taken at ``2σ`` and this one at ``σ``).
        outside_value: ``(B,)`` the denoiser's largest (symmetrised) Jacobian eigenvalue on the complement of
            the factor's range, the largest algebraic one (negative ones read 0), estimated by Rayleigh–Ritz on a
            block Krylov space (`_outside_value`: a lower bound; 0 where the factor spans everything).
        threshold, growth_threshold: the trust thresholds on the mean tangent disagreement and normal growth.
        dimension: the data dimension ``D`` (``None``: unknown, and the check is taken as `informative`).
    """

    sigma: float
    tangent_disagreement: Tensor
    spectral_disagreement: Tensor
    factor_values: Tensor
    denoiser_values: Tensor
    factor_dimension: Tensor
    denoiser_dimension: Tensor
    normal_value: Tensor
    normal_value_half: Tensor
    outside_value: Tensor
    threshold: float = TRUST_THRESHOLD
    growth_threshold: float = GROWTH_THRESHOLD
    dimension: int | None = None

    @property
    def informative(self) -> bool:
        """Whether the factor reads below the data's full dimension ``D`` (the median of its gap-rule dimensions,
        the summary's ``factor_dimension``): where it reads ``D`` the model has no normal direction and the figures
        are 0 by construction (module docstring), so the check can neither confirm nor refute the model."""
        return self.dimension is None or int(self.factor_dimension.float().median()) < self.dimension

    @property
    def normal_growth(self) -> float:
        """Mean rise of the first normal eigenvalue when σ halves (negative or small on resolved data)."""
        return float((self.normal_value_half - self.normal_value).mean())

    @property
    def trusted(self) -> bool | None:
        """Whether the tangent disagreement, the normal growth and the outside eigenvalue are all within their
        thresholds and the two networks read the same dimension at most points (no limit `failed`): ``False``
        where a limit failed, ``None`` where none failed but the check is not `informative` (no verdict; falsy, so
        ``if report.trusted`` does not read it as confirmed), else ``True``."""
        if self.failed:
            return False
        return True if self.informative else None

    @property
    def failed(self) -> dict[str, float]:
        """The figures that fail their limits, unrounded, by their `summary` names (``tangent_disagreement``,
        ``dimension_agreement``, ``normal_growth``, ``outside_eigenvalue``): the one comparison behind both
        `trusted` and the reasons of `consistency_reasons` (a figure just past its limit, an outside eigenvalue of
        0.10003 against 0.1, rounds to the limit in the summary, and the reasons had named none)."""
        figures = {"tangent_disagreement": float(self.tangent_disagreement.mean()),
                   "dimension_agreement": self.dimension_agreement, "normal_growth": self.normal_growth,
                   "outside_eigenvalue": self.outside}
        fails = {"tangent_disagreement": not figures["tangent_disagreement"] <= self.threshold,
                 "dimension_agreement": not figures["dimension_agreement"] >= DIMENSION_AGREEMENT,
                 "normal_growth": not figures["normal_growth"] <= self.growth_threshold,
                 "outside_eigenvalue": not figures["outside_eigenvalue"] <= OUTSIDE_THRESHOLD}
        return {name: value for name, value in figures.items() if fails[name]}

    @property
    def outside(self) -> float:
        """Mean outside eigenvalue (`OUTSIDE_THRESHOLD`)."""
        return float(self.outside_value.mean())

    @property
    def dimension_agreement(self) -> float:
        """Fraction of points where the two gap-rule dimensions are equal."""
        return float((self.factor_dimension == self.denoiser_dimension).float().mean())

    def summary(self) -> dict:
        """Plain numbers for logs, reports and the model file."""
        return {
            "sigma": self.sigma,
            "tangent_disagreement": round(float(self.tangent_disagreement.mean()), 4),
            "tangent_disagreement_p90": round(float(self.tangent_disagreement.quantile(0.9)), 4),
            "spectral_disagreement": round(float(self.spectral_disagreement.mean()), 4),
            "dimension_agreement": round(self.dimension_agreement, 4),
            "factor_dimension": int(self.factor_dimension.float().median()),
            "denoiser_dimension": int(self.denoiser_dimension.float().median()),
            "factor_top_eigenvalues": [round(float(v), 4) for v in self.factor_values.mean(0)[:10]],
            "denoiser_top_eigenvalues": [round(float(v), 4) for v in self.denoiser_values.mean(0)[:10]],
            "normal_eigenvalue": round(float(self.normal_value.mean()), 4),
            "normal_eigenvalue_half_sigma": round(float(self.normal_value_half.mean()), 4),
            "normal_growth": round(self.normal_growth, 4),
            "outside_eigenvalue": round(self.outside, 4),
            "factor_rank": int(self.factor_values.shape[1]),
            "data_dimension": self.dimension,
            "informative": self.informative,
            "trusted": self.trusted,
            "failed": self.failed,
            "threshold": self.threshold,
            "growth_threshold": self.growth_threshold,
        }

    def message(self) -> str:
        """One line for a user: trusted or not, and why."""
        s = self.summary()
        figures = (f"tangent disagreement {s['tangent_disagreement']:.3f} (limit {self.threshold}), normal "
                   f"eigenvalue {s['normal_eigenvalue']:.3f} -> {s['normal_eigenvalue_half_sigma']:.3f} as sigma "
                   f"halves (growth limit {self.growth_threshold})")
        if self.trusted:
            return (f"self-consistency: the model agrees with itself at sigma={self.sigma:.4g} (a check that cannot "
                    f"see a failure both networks share): {figures}")
        if self.trusted is None:
            return f"self-consistency: no verdict at sigma={self.sigma:.4g}: {no_verdict_reason(s)}"
        return (f"self-consistency WARNING at sigma={self.sigma:.4g}: {'; '.join(consistency_reasons(s))}: "
                f"{figures}. The learned tangent spaces are not to be trusted: train longer or with a larger "
                f"network, or use a larger sigma")


def jvp_item_bytes(model: MetricModel, x: Tensor, sigma: float) -> int:
    """Estimated bytes of one image ``(1, D)`` in a forward-mode JVP through ``model.denoise`` (primal and
    tangent): measured by one plain forward of ``x[:1]`` ``(B, D)`` with hooks, ``2 ·`` the outputs of all leaf
    modules (a UNet keeps its skip connections) ``+ 4 ·`` the largest ``heads · T²`` of a `unet._Attention` (scores
    and softmax, each with its tangent), in ``x``'s element size. A model that is not an ``nn.Module`` (a test
    double): ``2 D``. At least 1."""
    size, dim = x.element_size(), x[0].numel()
    if not isinstance(model, nn.Module):
        return max(1, 2 * dim * size)
    activations, attention = [0], [0]

    def record(module: nn.Module, inputs: tuple, output: object) -> None:
        if isinstance(module, _Attention):
            _, _, height, width = inputs[0].shape
            attention.append(module.heads * (height * width) ** 2)
        elif isinstance(output, Tensor) and next(module.children(), None) is None:
            activations[0] += output[:1].numel()

    hooks = [m.register_forward_hook(record) for m in model.modules()]
    try:
        with torch.no_grad():
            model.denoise(x[:1], sigma)
    finally:
        for hook in hooks:
            hook.remove()
    return max(1, (2 * max(activations[0], dim) + 4 * max(attention)) * size)


def _denoiser_jvp(model: MetricModel, x: Tensor, vectors: Tensor, sigma: float, items: int | None = None) -> Tensor:
    """``J(x) v`` for the denoiser Jacobian at each point and each column: ``(B, D)``, ``(B, D, k)`` → ``(B, D, k)``;
    at most ``items`` of the ``B · k`` images per ``torch.func.jvp`` (all at once where ``None``)."""
    b, dim, k = vectors.shape
    xs = x.repeat_interleave(k, dim=0)  # (B·k, D), a fresh tensor (an expanded view breaks in-place ops)
    vs = vectors.transpose(1, 2).reshape(b * k, dim)
    load_forward_ad()
    parts = []
    for xc, vc in zip(xs.split(items or b * k), vs.split(items or b * k), strict=True):
        n = xc.shape[0]
        parts.append(torch.func.jvp(lambda y, n=n: model.denoise(y, sigma).reshape(n, dim), (xc,), (vc,))[1])
    return torch.cat(parts).reshape(b, k, dim).transpose(1, 2)


def _outside_value(model: MetricModel, x: Tensor, U: Tensor, sigma: float, probes: Tensor,
                   items: int | None = None) -> Tensor:
    """The denoiser's largest (algebraic) symmetrised Jacobian eigenvalue on the complement of ``U``'s range
    ``(B, D, r)`` (orthonormal or zero columns), ``(B,)``, clamped at 0 (0 where the complement is empty).

    Rayleigh–Ritz on the block Krylov space ``span{V, J V, J² V}`` (`OUTSIDE_BLOCKS`) of the Gaussian ``probes``
    ``V`` ``(B, D, OUTSIDE_PROBES)``, projected off the range: ``OUTSIDE_BLOCKS · OUTSIDE_PROBES`` JVPs. The
    largest Ritz value is a lower bound of the largest eigenvalue, and at least what power iteration from the same
    probes reads (its iterates lie in the space). Power iteration itself converged to the eigenvalues of largest
    *magnitude*: an under-trained denoiser's large negative ones (−1.9 … −2.7 off the range of a model of noise in
    R⁶⁴), which the clamp then read as 0 while the top outside eigenvalue was +0.57 (tester E; the mean over 200
    points now reads 0.19, 0.085 with two blocks). ``items``: as `_denoiser_jvp`.
    """
    def off(v: Tensor) -> Tensor:  # the projection onto the complement of the factor's range
        return v - U @ (U.transpose(1, 2) @ v)

    blocks = [eigenpairs(off(probes.to(x.device, x.dtype))).vectors]  # orthonormal (or zero) columns
    images = []
    for step in range(OUTSIDE_BLOCKS):
        images.append(_denoiser_jvp(model, x, blocks[-1], sigma, items))
        if step + 1 < OUTSIDE_BLOCKS:
            basis, image = torch.cat(blocks, dim=-1), off(images[-1])
            W = image
            for _ in range(2):  # twice: the second pass removes what rounding left of the earlier blocks
                W = W - basis @ (basis.transpose(1, 2) @ W)
            # no new direction where J maps the block into the earlier ones (an eigenspace): the rounding left
            # there, normalised, would not be orthogonal to them (a flat 0.3 outside spectrum had read 0.6)
            small = W.norm(dim=1, keepdim=True) <= 1e3 * torch.finfo(W.dtype).eps * image.norm(dim=1, keepdim=True)
            W = eigenpairs(torch.where(small, 0.0, W)).vectors
            blocks.append(W - basis @ (basis.transpose(1, 2) @ W))  # the new directions (zero columns where none)
    basis = torch.cat(blocks, dim=-1)  # (B, D, OUTSIDE_BLOCKS · OUTSIDE_PROBES)
    M = basis.transpose(1, 2) @ off(torch.cat(images, dim=-1))
    return torch.linalg.eigvalsh((0.5 * (M + M.transpose(1, 2))).double())[:, -1].clamp_min(0).to(x.dtype)


def _relative_at(values: Tensor, dims: Tensor) -> Tensor:
    """``λ_{d+1}/λ₁`` per point (0 where ``d = r``): ``(B, r)``, ``(B,)`` → ``(B,)``."""
    rel = values / values[:, :1].clamp_min(torch.finfo(values.dtype).tiny)
    rel = torch.cat([rel, torch.zeros_like(rel[:, :1])], dim=1)
    return rel.gather(1, dims.unsqueeze(1)).squeeze(1)


@full_precision
def self_consistency(model: MetricModel, x: Tensor, sigma: float | None = None, *, chunk: int = 256,
                     threshold: float = TRUST_THRESHOLD) -> ConsistencyReport:
    """Compare the factor network with the denoiser's Jacobian at held-out points (see the module docstring).

    Runs outside any autocast the caller has on (`precision.full_precision`): the report holds the model's dtype
    and the same numbers as outside autocast (under bf16 autocast it had held bf16, and ``summary`` failed).

    Args:
        model: a mean-centred `MetricModel` (it must have a denoiser).
        x: ``(B, *data_shape)`` or ``(B, D)`` held-out data points (not training points).
        sigma: bandwidth in data units (``None``: the model's default).
        chunk: at most this many points per batch of JVPs; fewer where ``r · D`` is large, so that a batch holds
            at most `CHUNK_ELEMENTS` entries (memory grows as ``chunk · r · D``). Within a batch, each
            ``torch.func.jvp`` takes at most ``JVP_BUDGET_BYTES // jvp_item_bytes`` images (a UNet's attention
            costs ``T²`` per image under forward-mode AD). The report depends on neither.
        threshold: trust threshold on the mean tangent disagreement.

    Returns:
        `ConsistencyReport`.

    Raises:
        ValueError: the model has no denoiser, or ``x`` is empty or of the wrong shape.
    """
    if not model.has_denoiser:
        raise ValueError("self_consistency needs a mean-centred model with a denoiser; this one is uncentred")
    if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] == 0 or x[0].numel() != model.dim:
        raise ValueError(f"x must be a non-empty batch of points of shape (B, {model.dim}) or "
                         f"(B, *{tuple(model.data_shape)}), got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    check_finite_points(x, "x", "; the check needs finite points")  # (a NaN row: eigh's LinAlgError)
    check_count(chunk, "chunk")
    check_scalar(threshold, "threshold", allow_zero=True)
    sigma = float(model.config.default_sigma if sigma is None else check_scalar(sigma, "sigma"))
    dtype = model.scale.dtype
    # the growth test compares σ/2 with σ; below the training range the networks would extrapolate, so a σ
    # at the bottom of the range is compared with 2σ instead (same trend, one octave up)
    low, high = sigma / 2, sigma
    if low < getattr(model.config, "sigma_min", 0.0):
        low, high = sigma, 2 * sigma
    parts: list[tuple[Tensor, ...]] = []
    # the outside eigenvalue's probes, drawn once for all points (B · D · OUTSIDE_PROBES numbers, 4 × the points):
    # a report is reproducible and the same for any batching
    probes = torch.randn(x.shape[0], model.dim, OUTSIDE_PROBES, generator=torch.Generator().manual_seed(0))
    per_batch = max(1, min(chunk, CHUNK_ELEMENTS // (max(model.rank, OUTSIDE_PROBES) * model.dim)))
    with torch.no_grad():
        flat = x.reshape(x.shape[0], model.dim).to(dtype)
        items = max(1, JVP_BUDGET_BYTES // jvp_item_bytes(model, flat, sigma))  # images per JVP
        for xb, pb in zip(flat.split(per_batch), probes.split(per_batch), strict=True):
            pairs = eigenpairs(model.factor(xb, sigma))
            U, lam = pairs.vectors, pairs.values
            lam_low = lam if low == sigma else eigenpairs(model.factor(xb, low)).values
            lam_high = lam if high == sigma else eigenpairs(model.factor(xb, high)).values
            ritz = U.transpose(1, 2) @ _denoiser_jvp(model, xb, U, sigma, items)
            ritz = 0.5 * (ritz + ritz.transpose(1, 2))
            mu, W = torch.linalg.eigh(ritz.double())  # r × r: cheap (SPEC §5)
            mu, W = mu.flip(-1).to(dtype), W.flip(-1).to(dtype)
            d_f = intrinsic_dimension(lam)
            d_j = intrinsic_dimension(mu.clamp_min(0))
            d = torch.minimum(d_f, d_j)  # a direction only one network keeps must count as a disagreement
            tangent = projector_error(truncate_basis(U, d), truncate_basis(U @ W, d))
            spectral = (ritz - torch.diag_embed(lam)).norm(dim=(1, 2)) / lam.norm(dim=1).clamp_min(1e-12)
            parts.append((tangent, spectral, lam, mu, d_f, d_j, _relative_at(lam_high, d_f),
                          _relative_at(lam_low, d_f), _outside_value(model, xb, U, sigma, pb, items)))
    cat = [torch.cat(p) for p in zip(*parts, strict=True)]
    return ConsistencyReport(sigma, *cat, threshold=threshold, dimension=model.dim)
