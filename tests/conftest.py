"""Shared fixtures: small models trained on S² and the torus once per test run, and a closed-form co-metric field."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from learned_manifold.geometry import lowrank_apply, lowrank_solve
from learned_manifold.metrics.base import CoMetricField
from learned_manifold.torch_quirks import load_forward_ad
from learned_manifold_training.data import Sphere, Torus
from learned_manifold_training.trainer import TrainConfig, train

# Tests that call torch.func.jvp / jacfwd themselves would meet torch's own `torch.jit.script` deprecation warning (an
# error here) on a process's first forward-mode product: load those decompositions quietly once, as the library does
# before its own forward-mode products (tests/test_packaging.py checks the library's calls in a fresh process).
load_forward_ad()

# One intra-op thread: the suite is made of many tiny ops, for which OpenMP threads only add contention
# (measured on a loaded 2-core machine: 48 s with one thread, 240 s with two).
torch.set_num_threads(1)


class FixedSubspaceField(CoMetricField):
    """``G = Q Qᵀ`` for a fixed orthonormal ``Q`` ``(D, d)``: the flat manifold ``span(Q)`` in closed form."""

    low_rank = True

    def __init__(self, Q: torch.Tensor, delta: float = 0.0):
        super().__init__()
        self.register_buffer("Q", Q)
        self.dim = Q.shape[0]
        self.delta = delta

    def factor(self, x):
        return self.Q.to(x.dtype).expand(x.shape[0], *self.Q.shape)

    def apply(self, x, w):
        return lowrank_apply(self.factor(x), w, self.delta)

    def metric(self, x, v):
        return lowrank_solve(self.factor(x), v, self.delta)


FIXTURE_RECIPE = {"factor_target": "residual", "input_scaling": "none", "grad_clip": 1.0, "denoiser_warmup": 0.25,
                  "final_norm": True, "norm_feature": False}
"""The recipe of the shared fixtures: the one their tests' thresholds were set on (the default before the sixth
session). The fixtures serve the manifold, landing, optimiser and path tests, which hold for any model; the default
recipe is tested in `tests/training/test_factor_target.py`, the demo and CLI tests, and measured in
``benchmarks/results/cpu/recipe-jacobian/``. With the default recipe the 1,000-step S² fixture picks σ = 1/32
instead of 1/8, where its landing tolerance (proportional to σ) is tighter than its denoiser's accuracy; with the
norm feature alone (the default since the tenth session) it picks σ = 1/64, where one denoiser step moves a point
at radius 0.43 by 0.004 and landing from there does not converge in 200 steps."""


def assert_same_under_autocast(calls: dict[str, Callable[[], torch.Tensor]], *, atol: float) -> None:
    """Each call returns the same float32 answer inside a caller's bf16 `torch.autocast` as outside it (the
    library's geometry runs outside autocast: `learned_manifold.precision.full_precision`)."""
    want = {name: call() for name, call in calls.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = {name: call() for name, call in calls.items()}
    for name in calls:
        assert got[name].dtype == torch.float32, name
        torch.testing.assert_close(got[name], want[name], rtol=1e-6, atol=atol, msg=name)


SLOWEST_FIRST = [
    "tests/tutorials/test_images_and_latents.py",
    "tests/tutorials/test_first_steps.py",
    "tests/benchmarks/test_gpu_suite.py",
    "tests/training/test_images_end_to_end.py",
    "tests/training/test_cli_demo.py",
    "tests/benchmarks/test_benchmarks_quick.py",
    "tests/benchmarks/test_image_paths_quick.py",
    "tests/learned_manifold/test_curvature.py",
    "tests/benchmarks/test_recipe_speed_quick.py",
]
"""Test files of a minute or more on one core (``--durations``, 2026-12-07), slowest first. Under the README's
``-n 2 --dist loadfile`` a file runs whole on one worker, and xdist hands out files with the most tests first:
these few-test files came last and ran alone at the end (the suite's wall time 15.4 min for 11.9 min of work per
worker). `pytest_collection_modifyitems` runs them first instead, so the rest fills in around them."""


def pytest_configure(config: pytest.Config) -> None:
    """Keep the collection order for xdist's files (its default reorders them by their number of tests)."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`SLOWEST_FIRST`'s files first, in that order; the rest as collected (a stable sort)."""
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.fixture(scope="session")
def sphere() -> Sphere:
    return Sphere(2, 3)


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None], wait_s: float = 1200.0) -> Path:
    """The file ``name`` made by ``build(path)`` once per test run.

    Under pytest-xdist (``-n 2``, the README's command) each worker is its own process with its own session: the
    first worker to get here builds the file in the run's shared temporary folder and the others wait for it, so
    a model is trained once, not once per worker. A failed build is reported to the waiting workers too.
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        path = tmp_path_factory.mktemp("built") / name
        build(path)
        return path
    # one folder per run (xdist's run id), so that a --basetemp reused across runs never serves an old file
    root = tmp_path_factory.getbasetemp().parent / f"built-once-{os.environ.get('PYTEST_XDIST_TESTRUNUID', 'run')}"
    root.mkdir(exist_ok=True)
    path, done, failed = root / name, root / f"{name}.done", root / f"{name}.failed"
    try:
        os.close(os.open(root / f"{name}.building", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:  # another worker builds it
        deadline = time.monotonic() + wait_s
        while not done.exists():
            if failed.exists():
                pytest.fail(f"building {name} failed in another worker: {failed.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"waited {wait_s:.0f} s for another worker to build {name}")
            time.sleep(0.2)
        return path
    try:
        build(path)
    except BaseException as error:
        failed.write_text(f"{type(error).__name__}: {error}")
        raise
    done.touch()
    return path


def _trained(tmp_path_factory, manifold, name: str, n: int, steps: int, max_error: float):
    """A small mean-centred model of ``manifold`` in R³ (rank 3, 64 × 2), trained once per test run on CPU."""

    def build(path: Path) -> None:
        data = manifold.sample(n, generator=torch.Generator().manual_seed(0))
        cfg = TrainConfig(steps=steps, batch_size=256, rank=3, hidden=64, depth=2, emb_dim=64, sigma_min=0.01,
                          sigma_max=2.0, val_points=400, precision="fp32",  # fixed, not measured: the same model on
                          # every machine (bf16 was 5x slower here: 27 s against 5.4 s for the sphere)
                          **FIXTURE_RECIPE)
        result = train(data, cfg, manifold=manifold, out=path, progress=False, device="cpu")
        assert result.validation["tangent_error"] < max_error, result.validation

    return built_once(tmp_path_factory, f"{name}.lmm", build)


@pytest.fixture(scope="session")
def sphere_model_path(tmp_path_factory, sphere):
    """The unit sphere S² in R³: 4000 points, 1000 steps (a few seconds), tangent error < 0.2."""
    return _trained(tmp_path_factory, sphere, "sphere", 4000, 1000, 0.2)


@pytest.fixture(scope="session")
def sphere_model(sphere_model_path):
    from learned_manifold import load_model

    return load_model(sphere_model_path)


@pytest.fixture(scope="session")
def torus() -> Torus:
    return Torus(3)


@pytest.fixture(scope="session")
def torus_model_path(tmp_path_factory, torus):
    """The torus (R = 1, r = 0.4) in R³: 6000 points, 3000 steps (~20 s; 1500 leave a normal eigenvalue of 0.3),
    tangent error < 0.1."""
    return _trained(tmp_path_factory, torus, "torus", 6000, 3000, 0.1)


@pytest.fixture(scope="session")
def torus_model(torus_model_path):
    from learned_manifold import load_model

    return load_model(torus_model_path)
