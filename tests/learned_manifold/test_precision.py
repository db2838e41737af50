"""Precision settings: ``"auto"`` picks bf16 only where its own probe measured bf16 clearly faster (issue 14).

The decision is tested with fake timers (`probe_timer` / ``timer=``), which return chosen seconds per
precision, so every direction of the rule is exercised on any machine; one test times a real workload.
"""

import json
import os
import random
import socket
import subprocess
import sys

import pytest
import torch
from torch import nn

from learned_manifold import precision as P
from learned_manifold.precision import (
    BF16_MARGIN,
    PRECISIONS,
    check_precision,
    choose_precision,
    clear_probe_cache,
    full_precision,
    native_bf16,
    probe_precision,
    probe_timer,
    workload_key,
)


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_probe_cache()
    yield
    clear_probe_cache()


@pytest.fixture
def bf16_device(monkeypatch):
    """Make the CPU pass the native-bf16 precondition, so that the probe measures on any machine."""
    monkeypatch.setattr(P, "native_bf16", lambda device: True)


def fixed(times: dict[str, float], calls: list | None = None):
    """A fake timer: ``times[precision]`` seconds per call; runs the call and logs the precision when asked."""
    def timer(call, precision, device):
        if calls is not None:
            call()
            calls.append(precision)
        return times[precision]
    return timer


def work():
    return torch.ones(3)


def never(*args, **kwargs):
    raise AssertionError("the workload must not run")


# ---------------------------------------------------------------------------------------------------------
# settings


def test_explicit_settings_pass_through_without_running_the_work():
    for setting in ("fp32", "bf16"):
        choice, record = choose_precision(setting, "cpu", never, key="k")
        assert choice == setting
        assert record == {"setting": setting, "choice": setting, "source": "explicit", "reason": "set explicitly"}


def test_unknown_setting_names_the_choices_before_any_work():
    for bad in ("fp8", None, 16):
        with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
            choose_precision(bad, "cpu", never, key="k")
    with pytest.raises(ValueError, match="dtype must be one of"):
        check_precision("fp16", "dtype")
    for bad, match in (({"passes": 0}, "passes must be an integer >= 1"), ({"warmup": 1.5}, "warmup must be"),
                       ({"margin": 1.0}, "margin"), ({"budget_s": 0}, "budget_s")):
        with pytest.raises(ValueError, match=match):
            probe_precision(never, "cpu", key="k", **bad)
    assert PRECISIONS == ("auto", "fp32", "bf16") and BF16_MARGIN == 0.10


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the CPU flags are read from Linux's /proc/cpuinfo")
def test_native_bf16_matches_the_cpu_flags():
    with open("/proc/cpuinfo") as f:
        flags = {w for line in f if line.startswith("flags") for w in line.split()}
    assert flags, "no CPU flags found in /proc/cpuinfo"
    assert native_bf16("cpu") == bool(flags & {"avx512_bf16", "amx_tile"})
    assert native_bf16(torch.device("meta")) is False


# ---------------------------------------------------------------------------------------------------------
# the decision


@pytest.mark.parametrize("fp32_s, bf16_s, expected", [
    (1.0, 0.5, "bf16"),   # bf16 twice as fast
    (0.5, 1.0, "fp32"),   # bf16 twice as slow (the 2-core Xeon of issue 14)
    (1.0, 0.95, "fp32"),  # 5% faster: inside the margin, fp32 stays
    (1.0, 0.9, "bf16"),   # exactly the margin
])
def test_auto_chooses_by_the_measured_times(bf16_device, fp32_s, bf16_s, expected):
    calls: list[str] = []
    choice, record = choose_precision("auto", "cpu", work, key="k", timer=fixed({"fp32": fp32_s, "bf16": bf16_s},
                                                                                 calls))
    assert choice == record["choice"] == expected
    assert record["source"] == "measured" and record["setting"] == "auto"
    assert record["fp32_ms"] == [fp32_s * 1e3] * 2 and record["bf16_ms"] == [bf16_s * 1e3] * 2  # two passes
    assert record["speedup"] == [round(fp32_s / bf16_s, 4)] * 2
    assert f"{fp32_s * 1e3:.3g}" in record["reason"] and f"{bf16_s * 1e3:.3g}" in record["reason"]
    assert calls.count("fp32") == calls.count("bf16") == 1 + 2  # costly calls: 1 warm-up, 2 passes of 1 round


