"""`KNNCDC`'s settings set after construction (`metrics.knn_settings`): taken and converted as the constructor takes
them, or refused naming the setting, so a later query never meets a setting the constructor would not have made."""

import math
import re

import numpy as np
import pytest
import torch

from learned_manifold import LearnedDataManifold
from learned_manifold.metrics.knn import KNNCDC

F64 = torch.float64


def noisy_circle(n: int = 60) -> torch.Tensor:
    t = torch.arange(n, dtype=F64) * (2 * math.pi / n)
    return torch.stack([t.cos(), t.sin(), 0.05 * (3 * t).sin()], 1)


QUERIES = torch.tensor([[1.1, 0.1, 0.0], [0.0, -0.9, 0.02], [-0.7, 0.7, 0.0]], dtype=F64)


@pytest.mark.parametrize(("name", "value", "plain"), [
    ("k", np.int64(8), 8), ("k", torch.tensor(8), 8), ("sigma", np.float32(0.25), float(np.float32(0.25))),
    ("delta", np.float64(1e-2), 1e-2), ("chunk_size", np.int32(7), 7), ("chunk_size", None, 60),
    ("centred", np.bool_(False), False),
])
def test_a_setting_assigned_later_is_converted_and_answers_as_the_constructors(name, value, plain):
    """``field.k = np.int64(8)`` made the next query fail inside the search (``"bitwise_or_cpu" not implemented for
    'Float'``, tester C s37): the constructor converted a NumPy ``k``, the assignment did not."""
    field = KNNCDC(noisy_circle(), k=5, sigma=0.2, chunk_size=13)
    setattr(field, name, value)
    assert getattr(field, name) == plain and type(getattr(field, name)) is type(plain)
    fresh = KNNCDC(noisy_circle(), **({"k": 5, "sigma": 0.2, "chunk_size": 13} | {name: value}))
    torch.testing.assert_close(field.factor(QUERIES), fresh.factor(QUERIES), rtol=0, atol=0)
    torch.testing.assert_close(field.apply(QUERIES, QUERIES), fresh.apply(QUERIES, QUERIES), rtol=0, atol=0)
    torch.testing.assert_close(field.neighbours(QUERIES)[1], fresh.neighbours(QUERIES)[1], rtol=0, atol=0)


@pytest.mark.parametrize(("name", "value", "error", "message"), [
    ("k", 61, ValueError, "k must lie in 1..60, got 61"),
    ("k", 0, ValueError, "k must lie in 1..60, got 0"),
    ("k", 1, ValueError, "k must be at least 2 for the centred field"),
    ("k", 8.0, TypeError, "k must be an integer, got float"),
    ("k", np.bool_(True), TypeError, "k must be an integer, got bool"),
    ("sigma", 0.0, ValueError, "sigma must be a finite number > 0, got 0.0"),
    ("sigma", float("nan"), ValueError, "sigma must be a finite number > 0, got nan"),
    ("sigma", "0.2", TypeError, "sigma must be a real number, got str"),
    ("delta", -1e-3, ValueError, "delta must be a finite number >= 0"),
    ("centred", 1, TypeError, "centred must be a bool (True or False), got int"),
    ("centred", np.int64(1), TypeError, "centred must be a bool (True or False), got numpy.int64"),
    ("chunk_size", 0, ValueError, "chunk_size must lie in >= 1, got 0"),
])
def test_a_setting_the_constructor_refuses_is_refused_by_name_and_left_as_it_was(name, value, error, message):
    field = KNNCDC(noisy_circle(), k=5, sigma=0.2)
    before = field.factor(QUERIES)
    with pytest.raises(error, match=re.escape(message)):
        setattr(field, name, value)
    assert (field.k, field.sigma, field.delta, field.centred) == (5, 0.2, 0.0, True)
    torch.testing.assert_close(field.factor(QUERIES), before, rtol=0, atol=0)


def test_centring_a_one_neighbour_field_is_refused_naming_k():
    """The uncentred field takes ``k = 1``; the centred one would be ``G = 0`` there, as the constructor says."""
    field = KNNCDC(noisy_circle(), k=1, sigma=0.2, centred=False)
    with pytest.raises(ValueError, match=re.escape("centred=True needs k >= 2 (the field has k = 1)")):
        field.centred = True
    field.k = 2
    field.centred = True
    assert field.centred and field.factor(QUERIES).shape == (3, 3, 2)


def test_a_numpy_bandwidth_set_between_queries_is_seen_by_the_manifold():
    """A NumPy float32 ``sigma`` (what ``np.median`` of float32 data gives) is stored as a float, a setting the
    manifold's factor cache reads: the next query answers for the new bandwidth (tester C s37, problem 7)."""
    data = noisy_circle(200)
    manifold = LearnedDataManifold(KNNCDC(data, k=16, sigma=0.1), tangent_dim=1)
    u = torch.tensor([[0.0, 1.0, 0.0]], dtype=F64).expand(3, 3)
    manifold.egrad2rgrad(QUERIES, u)
    manifold.field.sigma = np.float32(0.3)
    fresh = LearnedDataManifold(KNNCDC(data, k=16, sigma=float(np.float32(0.3))), tangent_dim=1)
    torch.testing.assert_close(manifold.egrad2rgrad(QUERIES, u), fresh.egrad2rgrad(QUERIES, u), rtol=0, atol=0)


