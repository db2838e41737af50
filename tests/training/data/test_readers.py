"""`training.data.readers`: which entry of a file holds the data, and paths recorded in their real characters."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from learned_manifold_training.data import load_array


def test_several_arrays_say_to_save_the_one_to_use_under_the_name_data(tmp_path: Path) -> None:
    """The old message ended "name the one to use 'data'", read as "pass its name" (there is no option for that)."""
    x = np.zeros((4, 2), dtype=np.float32)
    np.savez(tmp_path / "k.npz", X=x, pseudotime=np.zeros(4), gene_means=np.zeros(2))
    label = re.escape(f"data file '{tmp_path / 'k.npz'}'")
    with pytest.raises(ValueError, match=rf"^{label}: holds several arrays \['X', 'gene_means', 'pseudotime'\] and "
                                         r"none named 'data'; save the array to use under the name 'data' "
                                         r"\(np\.savez\(path, data=X, \.\.\.\)\)$"):
        load_array(tmp_path / "k.npz")
    torch.save({"X": torch.zeros(4, 2), "Y": torch.zeros(4, 2)}, tmp_path / "k.pt")
    with pytest.raises(ValueError, match=r"save the array to use under the name 'data' "
                                         r"\(torch\.save\(\{'data': x, \.\.\.\}, path\)\)$"):
        load_array(tmp_path / "k.pt")


def test_path_text_keeps_the_real_characters() -> None:
    from learned_manifold_training.data.readers import path_text

    assert path_text(Path("imgs dir é")) == "imgs dir é"
    assert path_text(b"caf\xc3\xa9/x\xff") == "café/x\\xff"  # bytes that are not UTF-8 kept as \xNN


def test_path_text_under_an_ascii_file_system_encoding() -> None:
    """Under LC_ALL=C PYTHONUTF8=0 PYTHONCOERCECLOCALE=0 the folder 'é' is the str '\\udcc3\\udca9': recorded as
    such before, it was invalid for strict JSON; ``path_text`` gives 'é'."""
    code = ("import sys; from learned_manifold_training.data.readers import path_text; "
            "p = sys.argv[1]; print(ascii(p), ascii(path_text(p)), sys.getfilesystemencoding())")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    out = subprocess.run([sys.executable, "-c", code, "imgs dir é"], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    if out[-1] != "ascii":
        pytest.skip(f"this Python's file-system encoding is {out[-1]} under LC_ALL=C")
    assert out[:-1] == ["'imgs", "dir", "\\udcc3\\udca9'", "'imgs", "dir", "\\xe9'"]
