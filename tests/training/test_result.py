"""A resume of a finished run (`training/result.py`): with a damaged training state, the model file is this run's
result only where it records the same data and settings."""

from __future__ import annotations

import pytest
import torch

from learned_manifold_training.data import Circle
from learned_manifold_training.outputs import state_path
from learned_manifold_training.trainer import TrainConfig, train

TINY = dict(steps=20, batch_size=32, rank=2, hidden=8, depth=1, emb_dim=8, val_points=30, precision="fp32")
DAMAGED = r"cannot resume .*m\.lmm': its training state is damaged, and the finished model file holds a run on other"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run on a circle in R², its state damaged; the file's bytes."""
    out = tmp_path_factory.mktemp("finished") / "m.lmm"
    train(Circle(2).sample(300, generator=torch.Generator().manual_seed(0)), TrainConfig(**TINY), out=out,
          progress=False, device="cpu")
    state_path(out).write_bytes(state_path(out).read_bytes()[:1000])
    return out, out.read_bytes()


@pytest.mark.parametrize("data, settings, said", [
    (Circle(3).sample(300, generator=torch.Generator().manual_seed(0)), {}, r"data_shape: file \[2\], now \[3\]"),
    (3 * Circle(2).sample(300, generator=torch.Generator().manual_seed(0)), {}, r"sigma_min: file [0-9.]+, now "),
    (Circle(2).sample(400, generator=torch.Generator().manual_seed(0)), {}, r"num_points: file 300, now 400"),
    (Circle(2).sample(300, generator=torch.Generator().manual_seed(0)), {"hidden": 16}, r"arch_kwargs: file "),
    (Circle(2).sample(300, generator=torch.Generator().manual_seed(0)), {"seed": 5}, r"seed: file 0, now 5"),
])
def test_a_damaged_state_beside_a_finished_file_of_another_run_is_refused(finished, data, settings, said):
    """It answered "already complete" for data of another dimension (issue H12): with the state unreadable, the
    data and settings are compared with what the file records, and any difference refuses the resume."""
    out, before = finished
    with pytest.raises(ValueError, match=DAMAGED + r" data or with other settings \(.*" + said):
        train(data, TrainConfig(**{**TINY, **settings}), out=out, resume=True, progress=False, device="cpu")
    assert out.read_bytes() == before


def test_a_damaged_state_beside_this_runs_finished_file_is_already_complete(finished):
    out, before = finished
    data = Circle(2).sample(300, generator=torch.Generator().manual_seed(0))
    again = train(data, TrainConfig(**TINY), out=out, resume=True, progress=False, device="cpu")
    assert again.already_complete and again.stopped_at == 20 and out.read_bytes() == before
