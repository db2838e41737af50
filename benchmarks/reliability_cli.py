"""CLI family of the reliability suite: ``learned_manifold_training.cli.main`` called in-process.

Each case builds an argument list for ``train`` (tiny: ``--steps ≤ 5``, ``--hidden 8``, ``--depth 1``, on a
small ``.npy`` written here) or ``info``, sometimes over an existing model file, and classifies the run:
``ok`` (exit 0, the output file loads), ``clean_error`` (exit 2 with one ``error:`` line and no traceback),
``crash`` (any exception escaping ``main``, another exit code, or a traceback on stderr), ``hang`` (past the
time bound) or ``data_lost`` (an existing model file changed or removed by a run that did not write a new one).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile

import numpy as np
from hypothesis import strategies as st

from learned_manifold.model_file import load_model
from learned_manifold_training.cli import main

from .reliability_cases import Context, Outcome, Timeout, time_limit

__all__ = ["cli"]

VALUES = {
    "--steps": ["1", "3", "5", "0", "-2", "2.5", "many", ""],
    "--rank": ["1", "3", "0", "4", "-1", "x"],
    "--batch-size": ["8", "32", "0", "-8", "1e9"],
    "--lr": ["1e-3", "0", "-1", "nan", "inf", "lr"],
    "--sigma-min": ["0.01", "0", "-1", "nan", "5"],
    "--sigma-max": ["2", "0.001", "inf"],
    "--seed": ["0", "7", "-1", "x"],
    "--device": ["cpu", "auto", "cuda:7", "tpu", ""],
    "--num-points": ["50", "1", "0", "-5"],
    "--loss": ["lowrank", "full", "bogus"],
}
DATA = ["good.npy", "missing.npy", "nan.npy", "int.npy", "empty.npy", "text.npy", "circle", "nonsense"]


def _write_data(folder: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3))
    np.save(os.path.join(folder, "good.npy"), (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    bad = x.copy()
    bad[3] = np.nan
    np.save(os.path.join(folder, "nan.npy"), bad)
    np.save(os.path.join(folder, "int.npy"), np.arange(30).reshape(10, 3))
    np.save(os.path.join(folder, "empty.npy"), np.zeros((0, 3)))
    with open(os.path.join(folder, "text.npy"), "w") as f:
        f.write("not an array")


def cli(draw, ctx: Context) -> Outcome:
    """One generated ``train`` or ``info`` command line, run in-process in a fresh folder."""
    command = draw(st.sampled_from(["train", "train", "train", "info"]), label="command")
    existing = draw(st.booleans(), label="existing model")
    with tempfile.TemporaryDirectory() as folder:
        _write_data(folder)
        out = os.path.join(folder, "model.lmm")
        if existing:
            with open(out, "wb") as f:
                f.write(ctx.model_bytes)
        if command == "info":
            target = draw(st.sampled_from(["model.lmm", "good.npy", "missing.lmm", "."]), label="model")
            argv = ["info", os.path.join(folder, target)]
            if draw(st.booleans(), label="--json"):
                argv.append("--json")
        else:
            data = draw(st.sampled_from(DATA), label="data")
            argv = ["train", data if data in ("circle", "nonsense") else os.path.join(folder, data),
                    "--out", out, "--hidden", "8", "--depth", "1", "--steps", "3", "--batch-size", "16",
                    "--num-points", "50", "--no-progress", "--device", "cpu", "--checkpoint-every", "2"]
            for flag in draw(st.lists(st.sampled_from(sorted(VALUES)), max_size=2, unique=True), label="flags"):
                argv += [flag, draw(st.sampled_from(VALUES[flag]), label=flag)]
            argv += draw(st.sampled_from([[], [], ["--overwrite"], ["--resume"], ["--bogus-flag"]]), label="mode")
        return run_cli(argv, out if existing else None, ctx.model_bytes, what=" ".join(argv).replace(folder, "D"))


def run_cli(argv: list[str], guarded: str | None, original: bytes, *, what: str, timeout: float = 60.0) -> Outcome:
    """Run ``main(argv)`` and classify it; ``guarded`` is a model file that must survive a failed run."""
    err, out = io.StringIO(), io.StringIO()
    try:
        with time_limit(timeout), contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = main(argv)
            except SystemExit as stop:  # argparse
                code = stop.code
    except Timeout:
        return Outcome("hang", f"{what}: ran past {timeout} s")
    except Exception as problem:  # noqa: BLE001 - an exception escaping main is the finding
        return Outcome("crash", f"{what}: {type(problem).__name__}: {problem}")
    stderr = err.getvalue()
    if guarded is not None:
        wrote = code == 0 and argv[0] == "train"
        if not os.path.isfile(guarded):
            return Outcome("data_lost", f"{what}: exit {code} and the model file is gone")
        if not wrote:
            with open(guarded, "rb") as f:
                if f.read() != original:
                    return Outcome("data_lost", f"{what}: exit {code} and the model file changed")
    if "Traceback" in stderr:
        return Outcome("crash", f"{what}: traceback on stderr: {stderr[-300:]}")
    if code == 2:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        if not lines or "error" not in lines[-1]:
            return Outcome("crash", f"{what}: exit 2 without an error line: {stderr[-200:]!r}")
        return Outcome("clean_error", f"{what}: {lines[-1][:160]}")
    if code != 0:
        return Outcome("crash", f"{what}: exit code {code!r}: {stderr[-200:]!r}")
    if argv[0] == "train":
        path = argv[argv.index("--out") + 1]
        try:
            load_model(path)
        except Exception as problem:  # noqa: BLE001
            return Outcome("silent_bad_output", f"{what}: exit 0 but the model does not load: {problem}")
    elif not out.getvalue().strip():
        return Outcome("silent_bad_output", f"{what}: exit 0 and nothing printed")
    return Outcome("ok", what)
