"""The command line on the user's console: help on a console without the help's symbols, and the compile cache."""

from __future__ import annotations

import argparse
import errno
import os
import subprocess
import sys
import warnings

import pytest

from learned_manifold_training import cli
from learned_manifold_training.cli_console import compile_cache_hint, one_line_warnings


def test_help_prints_on_an_ascii_console():
    """``learned-manifold --help`` and ``train --help`` hold σ and §: a strict ASCII stdout (a cp1252 console, a
    redirected Windows stream, ``LC_ALL=C`` without UTF-8 mode) used to end in a UnicodeEncodeError traceback."""
    env = dict(os.environ, PYTHONIOENCODING="ascii:strict", PYTHONUTF8="0")
    for args in ([], ["train"]):
        run = subprocess.run([sys.executable, "-m", "learned_manifold_training.cli", *args, "--help"], env=env,
                             capture_output=True, timeout=120)
        assert run.returncode == 0, run.stderr.decode(errors="replace")[-500:]
        assert b"Traceback" not in run.stderr and b"usage: learned-manifold" in run.stdout


def test_an_unwritable_compile_cache_is_named_with_its_variable(monkeypatch, tmp_path):
    cache = tmp_path / "afile" / "inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(cache))
    err = NotADirectoryError(errno.ENOTDIR, "Not a directory", str(cache / "xy"))
    hint = compile_cache_hint(err, argparse.Namespace(compile=True))
    assert "TORCHINDUCTOR_CACHE_DIR" in hint and "--compile" in hint
    assert compile_cache_hint(err, argparse.Namespace(compile=False)) == ""  # not a compiled run: not the cache
    other = FileNotFoundError(errno.ENOENT, "No such file", str(tmp_path / "data.npy"))
    assert compile_cache_hint(other, argparse.Namespace(compile=True)) == ""  # the user's own file


def test_out_of_memory_in_the_end_phase_does_not_suggest_the_batch_size(monkeypatch):
    """The end-of-training self-consistency check ran out of memory after training had finished, and the CLI said
    to lower --batch-size, which does not change that check: an error raised below `end_phase` names the end phase
    and ``--resume`` instead."""
    from types import SimpleNamespace

    import torch

    from learned_manifold_training import end_phase
    from learned_manifold_training.cli_console import out_of_memory, out_of_memory_advice

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(end_phase, "select_sigma", no_memory)
    rows = SimpleNamespace(val_x=torch.zeros(2, 3))
    try:
        end_phase.end_phase(None, rows, None, None, None, torch.zeros(2, 3), None, lambda step: None)
    except RuntimeError as err:
        late = err
    assert out_of_memory(late)
    advice = out_of_memory_advice(late)
    assert "end-of-training checks" in advice and "--resume" in advice and "lower --batch-size" not in advice
    try:
        no_memory()
    except RuntimeError as err:
        early = err
    assert out_of_memory_advice(early) == "lower --batch-size (or --hidden, --num-points)"
    assert out_of_memory_advice(MemoryError()) == "lower --batch-size (or --hidden, --num-points)"  # no traceback


def test_the_console_script_shows_a_warning_as_one_line(capsys, monkeypatch, tmp_path):
    """The trainer's σ-range note printed as ``.../input_choices.py:171: UserWarning: sigma_max ...`` and the
    library's source line, beside the command's own ``warning: ...`` lines. The console script (``main()`` without
    argv) shows each as ``warning: MESSAGE``, one line, and restores Python's display when it returns."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        restore = one_line_warnings()
        warnings.warn("sigma_max lies far below the spacing", UserWarning, stacklevel=1)
        restore()
    assert capsys.readouterr().err == "warning: sigma_max lies far below the spacing\n"
    before = warnings.showwarning
    monkeypatch.setattr(sys, "argv", ["learned-manifold", "info", str(tmp_path / "missing.lmm")])
    assert cli.main() == 2
    assert warnings.showwarning is before
    monkeypatch.setattr(sys, "argv", ["learned-manifold", "info", "--no-such-flag"])  # argparse exits: restored too
    with pytest.raises(SystemExit):
        cli.main()
    assert warnings.showwarning is before
