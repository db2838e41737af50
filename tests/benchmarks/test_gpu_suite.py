"""``benchmarks/gpu_suite.sh``: the prepared GPU run cannot rot.

The dry run executes every step for real (tiny sizes, CPU) and each must leave its report; the step logic
(keep going past a failure, exit non-zero naming it, the CUDA options) is checked with a stand-in Python.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"
STEPS = ["throughput", "tangent", "optimizer", "training", "images", "accuracy", "unet_speed"]  # the suite's order


def run_suite(*args: str, timeout: float, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SUITE), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env})


def test_the_dry_run_runs_every_step_and_each_writes_its_report(tmp_path):
    # about 115 s on one free core; the limit only guards against a hang (a loaded CI machine took over 240 s)
    done = run_suite("--dry-run", timeout=600, OUT_DIR=str(tmp_path), PYTHON=sys.executable)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in STEPS:
        assert f"[{name}] ok in" in done.stdout, done.stdout
        record = json.loads((tmp_path / f"{name}.json").read_text())
        assert record["benchmark"] == name and record["environment"]["device"].startswith("CPU")
        assert (tmp_path / f"{name}.md").read_text().startswith("## ")
        assert (tmp_path / "logs" / f"{name}.log").exists()
    assert "every step succeeded" in done.stdout
    rates = json.loads((tmp_path / "throughput.json").read_text())["results"]["network_rates"]
    assert set(rates) == {"fp32", "bf16 autocast", "torch.compile fp32", "torch.compile + bf16"}
    assert all(r["status"] == "ok" and r["queries_per_s"] > 0 for r in rates.values())
    throughput_md = (tmp_path / "throughput.md").read_text()  # eager timings are not labelled "torch.compile … ok"
    assert "| TORCH_COMPILE_DISABLE | 1 |" in throughput_md
    assert throughput_md.count("| compile disabled (eager) |") == 2
    training = json.loads((tmp_path / "training.json").read_text())["results"]
    recipes = training["recipe_vs_plain"]
    assert recipes["status"] == "ok" and recipes["ratio_median"]
    assert all(ratio > 0 for ratio in recipes["ratio_median"].values())
    auto = training["speed"]["auto"]
    assert auto["precision"] == auto["precision_probe"]["choice"]


@pytest.fixture
def stand_in(tmp_path) -> Path:
    """A fake ``python``: logs its arguments; ``-m benchmarks.tangent`` fails, every other step writes its files
    (the step named by ``$SLOW_STEP`` then sleeps ``$SLOW_SECONDS``; the one named by ``$SILENT_STEP`` sleeps as
    long and writes nothing)."""
    script = tmp_path / "python"
    script.write_text(f"""#!/usr/bin/env bash
echo "$*" >> {tmp_path}/calls
[ "$1" = "-c" ] && exit 0
name="${{2#benchmarks.}}"
out=""; prev=""
for a in "$@"; do [ "$prev" = "--out" ] && out="$a"; prev="$a"; done
[ "$name" = tangent ] && {{ echo "tangent broke" >&2; exit 3; }}
[ "$name" = "${{SILENT_STEP:-}}" ] && {{ sleep "$SLOW_SECONDS"; exit 0; }}
echo '{{}}' > "$out/$name.json"; echo '## x' > "$out/$name.md"
[ "$name" = "${{SLOW_STEP:-}}" ] && sleep "$SLOW_SECONDS"
exit 0
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_a_failing_step_does_not_stop_the_others_and_the_suite_fails_naming_it(tmp_path, stand_in):
    out = tmp_path / "out"
    done = run_suite(timeout=60, OUT_DIR=str(out), PYTHON=str(stand_in))
    assert done.returncode == 1
    assert "1 step(s) failed: tangent" in done.stderr
    assert "[tangent] FAILED: exit 3" in done.stdout and "tangent broke" in done.stdout
    for name in ("throughput", "optimizer", "training", "unet_speed", "images", "accuracy"):
        assert f"[{name}] ok in" in done.stdout
    calls = (tmp_path / "calls").read_text().splitlines()
    assert "-m benchmarks.throughput --device cuda --out" in calls[1]
    assert calls[1].endswith("--compile --sizes 16384 1048576 8388608")
    assert any(c.startswith("-m benchmarks.accuracy --device cuda") and "--sizes 100000 --steps 6000 --threads" in c
               for c in calls)
    assert any(c.startswith("-m benchmarks.training --device cuda") and "--no-accuracy" in c for c in calls)


