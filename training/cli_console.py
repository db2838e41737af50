"""How the command line meets its console: error lines, interrupts and the output stream's encoding."""

from __future__ import annotations

import argparse
import codecs
import os
import sys

import torch

__all__ = ["ASCII_ERRORS", "compile_cache_hint", "out_of_memory", "sigterm_as_interrupt", "tolerant_stdout"]


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation failure (CPU or GPU): a user's setting, not a bug."""
    text = str(err)
    return (isinstance(err, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in text
            or "out of memory" in text.lower())


def sigterm_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


_ASCII = {"σ": "sigma", "≤": "<=", "≥": ">=", "·": "*", "×": "x", "−": "-", "–": "-", "—": "-", "≈": "~", "…": "...",
          "§": "section ", "²": "^2", "³": "^3", "¹": "^1", "√": "sqrt"}
"""ASCII spellings of the symbols the help and the stored texts use (`info`'s sigma rule: "among σ ≤ 0.5·s")."""
ASCII_ERRORS = "learned_manifold_ascii"
"""The codec error handler `tolerant_stdout` gives stdout: a character its encoding lacks is written in its ASCII
spelling (`_ASCII`), else ``?``; an undecodable file-name byte (a lone surrogate) as the byte, as
``surrogateescape`` does."""


def _ascii_spelling(err: UnicodeError) -> tuple[str | bytes, int]:
    if not isinstance(err, UnicodeEncodeError):
        raise err
    bad = err.object[err.start:err.end]
    if all("\udc80" <= c <= "\udcff" for c in bad):
        return bytes(ord(c) - 0xDC00 for c in bad), err.end
    return "".join(_ASCII.get(c, "?") for c in bad), err.end


codecs.register_error(ASCII_ERRORS, _ascii_spelling)


def tolerant_stdout() -> None:
    """Let a stdout whose encoding lacks the help's and the summaries' symbols (σ, §, ≤: a cp1252 or ASCII console,
    ``LC_ALL=C``) write their ASCII spellings instead of failing with ``UnicodeEncodeError`` (`ASCII_ERRORS`;
    stderr already escapes them)."""
    reconfigure, encoding = getattr(sys.stdout, "reconfigure", None), getattr(sys.stdout, "encoding", None)
    try:
        "σ§≤·×".encode(encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        if reconfigure is not None:
            try:
                reconfigure(errors=ASCII_ERRORS)
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
