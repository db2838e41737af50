"""Command lines the library prints for the user to paste (resume a run, inspect a model).

POSIX shells read ``shlex.join``'s single quotes; Windows' cmd.exe does not (it passes them on as part of the
names), so there the quoting is ``subprocess.list2cmdline``'s double quotes (tester C, s34).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Sequence

__all__ = ["shell_command"]


def shell_command(words: Sequence[str]) -> str:
    """``words`` as one command line for this platform's shell: cmd.exe's quoting where ``os.name == "nt"``,
    else a POSIX shell's.

    Example:
        >>> shell_command(["learned-manifold", "info", "model.lmm"])
        'learned-manifold info model.lmm'
    """
    words = [os.fspath(w) for w in words]
    return subprocess.list2cmdline(words) if os.name == "nt" else shlex.join(words)
