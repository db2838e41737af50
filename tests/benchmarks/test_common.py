"""``benchmarks/common.py``: every script's ``--help`` states its real defaults, a ``--quick`` run without ``--out``
never writes over committed results, compiled settings run eagerly under ``TORCH_COMPILE_DISABLE=1`` say so, and
every header says whether the code that ran differs from the commit it names."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import common, provenance  # noqa: E402

SCRIPTS = ["accuracy", "accuracy_grid", "compare", "curvature", "image_paths", "images", "latent", "optimizer",
           "probe_fit", "recipe", "reliability", "roll_chain", "tangent", "throughput", "training", "unet_speed"]


class _Parsed(Exception):
    def __init__(self, parser):
        self.parser = parser


def _parser_of(name: str, monkeypatch):
    """The parser ``benchmarks.NAME.main`` builds, caught at its call to `parse_args` (nothing is run)."""
    module = importlib.import_module(f"benchmarks.{name}")

    def catch(parser, argv=None):
        raise _Parsed(parser)

    monkeypatch.setattr(module, "parse_args", catch)
    with pytest.raises(_Parsed) as caught:
        module.main([])
    return caught.value.parser


def _help(parser, dest: str) -> str:
    return next(action.help for action in parser._actions if action.dest == dest)


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_states_the_real_defaults_and_quick_runs_go_to_benchmarks_out(name, monkeypatch):
    """The help said ``benchmarks/out`` and torch's threads for all; ten scripts wrote elsewhere (reliability
    ``--quick`` overwrote the committed 200-example report), most with one thread."""
    parser = _parser_of(name, monkeypatch)
    threads = torch.get_num_threads()
    try:
        full = common.parse_args(parser, [])
        quick = common.parse_args(parser, ["--quick"])
    finally:
        torch.set_num_threads(threads)
    out_help = _help(parser, "out").replace("<device>", "cpu")
    assert f"(default: {full.out}" in out_help, (out_help, full.out)
    assert quick.out == common.DEFAULT_OUT and str(common.DEFAULT_OUT) in out_help
    threads_help = _help(parser, "threads")
    stated = "torch's default, from OMP_NUM_THREADS" if full.threads is None else str(full.threads)
    assert f"(default: {stated})" in threads_help, (threads_help, full.threads)


def test_output_folder_keeps_quick_runs_out_of_committed_results():
    results = "benchmarks/results/<device>/probe-fit"
    assert common.output_folder(None, quick=True, device="cpu", results=results) == Path("benchmarks/out")
    assert common.output_folder(None, quick=False, device="cuda", results=results) == \
        Path("benchmarks/results/cuda/probe-fit")
    assert common.output_folder(None, quick=False, device="cpu", results=None) == Path("benchmarks/out")
    assert common.output_folder(Path("/x"), quick=True, device="cpu", results=results) == Path("/x")


def test_out_that_cannot_be_written_is_refused_when_parsed(tmp_path, capsys):
    """A ``--out`` that is a file failed only in `write_report`, after the whole run, with a traceback."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    parser = common.make_parser("test")
    for out, why in ((afile, "is a file, not a folder"), (afile / "sub", f"is under {str(afile)!r}, a file")):
        with pytest.raises(SystemExit) as stop:
            common.parse_args(parser, ["--out", str(out)])
        assert stop.value.code == 2
        assert f"error: --out {str(out)!r} {why}" in capsys.readouterr().err.replace("\n", " ")
    assert common.output_problem(tmp_path / "new" / "deeper") is None  # created by write_report
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        problem = common.output_problem(locked / "sub")
        if problem is not None:  # (root may write anyway)
            assert problem.startswith(f"--out {str(locked / 'sub')!r}: the folder {str(locked)!r} is not writable")
    finally:
        locked.chmod(0o700)


def test_compiled_settings_say_when_torch_compile_was_disabled(monkeypatch):
    """With ``TORCH_COMPILE_DISABLE=1`` (the GPU suite's dry run) eager timings were labelled "torch.compile … ok"."""
    monkeypatch.setenv("TORCH_COMPILE_DISABLE", "1")
    assert common.compile_status("ok", True) == "compile disabled (eager)" == common.COMPILE_DISABLED
    assert common.compile_status("ok", False) == "ok"
    assert common.compile_status("timed out after 20 s", True) == "timed out after 20 s"
    assert common.environment(torch.device("cpu"))["TORCH_COMPILE_DISABLE"] == "1"
    monkeypatch.delenv("TORCH_COMPILE_DISABLE")
    assert common.compile_status("ok", True) == "ok"
    assert common.environment(torch.device("cpu"))["TORCH_COMPILE_DISABLE"] == "unset"


class _Stop(Exception):
    pass


