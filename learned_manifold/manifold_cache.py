"""The factor cache of `LearnedDataManifold` (SPEC §5): what an entry holds, when it may be used, and the few
entries a manifold keeps (`FactorCache`).

An entry is a dict: ``point`` (a private copy of the flat points ``(B, D)``), ``A`` (the factor ``(B, D, r)``),
``pairs`` (its `Eigenpairs`, or ``None`` until asked for), ``spare`` (made cold and never hit: `FactorCache`),
``owner`` (`PointStorage`: the optimiser parameter it serves, which pins it: `FactorCache`),
``checked`` (whether the manifold has looked at those eigenvalues: `manifold_checks.check_decomposition`),
``count`` (the entry's place in its point set's run, `FactorCache.add`: the check runs where it is 1, 2, 4, 8, …),
``settings`` (`field_settings`), ``tree`` (a weak reference to the field's `FieldTree`), ``own`` (weak references
to the field's own tensor attributes), ``versions`` (the version counters and data addresses of the tree's tensors
and the own ones, ``None`` when one is an inference tensor) and ``held`` (weak references to those tensors'
storages, `StorageRefs`: an entry one of whose storages has died never hits, so a new tensor at a freed address
cannot pass for the old one). A query hits only when its points equal the copy (``torch.equal``) and the field is
in the same state (`same_field_state`): the same settings, and the same tensors, none changed in place since.

What the key reads of a field, and so what a field's factor may depend on for the cache to stay right:

* its parameters and buffers, and those of its submodules (identity, version counter and data address:
  ``load_state_dict`` (in torch's swap mode too), an optimiser step on a network, a write through ``tensor.data =``
  or a k-NN field's new data are seen; an in-place write through ``tensor.data`` (``p.data.mul_()``), which
  bypasses the version counter, is not);
* the field's own tensor attributes (``self.w = tensor``: as for buffers);
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
`FieldTree` holds those dicts and weak references to the submodules they held; neither it nor an entry owns a
field's tensor or its memory (``M.cpu()`` or ``M.double()`` frees the old copy at once). Nothing here holds a weak
reference to a field's tensor (``torch.utils.swap_tensors``, which swap mode's ``load_state_dict`` and ``.to()``
use, refuses one): entries hold weak references to the tensors' *storages* (`StorageRefs`) instead.

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

from .func_transforms import forward_mode, vmapped  # re-exported: the factor cache's transform probes
from .geometry import Eigenpairs
from .manifold_storage_refs import PointStorage, StorageRefs, ViewId, view_id  # re-exported
from .user_warnings import warn_user

__all__ = ["FactorCache", "FieldKey", "FieldTree", "PointStorage", "StorageRefs", "cache_bypassed", "cache_entry",
           "cache_hit", "field_key", "field_settings", "field_tensors", "field_tree", "forward_mode", "release_tree",
           "same_field_state", "vmapped"]

_PLAIN = (bool, int, float, complex, str, type(None), torch.dtype, torch.device)
_VERSION = operator.attrgetter("_version")


def field_tensors(field: nn.Module) -> list[Tensor]:
    """The tensors of the module tree whose identity and version the key reads: every parameter and buffer of
    ``field`` and of its submodules (a walk of the tree, 0.12 ms for a 53-module MLP: done by `field_tree` only when
    the tree changed). The field's own plain tensor attributes are read by `_own_state` on each query."""
    return [*field.parameters(), *field.buffers()]


class FieldTree:
    """What one walk of a field's module tree found (`field_tree`): the ``_parameters``, ``_buffers`` and
    ``_modules`` dicts of each module, the ids of the values they held (with weak references to the submodules
    whose callbacks mark the tree stale when one dies, so that a new module at a dead one's address cannot pass for
    it), the positions of the tensors among those values, and the position of the first parameter or buffer
    (`field_tensors`' first; ``None`` without any). No reference to the field's tensors: ``torch.utils.swap_tensors``
    (``load_state_dict`` and ``.to()`` under ``torch.__future__.set_swap_module_params_on_conversion(True)``) refuses
    a tensor with a weak reference, and a strong one would keep a replaced tensor's memory. A new tensor at a dead
    one's id is caught by the entries instead (its storage and address: `same_field_state`)."""

    __slots__ = ("dicts", "plain", "ids", "alive", "refs", "tensors", "first", "__weakref__")

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
    """The version counters of ``tensors``, then their data addresses (``data_ptr``; the ``TensorImpl``'s where a
    tensor has no storage): a tensor whose contents ``torch.utils.swap_tensors`` replaced (swap mode's
    ``load_state_dict``, ``_apply``) or whose ``.data`` was set keeps its identity but not its address (an entry
    whose storages one has died never hits, `StorageRefs`, so a new tensor at a freed address cannot pass for the
    old one). ``None`` where one is an inference tensor (it has no version counter)."""
    try:
        versions = tuple(map(_VERSION, tensors))
    except RuntimeError:
        return None
    try:
        return versions + tuple(map(Tensor.data_ptr, tensors))
    except RuntimeError:  # (a wrapper subclass such as DTensor has no storage)
        return versions + tuple(map(_address, tensors))


