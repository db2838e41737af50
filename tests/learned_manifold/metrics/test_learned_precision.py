"""`LearnedCDC(precision="auto")`: the network's precision measured by a forward of the factor network (issue 14)."""

import pytest
import torch

from learned_manifold import precision as P
from learned_manifold.metrics import LearnedCDC
from learned_manifold.models import MetricModel, ModelConfig
from learned_manifold.precision import clear_probe_cache, native_bf16, probe_timer

FASTER = {"bf16": {"fp32": 2e-3, "bf16": 1e-3}, "fp32": {"fp32": 1e-3, "bf16": 2e-3}}


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_probe_cache()
    yield
    clear_probe_cache()


@pytest.fixture
def model():
    torch.manual_seed(0)
    cfg = ModelConfig(data_shape=(5,), rank=3, arch_kwargs={"hidden": 32, "depth": 1, "emb_dim": 16}, centred=False)
    return MetricModel(cfg, scale=2.0, mean=torch.arange(5.0))


def fake(times, log: list):
    def timer(call, precision, device):
        log.append(precision)
        call()
        return times[precision]
    return timer


@pytest.mark.parametrize("faster", ["bf16", "fp32"])
def test_auto_runs_the_network_in_the_precision_measured_faster(monkeypatch, model, faster):
    monkeypatch.setattr(P, "native_bf16", lambda device: True)
    log: list = []
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(1))
    with probe_timer(fake(FASTER[faster], log)):
        field = LearnedCDC(model, precision="auto")
        assert log, "the probe runs when the field is built"
        choice = field.precision_choice
        torch.testing.assert_close(field.factor(x), LearnedCDC(model, precision=faster).factor(x), rtol=0, atol=0)
    assert choice["choice"] == faster and choice["source"] == "measured" and choice["device"] == "cpu"
    assert choice["workload"].startswith(f"factor batch={LearnedCDC.PROBE_BATCH['cpu']} ")
    assert log.count("fp32") == log.count("bf16") >= 6  # warm-up, then two passes of at least two rounds


def test_the_choice_is_cached_per_process_and_explicit_settings_say_so(monkeypatch, model):
    monkeypatch.setattr(P, "native_bf16", lambda device: True)
    log: list = []
    with probe_timer(fake(FASTER["bf16"], log)):
        first = LearnedCDC(model, precision="auto").precision_choice
        n = len(log)
        second = LearnedCDC(model, 0.3, precision="auto").precision_choice  # same network shape, same device
        assert len(log) == n and second == {**first, "source": "cache"}
    assert LearnedCDC(model, precision="bf16").precision_choice["source"] == "explicit"
    assert LearnedCDC(model).precision_choice == {"setting": "fp32", "choice": "fp32", "source": "explicit",
                                                  "reason": "set explicitly"}
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
        LearnedCDC(model, precision="fp16")


def test_a_new_precision_setting_gets_its_own_record_and_probe(monkeypatch, model):
    """``precision`` is a plain attribute: after ``field.precision = ...`` the record (and, for ``"auto"``, the
    probe) follows the new setting, as a fresh field's; it had kept the record of the first setting it was read
    under, so ``"auto"`` never probed (tester C, p04). An unknown setting is refused by name at the next query."""
    monkeypatch.setattr(P, "native_bf16", lambda device: True)
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(3))
    field = LearnedCDC(model)
    assert field.precision_choice["setting"] == "fp32"
    field.precision = "bf16"
    assert field.precision_choice == LearnedCDC(model, precision="bf16").precision_choice
    torch.testing.assert_close(field.factor(x), LearnedCDC(model, precision="bf16").factor(x), rtol=0, atol=0)
    log: list = []
    with probe_timer(fake(FASTER["fp32"], log)):
        field.precision = "auto"
        choice = field.precision_choice
    assert log and choice["setting"] == "auto" and choice["choice"] == "fp32" and choice["source"] == "measured"
    torch.testing.assert_close(field.factor(x), LearnedCDC(model).factor(x), rtol=0, atol=0)
    field.precision = "fp16"
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
        field.factor(x)


def test_auto_on_this_machine_is_consistent_with_its_own_times(model):
    field = LearnedCDC(model, precision="auto")
    choice = field.precision_choice
    if not native_bf16("cpu"):
        assert choice["choice"] == "fp32" and choice["source"] == "no native bf16"
        return
    wins = [b <= 0.9 * f for f, b in zip(choice["fp32_ms"], choice["bf16_ms"], strict=True)]
    assert choice["choice"] == ("bf16" if all(wins) else "fp32")
    assert field.factor(torch.zeros(2, 5)).dtype == torch.float32


def test_a_callers_autocast_leaves_fp32_alone_and_bf16_in_bf16(model):
    """The fields' entry points switch a caller's autocast off (`full_precision`); a bf16 field still runs its
    network under its own bf16 autocast (its factor differs from the fp32 one), with or without the caller's."""
    x, w = torch.randn(6, 5, generator=torch.Generator().manual_seed(2)), torch.randn(6, 5)
    fp32, bf16 = LearnedCDC(model, delta=0.1), LearnedCDC(model, delta=0.1, precision="bf16")
    plain = {f: (f.factor(x), f.apply(x, w), f.metric(x, w), f.inner(x, w, w)) for f in (fp32, bf16)}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = {f: (f.factor(x), f.apply(x, w), f.metric(x, w), f.inner(x, w, w)) for f in (fp32, bf16)}
    for f in (fp32, bf16):
        for a, b in zip(plain[f], inside[f], strict=True):
            assert b.dtype == torch.float32
            torch.testing.assert_close(b, a, atol=0, rtol=0)
    assert not torch.allclose(plain[bf16][0], plain[fp32][0], atol=1e-5, rtol=0)  # bf16 is still bf16
