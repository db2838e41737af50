"""The one-entry factor cache of `LearnedDataManifold` (SPEC §5): what an entry holds and when it may be used.

An entry is a dict: ``point`` (a private copy of the flat points ``(B, D)``), ``A`` (the factor ``(B, D, r)``),
``pairs`` (its `Eigenpairs`, or ``None`` until asked for), ``checked`` (whether the manifold has checked those
eigenvalues: `manifold_checks.check_decomposition`, at its 1st, 2nd, 4th, 8th, … decomposition), ``settings``
(`field_settings`), ``tree`` (a weak reference to the field's `FieldTree`), ``own`` (weak references to the field's
own tensor attributes) and ``versions`` (the version counters of the tree's tensors and the own ones, ``None`` when
one is an inference tensor). A query hits only when its points equal the copy (``torch.equal``) and the field is in
the same state (`same_field_state`): the same settings, and the same tensors, none changed in place since.

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

Cost: the module tree is walked (`field_tensors`) once per field and again only after it changed: each query
compares, by identity, what the ``_parameters``, ``_buffers`` and ``_modules`` dicts of the modules found by the
last walk hold (`field_tree`; a few µs for a 53-module MLP, where walking took 0.12 ms). Every route that changes
the tree writes into one of those dicts (assignment, ``register_*``, ``del``, ``_apply``'s casts and moves, which
replace buffers, ``load_state_dict(assign=True)``, a swapped submodule), so the comparison sees it. The walk's
`FieldTree` holds those dicts (strongly: a swapped-out submodule's dicts live until the field's next query) and
weak references to what they held.

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
import operator
import weakref
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.autograd import forward_ad

from .geometry import Eigenpairs

__all__ = ["FieldKey", "FieldTree", "cache_bypassed", "cache_entry", "cache_hit", "field_key", "field_settings",
           "field_tensors", "field_tree", "forward_mode", "same_field_state", "vmapped"]

_PLAIN = (bool, int, float, complex, str, type(None), torch.dtype, torch.device)
_VERSION = operator.attrgetter("_version")


def field_tensors(field: nn.Module) -> list[Tensor]:
    """The tensors of the module tree whose identity and version the key reads: every parameter and buffer of
    ``field`` and of its submodules (a walk of the tree, 0.12 ms for a 53-module MLP: done by `field_tree` only when
    the tree changed). The field's own plain tensor attributes are read by `_own_state` on each query."""
    return [*field.parameters(), *field.buffers()]


class FieldTree:
    """What one walk of a field's module tree found (`field_tree`): the ``_parameters``, ``_buffers`` and
    ``_modules`` dicts of each module, the ids of the values they held (with weak references whose callbacks mark
    the tree stale when one of them dies, so that a new object at a dead one's address cannot pass for it), the
    positions of the tensors among those values, and the position of the first parameter or buffer
    (`field_tensors`' first; ``None`` without any)."""

    __slots__ = ("dicts", "plain", "ids", "alive", "refs", "tensors", "first", "__weakref__")

    def __init__(self, field: nn.Module):
        self.dicts = [d for m in field.modules() for d in (m._parameters, m._buffers, m._modules)]
        self.plain = all(type(d) is dict for d in self.dicts)  # (torch's own: the C-level ``dict.values`` reads them)
        values = self.current()
        self.ids = tuple(map(id, values))
        alive = self.alive = [True]

        def dead(_ref: weakref.ref) -> None:
            alive[0] = False

        self.refs = [_reference(v, dead) for v in values if v is not None]
        at = {id(v): i for i, v in enumerate(values) if isinstance(v, Tensor)}
        tensors = [at[id(t)] for t in field_tensors(field)]
        self.tensors: Callable[[tuple], tuple] = (
            operator.itemgetter(*tensors) if len(tensors) > 1 else lambda values: tuple(values[i] for i in tensors))
        self.first = tensors[0] if tensors else None

    def current(self) -> tuple:
        """The values the dicts hold now, in the walk's order."""
        if self.plain:
            return tuple(itertools.chain.from_iterable(map(dict.values, self.dicts)))
        return tuple(itertools.chain.from_iterable([d.values() for d in self.dicts]))

    def unchanged(self, values: tuple) -> bool:
        """Whether ``values`` (`current`) are the very objects the walk found, in the same places: the same ids, and
        none of the walk's objects has died (ids are unique among live objects)."""
        return self.alive[0] and tuple(map(id, values)) == self.ids


def _reference(value: object, callback: Callable[[weakref.ref], None]) -> object:
    """A weak reference to ``value`` calling ``callback`` when it dies; ``value`` itself where it takes no weak
    reference (kept alive, so its id stays its own)."""
    try:
        return weakref.ref(value, callback)
    except TypeError:
        return value


_TREES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # field -> its last FieldTree