def test_auto_never_picks_a_precision_its_probe_measured_slower(bf16_device):
    """Noisy fake timings drawn at random: whatever the probe measured, its choice agrees with its record."""
    rng = random.Random(0)
    seen = set()
    for trial in range(300):
        centre = {"fp32": 1.0, "bf16": rng.uniform(0.5, 1.5)}
        noise = rng.uniform(0.0, 0.5)

        def timer(call, precision, device, centre=centre, noise=noise):
            return centre[precision] * (1 + rng.uniform(-noise, noise))

        clear_probe_cache()
        record = probe_precision(work, "cpu", key=f"trial {trial}", timer=timer)
        pairs = list(zip(record["fp32_ms"], record["bf16_ms"], strict=True))
        if record["choice"] == "bf16":
            assert all(b <= (1 - BF16_MARGIN) * f + 1e-9 for f, b in pairs), record
        else:
            assert any(b > (1 - BF16_MARGIN) * f - 1e-9 for f, b in pairs), record
        seen.add(record["choice"])
    assert seen == {"fp32", "bf16"}  # both directions were exercised


def test_bf16_must_win_in_every_pass(bf16_device):
    """A bf16 win in one pass and a loss in the other is not a clear win: fp32."""
    state = {"n": 0}
    def timer(call, precision, device):
        state["n"] += 1
        late = state["n"] > 4 + 2 * 2  # after the warm-up (2 + 2 calls) and the first pass (2 rounds x 2)
        return {"fp32": 1e-3, "bf16": 1.2e-3 if late else 0.5e-3}[precision]

    record = probe_precision(work, "cpu", key="k", timer=timer, max_repeats=2)
    assert record["bf16_ms"] == [0.5, 1.2] and record["choice"] == "fp32" and record["repeats"] == 2
    assert "not at least 10% faster in every pass" in record["reason"]


@pytest.mark.parametrize("seconds, warmup, repeats", [
    (1.0, 1, 1),     # costly calls: one warm-up call, one round per pass (still two passes)
    (0.04, 2, 2),    # 2 passes x 2 rounds x 2 x 0.04 s = 0.32 s <= 0.4 s
    (1e-6, 2, 5),    # cheap: max_repeats
])
def test_the_probe_keeps_to_its_budget(bf16_device, seconds, warmup, repeats):
    calls: list[str] = []
    record = probe_precision(work, "cpu", key="k", timer=fixed({"fp32": seconds, "bf16": seconds}, calls),
                             budget_s=0.4)
    assert record["repeats"] == repeats and record["passes"] == 2
    assert calls.count("fp32") == calls.count("bf16") == warmup + 2 * repeats


# ---------------------------------------------------------------------------------------------------------
# fallbacks


def test_no_native_bf16_means_fp32_without_measuring(monkeypatch):
    monkeypatch.setattr(P, "native_bf16", lambda device: False)
    choice, record = choose_precision("auto", "cpu", never, key="k", timer=never)
    assert (choice, record["source"]) == ("fp32", "no native bf16") and "fp32_ms" not in record
    assert choose_precision("auto", "meta", never, key="k")[0] == "fp32"  # real precondition: no bf16 on meta


def test_a_failing_bf16_run_falls_back_to_fp32(bf16_device):
    def picky():
        if torch.is_autocast_enabled("cpu"):
            raise RuntimeError("no bf16 kernel for this op")
        return torch.ones(2)

    choice, record = choose_precision("auto", "cpu", picky, key="k")
    assert (choice, record["source"]) == ("fp32", "bf16 failed") and "no bf16 kernel" in record["reason"]
    with pytest.raises(ZeroDivisionError):  # an fp32 failure is the workload's own error: not hidden
        choose_precision("auto", "cpu", lambda: 1 / 0, key="k2")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0, -1.0])
def test_unsure_timings_fall_back_to_fp32(bf16_device, bad):
    record = probe_precision(work, "cpu", key="k", timer=fixed({"fp32": 1.0, "bf16": bad}))
    assert (record["choice"], record["source"]) == ("fp32", "unsure")
    assert all(v is None or v == v for v in record["bf16_ms"])  # NaN never reaches the JSON record


