"""The one-entry factor cache of `LearnedDataManifold` (SPEC §5): what an entry holds and when it may be used.

An entry is a dict: ``point`` (a private copy of the flat points ``(B, D)``), ``A`` (the factor ``(B, D, r)``),
``pairs`` (its `Eigenpairs`, or ``None`` until asked for), ``checked`` (whether the manifold has checked those
eigenvalues, at most once per decomposition: `manifold_checks.check_decomposition`), ``settings`` (`field_settings`),
``tensors`` (weak references to the field's tensors, `field_tensors`) and ``versions`` (their version counters,
``None`` when one is an inference tensor). A query hits only when its points equal the copy (``torch.equal``) and
the field is in the same state (`same_field_state`): the same settings, and the same tensors, none changed in place
since.

What the key reads of a field, and so what a field's factor may depend on for the cache to stay right:

* its parameters and buffers, and those of its submodules (identity and version counter: ``load_state_dict``,
  an optimiser step on a network or a k-NN field's new data are seen; a write through ``tensor.data``, which
  bypasses the version counter, is not);
* the field's own tensor attributes (``self.w = tensor``: identity and version counter, as for buffers);
* the field's own plain attributes: numbers, strings, bools, ``None``, dtypes and devices (``sigma``, a k-NN
  field's ``k`` and ``centred``, a `LearnedCDC`'s ``precision``, a custom field's ``self.angle = 0.3``);
* the dtype and device of the field's first parameter or buffer (``M.double()`` casts a network).

State held anywhere else (a list or dict attribute, a plain attribute of a submodule, a global, a closure) is
not seen: keep such state in buffers, or call `LearnedDataManifold.clear_cache` after changing it.

Version counters are per process: a field whose tensors are in shared memory (``share_memory()``, hogwild-style
``torch.multiprocessing``) and edited in place by *another* process keeps its versions here, so the cache does not
see the edit (``field.factor`` does). Call `LearnedDataManifold.clear_cache` after such edits, in each process that
queries the manifold, or query with grad enabled (which never reads the cache).

The cache is used only where it cannot change an answer (`cache_bypassed`): not with grad enabled (the factor's
graph is needed), nor under forward-mode AD (a ``torch.func`` transform such as ``jvp`` or ``jacfwd``, which ignore
an outer ``no_grad``, or a ``torch.autograd.forward_ad`` dual level): a cached factor has no tangent.

The weak references make an entry unpicklable; `LearnedDataManifold.__getstate__` leaves the cache out (it is
derived state, recomputed at the next query).
"""

from __future__ import annotations

import itertools
import weakref

import torch
from torch import Tensor, nn
from torch.autograd import forward_ad

from .geometry import Eigenpairs

__all__ = ["cache_bypassed", "cache_entry", "cache_hit", "field_settings", "field_tensors", "forward_mode",
           "same_field_state", "vmapped"]

_PLAIN = (bool, int, float, complex, str, type(None), torch.dtype, torch.device)


def field_tensors(field: nn.Module) -> list[Tensor]:
    """The tensors whose identity and version the key reads: every parameter and buffer of ``field`` (and of its
    submodules), then the field's own plain tensor attributes (neither parameters nor buffers)."""
    own = [value for value in vars(field).values() if isinstance(value, Tensor)]
    return [*field.parameters(), *field.buffers(), *own]


def field_settings(field: nn.Module) -> tuple:
    """The field's own plain attributes (name, value) in definition order (numbers, strings, bools, ``None``,
    dtypes, devices: ``sigma``, ``k``, ``centred``, ``precision``, ...), then the dtype and device of its first
    parameter or buffer (``None`` without any)."""
    settings = tuple((name, value) for name, value in vars(field).items() if isinstance(value, _PLAIN))
    weights = next(itertools.chain(field.parameters(), field.buffers()), None)
    return (*settings, None if weights is None else (weights.dtype, weights.device))


