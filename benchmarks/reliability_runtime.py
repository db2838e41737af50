"""Runtime families of the reliability suite (see `benchmarks.reliability_cases` for the categories).

Each family draws one hostile case for one group of public entry points and returns its `Outcome`:
manifold construction, the geoopt primitives and geometry queries of `LearnedDataManifold`, the Riemannian
optimisers, flows and geodesics, model files, the co-metric fields and `diagnostics.self_consistency`. The two
families of `LearnedDataManifold` itself, and the manifolds the others draw from, are in
`benchmarks.reliability_manifold`.
"""

from __future__ import annotations

import os
import tempfile

import torch
from hypothesis import strategies as st

from learned_manifold import RiemannianAdam, RiemannianSGD, geodesic, gradient_flow, interpolate
from learned_manifold.diagnostics import self_consistency
from learned_manifold.metrics import KNNCDC, EuclideanMetric, LearnedCDC
from learned_manifold.model_file import load_model, read_metadata

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
    number_expect,
    sphere_points,
)
from .reliability_manifold import KINDS, construction, manifold, methods

__all__ = ["FAMILIES"]


# ---------------------------------------------------------------------------------------------------------
# optimisers


def optimisers(draw, ctx: Context) -> Outcome:
    """A few steps of `RiemannianSGD`/`RiemannianAdam` with generated settings; descent for small steps."""
    kind = draw(st.sampled_from(KINDS), label="manifold")
    name = draw(st.sampled_from(["sgd", "adam"]), label="optimiser")
    lr = draw(st.sampled_from([1e-3, 1e-2, 0.1, 0.0, -0.1, float("nan"), float("inf"), 1e30, "0.1"]), label="lr")
    stabilize = draw(st.sampled_from([None, None, 1, 2, 0, -1, 1.5]), label="stabilize")
    momentum = draw(st.sampled_from([0.0, 0.0, 0.5, 0.9, -0.5, 1.5, float("nan")]), label="momentum")
    expect = combine(number_expect(lr, allow_zero=True, huge=1.0),
                     count_expect(stabilize) if stabilize is not None else VALID,
                     number_expect(momentum, allow_zero=True, huge=0.99) if name == "sgd" else VALID)
    M = manifold(ctx, kind)
    target = sphere_points(4, 7)
    p0 = sphere_points(4, 3)
    bad_arg = "lr" if number_expect(lr, allow_zero=True, huge=1.0) == INVALID else (
        "momentum" if name == "sgd" and number_expect(momentum, allow_zero=True) == INVALID else "stabilize")

    def objective(p):
        return 0.5 * (p - target).pow(2).sum()

    def call():
        p = p0.clone().requires_grad_(True)
        if name == "sgd":
            opt = RiemannianSGD([p], manifold=M, lr=lr, momentum=momentum, stabilize=stabilize)
        else:
            opt = RiemannianAdam([p], manifold=M, lr=lr, stabilize=stabilize)
        for _ in range(3):
            opt.zero_grad()
            objective(p).backward()
            opt.step()
        return p.detach()

    def check(p):
        if p.shape != p0.shape or p.dtype != p0.dtype or not bool(torch.isfinite(p).all()):
            return f"parameters became {p}"
        if isinstance(lr, float) and 0 < lr <= 0.01 and objective(p) > objective(p0) + 1e-6:
            return f"3 steps with lr={lr} raised the objective {objective(p0):.4g} -> {objective(p):.4g}"
        return None

    # a huge lr is a legitimate setting whose iterates leave the data's range: the field's overflow error (naming
    # the points and the range) is the right outcome, as is a named refusal of any bad option
    names = (bad_arg, "lr", "learning rate", "momentum", "stabilize", "outside the data's range")
    return classify(call, expect=expect, names=names, what=f"{name} on {kind}: lr={lr!r} momentum={momentum!r} "
                    f"stabilize={stabilize!r}", check=check)


# ---------------------------------------------------------------------------------------------------------
# flows and geodesics


