"""Warnings that torch and geoopt raise on this library's behalf, kept out of users' ``-W error`` suites.

geoopt 0.5.1 (the latest) decorates functions with ``torch.jit.script`` at import, and torch loads its forward-mode
AD decompositions (scripted too) the first time ``torch.func.jvp`` runs. Newer torch deprecates
``torch.jit.script`` with a ``DeprecationWarning`` each time; neither is the user's doing nor this library's.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

__all__ = ["JIT_DEPRECATION", "import_quietly", "load_forward_ad"]

JIT_DEPRECATION = r"`torch\.jit\.script` is deprecated"
_FORWARD_AD = "torch._decomp.decompositions_for_jvp"  # what torch.autograd.forward_ad loads on first use
_loaded = False


def import_quietly(name: str) -> ModuleType:
    """``importlib.import_module(name)`` with torch's ``torch.jit.script`` deprecation warning ignored."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=JIT_DEPRECATION, category=DeprecationWarning)
        return importlib.import_module(name)


def load_forward_ad() -> None:
    """Load torch's forward-mode AD decompositions once, quietly; call before the first ``torch.func.jvp``.

    A torch without that module (older or newer layouts) loads whatever it needs itself, warnings and all.
    """
    global _loaded
    if not _loaded:
        try:
            import_quietly(_FORWARD_AD)
        except ImportError:
            pass
        _loaded = True


import_quietly("geoopt")  # on import of learned_manifold (its __init__ imports this module first)