def _address(t: Tensor) -> int:
    """``t.data_ptr()``, or the address of its ``TensorImpl`` where it has no storage."""
    try:
        return t.data_ptr()
    except RuntimeError:
        return t._cdata


FieldKey = tuple[FieldTree, tuple, list[Tensor], tuple | None, list[Tensor]]


def field_key(field: nn.Module) -> FieldKey:
    """The field's state as the key reads it: its tree, settings, own tensors, every tensor's version and address
    (`_versions`), and the tensors read (the tree's then the own ones; 28 µs for the default MLP, 75 µs for a UNet
    field). A caller that looks up an entry and makes one on a miss reads it once
    and passes it to both (`cache_hit`, `cache_entry`): taken before the factor is computed, it can only make the
    entry miss later (a field changed meanwhile), never hit for a state the factor was not computed in."""
    tree, values = field_tree(field)
    settings, own = _own_state(field)
    tensors = [*tree.tensors(values), *own]
    return tree, _settings(settings, tree, values), own, _versions(tensors), tensors


def cache_bypassed(xf: Tensor) -> bool:
    """Whether a query at the flat points ``xf`` ``(B, D)`` must compute the factor afresh and leave the cache alone:
    with grad enabled, or under forward-mode AD (`forward_mode`): a cached factor has neither graph nor tangent."""
    return torch.is_grad_enabled() or forward_mode(xf)


def cache_entry(field: nn.Module, xf: Tensor, A: Tensor, pairs: Eigenpairs | None = None, *,
                key: FieldKey | None = None) -> dict:
    """A cache entry for the flat points ``xf`` ``(B, D)`` with factor ``A`` ``(B, D, r)`` (and its eigenpairs,
    where known): a private copy of the point, the field's settings and the state of its tensors (``key``, read
    now where not given: `field_key`), with weak references to the storages of those tensors (`StorageRefs`: the
    entry owns none of the field's memory). ``count`` is set by `FactorCache.add`."""
    tree, settings, own, versions, tensors = field_key(field) if key is None else key
    held = StorageRefs([] if versions is None else tensors)
    return {"point": xf.detach().clone(), "settings": settings, "A": A, "pairs": pairs, "checked": False,
            "count": None, "owner": None, "tree": weakref.ref(tree), "own": [weakref.ref(t) for t in own],
            "versions": versions, "held": held}


def same_field_state(field: nn.Module, entry: dict, key: FieldKey | None = None) -> bool:
    """Whether ``field`` is as it was when ``entry`` was made: the same settings, the same tensors (identity: the
    same `FieldTree`, which a replaced tensor such as `KNNCDC.load_state_dict`'s new data renews, and the same own
    tensor attributes) none of which has changed in place since (its version counter, which ``copy_`` and optimiser
    steps bump) or had its contents swapped (its data address: `_versions`, with the entry's storages alive:
    `StorageRefs`). Inference tensors have no version counter: a field holding one never hits. No walk of the
    module tree unless it changed (`field_tree`). ``key``: `field_key`, read now where not given."""
    tree, settings, own, versions, _ = field_key(field) if key is None else key
    if versions is None or versions != entry["versions"] or entry["tree"]() is not tree:
        return False
    refs = entry["own"]
    return (settings == entry["settings"] and len(own) == len(refs)
            and all(map(operator.is_, own, [r() for r in refs])) and entry["held"].alive())


def cache_hit(field: nn.Module, entry: dict | None, xf: Tensor, key: FieldKey | None = None) -> bool:
    """Whether ``entry`` answers a query at the flat points ``xf`` ``(B, D)``: equal values (``torch.equal``, exact
    and blind to identity and version counters, which ``x.data.add_()`` does not bump), the same shape, dtype and
    device, and a field in the same state (`same_field_state`, with ``key`` where given)."""
    return entry is not None and _may_hit(field, entry, xf, key) and torch.equal(entry["point"], xf)


def _may_hit(field: nn.Module, entry: dict, xf: Tensor, key: FieldKey | None) -> bool:
    """`cache_hit` but for the values (no host sync): the same shape, dtype and device (``torch.equal`` alone
    compares a float32 query equal to its float64 copy) and a field in the same state."""
    return _same_layout(entry["point"], xf) and same_field_state(field, entry, key)