@pytest.mark.parametrize("name, work, argv", [
    ("curvature", "train", ["--quick"]),
    ("roll_chain", "cli", ["--quick"]),
    ("image_paths", "get_image_dataset", ["--quick"]),
    ("images", "run_table1", ["--quick", "--parts", "table1"]),
    ("recipe", "run_candidate", ["--quick", "--data", "roll", "--seeds", "0", "--candidates", "before"]),
    ("reliability", "build_context", ["--quick"]),
])
def test_the_header_is_taken_before_the_work(name, work, argv, monkeypatch, tmp_path):
    """``date_utc`` and ``load_average_at_start`` were read inside the final `write_report`, at the end of the run
    (tester F, item 3): `environment` must run before the script's first piece of work."""
    module = importlib.import_module(f"benchmarks.{name}")
    calls = []
    monkeypatch.setattr(module, "environment", lambda device: calls.append("environment") or {})

    def first_work(*args, **kwargs):
        calls.append("work")
        raise _Stop

    monkeypatch.setattr(module, work, first_work)
    with pytest.raises(_Stop):
        module.main([*argv, "--out", str(tmp_path)])
    assert calls == ["environment", "work"]


def test_the_written_header_holds_the_date_and_load_of_the_start(monkeypatch, tmp_path):
    """The report's date and start load are those before the work; its end load is the one after."""
    from datetime import datetime

    from benchmarks import images

    done = []

    class Clock(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2031 if done else 2030, 1, 1, tzinfo=tz)

    def load() -> str:
        return "after" if done else "before"

    monkeypatch.setattr(provenance, "datetime", Clock)
    monkeypatch.setattr(provenance, "load_average", load)  # the header's, taken by `environment`
    monkeypatch.setattr(common, "load_average", load)  # the end's, taken by `write_report`
    monkeypatch.setattr(images, "run_table1", lambda *args, **kwargs: done.append(1) or [])
    assert images.main(["--quick", "--parts", "table1", "--out", str(tmp_path)]) == 0
    env = json.loads((tmp_path / "images.json").read_text())["environment"]
    assert env["date_utc"].startswith("2030-01-01") and env["load_average_at_start"] == "before"
    assert env["load_average_at_end"] == "after"


def test_a_report_rewrite_cut_mid_write_leaves_the_previous_report_whole(tmp_path, monkeypatch):
    """Reports are rewritten after every row, and the GPU suite may kill a step at any moment: each file is written
    beside its target and moved over it (``os.replace``), so a cut (here: the move itself fails) leaves the previous
    report whole, never a truncated JSON that the suite would count as written (reviewer s31)."""
    from benchmarks.common import Table, write_report

    table = Table("rows", ["a"], [["1"]])
    write_report(tmp_path, "step", title="t", env={}, settings={}, tables=[table], results={"rows": 1})
    before = (tmp_path / "step.json").read_text()

    def cut(src, dst):
        raise KeyboardInterrupt  # as a timeout's signal arriving between the write and the move

    monkeypatch.setattr(os, "replace", cut)
    with pytest.raises(KeyboardInterrupt):
        write_report(tmp_path, "step", title="t", env={}, settings={}, tables=[table], results={"rows": 2})
    assert (tmp_path / "step.json").read_text() == before
    assert json.loads(before)["results"] == {"rows": 1}


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=repo,
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs the git executable")
def test_the_header_says_whether_the_tracked_files_differ_from_the_commit(tmp_path):
    """A run from uncommitted code names its parent commit (`git_commit` reads ``.git`` only), so the header says
    beside it whether tracked files differ (``git_dirty``); files never added do not count (reviewer s33/B p01)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    _git(repo, "add", "a.py")
    _git(repo, "commit", "-q", "-m", "one")
    assert common.git_commit(repo / "a.py") == _git(repo, "rev-parse", "HEAD")
    assert common.git_dirty(repo / "a.py") == "no"
    (repo / "new.py").write_text("untracked\n")
    assert common.git_dirty(repo) == "no"
    (repo / "a.py").write_text("x = 2\n")  # same commit, other code: only git_dirty tells them apart
    assert common.git_commit(repo) == _git(repo, "rev-parse", "HEAD")
    assert common.git_dirty(repo) == "yes: 1 tracked file(s) differ from the commit (a.py)"
    for i in range(6):
        (repo / f"b{i}.py").write_text("y\n")
    _git(repo, "add", *(f"b{i}.py" for i in range(6)))  # staged counts too; five are named, the rest counted
    assert common.git_dirty(repo) == "yes: 7 tracked file(s) differ from the commit (a.py, b0.py, b1.py, b2.py, " \
                                     "b3.py, and 2 more)"


def test_git_dirty_is_unknown_without_git_and_never_fails(tmp_path, monkeypatch):
    """CI and lent machines may have no git executable or no repository: the run goes on, marked ``unknown``."""
    outside = tmp_path / "plain"
    outside.mkdir()
    assert common.git_dirty(outside).startswith("unknown")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no git on the path
    assert common.git_dirty().startswith("unknown (git status could not run")


def test_every_report_header_records_git_dirty_beside_the_commit(tmp_path):
    """`environment` (every benchmark's header) holds ``git_dirty`` right after ``git_commit``, and the written
    markdown header shows it."""
    env = common.environment(torch.device("cpu"))
    keys = list(env)
    assert keys[keys.index("git_commit") + 1] == "git_dirty"
    assert env["git_dirty"] == "no" or env["git_dirty"].startswith(("yes: ", "unknown ("))
    common.write_report(tmp_path, "step", title="t", env=env, settings={}, tables=[], results={})
    assert f"| git_dirty | {env['git_dirty']} |" in (tmp_path / "step.md").read_text()