def field_tree(field: nn.Module) -> tuple[FieldTree, tuple]:
    """The field's `FieldTree` and the values its dicts hold now: the last walk's where nothing in the tree was
    replaced, added or removed since (an identity comparison, no walk), else a new walk's (kept for the next
    query). A field that cannot be a weak dictionary key (unhashable) is walked on every query."""
    try:
        tree = _TREES.get(field)
    except TypeError:
        tree = None
    values = tree.current() if tree is not None else ()
    if tree is None or not tree.unchanged(values):
        tree = FieldTree(field)
        values = tree.current()
        try:
            _TREES[field] = tree
        except TypeError:
            pass
    return tree, values


def _own_state(field: nn.Module) -> tuple[list[tuple[str, object]], list[Tensor]]:
    """One pass over the field's own attributes: its plain ones (name, value) in definition order, and its tensor
    attributes that are neither parameters nor buffers."""
    settings, own = [], []
    for name, value in vars(field).items():
        if isinstance(value, _PLAIN):
            settings.append((name, value))
        elif isinstance(value, Tensor):
            own.append(value)
    return settings, own


def _settings(settings: list, tree: FieldTree, values: tuple) -> tuple:
    """``settings`` then the dtype and device of the first parameter or buffer (``None`` without any)."""
    first = None if tree.first is None else values[tree.first]
    return (*settings, None if first is None else (first.dtype, first.device))


def field_settings(field: nn.Module) -> tuple:
    """The field's own plain attributes (name, value) in definition order (numbers, strings, bools, ``None``,
    dtypes, devices: ``sigma``, ``k``, ``centred``, ``precision``, ...), then the dtype and device of its first
    parameter or buffer (``None`` without any)."""
    tree, values = field_tree(field)
    return _settings(_own_state(field)[0], tree, values)


def _versions(tensors: list[Tensor]) -> tuple | None:
    """The version counters of ``tensors``; ``None`` where one is an inference tensor (it has none)."""
    try:
        return tuple(map(_VERSION, tensors))
    except RuntimeError:
        return None


FieldKey = tuple[FieldTree, tuple, list[Tensor], tuple | None]


def field_key(field: nn.Module) -> FieldKey:
    """The field's state as the key reads it: its tree, settings, own tensors and every tensor's version (28 µs for
    the default MLP, 75 µs for a UNet field). A caller that looks up an entry and makes one on a miss reads it once
    and passes it to both (`cache_hit`, `cache_entry`): taken before the factor is computed, it can only make the
    entry miss later (a field changed meanwhile), never hit for a state the factor was not computed in."""
    tree, values = field_tree(field)
    settings, own = _own_state(field)
    tensors = [*tree.tensors(values), *own]
    return tree, _settings(settings, tree, values), own, _versions(tensors)


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


def cache_entry(field: nn.Module, xf: Tensor, A: Tensor, pairs: Eigenpairs | None = None, *,
                key: FieldKey | None = None) -> dict:
    """A cache entry for the flat points ``xf`` ``(B, D)`` with factor ``A`` ``(B, D, r)`` (and its eigenpairs,
    where known): a private copy of the point, the field's settings and the state of its tensors (``key``, read
    now where not given: `field_key`)."""
    tree, settings, own, versions = field_key(field) if key is None else key
    return {"point": xf.detach().clone(), "settings": settings, "A": A, "pairs": pairs, "checked": False,
            "tree": weakref.ref(tree), "own": [weakref.ref(t) for t in own], "versions": versions}


def same_field_state(field: nn.Module, entry: dict, key: FieldKey | None = None) -> bool:
    """Whether ``field`` is as it was when ``entry`` was made: the same settings, the same tensors (identity: the
    same `FieldTree`, which a replaced tensor such as `KNNCDC.load_state_dict`'s new data renews, and the same own
    tensor attributes) none of which has changed in place since (its version counter, which ``copy_`` and optimiser
    steps bump). Inference tensors have no version counter: a field holding one never hits. No walk of the module
    tree unless it changed (`field_tree`). ``key``: `field_key`, read now where not given."""
    tree, settings, own, versions = field_key(field) if key is None else key
    if versions is None or versions != entry["versions"] or entry["tree"]() is not tree:
        return False
    held = entry["own"]
    return (settings == entry["settings"] and len(own) == len(held)
            and all(map(operator.is_, own, [r() for r in held])))


def cache_hit(field: nn.Module, entry: dict | None, xf: Tensor, key: FieldKey | None = None) -> bool:
    """Whether ``entry`` answers a query at the flat points ``xf`` ``(B, D)``: equal values (``torch.equal``, exact
    and blind to identity and version counters, which ``x.data.add_()`` does not bump), the same shape, dtype and
    device, and a field in the same state (`same_field_state`, with ``key`` where given)."""
    if entry is None:
        return False
    point = entry["point"]
    return (point.shape == xf.shape and point.dtype == xf.dtype and point.device == xf.device
            and same_field_state(field, entry, key) and torch.equal(point, xf))
