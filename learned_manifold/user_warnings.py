"""Warnings attributed to the user's line, however deep in the library they are raised (tester E, s33).

A fixed ``stacklevel`` counts the frames of one call path; the same check reached through another path (an
optimiser's ``step``, a constructor that builds a field, `full_precision`'s wrapper, the trainer's helpers)
pointed at a library file instead, and because the attributed line then varied, Python's once-per-location
filter repeated the warning. `warn_user` walks the stack instead: the warning is attributed to the first frame
whose module is not in `INTERNAL_PACKAGES` (this library, its training package, geoopt, torch, torchdiffeq).

Where the filter that applies shows a warning once per location (the actions ``"default"``, ``"module"`` and
``"once"``), `warn_user` shows one warning per (user's line, library site, category, text with its numbers
left out), even where the numbers differ between calls (a point count, a residual): a 200-step optimiser loop
or one geodesic solve warns once at the user's line, while different messages from one site (two cautions of
one model file) are all shown. The one shown carries the numbers of its first occurrence (a later "16 of 16
points" from the same line is not shown after "1 of 16"). ``"always"`` and ``"error"`` behave as Python's own.
"""

from __future__ import annotations

import re
import sys
import warnings
from types import FrameType

__all__ = ["INTERNAL_PACKAGES", "warn_user"]

INTERNAL_PACKAGES = ("learned_manifold", "learned_manifold_training", "geoopt", "torch", "torchdiffeq")
"""Top-level packages whose frames are skipped: a warning is attributed to the first frame outside them."""

_ONCE_ACTIONS = ("default", "module", "once")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|\b(?:nan|inf)\b")
_SHOWN: list = [None, (), set()]  # the filter list and its entries the record is valid for; the keys shown


def _internal(frame: FrameType) -> bool:
    """Whether ``frame`` runs code of one of `INTERNAL_PACKAGES` (by its module's ``__name__``)."""
    name = frame.f_globals.get("__name__") or ""
    return name.split(".", 1)[0] in INTERNAL_PACKAGES


def _user_frame(frame: FrameType) -> tuple[FrameType | None, int]:
    """The first frame outside `INTERNAL_PACKAGES` from ``frame`` outwards (``None`` where there is none), and how
    many frames it lies above ``frame`` (0: ``frame`` itself)."""
    steps = 0
    while frame is not None and _internal(frame):
        frame, steps = frame.f_back, steps + 1
    return frame, steps


def _action(text: str, category: type[Warning], module: str, lineno: int) -> str:
    """The action of the first entry of ``warnings.filters`` that matches (as ``warnings.warn_explicit`` reads it)."""
    for action, msg, cat, mod, ln in warnings.filters:
        if ((msg is None or msg.match(text)) and issubclass(category, cat)
                and (mod is None or mod.match(module)) and (ln == 0 or ln == lineno)):
            return action
    return warnings.defaultaction


def _already_shown(key: tuple) -> bool:
    """Whether ``key`` was shown under the current filters, recording it: the record restarts when the filters
    change or another filter list is in force (each ``warnings.catch_warnings`` block has its own)."""
    filters = warnings.filters
    if _SHOWN[0] is not filters or _SHOWN[1] != tuple(filters):
        _SHOWN[:] = [filters, tuple(filters), set()]
    if key in _SHOWN[2]:
        return True
    _SHOWN[2].add(key)
    return False


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message, category)`` attributed to the user's line: the first frame outside
    `INTERNAL_PACKAGES`. Under a once-per-location filter, one warning per (that line, the calling library line,
    ``category``, the text's words), whatever its numbers (module docstring).

    Build ``message`` from numbers read into plain variables first (``largest = float(t.max())``, then
    ``f"{largest:.3g}"``): a host read (``float(t)``, ``.item()``) inside an f-string after a number torch.compile
    holds as a graph input fails in compiled code (torch 2.13: ``TypeError: sequence item N``), and the builtin
    ``format(v, ".3g")`` may ignore its spec there.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("default")
        ...     for step in range(3):  # one line, three texts: shown once
        ...         warn_user(f"step {step}: a caution")
        >>> [str(w.message) for w in caught]
        ['step 0: a caution']
    """
    caller = sys._getframe(1)
    site = (caller.f_code.co_filename, caller.f_lineno)
    frame, steps = _user_frame(caller)
    if frame is None:  # (no frame outside the library: the caller's line, as stacklevel=2 would give)
        warnings.warn(message, category, stacklevel=2)
        return
    module = frame.f_globals.get("__name__") or "<string>"
    action = _action(str(message), category, module, frame.f_lineno)
    if action in _ONCE_ACTIONS:
        where = {"module": module, "once": ""}.get(action, (frame.f_code.co_filename, frame.f_lineno))
        if _already_shown((where, site, category, _NUMBER.sub("#", str(message)))):
            return
    warnings.warn(message, category, stacklevel=steps + 2)