def paths(draw, ctx: Context) -> Outcome:
    """`interpolate`, `gradient_flow` or `geodesic` with generated settings and end points."""
    entry = draw(st.sampled_from(["interpolate", "gradient_flow", "geodesic"]), label="entry")
    kind = draw(st.sampled_from(["euclidean", "knn", "learned δ=0.01"]), label="field")
    n_points = draw(st.sampled_from([2, 5, 9, 1, 0, -3, 2.5, "5", True]), label="n_points")
    x0 = draw_points(draw, tensors_only=True, name="x0", batch=draw(st.sampled_from([(0,), (1,), (2,)])))
    x1 = draw_points(draw, tensors_only=True, name="x1", seed_offset=50, batch=x0.batch)
    x1_expect = VALID if entry == "gradient_flow" else x1.expect  # gradient_flow takes no x1
    expect = combine(count_expect(n_points, low=2), x0.expect, x1_expect)
    kwargs: dict = {"n_points": n_points}
    bad = ["n_points", "x0", "x1"]
    if entry == "geodesic":
        method = draw(st.sampled_from(["lbfgs", "adam", "bogus"]), label="method")
        steps = draw(st.sampled_from([5, 20, 0, -1, 1.5]), label="steps")
        tol = draw(st.sampled_from([None, 1e-6, 0.0, -1.0, float("nan")]), label="tol")
        kwargs.update(method=method, steps=steps, tol=tol, init="linear")
        expect = combine(expect, VALID if method != "bogus" else INVALID, count_expect(steps, low=0),
                         VALID if tol is None else number_expect(tol, allow_zero=False))
        bad += ["method", "steps", "tol"]
    else:
        method = draw(st.sampled_from(["dopri5", "euler", "rk4", "bogus"]), label="method")
        t_end = draw(st.sampled_from([1.0, 4.0, 0.0, -1.0, float("nan"), float("inf"), 1e6]), label="t_end")
        rtol = draw(st.sampled_from([1e-4, 1e-3, 0.0, -1.0, float("nan")]), label="rtol")
        kwargs.update(method=method, t_end=t_end, rtol=rtol)
        fixed = method in ("euler", "rk4")
        t_expect = number_expect(t_end, allow_zero=False, huge=100.0)
        if t_expect == EITHER and fixed:
            kwargs["step_size"] = t_end / 8  # millions of fixed steps is valid but slow: keep the case bounded
        expect = combine(expect, VALID if method != "bogus" else INVALID, t_expect,
                         number_expect(rtol, allow_zero=False))  # checked for fixed-step methods too
        bad += ["method", "t_end", "rtol", "step"]
    field = manifold(ctx, kind)
    a, b = x0.value, x1.value

    def call():
        if entry == "interpolate":
            return interpolate(field, a, b, **kwargs)
        if entry == "gradient_flow":
            target = sphere_points(1, 5)
            return gradient_flow(field, lambda x: 0.5 * (x - target.to(x)).pow(2).sum(-1), a, **kwargs)
        return geodesic(field, a, b, **kwargs)

    def check(res):
        path = res.path
        if path.shape != (x0.batch[0], n_points, 3):
            return f"path shape {tuple(path.shape)}"
        if x0.finite and (x1.finite or entry == "gradient_flow") and not bool(torch.isfinite(path).all()):
            return "path not finite"
        if path.shape[0] and not close(path[:, 0], a.to(path.dtype), 1e-5):
            return "path does not start at x0"
        if entry == "geodesic" and path.shape[0] and not close(path[:, -1], b.to(path.dtype), 1e-5):
            return "geodesic does not end at x1"
        if entry == "geodesic" and bool((res.energy < 0).any()):
            return "negative energy"
        return None

    return classify(call, expect=expect, names=tuple(bad), what=f"{entry}({kind}, {x0.label}, {x1.label}, "
                    f"{kwargs})", check=check, timeout=30.0)


# ---------------------------------------------------------------------------------------------------------
# model files


def model_files(draw, ctx: Context) -> Outcome:
    """`load_model`/`read_metadata` on mutated model files, missing paths and wrong argument types."""
    entry = draw(st.sampled_from(["load_model", "read_metadata"]), label="entry")
    fn = load_model if entry == "load_model" else read_metadata
    mode = draw(st.sampled_from(["intact", "truncate", "flip", "random", "empty", "prefix", "missing",
                                 "directory", "int"]), label="mode")
    data = ctx.model_bytes
    pos = draw(st.integers(0, len(data) - 1), label="position")
    if mode == "truncate":
        data = data[:pos]
    elif mode == "flip":
        data = data[:pos] + bytes([data[pos] ^ draw(st.integers(1, 255), label="mask")]) + data[pos + 1:]
    elif mode == "random":
        data = draw(st.binary(min_size=1, max_size=256), label="bytes")
    elif mode == "empty":
        data = b""
    elif mode == "prefix":
        data = b"\x00" * 8 + data
    # A flipped byte inside the weights is a different, well-formed model: it may load (then it must work).
    expect = VALID if mode == "intact" else (EITHER if mode == "flip" else INVALID)
    with tempfile.TemporaryDirectory() as folder:
        path: object = os.path.join(folder, "model.lmm")
        if mode not in ("missing", "directory", "int"):
            with open(path, "wb") as f:
                f.write(data)
        if mode == "directory":
            path = folder
        if mode == "int":
            path = 3

        def check(result):
            if entry == "read_metadata":
                return None if isinstance(result, dict) and "config" in result else f"metadata {result!r}"
            A = LearnedCDC(result).factor(sphere_points(4, 0))
            return None if bool(torch.isfinite(A).all()) else "loaded model gives a non-finite factor"

        return classify(lambda: fn(path), expect=expect, names=("path", "model file", str(path), "model.lmm"),
                        what=f"{entry}({mode} @ {pos})", check=check)


# ---------------------------------------------------------------------------------------------------------
# co-metric fields and diagnostics


