"""The factor cache of `LearnedDataManifold` (SPEC §5): what an entry holds, when it may be used, and the few
entries a manifold keeps (`FactorCache`).

An entry is a dict: ``point`` (a private copy of the flat points ``(B, D)``), ``A`` (the factor ``(B, D, r)``),
``pairs`` (its `Eigenpairs`, or ``None`` until asked for), ``spare`` (made cold and never hit: `FactorCache`),
``owner`` (`PointStorage`: the optimiser parameter it serves and the optimiser stepping it, which pin it:
`FactorCache`),
``checked`` (whether the manifold has looked at those eigenvalues: `manifold_checks.check_decomposition`),
``count`` (the entry's place in its point set's run, `FactorCache.add`: the check runs where it is 1, 2, 4, 8, …),
``settings`` (`field_settings`), ``tree`` (a weak reference to the field's `FieldTree`), ``own`` (weak references
to the field's own tensor attributes), ``versions`` (the version counters and data addresses of the tree's tensors
and the own ones, ``None`` when one is an inference tensor) and ``held`` (weak references to those tensors'
storages, `StorageRefs`: an entry one of whose storages has died never hits, so a new tensor at a freed address
cannot pass for the old one). A query hits only when its points equal the copy (``torch.equal``) and the field is
in the same state (`same_field_state`): the same settings, and the same tensors, none changed in place since.

What the key reads of a field (`learned_manifold.manifold_field_key`), and so what a field's factor may depend on
for the cache to stay right:

* its parameters and buffers, and those of its submodules (identity, version counter and data address:
  ``load_state_dict`` (in torch's swap mode too), an optimiser step on a network, fused ones included (torch's
  fused kernels bump no version counter: a process-wide step hook counts the steps of ``fused=True`` parameter
  groups on the field whose tensor, or an alias sharing its storage, they stepped,
  `manifold_field_tree.after_optimizer_step`), the assignment ``w.data = W`` itself or a k-NN field's new data
  are seen);
* the field's own tensor attributes (``self.w = tensor``, 0-d ones too: as for buffers);
* the field's own plain attributes, by value: numbers (NumPy scalars such as ``np.float32`` too), strings, bools,
  ``None``, enum members, dtypes and devices (``sigma``, a k-NN field's ``k`` and ``centred``, a `LearnedCDC`'s
  ``precision``, a custom field's ``self.angle = 0.3``; `manifold_field_key._PLAIN`);
* the dtype and device of the field's first parameter or buffer (``M.double()`` casts a network).

State held anywhere else (a list, tuple, dict or NumPy array attribute, a plain attribute of a submodule, a
global, a closure) is not seen: keep such state in buffers, or call `LearnedDataManifold.clear_cache` after
changing it. Nor are in-place writes to a field tensor that leave its version counter as it was, but for the
steps of torch's fused optimisers (``fused=True`` groups: `after_optimizer_step`): through ``tensor.data``
(``p.data.mul_()``, another library's or a user's optimiser writing so, or with a fused kernel of its own); through
another tensor that shares its memory but not its version counter: ``W`` after ``w.data = W`` or ``w.set_(W)``
(``W.mul_()``, a plain or ``foreach`` torch optimiser step on ``W``, an EMA updating ``W``), a NumPy array from
``w.numpy()`` or behind ``torch.from_numpy``, a DLPack alias, ``w.untyped_storage()``; a fused kernel called
directly (``torch._fused_adam_``) or a step replayed from a captured CUDA graph (no step hook runs). Views
(``w[0]``, ``w.detach()``, ``nn.Parameter(W)``) share ``w``'s counter: seen. A version counter belongs to a tensor
and its views, not to its storage: nothing leads from ``w`` to ``W``'s counter, and comparing values (every weight
at every lookup) would cost what the cache saves. Call `LearnedDataManifold.clear_cache` after such writes.

Cost: the module tree is walked (`field_tensors`, in `learned_manifold.manifold_field_tree`) once per field and
again only after it changed: each query compares, by identity, what the ``_parameters``, ``_buffers`` and
``_modules`` dicts of the modules found by the last walk hold (`field_tree`; a few µs for a 53-module MLP, where
walking took 0.12 ms). Every route that changes the tree writes into one of those dicts (assignment, ``register_*``,
``del``, ``_apply``'s casts and moves, which replace buffers, ``load_state_dict(assign=True)``, a swapped
submodule), so the comparison sees it. The walk's `FieldTree` holds those dicts and weak references to the
submodules they held; neither it nor an entry owns a field's tensor or its memory (``M.cpu()`` or ``M.double()``
frees the old copy at once). Nothing here holds a weak reference to a field's tensor (``torch.utils.swap_tensors``,
which swap mode's ``load_state_dict`` and ``.to()`` use, refuses one): entries hold weak references to the tensors'
*storages* (`StorageRefs`) instead.

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

import weakref

import torch
from torch import Tensor, nn

from .func_transforms import forward_mode, vmapped  # re-exported: the factor cache's transform probes
from .geometry import Eigenpairs
from .manifold_field_key import (  # re-exported: the key
    FieldKey,
    _may_hit,
    _same_layout,
    _same_state,
    cache_hit,
    field_key,
    field_settings,
    same_field_state,
)
from .manifold_field_tree import (  # re-exported
    _TREES,  # noqa: F401  (the trees kept: a name this module had)
    FieldTree,
    field_tensors,
    field_tree,
    release_tree,
)
from .manifold_storage_refs import PointStorage, StorageRefs, ViewId, view_id  # re-exported
from .user_warnings import warn_user

__all__ = ["FactorCache", "FieldKey", "FieldTree", "PointStorage", "StorageRefs", "cache_bypassed", "cache_entry",
           "cache_hit", "entry_bytes", "field_key", "field_settings", "field_tensors", "field_tree", "forward_mode",
           "release_tree", "same_field_state", "vmapped"]

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


def _first_hit(entry: dict) -> None:
    """Mark a cold entry (`FactorCache`) as hit; one whose ``count`` the checks skipped (not 1, 2, 4, …) starts a
    run of its own, to be checked at its next decomposition (`manifold_factors`)."""
    entry["spare"] = False
    count = entry["count"]
    if count & (count - 1):
        entry["count"], entry["checked"] = 1, False


def entry_bytes(entry: dict) -> int:
    """The bytes ``entry`` (`cache_entry`) holds, or will hold once its eigenpairs are made: the storages of its
    points ``(B, D)``, its factor ``A`` ``(B, D, r)`` and its eigenpairs' tensors (each storage once: a view holds
    its whole storage), and for those not made yet the eigenvectors and the gap rule's truncated basis (each ``A``'s
    size, in ``A``'s dtype: `geometry.eigenpairs`, `spectral_dims.truncate_basis`), the eigenvalues ``(B, r)`` and
    the ``(B,)`` int64 counts of kept columns and of the gap rule's dimensions. Counting them before they are made
    keeps a pinned entry from growing past what `FactorCache.find` counted."""
    A, pairs = entry["A"], entry.get("pairs")
    basis, values, counts = A.numel() * A.element_size(), A.shape[0] * A.shape[-1] * A.element_size(), A.shape[0] * 8
    tensors, to_come = [entry["point"], A], 0
    if pairs is None:
        to_come += basis + values + counts
    else:
        tensors += [t for t in (pairs.values, pairs.vectors, pairs.within, pairs.kept) if t is not None]
    if pairs is None or pairs.gap is None:
        to_come += basis + counts
    else:
        tensors += list(pairs.gap)
    return _storage_bytes(tensors) + to_come


def _storage_bytes(tensors: list[Tensor]) -> int:
    """The bytes of the storages of ``tensors``, each storage once; a tensor without a storage (a wrapper subclass
    such as DTensor) counts its elements."""
    sizes: dict[int, int] = {}
    for t in tensors:
        try:
            storage = t.untyped_storage()
            sizes[storage._cdata] = storage.nbytes()
        except (RuntimeError, NotImplementedError):
            sizes[id(t)] = t.numel() * t.element_size()
    return sum(sizes.values())


class FactorCache:
    """The entries of one `LearnedDataManifold` (SPEC §5), most recently used first: those *pinned* to an optimiser's
    parameter, up to `PIN_LIMIT` entries and `PIN_BYTES` bytes, then up to `CAPACITY` others. An entry is pinned where a
    lookup inside an optimiser's parameter update (``pin``: `manifold_factors.CachedFactors.one_step`) hits it: it keeps
    a weak reference to the storage of the parameter and its view of it, and one to the optimiser (`PointStorage`:
    the pin ends when either dies, so a finished run kept as ``p.detach()`` holds none), which its successor
    inherits (a channels_last parameter's flat points are a temporary copy: its pin is on the parameter's own view).
    One entry per view is pinned (a new pin on a view unpins the old, and those on other views of its storage that
    never ``stepped``), so parameters that are views of one tensor keep one pin each, and minibatch views of one data
    set pin nothing outside an update and at most one entry inside it. So every parameter on one manifold (or of
    several optimisers sharing it) keeps its entry, where a fixed capacity had thrashed from the ninth parameter on (two
    evaluations per parameter per step), within the limits below (an entry whose parameter or optimiser has died goes
    with the next new entry). Beyond them the pins held stay and no new one is made, with a warning once
    (`_warn_limit`): the factors of the parameters stepped since are evaluated twice per step. A lookup compares the
    query first with the entry pinned to its view (a parameter's: one ``torch.equal``), then, where that misses, with
    the unpinned entries, the most recent one and, outside an update, those pinned to channels_last or permuted
    parameters (whose flat points are a copy that no pin's view matches) at once (`find`).

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

    Memory: an entry holds its points ``(B, D)``, its factor ``(B, D, r)`` and its eigenpairs (eigenvectors and the
    gap rule's basis, each the factor's size): about ``(1 + 3r) B D`` numbers (`entry_bytes`, which counts them from
    the entry's tensors, the eigenpairs before they are made; 398 MB for 4,096 MNIST images, ``D = 784``, at
    ``r = 10`` in float32). The unpinned part is bounded by count: at most `CAPACITY` entries, 8 × 398 MB = 3.2 GB
    at that size (the old fixed-capacity cache's whole bound). The pinned part is bounded twice: `PIN_LIMIT`
    entries, and a pin is made only while the pinned entries hold less than `PIN_BYTES`, so they hold at most
    `PIN_BYTES` plus one entry. `PIN_BYTES` is a fixed 2 GiB per manifold: about what the unpinned part holds at
    image sizes, so a cache holds at most about twice the old bound there (of 20 parameters of that size, 6 keep
    their pins: 2.4 GB, where all 20 had held 8 GB), small beside a GPU's memory, while small problems keep every
    pin (64 parameters of 1,024 points at ``D = 100``, ``r = 10`` in float64 hold 1.6 GB). The three limits are
    class attributes a user may set, for every manifold (``FactorCache.PIN_BYTES = 8 * 2**30`` on a large GPU; 0
    pins nothing).

    Threads may share it: ``entries`` is a tuple replaced whole, so a reader iterates a consistent one; two threads
    adding at once may lose an entry (recomputed at its next query), never answer from another's."""

    CAPACITY = 8
    """The most unpinned entries kept (class docstring: 3.2 GB at MNIST size)."""
    PIN_LIMIT = 64
    """The most entries pinned to optimiser parameters (class docstring)."""
    PIN_BYTES = 2 * 2**30
    """The bytes (`entry_bytes`) below which a new pin is made: the pinned entries hold at most this plus one entry
    (class docstring: 2 GiB per manifold)."""
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

    def find(self, field: nn.Module, xf: Tensor, key: FieldKey, *, pin: bool = False, points: Tensor | None = None,
             holder: object | None = None) -> dict | None:
        """The entry answering a query at the flat points ``xf`` ``(B, D)`` (`cache_hit`, with the field's ``key``
        read once), made the most recent; ``None`` on a miss. The entry pinned to the view of ``xf`` is compared
        first (one ``torch.equal``); only where it misses, the other candidates, all at once (`_first_equal`: one
        host sync however many): the unpinned entries and the most recent one (an entry pinned to another
        parameter is another parameter's point, but for the one just made: landing's at a step's landed points),
        so a lookup's cost does not grow with the number of contiguous parameters. Outside an update (``pin``
        false), also the entries pinned to parameters whose flat points are a copy (channels_last or permuted:
        `PointStorage.copied`), as a loss or check at each parameter's current points after a step would find
        them through no view (at most `PIN_LIMIT` more comparisons, still one host sync); inside one a
        parameter's own pin is found by its view. ``pin`` (a parameter's update,
        `manifold_factors.CachedFactors.one_step`): pin the entry found, where no parameter holds it, to that
        view, unpinning the one pinned to it before (class docstring), until it or ``holder`` (the optimiser, where
        given) dies (`PointStorage`). ``points``: the view the lookup is keyed and pinned by where not ``xf``'s (the
        parameter's, `manifold_storage_refs.step_points`: its flat points may be a temporary copy)."""
        entries = self.entries
        view = view_id(xf if points is None else points)
        own = next((e for e in entries if _owned_by(e, view)), None) if view is not None else None
        entry = _first_equal([own], xf) if own is not None and _may_hit(field, own, xf, key) else None
        if entry is None:
            entry = _first_equal([e for e in entries if e is not own and (e is entries[0] or not _pinned(e) or (
                not pin and e["owner"].copied(e["point"]))) and _may_hit(field, e, xf, key)], xf)
        if entry is None:
            return None
        if entry.get("spare"):
            _first_hit(entry)
        if pin and view is not None and not _pinned(entry):
            for e in entries:  # (this view's pin, and those of other views of its storage never stepped)
                owner = e.get("owner")
                if owner is not None and (owner.serves(view) or owner.passing(view)):
                    e["owner"] = None
            pinned = [e for e in entries if _pinned(e)]
            held = sum(map(entry_bytes, pinned)) if len(pinned) < self.PIN_LIMIT else None
            if held is not None and held < self.PIN_BYTES:
                entry["owner"] = PointStorage(xf if points is None else points, holder)
            else:  # at a limit the pins held stay (dropping the oldest would drop the next one stepped)
                self._warn_limit(held)
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

    def _warn_limit(self, held: int | None = None) -> None:
        """Warn once that this manifold pins no more entries: more optimiser parameters than `PIN_LIMIT` step on it
        (``held`` ``None``), or its pinned entries hold ``held`` bytes, at least `PIN_BYTES`."""
        if self.warned:
            return
        self.warned = True
        if held is None:
            warn_user(f"LearnedDataManifold: more than FactorCache.PIN_LIMIT = {self.PIN_LIMIT} optimiser "
                      f"parameters on one manifold: its factor cache keeps the entries of {self.PIN_LIMIT} of them, "
                      f"so the factors of the others are evaluated twice per step. Stack the points into fewer, "
                      f"larger parameters, or give groups of parameters manifolds of their own (each "
                      f"LearnedDataManifold has its own cache)")
            return
        warn_user(f"LearnedDataManifold: the factor cache's entries pinned to optimiser parameters hold {held} bytes "
                  f"({held / 2**30:.2f} GiB: points, factors and eigenpairs), at least FactorCache.PIN_BYTES = "
                  f"{self.PIN_BYTES} ({self.PIN_BYTES / 2**30:.2f} GiB): the parameters stepped since keep no "
                  f"entry, so their factors are evaluated twice per step. Where memory allows, raise "
                  f"FactorCache.PIN_BYTES (a class attribute: every manifold's budget), or step fewer points per "
                  f"manifold")

    def clear(self) -> None:
        """Drop every entry."""
        self.entries, self.hit = (), None
