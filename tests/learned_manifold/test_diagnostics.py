"""Self-consistency without ground truth: the factor network against the denoiser's Jacobian (SPEC §2)."""

from types import SimpleNamespace

import pytest
import torch

from learned_manifold.diagnostics import OUTSIDE_PROBES, OUTSIDE_THRESHOLD, _outside_value, self_consistency
from learned_manifold.geometry import eigenpairs


class PlaneDouble:
    """A closed-form stand-in for a trained model on the plane ``x₃ = 0`` in R³.

    Factor ``A = diag(1, 1, sqrt(c(σ)))`` and denoiser ``x̂(y) = (y₁, y₂, c(σ) y₃)``, so both networks agree
    exactly (``∂x̂/∂y = AAᵀ``) unless told otherwise; ``c(σ)`` is the normal eigenvalue.
    """

    has_denoiser = True
    dim = 3
    data_shape = (3,)

    def __init__(self, normal, denoiser_normal=None, rank=3):
        self.normal, self.denoiser_normal = normal, denoiser_normal or normal
        self.rank = rank  # rank 2: the factor's columns are the plane's, whatever the normal
        self.scale = torch.tensor(1.0)
        self.config = SimpleNamespace(default_sigma=0.1)

    def factor(self, y, sigma):
        diag = torch.tensor([1.0, 1.0, self.normal(sigma) ** 0.5])
        return torch.diag(diag)[:, : self.rank].expand(y.shape[0], 3, self.rank).clone()

    def denoise(self, y, sigma):
        return y * torch.tensor([1.0, 1.0, self.denoiser_normal(sigma)])


def plane_points(n=50):
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(0))
    x[:, 2] = 0
    return x


def test_ritz_values_are_the_denoiser_jacobian_on_the_factor_range(torus_model, torus):
    """The denoiser spectrum reported is ``eig(Uᵀ J_sym U)`` with ``J`` from autograd (``r = D = 3`` here)."""
    x = torus.sample(20, generator=torch.Generator().manual_seed(4))
    report = self_consistency(torus_model, x)
    sigma = report.sigma
    J = torch.func.vmap(torch.func.jacrev(lambda y: torus_model.denoise(y[None], sigma)[0]))(x)
    U = eigenpairs(torus_model.factor(x, sigma)).vectors
    K = U.transpose(1, 2) @ (0.5 * (J + J.transpose(1, 2))) @ U
    expected = torch.linalg.eigvalsh(K).flip(-1)
    torch.testing.assert_close(report.denoiser_values, expected, atol=1e-4, rtol=1e-4)


def test_a_good_model_agrees_with_itself(torus_model, torus):
    """The learned torus (tangent error ≈ 0.04) is trusted: small disagreement, no normal growth."""
    x = torus.sample(300, generator=torch.Generator().manual_seed(9))
    report = self_consistency(torus_model, x)
    summary = report.summary()
    assert report.trusted, report.message()
    assert summary["tangent_disagreement"] < 0.1, summary
    assert summary["dimension_agreement"] > 0.95, summary
    assert summary["factor_dimension"] == summary["denoiser_dimension"] == 2
    assert summary["outside_eigenvalue"] == 0.0  # r = D = 3: the factor's range is everything
    assert "agrees with itself" in report.message()


def test_exact_agreement_on_a_resolved_plane():
    report = self_consistency(PlaneDouble(lambda s: 0.05 * s), plane_points())
    assert report.trusted
    assert float(report.tangent_disagreement.max()) < 1e-5
    assert float(report.spectral_disagreement.max()) < 1e-5
    assert report.normal_growth < 0  # a resolved normal falls with σ


def test_an_unresolved_normal_is_flagged_even_when_both_networks_agree():
    """Both networks keep a normal that grows as σ falls (the swiss-roll failure): agreement, yet a warning."""
    grows = lambda s: min(1.0, 0.02 / s)  # noqa: E731
    report = self_consistency(PlaneDouble(grows), plane_points())
    assert float(report.tangent_disagreement.max()) < 1e-5
    assert report.normal_growth == pytest.approx(0.4 - 0.2, abs=1e-4)
    assert not report.trusted
    assert "grows as sigma shrinks" in report.message()
    assert "or the data are noisy at it" in report.message()  # noise grows the normal eigenvalue too (A#4, s25)


