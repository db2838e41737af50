"""Gaussian preconditioning (`learned_manifold.preconditioning`, ``input_scaling="gaussian"``, issue 12): the
filter against its dense closed form, the principal components against ``eigh``, the model's wiring in data
units, the file, and the trainer's estimate."""

import pytest
import torch

from learned_manifold import load_model
from learned_manifold.models import MetricModel, ModelConfig
from learned_manifold.preconditioning import gaussian_filter, principal_components
from learned_manifold_training.trainer import TrainConfig, train

NET = {"hidden": 16, "depth": 1, "emb_dim": 8}


def _dense_model(basis, var, rest):
    """``Σ = U diag(λ) Uᵀ + τ (I − UUᵀ)``, dense (tests only)."""
    eye = torch.eye(basis.shape[0], dtype=basis.dtype)
    return basis @ torch.diag(var) @ basis.T + rest * (eye - basis @ basis.T)


def _data(n=2000, D=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    scales = torch.linspace(1.0, 0.05, D, dtype=torch.float64)
    mix = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))[0]
    return (torch.randn(n, D, generator=g, dtype=torch.float64) * scales) @ mix.T


@pytest.mark.parametrize("k", [2, 6])
def test_principal_components_match_the_covariance_eigenpairs(k):
    """``λ`` are the top-k eigenvalues of the sample covariance, ``U`` spans their eigenvectors, ``τ`` is the mean
    of the other eigenvalues (0 at k = D, where the model is the covariance itself)."""
    z = _data()
    basis, var, rest = principal_components(z, k)
    cov = torch.cov(z.T, correction=0)
    evals, evecs = torch.linalg.eigh(cov)
    evals, evecs = evals.flip(0), evecs.flip(1)
    torch.testing.assert_close(var.double(), evals[:k], rtol=1e-5, atol=1e-7)
    top = evecs[:, :k]
    torch.testing.assert_close((basis.double() @ basis.double().T), top @ top.T, rtol=0, atol=1e-4)
    assert rest.item() == pytest.approx(float(evals[k:].mean()) if k < 6 else 0.0, abs=1e-6)
    if k == 6:
        torch.testing.assert_close(_dense_model(basis.double(), var.double(), rest.double()), cov, rtol=0,
                                   atol=1e-5)


def test_randomised_components_of_wide_data_find_the_top_variances():
    """Above D = 512 the randomised SVD runs; on rank-5 data in R⁶⁰⁰ it finds the five variances."""
    g = torch.Generator().manual_seed(3)
    basis_true = torch.linalg.qr(torch.randn(600, 5, generator=g))[0]
    z = (torch.randn(3000, 5, generator=g) * torch.tensor([1.0, 0.8, 0.6, 0.4, 0.2])) @ basis_true.T
    basis, var, rest = principal_components(z, 5, seed=1)
    exact = torch.linalg.svdvals(z - z.mean(0)).pow(2)[:5] / 3000
    torch.testing.assert_close(var, exact, rtol=1e-3, atol=1e-6)
    assert rest.item() < 1e-6
    assert (basis.T @ basis_true).norm().item() == pytest.approx(5**0.5, rel=1e-4)


@pytest.mark.parametrize("per_point", [False, True])
def test_filter_is_the_gaussian_posterior_mean_and_its_noise(per_point):
    """``ρ u = Σ(Σ + σ²I)⁻¹ z``, ``F_G = σ(Σ + σ²I)⁻¹ z`` and ``ρ² = tr(Σ²(Σ + σ²I)⁻¹)``, against dense solves,
    for one bandwidth and for one per point."""
    z = _data()
    basis, var, rest = (t.double() for t in principal_components(z, 3))
    cov = _dense_model(basis, var, rest)
    y = _data(n=7, seed=1)
    sigma = torch.tensor([0.01, 0.1, 0.3, 1.0, 2.0, 0.05, 4.0], dtype=torch.float64) if per_point else \
        torch.tensor([0.3], dtype=torch.float64)
    u, noise = gaussian_filter(y, sigma, basis, var, rest)
    for i in range(7):
        s = float(sigma[i] if per_point else sigma[0])
        inv = torch.linalg.inv(cov + s * s * torch.eye(6, dtype=torch.float64))
        rho = torch.trace(cov @ cov @ inv).sqrt()
        torch.testing.assert_close(u[i] * rho, cov @ inv @ y[i])
        torch.testing.assert_close(noise[i], s * inv @ y[i])