def test_a_step_that_writes_no_report_is_a_failure_and_bad_arguments_are_refused(tmp_path, stand_in):
    lazy = tmp_path / "lazy"
    lazy.write_text("#!/usr/bin/env bash\nexit 0\n")
    lazy.chmod(lazy.stat().st_mode | stat.S_IEXEC)
    done = run_suite(timeout=60, OUT_DIR=str(tmp_path / "out"), PYTHON=str(lazy))
    assert done.returncode == 1 and "exit 0 but no throughput.json" in done.stdout
    assert f"{len(STEPS)} step(s) failed" in done.stderr
    bad = run_suite("--fast", timeout=60)
    assert bad.returncode == 2 and "usage: bash benchmarks/gpu_suite.sh [--dry-run]" in bad.stderr


def test_a_step_past_its_cap_is_stopped_keeping_its_report_and_the_budget_skips_what_it_cannot_fit(tmp_path, stand_in):
    out = tmp_path / "out"
    done = run_suite(timeout=60, OUT_DIR=str(out), PYTHON=str(stand_in), STEP_TIMEOUT="2", SLOW_STEP="optimizer",
                     SLOW_SECONDS="30")
    assert "[optimizer] FAILED: timed out after 2 s" in done.stdout
    assert "the partial report it wrote before then is kept" in done.stdout and (out / "optimizer.json").exists()
    assert "[training] ok in" in done.stdout  # the steps after it still run
    assert done.returncode == 1 and "step(s) failed: tangent optimizer" in done.stderr
    # a 65 s budget: throughput (60 s at least) sleeps 8 s, which leaves about 57 s: the steps that need more are
    # skipped, not started, and those that need less still run
    out = tmp_path / "budget"
    done = run_suite(timeout=60, OUT_DIR=str(out), PYTHON=str(stand_in), SUITE_BUDGET="65",
                     SLOW_STEP="throughput", SLOW_SECONDS="8")
    assert "[throughput] ok in" in done.stdout and "and 65s in all" in done.stdout
    skipped = ["images", "accuracy"]  # 120 s and 130 s at least; every step writes as it goes, so the others,
    for name in skipped:              # whose first rows need less, start on what is left
        assert f"[{name}] skipped: it needs at least" in done.stdout and not (out / f"{name}.json").exists()
    for name in ("optimizer", "training", "unet_speed"):
        assert f"[{name}] ok in" in done.stdout
    assert "[tangent] skipped" not in done.stdout and "1 step(s) failed: tangent" in done.stderr  # the stand-in's
    assert f"2 step(s) skipped for lack of time (SUITE_BUDGET=65 s): {' '.join(skipped)}" in done.stdout  # fails
    assert done.returncode == 1
    done = run_suite(timeout=60, OUT_DIR=str(out), PYTHON=str(stand_in), SUITE_BUDGET="15")  # fits no step
    assert done.returncode == 1 and "gpu_suite: no step ran" in done.stderr


def test_suite_steps_runs_only_the_steps_named(tmp_path, stand_in):
    out = tmp_path / "out"
    done = run_suite(timeout=60, OUT_DIR=str(out), PYTHON=str(stand_in), SUITE_STEPS="accuracy throughput")
    assert done.returncode == 0 and "every step succeeded" in done.stdout
    assert sorted(p.stem for p in out.glob("*.json")) == ["accuracy", "throughput"]
    assert "[training] not run (not in SUITE_STEPS)" in done.stdout


