"""How the command line meets its console: error lines, interrupts and the output stream's encoding."""

from __future__ import annotations

import argparse
import os
import sys

import torch

__all__ = ["compile_cache_hint", "out_of_memory", "sigterm_as_interrupt", "tolerant_stdout"]


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation failure (CPU or GPU): a user's setting, not a bug."""
    text = str(err)
    return (isinstance(err, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in text
            or "out of memory" in text.lower())


def sigterm_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def tolerant_stdout() -> None:
    """Let a stdout whose encoding lacks the help's symbols (σ, §, ≤: a cp1252 or ASCII console) print them as "?"
    instead of failing with ``UnicodeEncodeError`` (stderr already escapes them)."""
    reconfigure, encoding = getattr(sys.stdout, "reconfigure", None), getattr(sys.stdout, "encoding", None)
    try:
        "σ§≤·×".encode(encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        if reconfigure is not None:
            try:
                reconfigure(errors="replace")
            except (ValueError, OSError):  # a stream that cannot change its error handler: leave it
                pass


def compile_cache_hint(err: Exception, args: argparse.Namespace) -> str:
    """Name torch.compile's cache folder when an ``OSError`` of a ``--compile`` run comes from it."""
    if not getattr(args, "compile", False) or not isinstance(err, OSError):
        return ""
    path = str(err.filename or "")
    folder = os.environ.get("TORCHINDUCTOR_CACHE_DIR", "")
    if "inductor" not in path.lower() and not (folder and path.startswith(folder)):
        return ""
    return (" (torch.compile's cache folder: set TORCHINDUCTOR_CACHE_DIR to a writable folder, or leave out "
            "--compile)")
