"""Files stored in a dtype coarser than float32 (float16, bfloat16): their points may already have merged in the file,
which the float32 check after `validate`'s conversion cannot see (outside test s33/D: S² at offset 200 in float16
kept 785 distinct points of 2,000). `check_stored_resolution` applies the trainer's resolution rule with the stored
dtype's eps, in every reader of point files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learned_manifold_training.data.files import load_array, resolve_data, resolve_source
from learned_manifold_training.runtime import check_stored_resolution


def _circle(offset: float) -> np.ndarray:
    """2,000 points of a unit circle in R², shifted by ``offset`` (float64)."""
    t = np.linspace(0, 2 * math.pi, 2000, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], 1) + offset


@pytest.mark.parametrize("reader", [load_array, lambda p: resolve_data(p)[0], lambda p: resolve_source(p).x])
def test_a_float16_file_far_from_the_origin_is_refused_naming_the_file_and_float16(tmp_path, reader):
    path = tmp_path / "f16.npy"
    np.save(path, _circle(200).astype(np.float16))  # float16 spacing at 200: 0.125, 12.5% of the unit spread
    with pytest.raises(ValueError, match=r"f16\.npy'.*in float16, the file's precision, neighbouring values are "
                                         r"0\.2 apart.*distinct points merge; subtract an offset"):
        reader(path)


def test_the_same_points_are_accepted_near_the_origin_or_in_float32(tmp_path):
    np.save(tmp_path / "near.npy", _circle(0).astype(np.float16))
    np.save(tmp_path / "f32.npy", _circle(200).astype(np.float32))  # float32 spacing at 200: 1.5e-5
    assert load_array(tmp_path / "near.npy").dtype == torch.float32
    assert len(torch.unique(load_array(tmp_path / "f32.npy"), dim=0)) == 2000


def test_bfloat16_uses_its_own_eps():
    """bfloat16's eps is 2⁻⁷: a unit circle at offset 1 (spacing 2⁻⁷ ≈ 0.8% of the spread) already merges."""
    data = torch.tensor(_circle(1.0)).to(torch.bfloat16)
    with pytest.raises(ValueError, match="in bfloat16, the file's precision"):
        check_stored_resolution(data.float(), torch.bfloat16, "data file 'b.pt'")
    check_stored_resolution(data.float(), torch.float32, "data file 'b.pt'")  # float32's eps: fine
