"""The walk of a field's module tree for the factor cache's key (`learned_manifold.manifold_field_key`, SPEC §5):
`field_tensors` (the parameters and buffers the key reads), `FieldTree` (what one walk found) and `field_tree` (the
last walk's tree while nothing in it was replaced, added or removed: an identity comparison of the ``_parameters``,
``_buffers`` and ``_modules`` dicts, a few µs for a 53-module MLP, where walking took 0.12 ms), and `release_tree`.
Neither a `FieldTree` nor anything here owns a field's tensor or holds a weak reference to one.

Fused optimiser steps (`after_optimizer_step`, a process-wide torch optimiser step hook registered on import):
torch's fused kernels (a parameter group with ``fused=True`` of ``torch.optim.Adam``, ``AdamW``, ``SGD``, ``Adagrad``:
``torch._fused_adam_``, ``_fused_sgd_``, ``_fused_adagrad_``) leave ``_version`` as it was (torch 2.13; the
``foreach`` kernels and the plain loops bump it). After such a step the hook counts it on every kept tree
(`FieldTree.unversioned`, which the cache key reads) one of whose field's tensors shares a storage with a parameter
it stepped: the field's tensor itself, or an alias sharing its storage (``w.data = W`` with ``W`` stepped fused).
Not seen (call `LearnedDataManifold.clear_cache` after them): a plain or ``foreach`` step on such an alias ``W``
(it bumps ``W``'s counter, not ``w``'s); an optimiser of another library or a user's own that writes without a
version bump (through ``p.data``, or with a fused kernel of its own: only ``fused`` groups are looked at); a fused
kernel called outside an optimiser's ``step``; a step replayed from a captured CUDA graph (no hook runs).
Cost: with no field's key read in the process, one test; otherwise a non-fused step pays one dict lookup per
parameter group, and a fused step one storage-key lookup per parameter against `_STORAGES` (the kept trees'
storages as their keys last read them, `note_storages`), the trees being walked only where one matches. The hook
never raises into the caller's ``step`` (on an error it counts the step on every kept tree)."""

from __future__ import annotations

import itertools
import operator
import threading
import weakref
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook

__all__ = ["FieldTree", "after_optimizer_step", "field_tensors", "field_tree", "note_storages", "release_tree"]


def field_tensors(field: nn.Module) -> list[Tensor]:
    """The tensors of the module tree whose identity and version the key reads: every parameter and buffer of
    ``field`` and of its submodules (a walk of the tree, 0.12 ms for a 53-module MLP: done by `field_tree` only when
    the tree changed). The field's own plain tensor attributes are read by `manifold_field_key._own_state` on each
    query."""
    return [*field.parameters(), *field.buffers()]


class FieldTree:
    """What one walk of a field's module tree found (`field_tree`): the ``_parameters``, ``_buffers`` and
    ``_modules`` dicts of each module, the ids of the values they held (with weak references to the submodules
    whose callbacks mark the tree stale when one dies, so that a new module at a dead one's address cannot pass for
    it), the positions of the tensors among those values, and the position of the first parameter or buffer
    (`field_tensors`' first; ``None`` without any). No reference to the field's tensors: ``torch.utils.swap_tensors``
    (``load_state_dict`` and ``.to()`` under ``torch.__future__.set_swap_module_params_on_conversion(True)``) refuses
    a tensor with a weak reference, and a strong one would keep a replaced tensor's memory. A new tensor at a dead
    one's id is caught by the entries instead (its storage and address:
    `manifold_field_key.same_field_state`). ``unversioned``: the count of optimiser steps that do not bump version
    counters seen on the field's tensors (`after_optimizer_step`; the key reads it). ``addresses`` and ``storages``:
    the data addresses and the storage keys of the field's tensors when its key was last read (`note_storages`)."""

    __slots__ = ("dicts", "plain", "ids", "alive", "refs", "tensors", "first", "unversioned", "addresses", "storages",
                 "__weakref__")

    def __init__(self, field: nn.Module):
        self.dicts = [d for m in field.modules() for d in (m._parameters, m._buffers, m._modules)]
        self.plain = all(type(d) is dict for d in self.dicts)  # (torch's own: the C-level ``dict.values`` reads them)
        values = self.current()
        self.ids = tuple(map(id, values))
        alive = self.alive = [True]

        def dead(_ref: weakref.ref) -> None:
            alive[0] = False

        self.refs = [_reference(v, dead) for v in values if v is not None and not isinstance(v, Tensor)]
        at = {id(v): i for i, v in enumerate(values) if isinstance(v, Tensor)}
        tensors = [at[id(t)] for t in field_tensors(field)]
        self.tensors: Callable[[tuple], tuple] = (
            operator.itemgetter(*tensors) if len(tensors) > 1 else lambda values: tuple(values[i] for i in tensors))
        self.first = tensors[0] if tensors else None
        self.unversioned = 0
        self.addresses: tuple | None = None
        self.storages: frozenset[int] = frozenset()

    def current(self) -> tuple:
        """The values the dicts hold now, in the walk's order."""
        if self.plain:
            return tuple(itertools.chain.from_iterable(map(dict.values, self.dicts)))
        return tuple(itertools.chain.from_iterable([d.values() for d in self.dicts]))

    def unchanged(self, values: tuple) -> bool:
        """Whether ``values`` (`current`) are the very objects the walk found, in the same places: the same ids, and
        none of the walk's submodules has died (ids are unique among live objects; tensors: the class docstring)."""
        return self.alive[0] and tuple(map(id, values)) == self.ids


def _reference(value: object, callback: Callable[[weakref.ref], None]) -> object:
    """A weak reference to ``value`` (a submodule) calling ``callback`` when it dies; ``value`` itself where it takes
    no weak reference (kept alive, so its id stays its own)."""
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


