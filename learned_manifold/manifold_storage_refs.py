"""Weak references to tensor storages for the factor cache (`learned_manifold.manifold_cache`, SPEC §5):
`StorageRefs` (the field's tensors an entry was made for: an entry one of whose storages has died never hits) and
`PointStorage` (the points an entry serves: it pins the entry, `manifold_cache.FactorCache`), `view_id` (the
storage and view of a query's points, to find the entry pinned to them) and `step_points` (the points a parameter's
update keys its lookups by). Neither class owns memory nor holds a weak reference to a tensor, which
``torch.utils.swap_tensors`` would refuse."""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["PointStorage", "StorageRefs", "ViewId", "step_points", "view_id"]

_EXPIRED = torch.UntypedStorage._expired  # (what torch.multiprocessing.reductions.StorageWeakRef calls)

ViewId = tuple[int, int, tuple[int, ...], tuple[int, ...]]  # storage address, storage offset, shape, strides


class StorageRefs:
    """Weak references to the storages of ``tensors`` (as ``torch.multiprocessing.reductions.StorageWeakRef``, whose
    torch calls it makes, one object for all: 0.5 µs a tensor to make, 0.05 µs to check). They own no memory, and
    they are not weak references to the tensors, which ``torch.utils.swap_tensors`` would refuse. `alive` is
    ``False`` once one of the storages has died: its address may then belong to a new tensor. A tensor without a
    storage (a wrapper subclass such as DTensor) is kept instead, by a ``detach`` alias (its memory is kept)."""

    __slots__ = ("refs", "aliases")

    def __init__(self, tensors: list[Tensor]):
        self.refs: list[int] = []
        self.aliases: list[Tensor] = []
        for t in tensors:
            try:
                self.refs.append(t.untyped_storage()._weak_ref())
            except (RuntimeError, NotImplementedError):
                self.aliases.append(t.detach())

    def alive(self) -> bool:
        """Whether every storage still lives (no host sync)."""
        return not any(map(_EXPIRED, self.refs))

    def __del__(self, free: Callable[[int], None] = torch.UntypedStorage._free_weak_ref) -> None:
        for ref in getattr(self, "refs", ()):  # (``free`` bound here: it outlives the module's teardown)
            free(ref)


def view_id(xf: Tensor) -> ViewId | None:
    """The storage of the points ``xf`` ``(B, D)`` (the ``StorageImpl``'s address, which is what `PointStorage.ref`
    holds for it: no weak reference made) and their view of it (storage offset, shape and strides), so parameters
    that are views of one tensor (``[nn.Parameter(c) for c in big.split(4)]``) are told apart; ``None`` for points
    without a storage."""
    try:
        return xf.untyped_storage()._cdata, xf.storage_offset(), tuple(xf.shape), xf.stride()
    except (RuntimeError, NotImplementedError):
        return None


def step_points(xf: Tensor, parameter: Tensor) -> Tensor:
    """The points a lookup at the flat points ``xf`` ``(B, D)`` inside ``parameter``'s update is keyed and pinned by
    (`FactorCache.find`): ``parameter`` seen as ``(B, D)`` where that is a view of it (a contiguous parameter: the
    view ``xf`` itself is, so lookups outside the update find the entry too), else ``parameter`` itself (a
    channels_last or permuted one, whose flat points are a temporary copy: a pin on the copy's storage died with
    it). A query of another size (not the parameter's points) is keyed by ``xf``."""
    if xf.numel() != parameter.numel():
        return xf
    try:
        return parameter.view(xf.shape)
    except RuntimeError:  # (no such view: the flattening copied)
        return parameter


class PointStorage:
    """A weak reference to the storage of the points an entry serves (a parameter the optimiser steps:
    `manifold_factors.CachedFactors.one_step`; its ``copy_`` of each step's new point keeps its storage and view),
    with their view of it (`view_id`), and one to the ``holder`` stepping them (the optimiser, where given). While
    both live the entry is *pinned*: `FactorCache` keeps it beyond `FactorCache.CAPACITY` (one per view, within
    `FactorCache.PIN_LIMIT` entries and `FactorCache.PIN_BYTES`). A finished run's result kept as ``p.detach()``
    keeps the storage alive but not the optimiser (which holds ``p``): its pin ends with the optimiser.
    ``stepped``: an entry made at the next point has inherited it (`FactorCache.add`: a parameter's step), where
    minibatch views of one data set queried in one update never do. It owns no memory; points without a storage
    (a wrapper subclass) pin nothing."""

    __slots__ = ("ref", "view", "stepped", "holder")

    def __init__(self, xf: Tensor, holder: object | None = None):
        try:
            self.ref: int | None = xf.untyped_storage()._weak_ref()
        except (RuntimeError, NotImplementedError):
            self.ref = None
        self.view = (xf.storage_offset(), tuple(xf.shape), xf.stride()) if self.ref is not None else None
        self.stepped = False
        self.holder = None if holder is None else weakref.ref(holder)

    def alive(self) -> bool:
        """Whether the storage and the holder (where given) still live (no host sync)."""
        return self.ref is not None and not _EXPIRED(self.ref) and (self.holder is None or self.holder() is not None)

    def serves(self, view: ViewId | None) -> bool:
        """Whether these are the live points ``view`` (`view_id`: the same storage, offset, shape and strides; no
        host sync) and the pin has not ended (`alive`). The weak reference keeps the dead storage's address from
        being reused while it is held, so equal addresses are the same storage."""
        return view is not None and self.ref == view[0] and self.view == view[1:] and self.alive()

    def copied(self, point: Tensor) -> bool:
        """Whether these points are not a flat view of their storage like ``point`` ``(B, D)`` (the entry's copy of
        the points it serves): a channels_last or permuted parameter's own view (`step_points`), whose flat points
        at a lookup are a fresh copy that `serves` no pin, so `FactorCache.find` compares such entries by value
        outside an update. A contiguous parameter's pin is on its ``(B, D)`` view (``False``: its lookups find it
        by `serves`). No host sync."""
        return self.view is not None and self.view[1] != tuple(point.shape)

    def passing(self, view: ViewId) -> bool:
        """Whether these are other points of the storage of ``view`` (`view_id`) never ``stepped``: a minibatch
        view queried before ``view`` in one update, whose pin ``view``'s replaces (`FactorCache.find`)."""
        return not self.stepped and self.ref == view[0] and self.view != view[1:]

    def __del__(self, free: Callable[[int], None] = torch.UntypedStorage._free_weak_ref) -> None:
        ref = getattr(self, "ref", None)
        if ref is not None:
            free(ref)