def test_a_step_is_skipped_when_less_is_left_than_it_needs_and_the_most_wanted_steps_run_first(tmp_path, stand_in):
    # the budget skipped a step only under 20 s, so a step was started with less than it could use and cut with
    # nothing written; the caps added up to 880 s against 540 s (tester F, item 5)
    out = tmp_path / "out"
    done = run_suite(timeout=60, OUT_DIR=str(out), PYTHON=str(stand_in), SUITE_BUDGET="100")
    calls = [c.split()[1].removeprefix("benchmarks.") for c in (tmp_path / "calls").read_text().splitlines()[1:]]
    assert calls == ["throughput", "tangent", "optimizer", "training", "unet_speed"]
    assert "[images] skipped: it needs at least 120 s" in done.stdout
    assert "[accuracy] skipped: it needs at least 130 s" in done.stdout
    assert 'run them apart with SUITE_STEPS="images accuracy"' in done.stdout
    assert done.returncode == 1 and "1 step(s) failed: tangent" in done.stderr  # the stand-in's tangent fails
    text = SUITE.read_text()
    caps = {name: int(text.split(f"CAP_{name}=")[1].split()[0]) for name in STEPS}
    assert sum(caps[name] for name in STEPS[:5]) <= int(text.split('SUITE_BUDGET="${SUITE_BUDGET:-')[1].split("}")[0])


def test_accuracy_runs_on_every_host_core_on_cuda(tmp_path, stand_in):
    # accuracy's CPU default of one thread did its CPU-side work on one core of a 16-core GPU host (tester F, item 7)
    run_suite(timeout=60, OUT_DIR=str(tmp_path / "out"), PYTHON=str(stand_in), SUITE_STEPS="accuracy")
    call = (tmp_path / "calls").read_text().splitlines()[1]
    cores = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()  # OMP_NUM_THREADS too
    assert call.endswith(f"--sizes 100000 --steps 6000 --threads {cores}"), call


def test_a_report_from_an_earlier_run_is_moved_aside_and_never_counts_as_this_runs(tmp_path, stand_in):
    # the committed cuda reports were taken for this run's: "ok" for a step that wrote nothing, "kept" for one
    # cut before writing (tester F, item 1)
    out = tmp_path / "out"
    out.mkdir()
    for name in ("optimizer", "training"):
        (out / f"{name}.json").write_text('{"date_utc": "2026-12-04"}')
        (out / f"{name}.md").write_text("## old")
    lazy = tmp_path / "lazy"
    lazy.write_text("#!/usr/bin/env bash\nexit 0\n")
    lazy.chmod(lazy.stat().st_mode | stat.S_IEXEC)
    done = run_suite(timeout=60, OUT_DIR=str(out), PYTHON=str(lazy), SUITE_STEPS="optimizer")
    assert done.returncode == 1 and "[optimizer] FAILED: exit 0 but no optimizer.json" in done.stdout
    (earlier,) = (out / "earlier").iterdir()
    assert f"[optimizer] moved the earlier optimizer.json/.md to {earlier}" in done.stdout
    assert (earlier / "optimizer.json").read_text() == '{"date_utc": "2026-12-04"}'
    assert not (out / "optimizer.json").exists() and (out / "training.json").exists()  # a step not run: untouched
    done = run_suite(timeout=60, OUT_DIR=str(out), PYTHON=str(stand_in), SUITE_STEPS="training",
                     STEP_TIMEOUT="2", SILENT_STEP="training", SLOW_SECONDS="30")
    assert "[training] FAILED: timed out after 2 s" in done.stdout and "it wrote no report" in done.stdout
    assert "kept" not in done.stdout and not (out / "training.json").exists()


def test_an_unknown_step_name_is_refused_before_anything_runs(tmp_path, stand_in):
    # "unet image" ran nothing and ended "every step succeeded" (tester F, item 2)
    out = tmp_path / "out"
    done = run_suite(timeout=60, OUT_DIR=str(out), PYTHON=str(stand_in), SUITE_STEPS="unet image")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"gpu_suite: SUITE_STEPS names no step called: unet image; the steps are: {' '.join(STEPS)}\n"
    assert not (tmp_path / "calls").exists() and not out.exists()


def test_a_relative_out_dir_is_the_callers_and_is_printed_absolute(tmp_path, stand_in):
    # OUT_DIR=myresults wrote to the repository root and printed "results in myresults" (tester F, item 4)
    done = run_suite(timeout=60, cwd=tmp_path, OUT_DIR="myresults", PYTHON=str(stand_in), SUITE_STEPS="optimizer")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "myresults" / "optimizer.json").exists() and not (ROOT / "myresults").exists()
    assert f"results in {tmp_path / 'myresults'}," in done.stdout.splitlines()[0]
    assert f"--out {tmp_path / 'myresults'} " in done.stdout