def test_a_tensor_bandwidth_is_kept_and_the_field_is_differentiable_in_it():
    """``field.sigma = torch.tensor(0.3, requires_grad=True)`` was kept before s37 (gradients flowed to it) and
    refused by the first checked assignment (``sigma must be a real number, got Tensor``, reviewer s37 finding 3).
    The tensor is kept as it is, in the constructor and by assignment; the answers are the float bandwidth's, and
    ``d/dsigma`` is the central difference of the float fields'."""
    data = noisy_circle(80)
    sigma = torch.tensor(0.3, dtype=F64, requires_grad=True)
    assigned, built = KNNCDC(data, k=8, sigma=0.2, delta=0.05), KNNCDC(data, k=8, sigma=sigma, delta=0.05)
    assigned.sigma = sigma
    assert assigned.sigma is sigma and built.sigma is sigma
    plain = KNNCDC(data, k=8, sigma=0.3, delta=0.05)
    for name in ("factor", "apply", "metric", "project"):
        def answer(field: KNNCDC, name: str = name) -> torch.Tensor:
            return getattr(field, name)(*((QUERIES,) if name in ("factor", "project") else (QUERIES, QUERIES)))

        out = answer(assigned)
        torch.testing.assert_close(out, answer(plain))
        torch.testing.assert_close(answer(built), out, rtol=0, atol=0)
        (grad,) = torch.autograd.grad(out.sum(), sigma)
        h = 1e-6
        numeric = (answer(KNNCDC(data, k=8, sigma=0.3 + h, delta=0.05)).sum()
                   - answer(KNNCDC(data, k=8, sigma=0.3 - h, delta=0.05)).sum()) / (2 * h)
        assert grad.abs() > 1e-3, name  # (a bandwidth every answer depends on)
        torch.testing.assert_close(grad, numeric, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize(("name", "value", "error", "message"), [
    ("sigma", torch.tensor([0.3]), TypeError, "sigma must be a real number or a 0-d floating tensor, got a tensor "
                                              "of shape (1,) and dtype torch.float32"),
    ("sigma", torch.tensor(1), TypeError, "got a tensor of shape () and dtype torch.int64"),
    ("sigma", torch.tensor(0.0), ValueError, "sigma must be a finite number > 0, got 0.0"),
    ("sigma", torch.tensor(-0.3, requires_grad=True), ValueError, "sigma must be a finite number > 0, got -0.3"),
    ("sigma", torch.tensor(float("inf")), ValueError, "sigma must be a finite number > 0, got inf"),
    ("delta", torch.tensor(0.1), TypeError, "delta must be a real number, got Tensor"),
])
def test_a_tensor_setting_that_is_no_finite_bandwidth_is_refused_by_name(name, value, error, message):
    """Only ``sigma`` takes a tensor, a 0-d floating one of a finite value > 0 (checked once, where it is set);
    ``delta`` enters the low-rank algebra as a float (`geometry.lowrank_apply`), which refuses a tensor."""
    with pytest.raises(error, match=re.escape(message)):
        KNNCDC(noisy_circle(), k=5, **({"sigma": 0.2} | {name: value}))
    field = KNNCDC(noisy_circle(), k=5, sigma=0.2)
    with pytest.raises(error, match=re.escape(message)):
        setattr(field, name, value)
    assert (field.sigma, field.delta) == (0.2, 0.0)


def test_an_in_place_change_of_a_tensor_bandwidth_is_seen_by_the_manifold():
    """The manifold's factor cache reads a tensor ``sigma`` as an own tensor (identity and version counter): an
    optimiser step on it is a new field state, answered for the new bandwidth."""
    data = noisy_circle(200)
    sigma = torch.nn.Parameter(torch.tensor(0.1, dtype=F64))
    manifold = LearnedDataManifold(KNNCDC(data, k=16, sigma=sigma), tangent_dim=1)
    u = torch.tensor([[0.0, 1.0, 0.0]], dtype=F64).expand(3, 3)
    before = manifold.egrad2rgrad(QUERIES, u)
    sigma.grad = torch.tensor(-100.0, dtype=F64)
    torch.optim.SGD([sigma], lr=1e-3).step()  # σ: 0.1 → 0.2
    fresh = LearnedDataManifold(KNNCDC(data, k=16, sigma=0.2), tangent_dim=1)
    after = manifold.egrad2rgrad(QUERIES, u)
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(after, fresh.egrad2rgrad(QUERIES, u))


def test_landing_reads_a_learned_bandwidth_without_touching_its_graph():
    """`landing_scale.field_sigma` read ``float(field.sigma)`` of a tensor that requires grad: torch's "Converting a
    tensor with requires_grad=True to a scalar" warning (an error under this suite's filters) at every landing."""
    from learned_manifold import LearnedDataManifold
    from learned_manifold.landing_scale import field_sigma

    field = KNNCDC(noisy_circle(), k=8, sigma=torch.nn.Parameter(torch.tensor(0.2, dtype=F64)))
    assert field_sigma(field) == pytest.approx(0.2)
    landed = LearnedDataManifold(field, landing=True, tangent_dim=1).projx(QUERIES)
    assert torch.isfinite(landed).all() and (landed - QUERIES).norm(dim=-1).max() < 0.2