def _first_equal(entries: list[dict], xf: Tensor) -> dict | None:
    """The first of ``entries`` (each `_may_hit`) whose points equal ``xf`` ``(B, D)`` exactly, with one host sync
    however many there are: one ``torch.equal``, or every comparison read at once (``(p == xf).all()`` is
    ``torch.equal`` for tensors of one shape and dtype, NaN unequal to itself). ``None`` where none does."""
    if len(entries) <= 1:
        return entries[0] if entries and torch.equal(entries[0]["point"], xf) else None
    flags = torch.stack([(e["point"] == xf).all() for e in entries]).tolist()
    return next((e for e, equal in zip(entries, flags, strict=True) if equal), None)


def _pinned(entry: dict) -> bool:
    """Whether ``entry`` serves live points (`PointStorage`)."""
    owner = entry.get("owner")
    return owner is not None and owner.alive()


def _owned_by(entry: dict, view: ViewId | None) -> bool:
    """Whether ``entry`` is pinned to the live points ``view`` (`view_id`)."""
    owner = entry.get("owner")
    return owner is not None and owner.serves(view)


def _same_state(a: dict, b: dict) -> bool:
    """Whether entries ``a`` and ``b`` were made for a field in the same state (`same_field_state`'s reading)."""
    return (a["versions"] == b["versions"] and a["tree"]() is b["tree"]() and a["settings"] == b["settings"]
            and len(a["own"]) == len(b["own"]) and all(r() is q() for r, q in zip(a["own"], b["own"], strict=True)))


def _first_hit(entry: dict) -> None:
    """Mark a cold entry (`FactorCache`) as hit; one whose ``count`` the checks skipped (not 1, 2, 4, …) starts a
    run of its own, to be checked at its next decomposition (`manifold_factors`)."""
    entry["spare"] = False
    count = entry["count"]
    if count & (count - 1):
        entry["count"], entry["checked"] = 1, False


def _same_layout(a: Tensor, b: Tensor) -> bool:
    """Whether points ``a`` and ``b`` have the same shape, dtype and device (a parameter's next point has)."""
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device


