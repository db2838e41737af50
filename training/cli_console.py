"""How the command line meets its console: error lines, interrupts and the output stream's encoding."""

from __future__ import annotations

import argparse
import codecs
import os
import sys
import traceback
import warnings
from collections.abc import Callable
from types import FrameType
from typing import NoReturn

import torch

__all__ = ["ASCII_ERRORS", "compile_cache_hint", "one_line_warnings", "out_of_memory", "out_of_memory_advice",
           "sigterm_as_interrupt", "tolerant_stdout"]


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation failure (CPU or GPU): a user's setting, not a bug."""
    text = str(err)
    return (isinstance(err, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in text
            or "out of memory" in text.lower())


END_PHASE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "end_phase.py")
"""The end-of-training phase (`training/end_phase.py`, this module's sibling: bandwidth choice, factor repair,
self-consistency and neighbour checks): an out-of-memory error raised below it comes from the checks on the
held-out points, not from a training batch."""


def out_of_memory_advice(err: BaseException) -> str:
    """What to change after the out-of-memory error ``err`` (`out_of_memory`): ``--batch-size`` and the widths for
    one in training or in a command's own work; for one raised in the end-of-training phase (`END_PHASE_FILE` in
    its traceback) that the training steps are done and saved, that ``--batch-size`` does not change the checks'
    memory, and that ``--resume`` with more free memory runs the end phase alone."""
    frames = traceback.extract_tb(err.__traceback__) if err.__traceback__ is not None else []
    end_phase = os.path.normcase(END_PHASE_FILE)
    if any(os.path.normcase(os.path.abspath(frame.filename)) == end_phase for frame in frames):
        return ("in the end-of-training checks on the held-out points (bandwidth choice, self-consistency, neighbour "
                "check), after the training steps, whose state is saved: --batch-size does not change them; free "
                "memory (or use a larger machine) and run the same command with --resume, which runs this end phase "
                "alone")
    return "lower --batch-size (or --hidden, --num-points)"


def sigterm_as_interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def one_line_warnings() -> Callable[[], None]:
    """Show every warning as the command's own warnings are shown, ``warning: MESSAGE`` on stderr, instead of
    Python's ``FILE:LINE: UserWarning: MESSAGE`` and the library's source line (the trainer's σ-range and flat
    spectrum notes came that way); which warnings show is unchanged (``-W``, ``PYTHONWARNINGS``). Returns the
    function that restores the previous display. For the console script only: a caller of ``main(argv)`` keeps its
    own (pytest's records them)."""
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        try:
            print(f"warning: {message}", file=sys.stderr if file is None else file)
        except (OSError, ValueError):  # stderr closed: as Python's own display, nothing
            pass

    warnings.showwarning = show

    def restore() -> None:
        warnings.showwarning = previous

    return restore


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
