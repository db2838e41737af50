"""Weak references to tensor storages for the factor cache (`learned_manifold.manifold_cache`, SPEC §5):
`StorageRefs` (the field's tensors an entry was made for: an entry one of whose storages has died never hits) and
`PointStorage` (the points an entry serves: it pins the entry, `manifold_cache.FactorCache`), and `view_id` (the
storage and view of a query's points, to find the entry pinned to them). Neither class owns memory nor holds a weak
reference to a tensor, which ``torch.utils.swap_tensors`` would refuse."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["PointStorage", "StorageRefs", "ViewId", "view_id"]

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


class PointStorage:
    """A weak reference to the storage of the points an entry serves (a parameter the optimiser steps:
    `manifold_factors.CachedFactors.one_step`; its ``copy_`` of each step's new point keeps its storage and view),
    with their view of it (`view_id`). While the storage lives the entry is *pinned*: `FactorCache` keeps it beyond
    `FactorCache.CAPACITY` (up to `FactorCache.PIN_LIMIT` pinned entries, one per view). ``stepped``: an entry
    made at the next point has inherited it (`FactorCache.add`: a parameter's step), where minibatch views of one
    data set queried in one update never do. It owns no memory; points without a storage (a wrapper subclass) pin
    nothing."""

    __slots__ = ("ref", "view", "stepped")

    def __init__(self, xf: Tensor):
        try:
            self.ref: int | None = xf.untyped_storage()._weak_ref()
        except (RuntimeError, NotImplementedError):
            self.ref = None
        self.view = (xf.storage_offset(), tuple(xf.shape), xf.stride()) if self.ref is not None else None
        self.stepped = False

    def alive(self) -> bool:
        """Whether the storage still lives (no host sync)."""
        return self.ref is not None and not _EXPIRED(self.ref)

    def serves(self, view: ViewId | None) -> bool:
        """Whether these are the live points ``view`` (`view_id`: the same storage, offset, shape and strides; no
        host sync). The weak reference keeps the dead storage's address from being reused while it is held, so
        equal addresses are the same storage."""
        return (view is not None and self.ref == view[0] and self.view == view[1:]
                and not _EXPIRED(self.ref))

    def passing(self, view: ViewId) -> bool:
        """Whether these are other points of the storage of ``view`` (`view_id`) never ``stepped``: a minibatch
        view queried before ``view`` in one update, whose pin ``view``'s replaces (`FactorCache.find`)."""
        return not self.stepped and self.ref == view[0] and self.view != view[1:]

    def __del__(self, free: Callable[[int], None] = torch.UntypedStorage._free_weak_ref) -> None:
        ref = getattr(self, "ref", None)
        if ref is not None:
            free(ref)