def test_filter_stays_finite_and_keeps_bf16_out():
    """At σ → 0 the noise prediction stays finite (off the model's span it is ``z/σ``, on it ``σz/λ``); under
    bf16 autocast the filter still computes in float32."""
    basis, var, _ = principal_components(_data().float(), 3)
    y = torch.randn(4, 6)
    _, noise = gaussian_filter(y, torch.tensor([1e-6]), basis, var, torch.tensor(0.0))
    assert torch.isfinite(noise).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        u, noise_bf = gaussian_filter(y, torch.tensor([0.2]), basis, var, torch.tensor(0.01))
    u32, noise32 = gaussian_filter(y, torch.tensor([0.2]), basis, var, torch.tensor(0.01))
    assert u.dtype == noise_bf.dtype == torch.float32
    torch.testing.assert_close(noise_bf, noise32, rtol=0, atol=0)


def _gaussian_model(D=6, k=3):
    torch.manual_seed(0)
    cfg = ModelConfig(data_shape=(D,), rank=2, arch_kwargs=NET, input_scaling="gaussian", gaussian_rank=k)
    mean = torch.arange(D, dtype=torch.float32)
    model = MetricModel(cfg, scale=2.0, mean=mean)
    model.set_gaussian_model(*principal_components(_data(D=D).float(), k))
    return model, mean


def test_denoiser_with_a_silent_network_is_the_gaussian_posterior_mean_in_data_units():
    """With the denoiser network's head zeroed, ``denoise`` is ``μ + s Σ(Σ + σ_z²I)⁻¹ (y − μ)/s``, σ_z = σ/s."""
    model, mean = _gaussian_model()
    torch.nn.init.zeros_(model.denoiser_net.head.weight)
    cov = _dense_model(model.pc_basis.double(), model.pc_var.double(), model.pc_rest.double())
    y = torch.randn(5, 6) * 2 + mean
    sigma = 0.6
    z = ((y - mean) / 2.0).double()
    expect = mean + 2.0 * (z @ (cov @ torch.linalg.inv(cov + (sigma / 2.0) ** 2 * torch.eye(6,
                                                                                          dtype=torch.float64))).T)
    torch.testing.assert_close(model.denoise(y, sigma), expect.float(), rtol=1e-5, atol=1e-5)
    # and both networks see the filtered point, not the raw one
    u, _ = gaussian_filter(z.float(), torch.tensor([sigma / 2.0]), model.pc_basis, model.pc_var, model.pc_rest)
    torch.testing.assert_close(model.factor(y, sigma), model.factor_net(u, torch.tensor([sigma / 2.0])))


def test_config_checks_the_rank_of_the_gaussian_model():
    with pytest.raises(ValueError, match="gaussian_rank"):
        ModelConfig(data_shape=(4,), rank=2, input_scaling="gaussian", gaussian_rank=5)
    with pytest.raises(ValueError, match="gaussian_rank"):
        ModelConfig(data_shape=(4,), rank=2, input_scaling="none", gaussian_rank=3)
    with pytest.raises(ValueError, match="gaussian_rank"):
        ModelConfig(data_shape=(4,), rank=2, input_scaling="gaussian")  # 0 is not a model
    with pytest.raises(RuntimeError, match="Gaussian"):
        MetricModel(ModelConfig(data_shape=(4,), rank=2)).set_gaussian_model(torch.eye(4, 1), torch.ones(1),
                                                                             torch.tensor(0.0))