# ---------------------------------------------------------------------------------------------------------
# what runs, caching, resuming


def test_the_work_runs_in_the_precision_being_timed(bf16_device):
    seen = []
    layer = nn.Linear(4, 3)

    def step():
        seen.append((torch.is_autocast_enabled("cpu"), torch.is_inference_mode_enabled()))
        return layer(torch.ones(2, 4))

    calls: list[str] = []
    probe_precision(step, "cpu", key="inference", timer=fixed({"fp32": 1.0, "bf16": 0.5}, calls))
    assert [autocast for autocast, _ in seen] == [p == "bf16" for p in calls]
    assert all(inference for _, inference in seen) and layer.weight.grad is None
    seen.clear()
    probe_precision(step, "cpu", key="training", backward=True, timer=fixed({"fp32": 1.0, "bf16": 0.5}, []))
    assert not any(inference for _, inference in seen) and layer.weight.grad is not None  # forward + backward


def test_choices_are_cached_per_device_and_workload(bf16_device):
    calls: list[str] = []
    timer = fixed({"fp32": 1.0, "bf16": 0.5}, calls)
    first = probe_precision(work, "cpu", key="a", timer=timer)
    n = len(calls)
    again = probe_precision(work, "cpu", key="a", timer=fixed({"fp32": 0.5, "bf16": 1.0}, calls))
    assert len(calls) == n and again == {**first, "source": "cache"}  # not measured again: same choice
    assert probe_precision(work, "cpu", key="b", timer=fixed({"fp32": 0.5, "bf16": 1.0}))["choice"] == "fp32"
    clear_probe_cache()
    assert probe_precision(work, "cpu", key="a", timer=fixed({"fp32": 0.5, "bf16": 1.0}))["choice"] == "fp32"


def test_probe_timer_is_used_by_default_and_leaves_no_cached_choice(bf16_device):
    with probe_timer(fixed({"fp32": 1.0, "bf16": 0.5})):
        assert choose_precision("auto", "cpu", work, key="k")[0] == "bf16"
    with probe_timer(fixed({"fp32": 0.5, "bf16": 1.0})):
        assert choose_precision("auto", "cpu", work, key="k")[0] == "fp32"  # not the cached bf16


def test_a_resumed_job_keeps_the_earlier_choice_of_the_same_workload(bf16_device):
    _, earlier = choose_precision("auto", "cpu", work, key="k", timer=fixed({"fp32": 1.0, "bf16": 0.5}))
    clear_probe_cache()
    slower = fixed({"fp32": 0.5, "bf16": 1.0})
    choice, record = choose_precision("auto", "cpu", work, key="k", timer=slower, previous=earlier)
    assert (choice, record["source"]) == ("bf16", "resumed") and record["bf16_ms"] == earlier["bf16_ms"]
    for other in ({**earlier, "workload": "other"}, {**earlier, "device": "cuda:0"}, {**earlier, "setting": "bf16"},
                  {"choice": "bf16"}, "bf16"):
        assert choose_precision("auto", "cpu", work, key="k", timer=slower, previous=other)[0] == "fp32"
        clear_probe_cache()


def test_workload_keys_tell_shapes_apart():
    class Cfg:
        data_shape, rank, arch, arch_kwargs, centred, loss = (64,), 16, "film_mlp", {"hidden": 8}, True, "lowrank"

    a = workload_key("train", Cfg, 512)
    assert a == workload_key("train", Cfg(), 512)
    assert len({a, workload_key("train", Cfg, 256), workload_key("factor", Cfg, 512)}) == 3


