"""The trainer's ``precision="auto"``: a measured choice, recorded in the result and in the model file (issue 14).

Fake timers (`probe_timer`) decide the direction; the runs themselves are real (tiny, on the CPU).
"""

import pytest
import torch

from learned_manifold import precision as P
from learned_manifold.model_file import ModelFileError, read_metadata, save_model
from learned_manifold.precision import clear_probe_cache, probe_timer
from learned_manifold_training.data import Circle
from learned_manifold_training.trainer import TrainConfig, train

TINY = dict(steps=12, batch_size=32, rank=2, hidden=16, depth=1, emb_dim=8, val_points=50, checkpoint_every=6)
FASTER = {"bf16": {"fp32": 2e-3, "bf16": 1e-3}, "fp32": {"fp32": 1e-3, "bf16": 2e-3}}


@pytest.fixture(autouse=True)
def _bf16_precondition(monkeypatch):
    """The CPU passes the native-bf16 precondition (bf16 autocast runs on any CPU, emulated or not)."""
    monkeypatch.setattr(P, "native_bf16", lambda device: True)
    clear_probe_cache()
    yield
    clear_probe_cache()


def fake(times: dict[str, float], seen: list | None = None):
    def timer(call, precision, device):
        call()  # the real step runs: the fake only reports its time
        if seen is not None:
            seen.append(precision)
        return times[precision]
    return timer


@pytest.fixture(scope="module")
def data():
    return Circle(2).sample(200, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("faster", ["bf16", "fp32"])
def test_auto_trains_in_the_precision_its_probe_measured_faster(data, faster):
    seen: list[str] = []
    with probe_timer(fake(FASTER[faster], seen)):
        auto = train(data, TrainConfig(**TINY), progress=False, device="cpu")
    explicit = train(data, TrainConfig(**TINY, precision=faster), progress=False, device="cpu")
    probe = auto.precision_probe
    assert auto.precision == probe["choice"] == faster and probe["source"] == "measured"
    assert probe["fp32_ms"] == [FASTER[faster]["fp32"] * 1e3] * 2
    assert probe["bf16_ms"] == [FASTER[faster]["bf16"] * 1e3] * 2
    assert seen.count("fp32") == seen.count("bf16") >= 6
    # the workload names the step it timed: the default factor target adds the denoiser's forward-mode product
    assert probe["workload"].startswith("train-jacobian batch=32 ") and '"rank": 2' in probe["workload"]
    for k, v in explicit.model.state_dict().items():  # the probe's steps changed nothing: same run as explicit
        torch.testing.assert_close(auto.model.state_dict()[k], v, rtol=0, atol=0, msg=k)
    assert explicit.precision_probe == {"setting": faster, "choice": faster, "source": "explicit",
                                        "reason": "set explicitly"}


def test_the_choice_and_its_times_are_in_the_model_file(tmp_path, data):
    with probe_timer(fake(FASTER["bf16"])):
        result = train(data, TrainConfig(**TINY), out=tmp_path / "m.lmm", progress=False, device="cpu")
    extra = read_metadata(tmp_path / "m.lmm")["extra"]
    assert extra["precision"] == "bf16" and extra["precision_probe"] == result.precision_probe
    assert extra["precision_probe"]["speedup"] == [2.0, 2.0] and "at most 90%" in extra["precision_probe"]["reason"]


def test_a_resumed_auto_run_keeps_the_interrupted_runs_choice(tmp_path, data):
    out = tmp_path / "m.lmm"
    with probe_timer(fake(FASTER["bf16"])):
        full = train(data, TrainConfig(**TINY), progress=False, device="cpu")
        train(data, TrainConfig(**TINY), out=out, progress=False, device="cpu", stop_after=6)
    seen: list[str] = []
    with probe_timer(fake(FASTER["fp32"], seen)):  # a new measurement would now say fp32
        resumed = train(data, TrainConfig(**TINY), out=out, resume=True, progress=False, device="cpu")
    assert resumed.precision == "bf16" and resumed.precision_probe["source"] == "resumed" and not seen
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, rtol=0, atol=0, msg=k)


def test_model_files_without_a_probe_record_still_load_and_a_bad_record_is_refused(tmp_path, data):
    result = train(data, TrainConfig(**{**TINY, "precision": "fp32"}), progress=False, device="cpu")
    save_model(result.model, tmp_path / "old.lmm", extra={"precision": "bf16"})  # as written before issue 14
    assert "precision_probe" not in read_metadata(tmp_path / "old.lmm")["extra"]
    save_model(result.model, tmp_path / "bad.lmm", extra={"precision_probe": "bf16"})
    with pytest.raises(ModelFileError, match="bad.lmm.*'precision_probe'"):
        read_metadata(tmp_path / "bad.lmm")
