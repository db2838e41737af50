"""The public type hints admit what the docstrings promise and the runtime takes (PEP 561: ``py.typed`` is shipped,
so a type checker holds users to them): NumPy points, list shapes, NumPy integers, a manifold where a field goes.

Each test reads the hint with ``typing.get_type_hints`` and asks `admits` whether a documented input is a value
of that type, and runs the input where that is cheap (the runtime took it before the hints said so).
"""

import collections.abc
import inspect
import types
import typing

import numpy as np
import pytest
import torch

from learned_manifold import LearnedDataManifold, curvature, geodesic, gradient_flow, interpolate
from learned_manifold.metrics import KNNCDC
from learned_manifold.metrics.base import check_count
from learned_manifold.types import Count, FieldLike, HasField, Points, Real, Shape, TensorOrArray


def admits(hint: object, value: object) -> bool:
    """Whether ``value`` is a value of the type ``hint`` (unions, ``None``, ``tuple[X, ...]``/``list[X]``/
    ``Sequence[X]`` element by element, other generics by their origin, runtime-checkable protocols and classes by
    ``isinstance``; a ``float`` hint admits an ``int``, as type checkers do)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(admits(arg, value) for arg in args)
    if hint is None or hint is type(None):
        return value is None
    if hint is typing.Any:
        return True
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return True
    if origin is None:
        return isinstance(value, hint)  # type: ignore[arg-type]
    if not isinstance(value, origin):
        return False
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return all(admits(args[0], item) for item in value)
    if origin is tuple:
        return len(args) == len(value) and all(admits(a, item) for a, item in zip(args, value, strict=True))
    if origin in (list, collections.abc.Sequence):
        return not isinstance(value, str) and all(admits(args[0], item) for item in value)
    return True


def hint_of(fn: object, name: str) -> object:
    """The resolved type hint of argument ``name`` of ``fn`` (decorators unwrapped); fails if it has none."""
    target = inspect.unwrap(fn)  # type: ignore[arg-type]
    assert name in target.__annotations__, f"{target.__qualname__}: argument {name!r} has no type hint"
    return typing.get_type_hints(target)[name]


@pytest.fixture(scope="module")
def sphere_field() -> KNNCDC:
    g = torch.Generator().manual_seed(0)
    data = torch.nn.functional.normalize(torch.randn(300, 3, dtype=torch.float64, generator=g), dim=-1)
    return KNNCDC(data, k=16, sigma=0.3)


def test_aliases_admit_the_documented_alternatives(sphere_field):
    M = LearnedDataManifold(sphere_field)
    assert TensorOrArray == Points  # the older name
    for value in (torch.zeros(2, 3), np.zeros((2, 3)), [[0.0, 0.0, 1.0]], [0.0, 0.0, 1], (1.0, 2.0)):
        assert admits(Points, value), value  # nested lists: `geodesic` and the flows convert them
    for value in ("abc", [["a"]], 1.0, None):
        assert not admits(Points, value), value
    for value in (0.3, 2, np.float32(0.3), np.float64(0.3), np.int64(2)):
        assert admits(Real, value), value
    for value in ("0.3", None, torch.tensor(0.3)):
        assert not admits(Real, value), value
    for value in ((3,), [1, 28, 28], torch.Size([3])):
        assert admits(Shape, value)
    assert not admits(Shape, 3)
    for value in (2, np.int64(2), np.int32(2)):
        assert admits(Count, value)
    assert not admits(Count, 2.0)
    assert isinstance(M, HasField) and not isinstance(sphere_field, HasField)
    assert admits(FieldLike, M) and admits(FieldLike, sphere_field) and not admits(FieldLike, torch.zeros(3))


def test_knncdc_data_hint_admits_numpy(sphere_field):
    hint = hint_of(KNNCDC.__init__, "data")
    array = sphere_field.data.numpy()
    assert admits(hint, array) and admits(hint, sphere_field.data)
    from_numpy = KNNCDC(array, k=16, sigma=0.3)  # converted by torch.as_tensor, as documented
    x = sphere_field.data[:4]
    torch.testing.assert_close(from_numpy.factor(x), sphere_field.factor(x), rtol=0, atol=0)


def test_manifold_data_shape_hint_admits_a_list(sphere_field):
    hint = hint_of(LearnedDataManifold.__init__, "data_shape")
    for value in ([3], (3,), torch.Size([3]), None):
        assert admits(hint, value), value
    assert LearnedDataManifold(sphere_field, data_shape=[3]).data_shape == (3,)


def test_check_count_hint_admits_numpy_integers():
    assert admits(hint_of(check_count, "value"), np.int64(2))
    count = check_count(np.int64(2), "k")
    assert count == 2 and type(count) is int


# -- The path solvers and curvature: NumPy points and a manifold (or any object with a ``.field``) are admitted.


def test_geodesic_hints_admit_numpy_points_and_a_manifold(sphere_field):
    M = LearnedDataManifold(sphere_field)
    for name in ("x0", "x1"):
        hint = hint_of(geodesic, name)
        assert admits(hint, np.zeros((1, 3))) and admits(hint, torch.zeros(1, 3)), name
    hint = hint_of(geodesic, "field_or_manifold")
    assert admits(hint, M) and admits(hint, sphere_field)


@pytest.mark.parametrize("flow, points", [(gradient_flow, ("x0",)), (interpolate, ("x0", "x1"))])
def test_flow_hints_admit_numpy_points_and_a_manifold(sphere_field, flow, points):
    M = LearnedDataManifold(sphere_field)
    for name in points:
        hint = hint_of(flow, name)
        assert admits(hint, np.zeros((1, 3))) and admits(hint, torch.zeros(1, 3)), name
    hint = hint_of(flow, "manifold")
    assert admits(hint, M) and admits(hint, sphere_field)


def test_curvature_hints_admit_a_manifold_and_numpy_integers(sphere_field):
    M = LearnedDataManifold(sphere_field)
    field_hint = hint_of(curvature, "field")
    assert admits(field_hint, M) and admits(field_hint, sphere_field)
    dim_hint = hint_of(curvature, "tangent_dim")
    for value in (2, np.int64(2), None):
        assert admits(dim_hint, value), value


# -- Counts are `Count` (NumPy integers), real options `Real` (np.float32), points `Points` (nested lists) in the
#    public signatures, as README "Type checking" says; each call below runs with those inputs.


def test_public_count_real_and_points_hints(sphere_field):
    hints = {
        KNNCDC.__init__: {"k": Count, "chunk_size": Count | None, "sigma": Real | torch.Tensor, "delta": Real},
        KNNCDC.neighbour_graph: {"k": Count},
        LearnedDataManifold.__init__: {"tangent_dim": Count | None, "landing_steps": Count, "sigma": Real | None,
                                       "delta": Real, "landing_tol": Real},
        geodesic: {"x0": Points, "x1": Points, "n_points": Count | None, "steps": Count, "tangent_dim": Count | None,
                   "lr": Real | None, "tol": Real | None, "verify_tol": Real | None, "delta": Real | None},
    }
    for fn, expected in hints.items():
        for name, hint in expected.items():
            assert hint_of(fn, name) == hint, (fn.__qualname__, name)  # (knn spells the aliases out: metrics/)
    for flow, names in ((gradient_flow, ("x0",)), (interpolate, ("x0", "x1"))):
        for name in names:
            assert admits(hint_of(flow, name), [[1.0, 0.0, 0.0]]), (flow.__name__, name)


def test_public_calls_with_numpy_scalars_and_lists_run(sphere_field):
    field = KNNCDC(sphere_field.data, k=np.int64(16), sigma=np.float32(0.3), chunk_size=np.int32(64))
    assert (field.k, field.sigma, field.chunk_size) == (16, pytest.approx(0.3), 64)
    M = LearnedDataManifold(field, tangent_dim=np.int64(2), landing_steps=np.int64(5), landing_tol=np.float32(1e-3))
    assert (M.tangent_dim, M.landing_steps) == (2, 5) and type(M.tangent_dim) is int
    res = geodesic(M, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]], n_points=np.int64(8), steps=np.int64(5),
                   lr=np.float32(1.0), tol=np.float32(1e-4))
    assert res.path.shape == (1, 8, 3)
