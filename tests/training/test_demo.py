"""``learned-manifold demo`` (`learned_manifold_training.demo`): its checks before any work, and what ``--quick``
changes, said."""

import pytest

from learned_manifold_training import demo
from learned_manifold_training.cli import main


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
