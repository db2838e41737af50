"""Detecting ``torch.func`` transforms, for the functions that cannot run inside them (`refuse_transforms`: the path
functions `geodesics.geodesic`, `flows.gradient_flow`, `flows.interpolate`, `curvature.curvature`) or that would
give a silently wrong derivative there (`reverse_wrapped`: `landing.land`, computed under ``no_grad``, which
``torch.func.grad`` turns into a zero gradient while plain autograd refuses), and the other probes of the library's
transform-aware code: `forward_mode` and `vmapped` (the factor cache, `manifold_cache`), `differentiating` (the score
fields' choice of layer norm, `metrics.score`) and `unwrapped` (the CG stopping test, `metrics.conjugate_gradients`).

The private ``torch._C._functorch`` names (present from torch 2.0 to at least 2.13) and ``forward_ad``'s private
``_current_level`` are read here only, with ``getattr``: without them no transform is seen and nothing is refused,
and `differentiating` counts every active transform.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.autograd import forward_ad

__all__ = ["differentiating", "forward_mode", "refuse_transforms", "reverse_wrapped", "transform_active",
           "unwrapped", "vmapped"]

_functorch = getattr(torch._C, "_functorch", None)
_is_wrapped = getattr(_functorch, "is_functorch_wrapped_tensor", None)
_unwrap = getattr(_functorch, "get_unwrapped", None)


def _layers(t: Tensor) -> Iterator[Tensor]:
    """``t``, then the tensor under each of its ``torch.func`` wrappers in turn (``vmap``'s batched tensors,
    ``grad``'s and ``jvp``'s wrappers), outermost first, down to the plain tensor (the last one)."""
    while _is_wrapped is not None and _unwrap is not None and _is_wrapped(t):
        yield t
        t = _unwrap(t)
    yield t


def unwrapped(t: Tensor) -> Tensor:
    """``t`` under every ``torch.func`` wrapper: a plain tensor holding the values of every vmapped copy (a batched
    ``(D,)`` row under ``vmap`` over ``n`` rows gives the ``(n, D)`` tensor), for a test, a message or
    ``requires_grad`` only (no derivatives flow through it). Without the private names, ``t`` itself."""
    *_, plain = _layers(t)
    return plain


def vmapped(t: Tensor) -> bool:
    """Whether ``t`` is batched by ``torch.func.vmap`` at any level (under ``grad``/``jvp`` wrappers too): the
    points of a manifold method called inside ``vmap``. Vectors vmapped at fixed points leave the points unbatched.
    Without the private names, ``False``."""
    batched = getattr(_functorch, "is_batchedtensor", None)
    return batched is not None and any(batched(layer) for layer in _layers(t))


def _dual_level_open() -> bool:
    """Whether a ``torch.autograd.forward_ad.dual_level`` is open."""
    return getattr(forward_ad, "_current_level", -1) >= 0


def forward_mode(xf: Tensor) -> bool:
    """Whether a query at ``xf`` runs under forward-mode AD or another ``torch.func`` transform: a transform active
    in this thread (``jvp``, ``jacfwd``, ``vmap``, ...: `transform_active`), a functorch wrapped ``xf``, a
    ``forward_ad`` dual level open or a dual ``xf``. Without the private names only the public ``unpack_dual``
    decides. The factor cache stays out of all of these (`manifold_cache.cache_bypassed`)."""
    if transform_active() or (_is_wrapped is not None and _is_wrapped(xf)):
        return True
    return _dual_level_open() or forward_ad.unpack_dual(xf).tangent is not None


def differentiating() -> bool:
    """Whether a transform that differentiates is active in this thread: ``torch.func.grad``/``jacrev``/``vjp``
    (a ``Grad`` level on functorch's interpreter stack) or ``jvp``/``jacfwd`` (a ``Jvp`` level), at any depth, or a
    ``forward_ad`` dual level is open. ``vmap`` levels alone do not count: they batch and derive nothing (plain
    autograd through ``vmap`` is seen by the caller, on `unwrapped` tensors). Without the interpreter stack's private
    names, any active transform counts."""
    stack = getattr(_functorch, "get_interpreter_stack", None)
    kinds = getattr(_functorch, "TransformType", None)
    if stack is None or kinds is None:
        return transform_active() or _dual_level_open()
    return any(level.key() in (kinds.Grad, kinds.Jvp) for level in stack() or []) or _dual_level_open()


def transform_active() -> bool:
    """Whether a ``torch.func`` transform (``grad``, ``jacrev``, ``vjp``, ``jvp``, ``jacfwd``, ``vmap``, ...) is
    active in this thread: its interpreter stack is not empty."""
    peek = getattr(_functorch, "peek_interpreter_stack", None)
    return peek is not None and peek() is not None


def refuse_transforms(name: str) -> None:
    """One clear ``RuntimeError`` naming ``name`` when called inside a ``torch.func`` transform (`transform_active`).

    The path functions detach their results (under plain autograd they return plain tensors), solve with
    data-dependent control flow and NumPy graph searches, and call ``requires_grad_`` on their own iterates, which
    every transform refuses with its own torch-internal message; they are refused at the entry, before any work.

    Raises:
        RuntimeError: a transform is active.
    """
    if transform_active():
        raise RuntimeError(f"{name} cannot run inside a torch.func transform (grad, jacrev, vjp, jvp, jacfwd, vmap): "
                           f"its results are not differentiable (under plain autograd they are returned detached) "
                           f"and its solver cannot be batched; call {name} outside the transform (a path's energy "
                           f"and length are differentiable in the path: path_energies.path_energy)")


def reverse_wrapped(t: Tensor) -> bool:
    """Whether ``t`` is wrapped by a reverse-mode ``torch.func`` transform (``grad``, ``jacrev``, ``vjp``) at any
    level (under ``vmap``/``jvp`` wrappers too), i.e. depends on an input that such a transform differentiates:
    its wrapper at that level requires grad. Every result computed inside ``grad`` is wrapped at its level, those
    computed from constants only (captured from outside the transform) without requiring grad."""
    tracking = getattr(_functorch, "is_gradtrackingtensor", None)
    level_of = getattr(_functorch, "maybe_get_level", None)
    stack = getattr(_functorch, "get_interpreter_stack", None)
    kinds = getattr(_functorch, "TransformType", None)
    if None in (tracking, level_of, stack, kinds):
        return False
    grad_levels = {i.level() for i in (stack() or []) if i.key() == kinds.Grad}
    # jvp wraps in the same tensor type at a Jvp level; under grad every result is wrapped at its level, and the
    # wrapper requires grad where it depends on the differentiated input (autograd runs on that level)
    return any(tracking(layer) and level_of(layer) in grad_levels and layer.requires_grad for layer in _layers(t))
