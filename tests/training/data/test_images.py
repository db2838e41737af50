"""`training.data.images`: 16-bit grey PNGs are uint16 on every Pillow version, and a folder's recorded source is
its path in real characters under an ASCII file-system encoding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from learned_manifold_training.data import load_image_folder

Image = pytest.importorskip("PIL.Image")


def _grey16_folder(folder: Path) -> np.ndarray:
    folder.mkdir()
    values = np.random.default_rng(0).integers(1000, 2000, (3, 6, 5)).astype(np.uint16)
    for i, v in enumerate(values):
        Image.fromarray(v).save(folder / f"{i}.png")
    return values


@pytest.mark.parametrize("old_pillow", [False, True], ids=["pillow-now", "pillow-9.1-mode-I"])
def test_a_16_bit_grey_png_is_uint16_on_every_pillow(tmp_path: Path, monkeypatch, old_pillow: bool) -> None:
    """Pillow 9.1 (the images extra's floor) opens a 16-bit grey PNG as mode "I" (int32): the old reader then
    recorded stored_dtype int32 and the observed range (1002, 1997) instead of uint16 and (0, 65535)."""
    values = _grey16_folder(tmp_path / "png16")
    if old_pillow:
        opened = Image.open

        def open_as_old_pillow(path, *args, **kwargs):
            image = opened(path, *args, **kwargs)
            old = image.convert("I")  # what Pillow 9.1 reads: mode I, int32 pixels
            old.format, old.tile = image.format, image.tile  # its header: 16-bit grey ("I;16B")
            image.close()
            return old

        monkeypatch.setattr(Image, "open", open_as_old_pillow)
        with Image.open(tmp_path / "png16" / "0.png") as probe:
            assert probe.mode == "I" and probe.format == "PNG"
    data = load_image_folder(tmp_path / "png16")
    assert data.stored_dtype == "uint16" and data.value_range == (0.0, 65535.0)
    torch.testing.assert_close(data.x, torch.from_numpy(values.astype(np.float32))[:, None], rtol=0, atol=0)


def test_a_folder_source_is_its_real_path_under_an_ascii_file_system_encoding(tmp_path: Path) -> None:
    """LC_ALL=C PYTHONUTF8=0 PYTHONCOERCECLOCALE=0: 'imgs dir é' was recorded as 'imgs dir \\udcc3\\udca9' (lone
    surrogates, refused by strict JSON readers) in ImageData.source and so in a model file's data.source."""
    folder = tmp_path / "imgs dir é"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((4, 4), i, np.uint8)).save(folder / f"{i}.png")
    code = ("import json, sys; from learned_manifold_training.data import load_image_folder; "
            "print(json.dumps([load_image_folder(sys.argv[1]).metadata()['source'], sys.getfilesystemencoding()]))")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    source, encoding = json.loads(subprocess.run([sys.executable, "-c", code, "imgs dir é"], cwd=tmp_path, env=env,
                                                 capture_output=True, text=True, check=True).stdout)
    if encoding != "ascii":
        pytest.skip(f"this Python's file-system encoding is {encoding} under LC_ALL=C")
    assert source == "imgs dir é"
    source.encode("utf-8")  # no lone surrogates