def fields(draw, ctx: Context) -> Outcome:
    """A field's ``apply``/``metric``/``factor`` on generated inputs (or its construction); G symmetric PSD."""
    kind = draw(st.sampled_from(["knn", "euclidean", "learned", "knn-construct", "learned-construct"]),
                label="field")
    if kind.endswith("construct"):
        arg = draw(st.sampled_from(["k", "sigma", "delta"] if kind == "knn-construct" else ["sigma", "delta"]),
                   label="argument")
        value = draw(st.sampled_from(COUNTS if arg == "k" else NUMBERS), label="value")
        if arg == "k":
            expect = count_expect(value, high=ctx.sphere_data.shape[0])
        else:
            expect = number_expect(value, allow_zero=arg == "delta", optional=kind == "learned-construct"
                                   and arg == "sigma")
        kwargs = {"k": 16, "sigma": 0.2, arg: value} if kind == "knn-construct" else {arg: value}

        def build():
            f = KNNCDC(ctx.sphere_data, **kwargs) if kind == "knn-construct" else LearnedCDC(ctx.sphere_model,
                                                                                              **kwargs)
            return f.apply(sphere_points(4, 0), sphere_points(4, 1))

        return classify(build, expect=expect, names=(arg,), what=f"{kind}({arg}={value!r})",
                        check=lambda out: None if bool(torch.isfinite(out).all()) else "apply not finite")
    field = {"knn": KNNCDC(ctx.sphere_data, k=16, sigma=0.2, delta=0.05), "euclidean": EuclideanMetric(3),
             "learned": LearnedCDC(ctx.sphere_model, delta=0.05)}[kind]
    op = draw(st.sampled_from(["apply", "metric", "factor"]), label="op")
    x = draw_points(draw, tensors_only=True, name="x", batch=draw(st.sampled_from([(0,), (1,), (4,), (2, 2)])))
    w = draw_points(draw, tensors_only=True, name="w", seed_offset=9, batch=x.batch)
    expect = combine(x.expect, w.expect if op != "factor" else VALID)
    if len(x.batch) != 1:
        expect = INVALID  # fields take (B, D) batches
    n = x.batch[0] if x.batch else 0
    strict = expect == VALID and x.finite and w.finite

    def call():
        return field.factor(x.value) if op == "factor" else getattr(field, op)(x.value, w.value)

    def check(out):
        if op == "factor":
            if out.shape[:2] != (n, 3) or (x.finite and not bool(torch.isfinite(out).all())):
                return f"factor {tuple(out.shape)}"
            return None
        if out.shape != (n, 3) or out.dtype != torch.promote_types(x.value.dtype, w.value.dtype):
            return f"{op} gave {tuple(out.shape)} {out.dtype}"
        if x.finite and w.finite and not bool(torch.isfinite(out).all()):
            return f"{op} not finite from finite input"
        if strict and n:
            w2 = sphere_points(n, 99, out.dtype)
            lhs = (getattr(field, op)(x.value, w2) * w.value).sum(-1)
            rhs = (out * w2).sum(-1)
            if not close(lhs, rhs, 1e-4):
                return f"{op} not symmetric"
            if bool(((out * w.value).sum(-1) < -1e-5).any()):
                return f"{op} not positive semi-definite"
            if op == "apply" and not close(field.metric(x.value, out), w.value, 1e-3):
                return "metric(apply(w)) != w"
        return None

    return classify(call, expect=expect, names=("x", "w", "v", "shape"), what=f"{kind}.{op}({x.label}, {w.label})",
                    check=check)


def consistency(draw, ctx: Context) -> Outcome:
    """`self_consistency` with generated points, bandwidth, chunk and threshold."""
    x = draw_points(draw, tensors_only=True, name="x", batch=draw(st.sampled_from([(0,), (1,), (5,)])))
    sigma = draw(st.sampled_from([None, None, 0.1, 0.0, -0.1, float("nan"), float("inf"), "0.1"]), label="sigma")
    chunk = draw(st.sampled_from([256, 2, 0, -1, 1.5]), label="chunk")
    threshold = draw(st.sampled_from([None, 0.3, -1.0, float("nan")]), label="threshold")
    kwargs = {"sigma": sigma, "chunk": chunk}
    if threshold is not None:
        kwargs["threshold"] = threshold
    expect = combine(x.expect, INVALID if x.batch == (0,) else VALID,
                     number_expect(sigma, allow_zero=False, optional=True), count_expect(chunk),
                     VALID if threshold is None else number_expect(threshold, allow_zero=True))

    def check(report):
        values = report.tangent_disagreement
        if values.shape != (x.batch[0],) or (x.finite and not bool(torch.isfinite(values).all())):
            return f"tangent_disagreement {values}"
        return None

    return classify(lambda: self_consistency(ctx.sphere_model, x.value, **kwargs), expect=expect,
                    names=("x", "sigma", "chunk", "threshold"), what=f"self_consistency({x.label}, {kwargs})",
                    check=check)


FAMILIES = {
    "manifold construction": construction,
    "manifold methods": methods,
    "optimisers": optimisers,
    "flows and geodesics": paths,
    "model files": model_files,
    "co-metric fields": fields,
    "self_consistency": consistency,
}
