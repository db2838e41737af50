"""The factor cache's key (`learned_manifold.manifold_cache`, SPEC §5): what it reads of a field (`field_key`,
`field_settings`) and whether an entry may answer a query (`same_field_state`, `cache_hit`).

The key reads the field's module tree (`manifold_field_tree.field_tree`: its parameters and buffers, each one's
identity, version counter and data address), its own tensor attributes (the same), its own plain attributes by value
(`_own_state`), the dtype and device of its first parameter or buffer, and the count of torch's fused optimiser
steps seen on its tensors' storages (`manifold_field_tree.FieldTree.unversioned`; each read keeps those storages for
the step hook, `manifold_field_tree.note_storages`). Its limits, where `LearnedDataManifold.clear_cache` is needed,
are in `manifold_cache`'s docstring.

Settings (`_PLAIN`): bools, numbers (``numbers.Number``: ``int``, ``float``, ``complex``, ``fractions.Fraction``,
``decimal.Decimal``, NumPy's number types such as ``np.float32`` or ``np.int64``), ``np.bool_``, strings, ``None``,
enum members, dtypes and devices: immutable values, read by value (equal values of different types, ``0.5`` and
``np.float32(0.5)``, are one setting). A 0-d tensor attribute is an own tensor (identity and version counter). Which
kind a value is, is decided once per type (`_kind`): a query reads one dict lookup per attribute.
"""

from __future__ import annotations

import enum
import numbers
import operator

import numpy as np
import torch
from torch import Tensor, nn

from .manifold_field_tree import FieldTree, field_tree, note_storages

__all__ = ["FieldKey", "cache_hit", "field_key", "field_settings", "same_field_state"]

_PLAIN = (bool, numbers.Number, np.number, np.bool_, str, type(None), enum.Enum, torch.dtype, torch.device)
"""The types of the settings the key reads by value (module docstring)."""
_VERSION = operator.attrgetter("_version")
_SETTING, _TENSOR, _OTHER = 0, 1, 2
_KINDS: dict[type, int] = {}  # a value's type -> what the key does with it (`_kind`)


def _kind(cls: type) -> int:
    """What the key does with an attribute of type ``cls``: reads it by value (`_SETTING`: one of `_PLAIN`), by
    identity and version (`_TENSOR`) or not at all (`_OTHER`); decided once per type (``numbers.Number`` is an ABC,
    whose check is slow) and kept in `_KINDS`."""
    kind = _KINDS.get(cls)
    if kind is None:
        kind = _SETTING if issubclass(cls, _PLAIN) else _TENSOR if issubclass(cls, Tensor) else _OTHER
        _KINDS[cls] = kind
    return kind


def _own_state(field: nn.Module) -> tuple[list[tuple[str, object]], list[Tensor]]:
    """One pass over the field's own attributes: its plain ones (`_PLAIN`, name and value) in definition order, and
    its tensor attributes that are neither parameters nor buffers (0-d ones included)."""
    settings, own = [], []
    kinds = _KINDS
    for name, value in vars(field).items():
        kind = kinds.get(type(value))
        if kind is None:
            kind = _kind(type(value))
        if kind == _SETTING:
            settings.append((name, value))
        elif kind == _TENSOR:
            own.append(value)
    return settings, own


def _settings(settings: list, tree: FieldTree, values: tuple) -> tuple:
    """``settings`` then the dtype and device of the first parameter or buffer (``None`` without any)."""
    first = None if tree.first is None else values[tree.first]
    return (*settings, None if first is None else (first.dtype, first.device))


def field_settings(field: nn.Module) -> tuple:
    """The field's own plain attributes (name, value) in definition order (`_PLAIN`: numbers, NumPy scalars,
    strings, bools, ``None``, enum members, dtypes, devices: ``sigma``, ``k``, ``centred``, ``precision``, ...), then
    the dtype and device of its first parameter or buffer (``None`` without any)."""
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
    (`_versions`) followed by the count of unversioned optimiser steps seen on them (`FieldTree.unversioned`), and
    the tensors read (the tree's then the own ones; 28 µs for the default MLP, 75 µs for a UNet field). A caller that
    looks up an entry and makes one on a miss reads it once and passes it to both (`cache_hit`, `cache_entry`):
    taken before the factor is computed, it can only make the entry miss later (a field changed meanwhile), never
    hit for a state the factor was not computed in."""
    tree, values = field_tree(field)
    settings, own = _own_state(field)
    tensors = [*tree.tensors(values), *own]
    versions = _versions(tensors)
    if versions is not None:
        note_storages(tree, tensors, versions[len(tensors):])  # (the addresses: `after_optimizer_step` reads them)
        versions += (tree.unversioned,)
    return tree, _settings(settings, tree, values), own, versions, tensors


def same_field_state(field: nn.Module, entry: dict, key: FieldKey | None = None) -> bool:
    """Whether ``field`` is as it was when ``entry`` was made: the same settings, the same tensors (identity: the
    same `FieldTree`, which a replaced tensor such as `KNNCDC.load_state_dict`'s new data renews, and the same own
    tensor attributes) none of which has changed in place since (its version counter, which ``copy_`` and optimiser
    steps bump, and the count of fused optimiser steps on them, `FieldTree.unversioned`) or had its contents swapped
    (its data address: `_versions`, with the entry's storages alive: `StorageRefs`). Inference tensors have no
    version counter: a field holding one never hits. No walk of the module tree unless it changed (`field_tree`).
    ``key``: `field_key`, read now where not given."""
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


def _same_state(a: dict, b: dict) -> bool:
    """Whether entries ``a`` and ``b`` were made for a field in the same state (`same_field_state`'s reading)."""
    return (a["versions"] == b["versions"] and a["tree"]() is b["tree"]() and a["settings"] == b["settings"]
            and len(a["own"]) == len(b["own"]) and all(r() is q() for r, q in zip(a["own"], b["own"], strict=True)))


def _same_layout(a: Tensor, b: Tensor) -> bool:
    """Whether points ``a`` and ``b`` have the same shape, dtype and device (a parameter's next point has)."""
    return a.shape == b.shape and a.dtype == b.dtype and a.device == b.device
