"""The VAE and its latent pullback metric (SPEC §11): closed forms against autodiff, the two curve energies, the
decoder std off the data, geodesics on a VAE of a circle in R¹⁰, and hostile VAE files."""

from __future__ import annotations

import json
import os
import time
import tracemalloc

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from learned_manifold import (
    LearnedDataManifold,
    ModelFileError,
    RiemannianSGD,
    geodesic,
    load_vae,
    save_model,
    save_vae,
)
from learned_manifold.evaluation import lerp
from learned_manifold.metrics import VAEPullbackMetric
from learned_manifold.metrics.vae_pullback import latent_graph_path
from learned_manifold.model_file import load_model
from learned_manifold.models import MetricModel, ModelConfig
from learned_manifold.vae import VAE, VAEConfig
from learned_manifold.vae_file import VAE_FORMAT, read_vae_metadata
from learned_manifold_training.data import Circle
from learned_manifold_training.vae_trainer import VAETrainConfig, encode_data, std_growth, train_vae

F64 = torch.float64


def random_vae(config: VAEConfig, seed: int = 0) -> VAE:
    """An untrained float64 VAE with a non-trivial RBF precision (so J_σ matters)."""
    torch.manual_seed(seed)
    vae = VAE(config, scale=1.7, mean=torch.linspace(-1, 1, config.dim)).double()
    vae.centres.normal_()
    vae.bandwidths.uniform_(0.5, 2.0)
    vae.std_weights.uniform_(0.0, 4.0)
    return vae