def test_a_factor_keeping_a_normal_its_denoiser_shrinks_is_flagged():
    report = self_consistency(PlaneDouble(lambda s: 0.9, denoiser_normal=lambda s: 0.0), plane_points())
    assert not report.trusted
    assert report.summary()["factor_dimension"] == 3 and report.summary()["denoiser_dimension"] == 2
    assert "read the same dimension" in report.message()


def test_a_denoiser_direction_beyond_the_factors_rank_is_flagged():
    """A rank-2 factor on the plane, with a denoiser that keeps the normal at 0.95 (the S¹⁶ failure at rank 16):
    the factor reads dimension 2 = its rank everywhere and agrees with the denoiser on its range, so only the
    outside eigenvalue sees the kept normal; the same factor with a denoiser that shrinks it is trusted."""
    kept = self_consistency(PlaneDouble(lambda s: 0.0, denoiser_normal=lambda s: 0.95, rank=2), plane_points())
    assert float(kept.tangent_disagreement.max()) < 1e-5 and kept.summary()["factor_dimension"] == 2
    assert kept.summary()["outside_eigenvalue"] == pytest.approx(0.95, abs=1e-4)
    assert not kept.trusted
    assert "outside the factor's rank-2 range" in kept.message()
    shrunk = self_consistency(PlaneDouble(lambda s: 0.0, denoiser_normal=lambda s: 0.01, rank=2), plane_points())
    assert shrunk.summary()["outside_eigenvalue"] == pytest.approx(0.01, abs=1e-4)
    assert shrunk.trusted, shrunk.message()
    # a partly kept direction (the S¹⁶ model with the norm feature measured 0.27 at tangent error 0.67) is flagged
    partly = self_consistency(PlaneDouble(lambda s: 0.0, denoiser_normal=lambda s: 0.27, rank=2), plane_points())
    assert partly.summary()["outside_eigenvalue"] == pytest.approx(0.27, abs=1e-4)
    assert not partly.trusted


class FlatDouble:
    """A rank-2 factor on the plane of the first two axes of R^D with a denoiser that keeps the other axes at 0.3;
    it records how many points each denoiser call saw."""

    has_denoiser = True
    rank = 2

    def __init__(self, dim):
        self.dim, self.data_shape = dim, (dim,)
        self.scale = torch.tensor(1.0)
        self.config = SimpleNamespace(default_sigma=0.1)
        self.rows: list[int] = []

    def factor(self, y, sigma):
        return torch.eye(self.dim)[:, :2].expand(y.shape[0], self.dim, 2).clone()

    def denoise(self, y, sigma):
        self.rows.append(y.shape[0])
        return y * torch.cat([torch.ones(2), torch.full((self.dim - 2,), 0.3)])