@pytest.mark.filterwarnings("ignore:.* by the checks at the end:learned_manifold.ModelFileWarning")  # a tiny run
def test_trainer_estimates_the_model_and_the_file_keeps_it(tmp_path):
    """Data on a plane in R⁵: the trained model's two leading directions span the plane (in standardised
    units), the remaining variance is ≈ 0, and the saved file gives back the same buffers."""
    g = torch.Generator().manual_seed(0)
    plane = torch.linalg.qr(torch.randn(5, 2, generator=g))[0]
    data = torch.randn(600, 2, generator=g) @ plane.T + 3.0
    cfg = TrainConfig(steps=4, batch_size=32, rank=2, hidden=16, depth=1, emb_dim=8, val_points=50,
                      input_scaling="gaussian", gaussian_rank=3)
    result = train(data, cfg, out=tmp_path / "p.lmm", progress=False, device="cpu")
    model = result.model
    assert model.config.gaussian_rank == 3
    top = model.pc_basis[:, :2]
    torch.testing.assert_close(top @ top.T, plane @ plane.T, rtol=0, atol=1e-4)
    assert model.pc_var[:2].sum().item() == pytest.approx(1.0, rel=0.02)  # standardised: E‖z‖² = 1
    assert model.pc_var[2].item() < 1e-6 and model.pc_rest.item() < 1e-6
    loaded = load_model(tmp_path / "p.lmm")
    for name in ("pc_basis", "pc_var", "pc_rest"):
        torch.testing.assert_close(getattr(loaded, name), getattr(model, name))
    wide = TrainConfig(steps=1, batch_size=32, rank=2, hidden=16, depth=1, emb_dim=8, val_points=50,
                       input_scaling="gaussian")  # the default rank 64 is capped at D = 5
    assert train(data, wide, progress=False, device="cpu").model.config.gaussian_rank == 5


@pytest.mark.parametrize("scaling", ["none", "unit", "gaussian"])
def test_network_input_of_an_empty_batch_is_empty(scaling):
    """An empty batch had crashed "unit" (``z[0]``) and "gaussian" (``reshape(0, -1)``)."""
    from learned_manifold.preconditioning import network_input

    z = torch.randn(64, 2, 3, generator=torch.Generator().manual_seed(0))
    gaussian = principal_components(z.reshape(64, 6), 2)
    u, skip = network_input(scaling, z[:0], torch.ones(0), gaussian if scaling == "gaussian" else None)
    assert u.shape == (0, 2, 3)
    assert (skip is None) if scaling != "gaussian" else skip.shape == (0, 6)


def test_principal_components_of_fewer_rows_than_k():
    """``n < k`` rows give ``k' = min(n, D, k)`` columns (as documented); τ averages the other ``D − k'``."""
    z = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    basis, var, rest = principal_components(z, 6)
    assert basis.shape == (8, 5) and var.shape == (5,)
    assert torch.allclose(basis.T @ basis, torch.eye(5), atol=1e-5)
    assert float(rest) == pytest.approx(0.0, abs=1e-6)  # 5 centred rows span at most 4 directions


def test_the_randomised_svd_is_seeded_on_the_cpu_alone_and_leaves_the_callers_generators(monkeypatch):
    """Above D = 512 the randomised SVD was seeded with `torch.manual_seed`, which also reset every CUDA generator
    (``fork_rng(devices=[])`` puts back the CPU's alone). Now the CPU generator alone is seeded: the same
    components as that seed gave, the caller's CPU state back, no accelerator reseeded."""
    calls: list[str] = []
    for module, name in [(torch.cuda, "manual_seed_all"), (torch.cuda, "manual_seed"), (torch.mps, "manual_seed"),
                         (torch.xpu, "manual_seed_all")]:
        monkeypatch.setattr(module, name, lambda seed, label=f"{module.__name__}.{name}": calls.append(label))
    z = torch.randn(40, 600, generator=torch.Generator().manual_seed(0))
    before = torch.get_rng_state()
    basis, var, _ = principal_components(z, 3, seed=5)
    assert calls == []
    assert torch.equal(torch.get_rng_state(), before)
    centred = z.double() - z.double().mean(0)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(5)
        _, sing, expected = torch.svd_lowrank(centred, q=11, niter=4)
    assert torch.equal(basis, expected[:, :3].float().contiguous())
    assert torch.equal(var, (sing[:3].pow(2) / 40).float())


@pytest.mark.parametrize("k", [4, 5])
def test_principal_components_stay_on_the_device_of_the_rows(k):
    """All three outputs follow ``z``'s device, also ``τ = 0`` when ``k = D`` (it was a CPU tensor beside ``U`` and
    ``λ`` on ``z``'s device); the meta device shows it without an accelerator."""
    z = torch.randn(50, 5, device="meta")
    basis, var, rest = principal_components(z, k)
    assert [t.device.type for t in (basis, var, rest)] == ["meta"] * 3
    assert (basis.shape, var.shape, rest.shape) == ((5, k), (k,), ())
    assert rest.dtype == torch.float32