def release_tree(field: nn.Module) -> None:
    """Forget the field's `FieldTree`; the next query walks afresh."""
    try:
        _TREES.pop(field, None)
    except TypeError:  # (an unhashable field is never kept)
        pass


def note_storages(tree: FieldTree, tensors: list[Tensor], addresses: tuple) -> None:
    """Keep the storage keys of the field's ``tensors`` (its parameters, buffers and own tensor attributes, as
    `manifold_field_key.field_key` reads them, with their data ``addresses``) on ``tree`` and in the module-level
    union `_STORAGES` that `after_optimizer_step` tests a fused step's parameters against. Nothing to do where the
    addresses are those of the last read (a tuple comparison). Where they changed (``w.data = W``, a swap), the old
    keys are dropped and ``tree.unversioned`` counts one: an entry made before may be hit again only through the
    old addresses (``w.data = W`` then back), and a fused step on the old storage meanwhile was no longer matched.
    Sound: a field tensor whose storage is not in the union got it after the key was read, so its address differs
    from every entry's and the next lookup misses anyway."""
    if addresses == tree.addresses:
        return
    storages = frozenset(map(_storage_key, tensors))
    global _STORAGES, _LIMIT
    with _LOCK:
        if tree.addresses is not None:
            tree.unversioned += 1
        tree.addresses, tree.storages = addresses, storages
        _STORAGES = _STORAGES | tree.storages
        if len(_STORAGES) > _LIMIT:  # (dead and renewed trees' keys: drop them, amortised over the growth)
            _STORAGES = frozenset().union(*[t.storages for t in _kept_trees()])
            _LIMIT = max(1024, 2 * len(_STORAGES))


_LOCK = threading.Lock()  # held by the writers of `_STORAGES` and of the counts (a read of `_STORAGES`: none)
_STORAGES: frozenset[int] = frozenset()  # the storage keys of the kept trees' tensors, as last read (`note_storages`)
_LIMIT = 1024  # the size of `_STORAGES` above which it is rebuilt from the live trees


def _kept_trees() -> list[FieldTree]:
    """The kept trees, copied in one C call (``dict.copy`` runs no Python code and starts no garbage collection
    midway, so neither another thread's `field_tree` nor a field dying can change the dict under it)."""
    return list(_TREES.data.copy().values())


def after_optimizer_step(optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
    """A global optimiser step hook (``torch.optim.optimizer.register_optimizer_step_post_hook``, registered on
    import): after a step of a parameter group with ``fused=True`` (torch's fused kernels, which bump no version
    counter), count it on the kept trees whose field's tensors share a storage with a parameter it stepped
    (`_count_unversioned`). Any other step pays a test of `_STORAGES` and one dict lookup per parameter group, and
    calls nothing under ``torch.compiler.disable`` (a user's optimiser compiles with ``fullgraph=True``). Never
    raises into the caller's ``step``: on any error the step is counted on every kept tree (a count too many only
    makes a lookup miss)."""
    if not _STORAGES:
        return
    try:
        params = [p for group in optimizer.param_groups if group.get("fused") for p in group["params"]]
        if params:
            if torch.compiler.is_compiling():
                _eager_count()(params)
            else:
                _count_unversioned(params)
    except Exception:  # noqa: BLE001  (the user's step must not fail for the cache's sake)
        _count_everywhere()


def _count_everywhere() -> None:
    """Count a step on every kept tree (`after_optimizer_step`'s fallback)."""
    try:
        with _LOCK:
            for tree in _kept_trees():
                tree.unversioned += 1
    except Exception:  # noqa: BLE001  (nothing left to try: a lookup may serve the step's old factor)
        pass


_EAGER_COUNT: list[Callable[[list[Tensor]], None]] = []


def _eager_count() -> Callable[[list[Tensor]], None]:
    """`_count_unversioned` run eagerly under ``torch.compile`` (a graph break, as the fused kernel itself is one),
    wrapped at its first use: ``torch.compiler.disable`` imports dynamo, which loading a model file must not."""
    if not _EAGER_COUNT:
        _EAGER_COUNT.append(torch.compiler.disable(_count_unversioned))
    return _EAGER_COUNT[0]


def _count_unversioned(params: list[Tensor]) -> None:
    """Add one to ``unversioned`` of each kept `FieldTree` whose field's tensors (as its key last read them:
    `FieldTree.storages`) share a storage with one of ``params`` (stepped by a fused kernel): the next cache lookup
    on that field misses. The trees are walked only where a stepped storage is in `_STORAGES` (one set lookup per
    parameter otherwise); where none matches (a dead tree's key), the dead keys are dropped."""
    global _STORAGES
    union = _STORAGES
    try:  # (inline: 0.18 µs a parameter where `_storage_key` takes 0.22)
        stepped = {p.untyped_storage().data_ptr() for p in params}
    except (RuntimeError, NotImplementedError, TypeError):
        stepped = set(map(_storage_key, params))
    if union.isdisjoint(stepped):
        return
    with _LOCK:
        trees, matched = _kept_trees(), False
        for tree in trees:
            if not tree.storages.isdisjoint(stepped):
                tree.unversioned += 1
                matched = True
        if not matched:  # a dead tree's key, its memory now the stepped tensors': drop the dead keys (walk once)
            _STORAGES = frozenset().union(*[t.storages for t in trees])


def _storage_key(t: Tensor) -> int:
    """The address of ``t``'s storage (shared by its views and by ``.data =`` aliases), or ``id(t)`` where it has none
    (a wrapper subclass such as DTensor). Storages that coincide only in a ``0`` (empty) address match too: a count
    too many only makes a lookup miss."""
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError, TypeError):
        return id(t)


register_optimizer_step_post_hook(after_optimizer_step)