def test_points_go_in_batches_that_shrink_as_d_grows_with_the_same_report(monkeypatch, torus_model, torus):
    """256 points × r JVP directions at a time whatever D raised the peak memory by 0.6 GB at D = 6,912: a batch
    holds at most ``CHUNK_ELEMENTS // (max(r, OUTSIDE_PROBES) · D)`` points, and the report is the one computed
    in a single batch."""
    from learned_manifold import diagnostics

    x = torus.sample(40, generator=torch.Generator().manual_seed(5))
    whole = self_consistency(torus_model, x)
    monkeypatch.setattr(diagnostics, "CHUNK_ELEMENTS", 4 * 3 * 7)  # r = D = 3: 7 points per batch
    parts = self_consistency(torus_model, x)
    for name in ("tangent_disagreement", "spectral_disagreement", "factor_values", "denoiser_values",
                 "factor_dimension", "denoiser_dimension", "normal_value", "normal_value_half", "outside_value"):
        torch.testing.assert_close(getattr(parts, name), getattr(whole, name), rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(diagnostics, "CHUNK_ELEMENTS", 4 * 8 * 6)  # 6 points per batch at D = 8, 3 at D = 16
    for dim, points in ((8, 6), (16, 3)):
        model = FlatDouble(dim)
        report = self_consistency(model, torch.randn(20, dim, generator=torch.Generator().manual_seed(0)))
        assert max(model.rows) == points * 4  # the outside eigenvalue's 4 probes per point
        assert report.summary()["outside_eigenvalue"] == pytest.approx(0.3, abs=1e-4)


def test_uncentred_models_and_bad_points_are_refused(torus_model):
    with pytest.raises(ValueError, match="denoiser"):
        self_consistency(SimpleNamespace(has_denoiser=False), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="non-empty batch"):
        self_consistency(torus_model, torch.zeros(0, 3))
    with pytest.raises(ValueError, match="shape"):
        self_consistency(torus_model, torch.zeros(4, 5))
    with pytest.raises(ValueError, match=r"NaN or inf at 1 point\(s\) \(the first: 2\)"):  # was a LinAlgError
        self_consistency(torus_model, torch.tensor([[1.4, 0, 0], [0, 1.4, 0], [float("nan"), 0, 0]]))


def test_jvps_go_in_chunks_by_memory_with_the_same_report(monkeypatch):
    """19 points × 4 directions of 128×128 images went through the UNet in one JVP, whose forward-mode attention
    holds ``T²`` scores per image (5.1 GB): the images per JVP are bounded by `JVP_BUDGET_BYTES` over the estimate
    of `jvp_item_bytes`, which counts the attention's ``heads · T²``, and the report is the one of a single JVP."""
    from learned_manifold import diagnostics
    from learned_manifold.models import MetricModel, ModelConfig

    torch.manual_seed(5)
    tiny = {"channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "emb_dim": 16, "groups": 4,
            "attention_levels": [0], "head_channels": 4}
    cfg = ModelConfig(data_shape=(1, 6, 6), rank=3, arch="unet", arch_kwargs=tiny, default_sigma=0.3,
                      sigma_rule="test")
    model = MetricModel(cfg, scale=2.0, mean=torch.linspace(0, 1, 36))
    x = torch.randn(5, 36, generator=torch.Generator().manual_seed(1))
    item = diagnostics.jvp_item_bytes(model, x, 0.3)
    # level 0 attends over 6·6 tokens with 8 / 4 = 2 heads; the middle block over 3·3 with 16 / 4 = 4 heads
    assert item >= 4 * 2 * 36**2 * 4 and item > 2 * 36 * 4
    whole = self_consistency(model, x)
    calls = []
    denoise = model.denoise
    monkeypatch.setattr(model, "denoise", lambda y, sigma: calls.append(y.shape[0]) or denoise(y, sigma))
    monkeypatch.setattr(diagnostics, "JVP_BUDGET_BYTES", 2 * item)  # two images per JVP
    parts = self_consistency(model, x)
    assert max(calls[1:]) == 2 and len(calls) > 3 * 5  # calls[0]: the estimate's plain forward of one point
    for name in ("tangent_disagreement", "spectral_disagreement", "factor_values", "denoiser_values",
                 "factor_dimension", "denoiser_dimension", "normal_value", "normal_value_half", "outside_value"):
        torch.testing.assert_close(getattr(parts, name), getattr(whole, name), rtol=1e-4, atol=1e-5)


class SymmetricDouble:
    """A linear denoiser ``x̂(y) = S y`` with ``S`` symmetric: 16 eigenvalues 1 on the factor's range (the first 16
    columns of ``Q``) and, off it, 44 from −2.68 to −1.8 with 0.569, 0.3, 0.1 and −0.5 (tester E's under-trained
    model of noise in R⁶⁴: its outside spectrum ran from −2.68 to +0.569)."""

    def __init__(self):
        Q = torch.linalg.qr(torch.randn(64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64))[0]
        outside = torch.cat([torch.linspace(-2.68, -1.8, 44, dtype=torch.float64),
                             torch.tensor([0.569, 0.3, 0.1, -0.5], dtype=torch.float64)])
        self.Q = Q
        self.S = Q @ torch.diag(torch.cat([torch.ones(16, dtype=torch.float64), outside])) @ Q.T

    def denoise(self, y, sigma):
        return y @ self.S


def test_the_outside_value_is_the_largest_algebraic_eigenvalue_not_the_largest_in_magnitude():
    """Power iteration converged to the large negative eigenvalues and the clamp read 0 (the check passed on a model
    of noise, tester E). Rayleigh–Ritz on the probes' Krylov space (12 JVPs, 8 before) gives a lower bound of the top
    eigenvalue 0.569 that is above the 0.1 limit (OUTSIDE_THRESHOLD), at every point."""
    model = SymmetricDouble()
    U = model.Q[:, :16].expand(3, 64, 16).clone()
    probes = torch.randn(3, 64, OUTSIDE_PROBES, generator=torch.Generator().manual_seed(0))
    value = _outside_value(model, torch.zeros(3, 64, dtype=torch.float64), U, 1.0, probes)
    assert (value > OUTSIDE_THRESHOLD).all() and (value <= 0.569 + 1e-9).all(), value


def test_self_consistency_under_autocast_is_the_float32_report():
    """Under bf16 autocast the report held bf16 tensors and ``summary()`` failed in ``quantile`` (tester B); autocast
    is now switched off inside, and the report is the one computed outside it."""
    model, x = PlaneDouble(lambda s: 0.05 * s, denoiser_normal=lambda s: 0.3, rank=2), plane_points(20)
    ref = self_consistency(model, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        report = self_consistency(model, x)
    assert report.denoiser_values.dtype == torch.float32
    assert report.summary() == ref.summary()


@pytest.mark.parametrize("field, value, shown", [("outside_value", 0.10003, "outside eigenvalue 0.10003, limit 0.1"),
                                                 ("tangent_disagreement", 0.20004, "disagreement 0.20004 (limit 0.2)")])
def test_a_figure_just_past_its_limit_is_named_with_the_digits_that_show_it(field, value, shown):
    """``trusted`` compared the exact figures, the reasons the summary's 4-decimal ones: an outside eigenvalue of
    0.10003 was not trusted with no failed limit named ("outside eigenvalue 0.1" in a generic line)."""
    from learned_manifold.diagnostics import ConsistencyReport, consistency_reasons

    b = 10
    pair = torch.tensor([[1.0, 0.0]]).repeat(b, 1)
    fields = {"tangent_disagreement": torch.full((b,), 0.05), "outside_value": torch.zeros(b)}
    fields[field] = torch.full((b,), value, dtype=torch.float64)
    report = ConsistencyReport(sigma=0.1, spectral_disagreement=torch.zeros(b), factor_values=pair,
                               denoiser_values=pair, factor_dimension=torch.ones(b, dtype=torch.long),
                               denoiser_dimension=torch.ones(b, dtype=torch.long), normal_value=torch.zeros(b),
                               normal_value_half=torch.zeros(b), **fields)
    summary = report.summary()
    (reason,) = consistency_reasons(summary)
    assert shown in reason and shown in report.message()
    assert not report.trusted and list(summary["failed"]) == [field.replace("_value", "_eigenvalue")]
    # an older file's summary (no "failed"): its rounded figures, as before
    assert consistency_reasons({k: v for k, v in summary.items() if k != "failed"})[0].startswith("not trusted (")


def test_a_model_reading_the_full_dimension_gets_no_verdict():
    """Both networks read every direction of R³ as tangent (an under-trained model, or one trained below the points'
    spacing: tester B's S² and torus models, tangent errors 0.59–1.09): there is no normal, every figure is 0 by
    construction, and the check had said "trusted". Now it gives no verdict, and a failed limit still fails."""
    from learned_manifold.diagnostics import consistency_verdict

    report = self_consistency(PlaneDouble(lambda s: 1.0), plane_points())
    summary = report.summary()
    assert summary["factor_dimension"] == summary["denoiser_dimension"] == 3 and report.failed == {}
    assert report.informative is False and report.trusted is None and summary["trusted"] is None
    assert summary["informative"] is False and summary["data_dimension"] == 3
    assert report.message().startswith("self-consistency: no verdict at sigma=0.1: the factor reads the data's "
                                       "full dimension 3 at most points")
    kept = self_consistency(PlaneDouble(lambda s: 0.9, denoiser_normal=lambda s: 0.0), plane_points())
    assert kept.informative is False and kept.trusted is False  # d = D, but factor and denoiser disagree
    # an older file's summary (no "informative"): read from its median factor dimension and D
    old = {k: v for k, v in summary.items() if k not in ("informative", "data_dimension")} | {"trusted": True}
    assert consistency_verdict(old, 3) is None and consistency_verdict(old) is True
    assert consistency_verdict({**old, "trusted": False}, 3) is False
    # a good model says that this check cannot see a failure both networks share
    good = self_consistency(PlaneDouble(lambda s: 0.05 * s), plane_points())
    assert good.trusted is True and "(a check that cannot see a failure both networks share)" in good.message()
