"""Weak references to tensor storages for the factor cache (`learned_manifold.manifold_cache`, SPEC §5):
`StorageRefs` (the field's tensors an entry was made for: an entry one of whose storages has died never hits) and
`PointStorage` (the points an entry serves: it pins the entry, `manifold_cache.FactorCache`), and `storage_id` (the
storage a query's points live in, to find the entry pinned to it). Neither class owns memory nor holds a weak
reference to a tensor, which ``torch.utils.swap_tensors`` would refuse."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["PointStorage", "StorageRefs", "storage_id"]

_EXPIRED = torch.UntypedStorage._expired  # (what torch.multiprocessing.reductions.StorageWeakRef calls)


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


def storage_id(xf: Tensor) -> int | None:
    """The address of the storage of the points ``xf`` ``(B, D)`` (the ``StorageImpl``'s, which is what
    `PointStorage.ref` holds for it: no weak reference made), ``None`` for points without a storage."""
    try:
        return xf.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError):
        return None


class PointStorage:
    """A weak reference to the storage of the points an entry serves (a parameter the optimiser steps:
    `manifold_factors.CachedFactors.one_step`; its ``copy_`` of each step's new point keeps its storage). While
    it lives the entry is *pinned*: `FactorCache` keeps it beyond `FactorCache.CAPACITY` (up to
    `FactorCache.PIN_LIMIT` pinned entries, one per storage). It owns no memory; points without a storage (a wrapper
    subclass) pin nothing."""

    __slots__ = ("ref",)

    def __init__(self, xf: Tensor):
        try:
            self.ref: int | None = xf.untyped_storage()._weak_ref()
        except (RuntimeError, NotImplementedError):
            self.ref = None

    def alive(self) -> bool:
        """Whether the storage still lives (no host sync)."""
        return self.ref is not None and not _EXPIRED(self.ref)

    def serves(self, ref: int | None) -> bool:
        """Whether these are the live points of the storage ``ref`` (`storage_id`; no host sync). The weak
        reference keeps the dead storage's address from being reused while it is held, so equal addresses are the
        same storage."""
        return ref is not None and self.ref == ref and not _EXPIRED(ref)

    def __del__(self, free: Callable[[int], None] = torch.UntypedStorage._free_weak_ref) -> None:
        ref = getattr(self, "ref", None)
        if ref is not None:
            free(ref)
