"""``learned-manifold demo`` (`learned_manifold_training.demo`): its checks before any work, and what ``--quick``
changes, said."""

from pathlib import Path

import pytest

from learned_manifold_training import demo
from learned_manifold_training.cli import main
from learned_manifold_training.result import load_judged


def test_an_out_that_is_a_file_or_under_one_is_refused_in_words(tmp_path, capsys):
    """``demo --out FILE`` gave "[Errno 17] File exists"; a folder under a file gave "[Errno 20] Not a directory"."""
    afile = tmp_path / "afile"
    afile.write_bytes(b"mine")
    assert main(["demo", "--quick", "--out", str(afile)]) == 2
    assert capsys.readouterr().err == (f"learned-manifold demo: error: --out {str(afile)!r} is a file, not a folder: "
                                       "choose another --out folder\n")
    under = afile / "sub" / "dir"
    assert main(["demo", "--quick", "--out", str(under)]) == 2
    assert f"--out {str(under)!r} is under {str(afile)!r}, a file, not a folder" in capsys.readouterr().err
    assert afile.read_bytes() == b"mine" and sorted(tmp_path.iterdir()) == [afile]


def test_too_few_points_are_refused_by_their_flag_before_any_folder_is_made(tmp_path, capsys):
    """``--num-points 5`` (the parser allows 2) printed two progress lines, made ``new/sub/dir`` and then failed
    with the trainer's "data must be a tensor ... with at least 10 points", leaving the empty folders."""
    out = tmp_path / "new" / "sub" / "dir"
    assert main(["demo", "--quick", "--out", str(out), "--num-points", "5"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "learned-manifold demo: error: --num-points must be at least 10 for the demo to train " \
                           "on, got 5\n"
    assert captured.out == "" and list(tmp_path.iterdir()) == []


class _Stop(Exception):
    pass


def _stop(*args, **kwargs):
    raise _Stop


def test_quick_says_when_it_cuts_the_steps_or_points(tmp_path, monkeypatch, capsys):
    """``demo --quick --steps 3000`` ran 500 steps without a word; the cut is said (and nothing when it cuts
    nothing). Training is stopped at its start: only what is printed before it is checked."""
    monkeypatch.setattr(demo, "train", _stop)
    with pytest.raises(_Stop):
        demo.run_demo(out=str(tmp_path / "a"), n=4000, steps=3000, quick=True, device="cpu")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[demo] --quick caps the run at 1500 points and 500 steps: 1500 points (not 4000) and 500 " \
                       "steps (not 3000)"
    assert "(500 steps)" in lines[2]
    with pytest.raises(_Stop):
        demo.run_demo(out=str(tmp_path / "b"), n=1000, steps=300, quick=True, device="cpu")
    out = capsys.readouterr().out
    assert "--quick" not in out and "(300 steps)" in out and "1000 points" in out


def test_quick_names_only_what_it_cut(tmp_path, monkeypatch, capsys):
    """``demo --quick --steps 50`` said "1500 points, 50 steps (not 4000 and 50)", as if the 50 steps were cut."""
    monkeypatch.setattr(demo, "train", _stop)
    with pytest.raises(_Stop):
        demo.run_demo(out=str(tmp_path / "a"), n=4000, steps=50, quick=True, device="cpu")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[demo] --quick caps the run at 1500 points and 500 steps: 1500 points (not 4000)"
    assert "(50 steps)" in lines[2]
    with pytest.raises(_Stop):
        demo.run_demo(out=str(tmp_path / "b"), n=1000, steps=3000, quick=True, device="cpu")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[demo] --quick caps the run at 1500 points and 500 steps: 500 steps (not 3000)"


def _demo_folder(folder, *, tagged: bool = True):
    """A folder as an earlier demo left it: a tiny model.lmm (the demo's tag in its metadata, or not), report.json
    and spectrum.png; returns ``{name: bytes}`` of its files."""
    from learned_manifold.model_file import save_model
    from learned_manifold.models import MetricModel, ModelConfig

    folder.mkdir()
    model = MetricModel(ModelConfig(data_shape=(2,), rank=2, arch_kwargs={"hidden": 8, "depth": 1}))
    save_model(model, folder / "model.lmm", extra={"data": dict(demo.DEMO_TAG) if tagged else {"name": "mine"}})
    (folder / "report.json").write_text('{"steps": 30}')
    (folder / "spectrum.png").write_bytes(b"an earlier picture")
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_the_demo_refuses_a_folder_of_files_it_did_not_write_before_any_work(tmp_path, monkeypatch, capsys):
    """``demo --out DIR`` replaced a user's own report.json and spectrum.png (only a model.lmm was checked); now
    any file of a name the demo writes is refused unless the folder's model.lmm is a demo's."""
    monkeypatch.setattr(demo, "train", _stop)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.json").write_text('{"my": "precious results"}')
    (mine / "spectrum.png").write_bytes(b"my plot")
    assert main(["demo", "--quick", "--out", str(mine), "--dataset", "circle"]) == 2
    assert capsys.readouterr().err == (f"learned-manifold demo: error: --out {str(mine)!r} holds files the demo "
                                       "writes (report.json, spectrum.png) but no model.lmm of an earlier demo; the "
                                       "demo would replace them: choose another --out folder\n")
    assert (mine / "report.json").read_text() == '{"my": "precious results"}' and len(list(mine.iterdir())) == 2
    (mine / "eigenvectors.png").mkdir()  # not a file: refused even in a demo's folder
    with pytest.raises(ValueError, match="holds 'eigenvectors.png', not a regular file, where the demo writes"):
        demo.check_demo_folder(mine)
    _demo_folder(tmp_path / "foreign", tagged=False)
    with pytest.raises(ValueError, match="holds a model.lmm the demo did not write"):
        demo.check_demo_folder(tmp_path / "foreign")
    _demo_folder(tmp_path / "earlier")
    demo.check_demo_folder(tmp_path / "earlier")  # the demo's own output: replaced


def test_an_interrupted_demo_leaves_its_folder_as_it_was_and_says_so(tmp_path, monkeypatch, capsys):
    """Ctrl-C in the demo's training replaced the earlier complete model.lmm by a partial checkpoint, while the CLI
    said "interrupted; nothing more was written" and report.json described the earlier run. The demo now writes
    into a staging folder, moved into --out only when the run has finished."""
    from learned_manifold_training.runtime import TrainingInterrupted

    folder = tmp_path / "dm"
    before = _demo_folder(folder)

    def interrupted(data, config, *, out, **kwargs):
        out.write_bytes(b"a partial checkpoint")
        raise TrainingInterrupted(5, config.steps, out)

    monkeypatch.setattr(demo, "train", interrupted)
    assert main(["demo", "--out", str(folder), "--dataset", "circle", "--num-points", "300", "--steps", "30",
                 "--device", "cpu"]) == 130
    assert capsys.readouterr().err == f"learned-manifold demo: interrupted; --out {str(folder)!r} is as it was\n"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no staging folder left either


def test_an_interrupted_first_demo_removes_the_folders_it_made(tmp_path, monkeypatch, capsys):
    """A first demo into a new --out made the folder before training; interrupted, it left that empty folder while
    the CLI said "--out ... is as it was". Folders that existed before (the parent here) are kept."""
    from learned_manifold_training.runtime import TrainingInterrupted

    def interrupted(data, config, *, out, **kwargs):
        raise TrainingInterrupted(5, config.steps, out)

    monkeypatch.setattr(demo, "train", interrupted)
    folder = tmp_path / "new" / "dm"
    assert main(["demo", "--out", str(folder), "--dataset", "circle", "--num-points", "300", "--steps", "30",
                 "--device", "cpu"]) == 130
    assert capsys.readouterr().err == f"learned-manifold demo: interrupted; --out {str(folder)!r} is as it was\n"
    assert list(tmp_path.iterdir()) == []
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(RuntimeError, match="failed"), demo.staged(kept):
        raise RuntimeError("failed")
    assert kept.is_dir() and list(kept.iterdir()) == []


def test_a_finished_demo_replaces_its_earlier_files_all_together(tmp_path):
    """`demo.staged` moves the new files in (the model first) and removes the earlier demo's files this run did not
    write (a strip that report.json no longer describes); other files are kept."""
    folder = tmp_path / "dm"
    _demo_folder(folder)
    (folder / "interpolations_2.png").write_bytes(b"an earlier strip")
    (folder / "notes.txt").write_text("mine")
    (folder / ".demo-partial-999999999").mkdir()  # a demo killed with SIGKILL (no such pid)
    with demo.staged(folder) as stage:
        assert stage.parent == folder and (folder / "spectrum.png").read_bytes() == b"an earlier picture"
        (stage / "model.lmm").write_bytes(b"new model")
        (stage / "report.json").write_text("{}")
    assert sorted(p.name for p in folder.iterdir()) == ["model.lmm", "notes.txt", "report.json"]
    assert (folder / "model.lmm").read_bytes() == b"new model"


def test_a_read_only_working_folder_is_named_as_train_and_show_name_theirs(tmp_path, monkeypatch, capsys):
    """``demo`` in a read-only working folder printed only "[Errno 13] Permission denied: 'demo-output'", where
    ``train`` and ``show`` say "the folder '.' is not writable (Permission denied)" (tester B, s30, item 3): the
    demo and the image demo check their folder first and name --out and its default (root ignores ``chmod``, so
    the refusal is simulated)."""
    import errno

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo, "train", _stop)
    monkeypatch.setattr("tempfile.mkstemp", refused)  # `outputs.probe_writable`'s probe
    for dataset in ("circle", "digits"):
        assert main(["demo", "--quick", "--dataset", dataset]) == 2
        assert capsys.readouterr().err == (
            "learned-manifold demo: error: --out 'demo-output' (the default: 'demo-output' in the current folder): "
            "the folder '.' is not writable (Permission denied): choose a writable --out folder\n")
    with pytest.raises(ValueError, match=r"^--out 'new/sub': the folder '\.' is not writable \(Permission denied\)"):
        demo.check_demo_folder(Path("new/sub"))  # a folder to be made: its nearest existing parent is tested
    assert list(tmp_path.iterdir()) == []


def test_the_demos_load_their_model_without_repeating_the_verdict_they_print(tmp_path):
    """A model its checks did not trust warns at load (`ModelFileWarning`); the demos print the checks' reasons
    themselves (`validation.distrust`), so their own load of the model they just trained does not warn again."""
    import warnings

    from learned_manifold import ModelFileWarning, load_model
    from learned_manifold.model_file import save_model
    from learned_manifold.models import MetricModel, ModelConfig

    model = MetricModel(ModelConfig(data_shape=(2,), rank=2, arch_kwargs={"hidden": 8, "depth": 1}))
    path = save_model(model, tmp_path / "model.lmm", extra={"validation": {"neighbour_check": {
        "informative": True, "trusted": False}}})
    with pytest.warns(ModelFileWarning, match="was not trusted by the checks"):
        load_model(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_judged(path)


def test_a_leftover_staging_folder_is_never_probed_with_os_kill_on_windows(tmp_path, monkeypatch):
    """On Windows ``os.kill(pid, 0)`` terminates the process ``pid``: the probe of a leftover
    ``.demo-partial-<pid>`` (a concurrent demo's) killed it. There no signal is sent and the folder is kept (its
    owner may run); elsewhere a dead owner's folder is removed, one with an impossible pid too (no OverflowError)."""
    import os

    folder = tmp_path / "dm"
    folder.mkdir()
    running = folder / f".demo-partial-{os.getppid()}"  # a live process, as a concurrent demo
    huge = folder / f".demo-partial-{10**20}"  # beyond any pid: not a process
    running.mkdir()
    huge.mkdir()
    sent = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    with monkeypatch.context() as windows:
        windows.setattr(os, "name", "nt")
        with demo.staged(folder):
            pass
    assert sent == [] and running.is_dir() and huge.is_dir()
    monkeypatch.undo()  # os.kill as it is
    with demo.staged(folder):
        pass
    assert running.is_dir() and not huge.exists()  # POSIX: the live owner's kept, the impossible pid's removed