def forward_mode(xf: Tensor) -> bool:
    """Whether a query at ``xf`` runs under forward-mode AD or another ``torch.func`` transform: a transform active
    in this thread (``jvp``, ``jacfwd``, ``vmap``, ...: ``torch._C._functorch``'s interpreter stack), a functorch
    wrapped ``xf``, a ``forward_ad`` dual level open or a dual ``xf``. Private torch names are read with
    ``getattr`` (present from torch 2.0 to at least 2.13); without them only the public ``unpack_dual`` decides."""
    functorch = getattr(torch._C, "_functorch", None)
    peek = getattr(functorch, "peek_interpreter_stack", None)
    wrapped = getattr(functorch, "is_functorch_wrapped_tensor", None)
    if (peek is not None and peek() is not None) or (wrapped is not None and wrapped(xf)):
        return True
    return getattr(forward_ad, "_current_level", -1) >= 0 or forward_ad.unpack_dual(xf).tangent is not None


def vmapped(t: Tensor) -> bool:
    """Whether ``t`` is batched by ``torch.func.vmap`` at any level (under ``grad``/``jvp`` wrappers too): the
    points of a manifold method called inside ``vmap``. Vectors vmapped at fixed points leave the points unbatched.
    Reads the private ``torch._C._functorch`` names with ``getattr`` (as `forward_mode`); without them, ``False``."""
    functorch = getattr(torch._C, "_functorch", None)
    wrapped = getattr(functorch, "is_functorch_wrapped_tensor", None)
    batched = getattr(functorch, "is_batchedtensor", None)
    unwrap = getattr(functorch, "get_unwrapped", None)
    if wrapped is None or batched is None or unwrap is None:
        return False
    while wrapped(t):
        if batched(t):
            return True
        t = unwrap(t)
    return False


def cache_bypassed(xf: Tensor) -> bool:
    """Whether a query at the flat points ``xf`` ``(B, D)`` must compute the factor afresh and leave the cache alone:
    with grad enabled, or under forward-mode AD (`forward_mode`): a cached factor has neither graph nor tangent."""
    return torch.is_grad_enabled() or forward_mode(xf)


def cache_entry(field: nn.Module, xf: Tensor, A: Tensor, pairs: Eigenpairs | None = None) -> dict:
    """A cache entry for the flat points ``xf`` ``(B, D)`` with factor ``A`` ``(B, D, r)`` (and its eigenpairs,
    where known): a private copy of the point, the field's settings and the state of its tensors."""
    tensors = field_tensors(field)
    versions = None if any(t.is_inference() for t in tensors) else [t._version for t in tensors]
    return {"point": xf.detach().clone(), "settings": field_settings(field), "A": A, "pairs": pairs, "checked": False,
            "tensors": [weakref.ref(t) for t in tensors], "versions": versions}


def same_field_state(field: nn.Module, entry: dict) -> bool:
    """Whether ``field`` is as it was when ``entry`` was made: the same settings, and the same tensors (identity: a
    replaced tensor, e.g. `KNNCDC.load_state_dict`'s new data, misses) none of which has changed in place since
    (its version counter, which ``copy_`` and optimiser steps bump). Inference tensors have no version counter: a
    field holding one never hits."""
    if entry["settings"] != field_settings(field) or entry["versions"] is None:
        return False
    tensors = field_tensors(field)
    if len(tensors) != len(entry["tensors"]):
        return False
    return all(ref() is t and not t.is_inference() and t._version == version
               for t, ref, version in zip(tensors, entry["tensors"], entry["versions"], strict=True))


def cache_hit(field: nn.Module, entry: dict | None, xf: Tensor) -> bool:
    """Whether ``entry`` answers a query at the flat points ``xf`` ``(B, D)``: equal values (``torch.equal``, exact
    and blind to identity and version counters, which ``x.data.add_()`` does not bump), the same shape, dtype and
    device, and a field in the same state (`same_field_state`)."""
    if entry is None:
        return False
    point = entry["point"]
    return (point.shape == xf.shape and point.dtype == xf.dtype and point.device == xf.device
            and same_field_state(field, entry) and torch.equal(point, xf))