def test_a_real_probe_on_the_cpu_is_short_and_agrees_with_its_times():
    """Forward + backward of a small MLP on this machine (precondition as the hardware says)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 256), nn.SiLU(), nn.Linear(256, 256), nn.SiLU(), nn.Linear(256, 64))
    x = torch.randn(256, 64)
    choice, record = choose_precision("auto", "cpu", lambda: net(x).pow(2).mean(), key="mlp", backward=True)
    if not native_bf16("cpu"):
        assert (choice, record["source"]) == ("fp32", "no native bf16")
        return
    assert record["probe_s"] < 2.0, record  # well under a second unloaded; slack for a shared CI machine
    wins = [b <= (1 - BF16_MARGIN) * f for f, b in zip(record["fp32_ms"], record["bf16_ms"], strict=True)]
    assert choice == ("bf16" if all(wins) else "fp32"), record


WORKER = """
import json, os, sys
import torch.distributed as dist
from learned_manifold import precision as P
P.native_bf16 = lambda device: True
dist.init_process_group("gloo")
rank = dist.get_rank()
times = {"fp32": 1.0, "bf16": 0.5} if rank == 0 else {"fp32": 0.5, "bf16": 1.0}  # the ranks would disagree
calls = []
def timer(call, precision, device):
    calls.append(precision)
    return times[precision]
choice, record = P.choose_precision("auto", "cpu", lambda: None, key="k", timer=timer, distributed=True)
print(json.dumps({"rank": rank, "choice": choice, "timed": len(calls), "fp32_ms": record["fp32_ms"]}))
dist.destroy_process_group()
"""


def test_under_ddp_rank_0_measures_and_every_rank_takes_its_choice(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "worker.py").write_text(WORKER)
    procs = [subprocess.Popen([sys.executable, str(tmp_path / "worker.py")], stdout=subprocess.PIPE, text=True,
                              stderr=subprocess.PIPE, env={**os.environ, "RANK": str(r), "WORLD_SIZE": "2",
                                                           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                                                           "OMP_NUM_THREADS": "1"}) for r in (0, 1)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    records = sorted((json.loads(out.strip().splitlines()[-1]) for out, _ in outs), key=lambda r: r["rank"])
    assert [r["choice"] for r in records] == ["bf16", "bf16"]
    assert records[0]["timed"] > 0 and records[1]["timed"] == 0  # only rank 0 ran the probe
    assert records[0]["fp32_ms"] == records[1]["fp32_ms"] == [1000.0, 1000.0]


def test_full_precision_switches_a_callers_autocast_off_inside_and_back_on_after():
    a = torch.randn(16, 16, generator=torch.Generator().manual_seed(0))

    @full_precision
    def product(m):
        return m @ m, torch.is_autocast_enabled("cpu")

    exact = a @ a
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (inside, enabled), outside = product(a), a @ a
        assert torch.is_autocast_enabled("cpu")
    assert not enabled and inside.dtype == torch.float32
    assert torch.equal(inside, exact)
    assert outside.dtype == torch.bfloat16  # what the wrapped algebra would have given
    assert product.__name__ == "product"


def test_full_precision_asks_only_about_device_types_this_torch_has_autocast_for(monkeypatch):
    # torch 2.4 (the declared minimum) has no MPS autocast: is_autocast_enabled("mps") raises there
    def enabled(device="cpu"):
        if device == "mps":
            raise RuntimeError("unknown device type for autocast in get_autocast_dispatch_key_from_device_type")
        return False

    monkeypatch.setattr(torch.amp, "is_autocast_available", lambda device: device != "mps")
    monkeypatch.setattr(torch, "is_autocast_enabled", enabled)
    devices = P._autocast_devices()
    assert devices == ("cpu", "cuda", "xpu")
    monkeypatch.setattr(P, "_AUTOCAST_DEVICES", devices)
    assert full_precision(lambda m: m * 2)(torch.ones(2)).tolist() == [2.0, 2.0]


def test_each_wrapped_function_gets_its_own_wrapper_code_object_for_torch_compile():
    """Every wrapped method had shared one code object, ``wrapper``: dynamo caches compiled frames per code object,
    so a compiled function calling several of them recompiled ``wrapper`` per method until its recompile limit (8)
    left them uncompiled, with a warning naming precision.py's ``wrapper`` (tester B)."""
    def first(m):
        return m + 1

    def second(m):
        return m + 2

    wrapped = [full_precision(first), full_precision(second), full_precision(first)]
    assert len({id(w.__code__) for w in wrapped}) == 3
    assert [w.__code__.co_name for w in wrapped] == ["first", "second", "first"]
    assert wrapped[1].__code__.co_qualname.startswith("full_precision(")
    assert [w(torch.zeros(1)).item() for w in wrapped] == [1.0, 2.0, 1.0]