CONFIGS = {
    "mlp": VAEConfig((6,), 2, hidden=16, depth=2, n_centres=5),
    "conv_odd_image": VAEConfig((2, 5, 7), 3, arch="conv", channels=4, depth=2, n_centres=4),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_pullback_metric_is_the_jacobian_product_from_jacfwd(name):
    vae = random_vae(CONFIGS[name])
    field = VAEPullbackMetric(vae)
    z = torch.randn(5, vae.latent_dim, dtype=F64)

    def single(q):
        return torch.cat([vae.decode(q[None]).flatten(), vae.decoder_std(q[None]).flatten()])

    J = torch.func.vmap(torch.func.jacfwd(single))(z)  # (B, 2D, d): [J_μ; J_σ]
    M = J.mT @ J  # J_μᵀJ_μ + J_σᵀJ_σ
    assert torch.allclose(field.pullback(z), M, rtol=1e-12, atol=1e-14)
    v = torch.randn_like(z)
    assert torch.allclose(field.metric(z, v), (M @ v[..., None])[..., 0], rtol=1e-12, atol=1e-14)
    # the std term is not negligible: without it the metric differs
    Jmu = J[:, : vae.dim]
    assert (M - Jmu.mT @ Jmu).abs().max() > 1e-3 * M.abs().max()


def test_co_metric_times_metric_is_the_identity():
    field = VAEPullbackMetric(random_vae(CONFIGS["mlp"]), eps=1e-3)
    z, v = torch.randn(7, 2, dtype=F64), torch.randn(7, 2, dtype=F64)
    assert torch.allclose(field.apply(z, field.metric(z, v)), v, rtol=1e-10, atol=1e-12)
    assert torch.allclose(field.metric(z, field.apply(z, v)), v, rtol=1e-10, atol=1e-12)
    eye = torch.eye(2, dtype=F64).expand(7, 2, 2)
    assert torch.allclose(field.dense(z) @ field.pullback(z), eye, atol=1e-10)
    assert torch.allclose(field.log_volume(z), 0.5 * torch.logdet(field.pullback(z)), atol=1e-12)
    # the manifold sees the same geometry: inner(egrad2rgrad(u), w) = u·w
    M = LearnedDataManifold(field)
    u, w = torch.randn(7, 2, dtype=F64), torch.randn(7, 2, dtype=F64)
    assert torch.allclose(M.inner(z, M.egrad2rgrad(z, u), w), (u * w).sum(-1), atol=1e-10)


def test_a_singular_pullback_gets_one_clear_error():
    vae = random_vae(CONFIGS["mlp"])
    torch.nn.init.zeros_(vae.decoder[-1].weight)  # a constant decoder mean
    vae.std_weights.zero_()  # and a constant std: M = 0
    with pytest.raises(ValueError, match="singular .* eps > 0"):
        VAEPullbackMetric(vae).apply(torch.randn(3, 2, dtype=F64), torch.randn(3, 2, dtype=F64))


def test_a_rank_deficient_pullback_is_singular_not_a_huge_solve():
    """A linear decoder R² → R¹ with a constant std: ``M = s²WᵀW`` has rank 1. The LU solve's pivots were not
    exactly zero, so ``apply`` returned values near 10¹⁸ and ``log_volume`` a finite −23.5."""
    vae = VAE(VAEConfig(data_shape=(1,), latent_dim=2, depth=0, n_centres=3)).double()
    z = torch.randn(4, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    field = VAEPullbackMetric(vae)
    assert torch.linalg.matrix_rank(field.pullback(z)).eq(1).all()
    with pytest.raises(ValueError, match="singular at 4 point"):
        field.apply(z, torch.randn(4, 2, dtype=F64))
    assert torch.equal(field.log_volume(z), torch.full((4,), float("-inf"), dtype=F64))
    regular = VAEPullbackMetric(vae, eps=1e-3)  # eps > 0: M + εI, solved and measured as usual
    w = torch.randn(4, 2, dtype=F64)
    torch.testing.assert_close(regular.metric(z, regular.apply(z, w)), w)
    torch.testing.assert_close(regular.log_volume(z), 0.5 * torch.logdet(regular.pullback(z)))


def test_the_two_curve_energies_agree_to_second_order_on_fine_paths():
    vae = random_vae(CONFIGS["mlp"], seed=1)
    forms = [VAEPullbackMetric(vae, energy=e) for e in ("metric", "decoded")]
    z0, z1 = torch.randn(2, 3, 2, dtype=F64)
    gaps = []
    for n in (21, 201):
        t = torch.linspace(0, 1, n, dtype=F64)[None, :, None]
        path = z0[:, None] + t * (z1 - z0)[:, None] + 0.5 * torch.sin(torch.pi * t)  # a curved path
        e_metric, e_decoded = ((n - 1) * f.segment_energies(path).sum(-1) for f in forms)
        gaps.append(((e_metric - e_decoded) / e_metric).abs().max().item())
    assert gaps[1] < 1e-4  # measured 6e-5 at 201 points
    assert gaps[0] / gaps[1] > 50  # ten times finer, a hundred times closer: O(h²)


def test_geodesic_minimises_the_fields_own_curve_energy():
    vae = random_vae(CONFIGS["mlp"], seed=2)
    z0, z1 = torch.randn(2, 2, 2, dtype=F64)
    for energy in ("metric", "decoded"):
        field = VAEPullbackMetric(vae, energy=energy)
        res = geodesic(field, z0, z1, n_points=12, steps=100)
        own = field.segment_energies(res.path).sum(-1)
        assert torch.allclose(res.energy, own)
        assert bool((res.energy <= res.initial_energy).all())
    coarse = lerp(z0, z1, 4)
    a, b = (VAEPullbackMetric(vae, energy=e).segment_energies(coarse) for e in ("metric", "decoded"))
    assert not torch.allclose(a, b, rtol=1e-3)  # on a coarse path they are different energies


# ---------------------------------------------------------------------------------------------------------
# a VAE of the unit circle in R¹⁰, trained once (about 5 s)


@pytest.fixture(scope="module")
def circle_vae():
    manifold = Circle(10)
    x = manifold.sample(1000, generator=torch.Generator().manual_seed(0))
    cfg = VAETrainConfig(steps=1500, std_steps=500, hidden=64, batch_size=128, n_centres=32)
    result = train_vae(x, cfg, device="cpu", progress=False)
    return manifold, x, result


def test_the_decoder_std_grows_away_from_the_data(circle_vae):
    """At 10× the codes' RMS radius the decoder std is s/sqrt(ζ) = 1.0 (the circle's radius) against 0.013 on the
    data (measured: 80× larger)."""
    _, x, result = circle_vae
    vae = result.vae
    growth = std_growth(vae, encode_data(vae, x), factor=10.0)
    assert growth["std_growth"] > 20, growth
    assert growth["std_far"] == pytest.approx(float(vae.scale) / vae.config.zeta**0.5, rel=0.01)
    assert growth["std_on_data"] < 0.05
    assert result.validation["relative_reconstruction_error"] < 0.1, result.validation


def test_decoded_vae_geodesics_follow_the_circle_where_latent_lerp_cuts_across(circle_vae):
    manifold, x, result = circle_vae
    vae = result.vae
    codes = encode_data(vae, x).double()
    x0 = x[:4]
    x1 = x[torch.cdist(x0, x).argmax(1)]  # (nearly) antipodal partners
    z0, z1 = encode_data(vae, x0).double(), encode_data(vae, x1).double()
    n = 16
    # given the codes, the default start is the path through their graph (the by-hand start of latent_graph_path)
    res = geodesic(VAEPullbackMetric(vae, energy="decoded", codes=codes), z0, z1, n_points=n, steps=200)
    assert res.init == "graph"
    by_hand = geodesic(VAEPullbackMetric(vae, energy="decoded"), z0, z1, n_points=n, steps=200,
                       init=latent_graph_path(codes, z0, z1, n))
    assert torch.allclose(res.path, by_hand.path, atol=1e-6)

    def off(path):
        return manifold.distance(vae.decode(path.reshape(-1, 2).float())).reshape(4, n).amax(-1)

    geo, straight = off(res.path), off(lerp(z0, z1, n))
    assert bool((geo < 0.1).all()), geo  # measured 0.024-0.026
    assert bool((straight > 0.5).all()), straight  # through the circle's middle: 0.88-0.92
    decoded = vae.decode(res.path.reshape(-1, 2).float()).reshape(4, n, -1)
    length = (decoded[:, 1:] - decoded[:, :-1]).norm(dim=-1).sum(-1)
    true = manifold.geodesic_distance(decoded[:, 0], decoded[:, -1])
    assert bool(((length / true - 1).abs() < 0.1).all())  # the half circle, not the chord


def test_geoopt_optimisers_run_on_the_latent_pullback_manifold(circle_vae):
    """RiemannianSGD on ``LearnedDataManifold(VAEPullbackMetric(vae))``: decode towards a target on the circle."""
    manifold, x, result = circle_vae
    vae = result.vae
    x0 = x[:3]
    target = x[(torch.cdist(x0, x) - 0.5).abs().argmin(1)]  # points 0.5 away along the data
    M = LearnedDataManifold(VAEPullbackMetric(vae))
    p = torch.nn.Parameter(encode_data(vae, x0))
    opt = RiemannianSGD([p], manifold=M, lr=0.2)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = (vae.decode(p) - target).pow(2).sum()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.02 * losses[0]  # measured 0.0033 from 0.76
    assert bool((manifold.distance(vae.decode(p.detach())) < 0.1).all())


# ---------------------------------------------------------------------------------------------------------
# the VAE file


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> tuple[bytes, VAE]:
    vae = random_vae(CONFIGS["mlp"]).float()
    path = save_vae(vae, tmp_path_factory.mktemp("vae") / "good.lvae", extra={"note": "test"})
    return path.read_bytes(), vae


def test_a_vae_with_a_nan_weight_is_refused_before_writing(tmp_path):
    vae = random_vae(CONFIGS["mlp"]).float()
    with torch.no_grad():
        next(vae.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match="vae: tensor .* holds non-finite values"):
        save_vae(vae, tmp_path / "v.lvae")
    assert list(tmp_path.iterdir()) == []


def test_a_saved_vae_loads_and_round_trips_exactly(good, tmp_path):
    raw, vae = good
    (tmp_path / "v.lvae").write_bytes(raw)
    loaded = load_vae(tmp_path / "v.lvae")
    x, z = torch.randn(4, 6), torch.randn(4, 2)
    for fn in ("encode", "decode", "decoder_std"):
        arg = x if fn == "encode" else z
        assert torch.equal(getattr(loaded, fn)(arg), getattr(vae, fn)(arg))
    assert loaded.encode(x).shape == (4, 2) and loaded.decode(z).shape == (4, 6)
    assert read_vae_metadata(tmp_path / "v.lvae")["extra"] == {"note": "test"}
    assert not any(p.requires_grad for p in loaded.parameters())


def test_a_float64_vae_round_trips_bit_for_bit_in_float64(tmp_path):
    """A VAE saved in float64 (every stored tensor F64) loads back in float64 with the same bits: it loaded as
    float32, rounding every weight and the decoder's outputs."""
    vae = random_vae(CONFIGS["conv_odd_image"])  # float64, with a non-trivial RBF precision
    loaded = load_vae(save_vae(vae, tmp_path / "v.lvae"))
    assert {t.dtype for t in loaded.state_dict().values()} == {F64}
    for key, value in vae.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x, z = torch.randn(3, 2, 5, 7, dtype=F64), torch.randn(4, 3, dtype=F64)
    assert torch.equal(loaded.encode(x), vae.encode(x))
    for fn in ("decode", "decoder_std"):
        assert torch.equal(getattr(loaded, fn)(z), getattr(vae, fn)(z)), fn
    assert torch.equal(VAEPullbackMetric(loaded).pullback(z), VAEPullbackMetric(vae).pullback(z))


def test_the_mean_keeps_the_default_dtype_and_old_float32_means_still_load(tmp_path):
    """Under a float64 default dtype the mean is float64 like the weights and other buffers (it was stored
    ``.float()``: 1 + 1e-9 became 1.0, and the file's mixed dtypes loaded back as float32); a file written before,
    with a float32 mean beside float64 weights, still loads (in float64, the widest, as documented for mixed dtypes)."""
    config = VAEConfig((4,), 2, hidden=8, depth=1, n_centres=3)
    mean = torch.full((4,), 1.0 + 1e-9, dtype=F64)
    before = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    try:
        vae = VAE(config, mean=mean)
    finally:
        torch.set_default_dtype(before)
    assert {t.dtype for t in vae.state_dict().values()} == {F64}
    assert torch.equal(vae.mean, mean)
    loaded = load_vae(save_vae(vae, tmp_path / "v.lvae"))
    assert loaded.mean.dtype == F64 and torch.equal(loaded.mean, mean)
    assert torch.equal(VAE(config, mean=mean).mean, mean.float())  # float32 default: float32, as the weights
    vae.mean = vae.mean.float()  # an old file: a float32 mean beside float64 weights
    old = load_vae(save_vae(vae, tmp_path / "old.lvae"))
    assert {t.dtype for t in old.state_dict().values()} == {F64}  # the widest stored dtype (`load_module_state`)
    assert torch.equal(old.mean, mean.float().double())


def _split(raw: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _join(header: dict, data: bytes) -> bytes:
    h = json.dumps(header).encode()
    return len(h).to_bytes(8, "little") + h + data


def _config(**changes):
    def make(raw):
        header, data = _split(raw)
        cfg = json.loads(header["__metadata__"]["config"])
        cfg.update(changes)
        header["__metadata__"]["config"] = json.dumps(cfg)
        return _join(header, data)
    return make


def _tensor(name, value):
    def make(raw):
        header, _ = _split(raw)
        tensors = dict(st_load(raw))
        t = tensors[name].clone()
        t.view(-1)[0] = value
        tensors[name] = t
        return st_save(tensors, metadata=header["__metadata__"])
    return make


def _model_file(raw):
    cfg = ModelConfig(data_shape=(6,), rank=2, arch_kwargs={"hidden": 8, "depth": 1, "emb_dim": 8})
    path = save_model(MetricModel(cfg), os.path.join(os.environ["VAE_TEST_TMP"], "model.lmm"))
    return path.read_bytes()


HOSTILE = {
    "empty": (lambda raw: b"", "only 0 bytes"),
    "truncated_header": (lambda raw: raw[:40], "truncated"),
    "truncated_data": (lambda raw: raw[:-7], "truncated"),
    "trailing_garbage": (lambda raw: raw + b"\0" * 3, "belong to no tensor"),
    "pickle": (lambda raw: b"\x80\x04\x95" + b"\0" * 64, "pickle"),
    "foreign_safetensors": (lambda raw: st_save({"w": torch.zeros(3)}), "not a learned-manifold VAE"),
    "model_file_as_vae": (_model_file, "metric-matching model file, not a VAE"),
    "version_3": (lambda raw: _join({**_split(raw)[0], "__metadata__": {**_split(raw)[0]["__metadata__"],
                                                                        "version": "3"}}, _split(raw)[1]),
                  "written by a newer version"),
    "huge_claimed_network": (_config(hidden=65536, depth=256), "does not match its architecture"),
    "huge_claimed_header": (lambda raw: (2**62).to_bytes(8, "little") + raw[8:], "header"),
    "huge_claimed_tensor": (lambda raw: _join({**_split(raw)[0], "scale": {"dtype": "F32", "shape": [2**40],
                                                                          "data_offsets": [0, 2**42]}},
                                              _split(raw)[1]), "offsets"),
    "latent_dim_string": (_config(latent_dim="2"), "latent_dim must be an integer"),
    "latent_dim_bool": (_config(latent_dim=True), "latent_dim must be an integer"),
    "zeta_negative": (_config(zeta=-1.0), "zeta must be a finite number > 0"),
    "unknown_key": (_config(surprise=1), "expected exactly"),
    "arch_unknown": (_config(arch="transformer"), "arch must be one of"),
    "nan_weight": (_tensor("decoder.0.weight", float("nan")), "non-finite"),
    "inf_centre": (_tensor("centres", float("inf")), "non-finite"),
    "negative_std_weight": (_tensor("std_weights", -1.0), "std_weights that are not >= 0"),
    "zero_bandwidth": (_tensor("bandwidths", 0.0), "bandwidths that are not > 0"),
    "zero_scale": (_tensor("scale", 0.0), "scale that are not > 0"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_vae_files_are_refused_with_one_error_naming_the_file(name, good, tmp_path, monkeypatch):
    """Both readers refuse each file with one error naming it, quickly and before any large allocation.

    The time is the process's CPU time, measured without tracemalloc: at the size caps (``huge_claimed_network``)
    refusing means building the claimed network on the meta device, about 1 s of pure Python for both readers,
    which tracemalloc slows 2-3 times; a wall-clock limit on that (5 s, as before) failed whenever the test shared
    its core with other work. The wall-clock bound stays, far above any load, for a refusal that sleeps or waits.
    The peak allocation is measured in a second pass, under tracemalloc."""
    monkeypatch.setenv("VAE_TEST_TMP", str(tmp_path))
    make, message = HOSTILE[name]
    path = tmp_path / f"{name}.lvae"
    path.write_bytes(make(good[0]))

    def refuse_with_both_readers():
        for reader in (load_vae, read_vae_metadata):
            with pytest.raises(ModelFileError, match=message) as info:
                reader(path)
            assert str(path) in str(info.value)

    cpu, wall = time.process_time(), time.perf_counter()
    refuse_with_both_readers()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert cpu < 5.0 and wall < 60.0, f"refused after {cpu:.1f} s of CPU time, {wall:.1f} s of wall-clock time"
    tracemalloc.start()
    try:
        refuse_with_both_readers()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20  # refused before any large allocation


def test_a_vae_file_is_not_a_model_file(good, tmp_path):
    (tmp_path / "v.lvae").write_bytes(good[0])
    with pytest.raises(ModelFileError, match="is a learned-manifold VAE file .*load it with load_vae"):
        load_model(tmp_path / "v.lvae")
    assert VAE_FORMAT == "learned-manifold-vae"  # the name model_file.py checks for


@pytest.mark.parametrize("kind", ["folder", "fifo", "dev_zero_link", "missing"])
def test_paths_that_are_not_regular_files_are_refused_unopened(kind, tmp_path):
    path = tmp_path / "x.lvae"
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero_link":
        path.symlink_to("/dev/zero")
    if kind == "missing":
        with pytest.raises(FileNotFoundError, match="VAE file"):
            load_vae(path)
        return
    with pytest.raises(ModelFileError, match="not a VAE file; it was not opened"):
        load_vae(path)


def test_bad_settings_get_one_error_naming_the_argument():
    with pytest.raises(ValueError, match="arch 'conv' needs images"):
        VAEConfig((6,), 2, arch="conv")
    with pytest.raises(ValueError, match="latent_dim"):
        VAEConfig((6,), 0)
    with pytest.raises(ValueError, match="energy must be one of"):
        VAEPullbackMetric(random_vae(CONFIGS["mlp"]), energy="spline")
    with pytest.raises(ValueError, match="z has last axes"):
        random_vae(CONFIGS["mlp"]).decode(torch.zeros(3, 5, dtype=F64))
    with pytest.raises(ValueError, match="rbf_scale must be a finite number > 0"):
        VAETrainConfig(rbf_scale=0.0)


def test_dense_and_broadcast_points_of_the_pullback_metric():
    """``dense`` names the user's shape (not an internal repeat of it); one latent point broadcast against
    several vectors gives each row the point's own answer."""
    from learned_manifold import LearnedDataManifold

    torch.manual_seed(0)
    field = VAEPullbackMetric(VAE(VAEConfig(data_shape=(6,), latent_dim=3, hidden=16)), eps=1e-3)
    with pytest.raises(ValueError, match=r"its shape is \(3, 4\)"):
        field.dense(torch.zeros(3, 4))
    z, u = torch.randn(3), torch.randn(5, 3)
    manifold = LearnedDataManifold(field, data_shape=(3,))
    torch.testing.assert_close(manifold.egrad2rgrad(z, u), field.apply(z.repeat(5, 1), u))