class FactorCache:
    """The entries of one `LearnedDataManifold` (SPEC §5), most recently used first: those *pinned* to an optimiser's
    parameter, up to `PIN_LIMIT`, then up to `CAPACITY` others. An entry is pinned where a lookup inside an
    optimiser's parameter update (``pin``: `manifold_factors.CachedFactors.one_step`) hits it: it keeps a weak
    reference to the storage of the query's points and their view of it (`PointStorage`), which its successor
    inherits. One entry per view is pinned (a new pin on a view unpins the old, and those on other views of its
    storage that never ``stepped``), so parameters that are views of one tensor keep one pin each, and minibatch
    views of one data set pin nothing outside an update and at most one entry inside it. So every parameter on one
    manifold (or of several optimisers sharing it) keeps its entry, where a fixed capacity had thrashed from the
    ninth parameter on (two evaluations per parameter per step), and memory follows the parameters in use: one
    factor ``(B, D, r)`` with its eigenpairs per live parameter, plus `CAPACITY` (an entry whose parameter has died
    goes with the next new entry). Beyond `PIN_LIMIT` parameters the pins held stay and no new one is made, with a
    warning once. A lookup compares the query first with the entry pinned to its view (a parameter's: one
    ``torch.equal``), then, where that misses, with the unpinned entries and the most recent one at once (`find`).

    An entry *succeeds* the entry hit just before it where its points have that entry's shape, dtype and device: an
    optimiser step reads the factor at a parameter's point (a hit) and then makes the one at its next point. The
    successor replaces it (one live entry per parameter, however long the run) and continues its ``count`` (the
    entry's place in its point set's run of decompositions, which `LearnedDataManifold` checks at 1, 2, 4, 8, …).
    Any other new entry is *cold* (``spare``, until it is hit): it replaces the most recent cold entry of the same
    shape, dtype and device that was never hit, and continues its ``count`` (an evaluation loop at fresh points of
    one shape, ``for x in loader: M.proju(x, u)``, holds one entry and is checked at its 1st, 2nd, 4th, … query);
    where there is none it starts a point set at ``count = 1`` (a new parameter's first step). A cold entry hit for
    the first time is a point set reused (an optimiser's parameter: its step reads the factor there several times):
    where its ``count`` was skipped by the checks, its run restarts at ``count = 1``, unchecked, so a new
    optimisation after a long evaluation loop is still checked at its start. Entries for another
    state of the field, or whose field storages have died, can never hit again and are dropped with the next new
    entry.

    Threads may share it: ``entries`` is a tuple replaced whole, so a reader iterates a consistent one; two threads
    adding at once may lose an entry (recomputed at its next query), never answer from another's."""

    CAPACITY = 8
    PIN_LIMIT = 64
    __slots__ = ("entries", "hit", "warned")

    def __init__(self) -> None:
        self.entries: tuple[dict, ...] = ()
        self.hit: dict | None = None
        self.warned = False

    @property
    def latest(self) -> dict | None:
        """The most recently used entry (``None`` when empty)."""
        entries = self.entries
        return entries[0] if entries else None

    def find(self, field: nn.Module, xf: Tensor, key: FieldKey, *, pin: bool = False) -> dict | None:
        """The entry answering a query at the flat points ``xf`` ``(B, D)`` (`cache_hit`, with the field's ``key``
        read once), made the most recent; ``None`` on a miss. The entry pinned to the view of ``xf`` is compared
        first (one ``torch.equal``); only where it misses, the other candidates, all at once (`_first_equal`: one
        host sync however many): the unpinned entries and the most recent one (an entry pinned to another
        parameter is another parameter's point, but for the one just made: landing's at a step's landed points),
        so a lookup's cost does not grow with the number of parameters. ``pin`` (a parameter's update,
        `manifold_factors.CachedFactors.one_step`): pin the entry found, where no parameter holds it, to that
        view, unpinning the one pinned to it before (class docstring)."""
        entries = self.entries
        view = view_id(xf)
        own = next((e for e in entries if _owned_by(e, view)), None) if view is not None else None
        entry = _first_equal([own], xf) if own is not None and _may_hit(field, own, xf, key) else None
        if entry is None:
            entry = _first_equal([e for e in entries if e is not own and (e is entries[0] or not _pinned(e))
                                  and _may_hit(field, e, xf, key)], xf)
        if entry is None:
            return None
        if entry.get("spare"):
            _first_hit(entry)
        if pin and view is not None and not _pinned(entry):
            for e in entries:  # (this view's pin, and those of other views of its storage never stepped)
                owner = e.get("owner")
                if owner is not None and (owner.serves(view) or owner.passing(view)):
                    e["owner"] = None
            if sum(_pinned(e) for e in entries) < self.PIN_LIMIT:
                entry["owner"] = PointStorage(xf)
            else:  # at the limit the pins held stay (dropping the oldest would drop the next one stepped)
                self._warn_limit()
        if entry is not entries[0]:
            self.entries = (entry, *[e for e in entries if e is not entry])
        self.hit = entry
        return entry

    def add(self, entry: dict) -> None:
        """Make ``entry`` (`cache_entry`) the most recent: it succeeds the entry hit just before where it can (the
        class docstring; a successor keeps its parent's pin), or else replaces a cold entry never hit; then those
        that can never hit again are dropped, the oldest pinned ones beyond `PIN_LIMIT` are unpinned (a safety net:
        `find` makes no pin there; a warning, once), and the oldest unpinned ones beyond `CAPACITY` are dropped."""
        entries, hit = self.entries, self.hit
        self.hit = None
        point = entry["point"]
        successor = hit is not None and _same_layout(hit["point"], point)
        parent = hit if successor else next(
            (e for e in entries if e.get("spare") and _same_layout(e["point"], point)), None)
        entry["spare"] = not successor
        entry["count"] = 1 if parent is None else parent["count"] + 1
        owner = entry["owner"] = hit.get("owner") if successor else None
        if owner is not None:
            owner.stepped = True  # (a parameter's next point: its pin stays beside other views')
        kept = [e for e in entries if e is not parent and _same_state(e, entry) and e["held"].alive()]
        chosen, pins, others, unpinned = [entry], int(_pinned(entry)), int(not _pinned(entry)), False
        for e in kept:
            if _pinned(e):
                if pins < self.PIN_LIMIT:
                    chosen.append(e)
                    pins += 1
                    continue
                e["owner"], unpinned = None, True
            if others < self.CAPACITY:
                chosen.append(e)
                others += 1
        self.entries = tuple(chosen)
        if unpinned:
            self._warn_limit()

    def _warn_limit(self) -> None:
        """Warn once that more parameters than `PIN_LIMIT` step on this manifold."""
        if not self.warned:
            self.warned = True
            warn_user(f"LearnedDataManifold: more than FactorCache.PIN_LIMIT = {self.PIN_LIMIT} optimiser "
                      f"parameters on one manifold: its factor cache keeps the entries of {self.PIN_LIMIT} of them, "
                      f"so the factors of the others are evaluated twice per step. Stack the points into fewer, "
                      f"larger parameters, or give groups of parameters manifolds of their own (each "
                      f"LearnedDataManifold has its own cache)")

    def clear(self) -> None:
        """Drop every entry."""
        self.entries, self.hit = (), None


def release_tree(field: nn.Module) -> None:
    """Forget the field's `FieldTree`; the next query walks afresh."""
    try:
        _TREES.pop(field, None)
    except TypeError:  # (an unhashable field is never kept)
        pass
