"""Runtime families of the reliability suite for `LearnedDataManifold` itself (see `benchmarks.reliability_cases`
for the categories): its construction, and its geoopt primitives and geometry queries; with the manifolds the other
runtime families (`benchmarks.reliability_runtime`) draw from.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import strategies as st

from learned_manifold import LearnedDataManifold
from learned_manifold.metrics import KNNCDC, EuclideanMetric

from .reliability_cases import (
    COUNTS,
    EITHER,
    INVALID,
    NUMBERS,
    VALID,
    Context,
    Outcome,
    classify,
    close,
    combine,
    count_expect,
    draw_points,
    finite_rows,
    number_expect,
    sphere_points,
)

__all__ = ["KINDS", "construction", "manifold", "methods"]

KINDS = ("learned δ=0", "learned δ=0.01", "knn", "euclidean")


def manifold(ctx: Context, kind: str) -> LearnedDataManifold:
    if kind == "learned δ=0":
        return LearnedDataManifold(ctx.sphere_model)
    if kind == "learned δ=0.01":
        return LearnedDataManifold(ctx.sphere_model, delta=0.01)
    if kind == "knn":
        return LearnedDataManifold(KNNCDC(ctx.sphere_data, k=16, sigma=0.2, delta=0.01))
    return LearnedDataManifold(EuclideanMetric(3))


# ---------------------------------------------------------------------------------------------------------
# LearnedDataManifold construction

SHAPES = [(3,), (1, 3), (3, 1), None, (2,), (4,), (), (0,), "3", (3.0,), (-3,), [3]]


def construction(draw, ctx: Context) -> Outcome:
    """One hostile keyword of `LearnedDataManifold` on a model, a k-NN field or the Euclidean field."""
    source = draw(st.sampled_from(["model", "knn", "euclidean"]), label="source")
    arg = draw(st.sampled_from(["sigma", "delta", "tangent_dim", "data_shape", "landing", "landing_tol",
                                "landing_steps"]), label="argument")
    if arg == "data_shape":
        value = draw(st.sampled_from(SHAPES), label="value")
        exact = isinstance(value, tuple) and all(type(v) is int for v in value)  # (3.0,) == (3,) in Python
        expect = VALID if (value is None or exact) and value in SHAPES[:4] else (
            EITHER if isinstance(value, list) else INVALID)
    elif arg == "landing":
        value = draw(st.sampled_from([True, False, 1, 0, "yes", None]), label="value")
        if not isinstance(value, bool):
            expect = INVALID
        else:
            expect = VALID if not value or source == "model" else (EITHER if source == "knn" else INVALID)
    elif arg in ("tangent_dim", "landing_steps"):
        value = draw(st.sampled_from(COUNTS), label="value")
        expect = VALID if value is None and arg == "tangent_dim" else count_expect(
            value, high=3 if arg == "tangent_dim" else None)
        if arg == "tangent_dim" and value is not None and source == "euclidean":
            expect = INVALID  # no factor, so no tangent dimension to fix: refused rather than ignored
    else:
        value = draw(st.sampled_from(NUMBERS), label="value")
        expect = number_expect(value, allow_zero=arg == "delta", optional=arg == "sigma")
        if source != "model" and arg in ("sigma", "delta"):  # a field carries its own sigma and delta
            neutral = value is None if arg == "sigma" else (value == 0 and not isinstance(value, bool)
                                                            and isinstance(value, (int, float)))
            expect = VALID if neutral else (EITHER if isinstance(value, (np.floating, torch.Tensor)) else INVALID)
    src = {"model": ctx.sphere_model, "knn": KNNCDC(ctx.sphere_data, k=16, sigma=0.2),
           "euclidean": EuclideanMetric(3)}[source]
    x = sphere_points(4, 0)

    def call():
        M = LearnedDataManifold(src, **{arg: value})
        return M, M.inner(x.reshape(4, *M.data_shape), x.reshape(4, *M.data_shape))

    def check(result):
        M, out = result
        if out.shape != (4,) or not bool(torch.isfinite(out).all()) or bool((out < 0).any()):
            return f"inner gave {out}"
        return None

    return classify(call, expect=expect, names=(arg,), what=f"LearnedDataManifold({source}, {arg}={value!r})",
                    check=check)


# ---------------------------------------------------------------------------------------------------------
# LearnedDataManifold methods

METHODS = ("projx", "proju", "egrad2rgrad", "retr", "transp", "inner", "factor", "tangent_space",
           "intrinsic_dimension", "check_point_on_manifold")


def _check_method(M, method, args, out, batch, dtype, finite, nan_row, strict):
    """What is wrong with ``out`` for ``M.method(*args)`` (``None`` if nothing)."""
    n, k = math.prod(batch), len(batch)
    if method == "check_point_on_manifold":
        ok, reason = out
        if ok is not (finite and not nan_row and tuple(args[0].shape[-1:]) == (3,)) and (strict or ok):
            return f"check_point_on_manifold said {ok} ({reason})"
        return None
    if method == "inner":
        shape = batch
    elif method in ("factor", "tangent_space", "intrinsic_dimension"):
        if method != "factor":  # these keep the points' batch axes (a single point: none); the factor flattens
            lead = out[1].shape[:-2] if method == "tangent_space" else out.shape
            if tuple(lead) != tuple(batch):
                return f"{method} returned batch {tuple(lead)} for points of batch {tuple(batch)}"
            if method == "tangent_space":
                r = out[0].shape[-1]
                out = (out[0].reshape(n, r), out[1].reshape(n, 3, r))
            else:
                out = out.reshape(n)
        tensor = out[1] if method == "tangent_space" else out
        if tensor.shape[0] != n:
            return f"{method} returned batch {tensor.shape[0]} for {n} points"
        if method == "intrinsic_dimension":
            if tensor.dtype.is_floating_point or tensor.shape != (n,):
                return f"intrinsic_dimension gave {tensor.dtype} {tuple(tensor.shape)}"
            valid = tensor[1:] if nan_row else tensor
            if strict and bool(((valid < 1) | (valid > 3)).any()):
                return f"intrinsic_dimension out of 1..3: {tensor.tolist()}"
            return None
        if finite and not finite_rows(tensor, nan_row, 1):
            return f"{method} not finite from finite input"
        if method == "tangent_space" and strict:
            values = out[0][1:] if nan_row else out[0]
            if bool((values[:, :-1] < values[:, 1:] - 1e-6).any()):
                return "eigenvalues not descending"
        return None
    else:
        shape = (*batch, 3)
    if tuple(out.shape) != tuple(shape):
        return f"{method} gave shape {tuple(out.shape)}, expected {shape}"
    if dtype is not None and out.dtype != dtype:
        return f"{method} changed dtype to {out.dtype} (expected {dtype})"
    if finite and not finite_rows(out, nan_row, k):
        return f"{method} gave NaN/inf from finite input"
    if not strict or n == 0:
        return None
    x = args[0]
    if method == "proju" and not close(M.proju(x, out), out, 1e-4):
        return "proju not idempotent"
    if method == "inner":
        swapped = M.inner(x, args[2], args[1])
        if not close(out, swapped, 1e-4):
            return "inner not symmetric"
    if method == "egrad2rgrad" and not close(M.proju(x, out), out, 1e-3):
        return "egrad2rgrad not tangent"
    if method == "retr" and not close(M.retr(x, torch.zeros_like(args[1])), M.projx(x), 1e-6):
        return "retr(x, 0) != projx(x)"
    return None


def methods(draw, ctx: Context) -> Outcome:
    """A generated call of one primitive or geometry query of `LearnedDataManifold`."""
    kind = draw(st.sampled_from(KINDS), label="manifold")
    method = draw(st.sampled_from(METHODS), label="method")
    queries = method in ("factor", "tangent_space", "intrinsic_dimension")
    px = draw_points(draw, tensors_only=not queries, name="x")
    n_vec = {"proju": 1, "egrad2rgrad": 1, "retr": 1, "transp": 2, "inner": 2}.get(method, 0)
    vecs = []
    for i in range(n_vec):
        same = draw(st.sampled_from([True, True, True, False]), label="same batch")
        vecs.append(draw_points(draw, tensors_only=True, name="yuv"[i] if method == "transp" else "uv"[i],
                                seed_offset=100 * (i + 1), batch=px.batch if same else None))
    batches = [px, *vecs]
    expect = combine(*(b.expect for b in batches))
    try:
        shapes = [b.value.shape[:-1] for b in batches]
        batch = tuple(torch.broadcast_shapes(*shapes))
    except (RuntimeError, AttributeError):
        batch = px.batch
        if expect != INVALID and n_vec:
            expect = INVALID  # batch shapes that do not broadcast
    shape_ok = True
    if method == "check_point_on_manifold" and expect == INVALID and isinstance(px.value, torch.Tensor) \
            and px.value.dtype.is_floating_point:
        expect, shape_ok = VALID, False  # a wrong shape is an answer (False, reason), not an error
    dtype = None
    if all(b.dtype is not None for b in batches):
        dtype = batches[0].dtype
        for b in batches[1:]:
            dtype = torch.promote_types(dtype, b.dtype)
    finite = all(b.finite for b in batches)
    nan_row = any(b.nan_row for b in batches)
    M = manifold(ctx, kind)
    args = [b.value for b in batches]
    if method == "transp":
        args = [px.value, *args[1:]]
        args = [args[0], args[1], args[2]]
    strict = expect == VALID and finite and not nan_row and shape_ok

    def call():
        if method == "check_point_on_manifold":
            return M.check_point_on_manifold(args[0], explain=True)
        return getattr(M, method)(*args)

    names = ("x", "u", "v", "y", "shape", "broadcast")
    what = f"{kind}.{method}({', '.join(b.label for b in batches)})"
    return classify(call, expect=expect, names=names, what=what,
                    check=lambda out: _check_method(M, method, args, out, batch, dtype, finite, nan_row, strict))
