"""Which floating-point precision to compute in: ``"auto"`` decides by measuring the workload (issue 14).

Whether bf16 autocast pays cannot be read off CPU flags or the device name: on one 2-core Xeon with AVX512-BF16
a bf16 training step took 1.6–1.8× as long as fp32, on an AMD EPYC with the same flag it was faster. So
``"auto"`` times the actual work — a training step (forward + backward of the real model on a batch of the
real shape) or a forward of the factor network — in fp32 and under bf16 autocast, and picks bf16 only when it
was faster by at least `BF16_MARGIN` in every one of its repeated passes; otherwise, or when unsure, fp32.
`native_bf16` is only a precondition: a device without native bf16 gets fp32 without a probe.

A probe costs a few warm-up and timed calls of each precision (`probe_precision`; its timed part is held to a
budget, well under a second on CPU for the default models). Choices are cached per process, keyed by
``(device, workload key)`` (`workload_key`), so repeated trainings or fields of one shape measure once. Every
choice comes with a record — the setting, the choice, the reason and the measured times — that the trainer
keeps in `TrainResult.precision_probe` and in the model file, and `LearnedCDC` exposes as ``precision_choice``.

Tests inject a fake timer with `probe_timer` (a `Timer` returns the seconds of one call in one precision).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from .checks import NotANumberError

__all__ = [
    "BF16_MARGIN",
    "PRECISIONS",
    "Timer",
    "check_precision",
    "choose_precision",
    "clear_probe_cache",
    "full_precision",
    "native_bf16",
    "probe_precision",
    "probe_timer",
    "wall_timer",
    "workload_key",
]

PRECISIONS = ("auto", "fp32", "bf16")
"""Accepted precision settings: ``"auto"`` is measured per workload (`choose_precision`)."""

BF16_MARGIN = 0.10
"""bf16 must take at most ``1 − BF16_MARGIN`` of fp32's time, in every pass of the probe, to be chosen."""

Timer = Callable[[Callable[[], object], str, torch.device], float]
"""``timer(call, precision, device) -> seconds``: runs ``call`` (one workload call in ``precision``) and
returns how long it took. `wall_timer` is the default; tests pass fakes through `probe_timer`."""

_CACHE: dict[tuple[str, str], dict] = {}
_LOCK = threading.Lock()
_TIMER_OVERRIDE: list[Timer] = []


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` has bf16 matmuls natively (CUDA bf16 support; CPU AVX512-BF16 or AMX): the
    precondition of a bf16 choice, not the choice (which `probe_precision` measures)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private in torch.cpu; absent: False
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)
    return False


def _autocast_devices(candidates: tuple[str, ...] = ("cpu", "cuda", "xpu", "mps")) -> tuple[str, ...]:
    """The device types of ``candidates`` this torch has autocast for: torch 2.4 has none for MPS, and
    ``torch.is_autocast_enabled("mps")`` raises there instead of answering False."""
    available = getattr(torch.amp, "is_autocast_available", None)
    if available is None:  # older than any torch this package supports: the two every release knows
        return tuple(device for device in candidates if device in ("cpu", "cuda"))
    return tuple(device for device in candidates if available(device))


_AUTOCAST_DEVICES = _autocast_devices()
_F = TypeVar("_F", bound=Callable)


def full_precision(fn: _F) -> _F:
    """Run ``fn`` with any autocast the caller has switched on switched off (the inputs' own dtype throughout).

    The geometry's algebra (solves, Gram matrices, path energies, k-NN distances) must not be rounded to bf16
    because a caller happens to call it inside ``torch.autocast``: float32 in gives float32 out and the same
    answer as outside autocast. A `LearnedCDC` built with ``precision="bf16"`` still runs its own network
    forward under bf16 (it opens its own autocast inside). Costs nothing when no autocast is on.

    Each wrapped function gets its own copy of the wrapper's code object, named after it: ``torch.compile``
    (dynamo) caches compiled frames per code object, and one shared ``wrapper`` had been recompiled for every
    wrapped function until dynamo's recompile limit (8) left the rest uncompiled, with a warning naming
    ``wrapper`` (tester B).
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        on = [device for device in _AUTOCAST_DEVICES if torch.is_autocast_enabled(device)]
        if not on:
            return fn(*args, **kwargs)
        with contextlib.ExitStack() as stack:
            for device in on:
                stack.enter_context(torch.autocast(device, enabled=False))
            return fn(*args, **kwargs)

    code = wrapper.__code__
    names = {"co_qualname": f"full_precision({fn.__qualname__})"} if hasattr(code, "co_qualname") else {}  # 3.11+
    wrapper.__code__ = code.replace(co_name=fn.__name__, **names)
    return wrapper  # type: ignore[return-value]


def check_precision(precision: object, name: str = "precision") -> str:
    """``precision`` if it is one of `PRECISIONS`, else one ``ValueError`` naming ``name`` and the choices."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"{name} must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return precision


def wall_timer(call: Callable[[], object], precision: str, device: torch.device) -> float:
    """Wall seconds of ``call()``, the device's queue synchronised before and after (CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


@contextlib.contextmanager
def probe_timer(timer: Timer) -> Iterator[None]:
    """Use ``timer`` for every probe in the block (trainer and `LearnedCDC` included); the probe cache is
    cleared on entry and on exit, so choices made with a fake timer neither use nor outlive real ones."""
    with _LOCK:
        _TIMER_OVERRIDE.append(timer)
        _CACHE.clear()
    try:
        yield
    finally:
        with _LOCK:
            _TIMER_OVERRIDE.remove(timer)
            _CACHE.clear()


def clear_probe_cache() -> None:
    """Forget every cached choice (the next ``"auto"`` measures again)."""
    with _LOCK:
        _CACHE.clear()


def workload_key(kind: str, config: object, batch: int) -> str:
    """A cache key for the work of a model: ``kind`` (``"train"``, ``"factor"``), the structural fields of a
    `ModelConfig`-like ``config`` (data shape, rank, backbone and its arguments, centring, loss) and the batch."""
    fields = ("data_shape", "rank", "arch", "arch_kwargs", "centred", "loss")
    parts = {name: getattr(config, name, None) for name in fields}
    return f"{kind} batch={int(batch)} " + json.dumps(parts, sort_keys=True, default=str)


def _run_in(work: Callable[[], Tensor], precision: str, device: torch.device, backward: bool) -> Callable[[], None]:
    """One call of ``work`` under ``precision`` (bf16: autocast), with ``.backward()`` of its sum if asked."""

    def call() -> None:
        with contextlib.ExitStack() as stack:
            if not backward:
                stack.enter_context(torch.inference_mode())
            stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"))
            out = work()
        if backward:
            out.float().sum().backward()

    return call


def _ms(seconds: float) -> float | None:
    """Milliseconds rounded for the record (``None`` when not finite: the record stays valid JSON)."""
    return round(seconds * 1e3, 4) if math.isfinite(seconds) else None


def probe_precision(
    work: Callable[[], Tensor],
    device: str | torch.device,
    *,
    key: str,
    backward: bool = False,
    timer: Timer | None = None,
    warmup: int = 2,
    passes: int = 2,
    max_repeats: int = 5,
    budget_s: float = 0.4,
    margin: float = BF16_MARGIN,
) -> dict:
    """Measure ``work`` in fp32 and in bf16 autocast on ``device``; the choice and its reason (cached).

    Args:
        work: one call of the workload, returning a tensor (a loss when ``backward``); it runs under the
            precision being timed. It must not change any state that matters (no optimiser step).
        device: where ``work`` runs (its queue is synchronised around each timed call).
        key: the workload's cache key (`workload_key`); the cache is per ``(device, key)``.
        backward: also backpropagate (``work().float().sum().backward()``: a training step without the update;
            gradients are left in ``.grad``); otherwise the calls run under ``torch.inference_mode()``.
        timer: `Timer` for one call (default: the `probe_timer` override, else `wall_timer`).
        warmup: calls per precision first, not used for the decision (kernels, allocator, lazy initialisation);
            one only when a call costs more than ``budget_s / 8``.
        passes: independent measurements; bf16 is chosen only if it wins by ``margin`` in every one.
        max_repeats: most timed rounds per pass (each round times both precisions, alternating their order);
            fewer (at least one) when the warm-up shows they would exceed ``budget_s``, the timed part's target.
        margin: bf16 must take at most ``(1 − margin)`` of fp32's median time.

    Returns:
        A JSON-ready record: ``setting`` ("auto"), ``choice`` ("fp32"/"bf16"), ``reason``, ``source``
        ("measured", "cache", "no native bf16", "bf16 failed", "unsure"), ``device``, ``workload``, and when
        measured ``fp32_ms`` / ``bf16_ms`` (median per pass), ``speedup`` (fp32/bf16 per pass), ``repeats``,
        ``margin`` and ``probe_s`` (its wall time).
    """
    for name, value, low in (("warmup", warmup, 1), ("passes", passes, 1), ("max_repeats", max_repeats, 1)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise NotANumberError(f"{name} must be an integer >= {low}, got {value!r}")
        if value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not (budget_s > 0 and 0 <= margin < 1):
        raise ValueError(f"need budget_s > 0 and 0 <= margin < 1, got budget_s={budget_s!r}, margin={margin!r}")
    device = torch.device(device)
    cache_key = (str(device), key)
    with _LOCK:
        hit = _CACHE.get(cache_key)
    if hit is not None:
        return {**copy.deepcopy(hit), "source": "cache"}
    record = {"setting": "auto", "device": str(device), "workload": key, "margin": margin}
    if not native_bf16(device):
        record.update(choice="fp32", source="no native bf16", reason=f"{device} has no native bf16: not measured")
    else:
        record.update(_measure(work, device, backward, timer, warmup, passes, max_repeats, budget_s, margin))
    with _LOCK:
        _CACHE[cache_key] = record
    return copy.deepcopy(record)


def _measure(work: Callable[[], Tensor], device: torch.device, backward: bool, timer: Timer | None, warmup: int,
             passes: int, max_repeats: int, budget_s: float, margin: float) -> dict:
    """The probe proper: warm-up, then ``passes`` passes of interleaved timed rounds; the decision."""
    timer = timer or (_TIMER_OVERRIDE[-1] if _TIMER_OVERRIDE else wall_timer)
    calls = {p: _run_in(work, p, device, backward) for p in ("fp32", "bf16")}
    began = time.perf_counter()
    last: dict[str, float] = {}
    for precision in ("fp32", "bf16"):
        for i in range(warmup):
            if i and last[precision] > budget_s / 8:  # a costly call: one warm-up call is enough
                break
            try:
                last[precision] = timer(calls[precision], precision, device)
            except Exception as err:  # noqa: BLE001 - fp32 errors propagate; a bf16 failure is a verdict
                if precision == "fp32":
                    raise
                return {"choice": "fp32", "source": "bf16 failed",
                        "reason": f"bf16 autocast failed in the probe ({type(err).__name__}: {str(err)[:200]})"}
    per_round = last["fp32"] + last["bf16"]
    fit = int(budget_s / (passes * per_round)) if math.isfinite(per_round) and per_round > 0 else max_repeats
    repeats = max(1, min(max_repeats, fit))
    medians: dict[str, list[float]] = {"fp32": [], "bf16": []}
    rounds = 0
    for _ in range(passes):
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for _ in range(repeats):
            rounds += 1
            for precision in ("fp32", "bf16") if rounds % 2 else ("bf16", "fp32"):
                times[precision].append(float(timer(calls[precision], precision, device)))
        for precision in medians:
            medians[precision].append(statistics.median(times[precision]))
    record = {"fp32_ms": [_ms(t) for t in medians["fp32"]], "bf16_ms": [_ms(t) for t in medians["bf16"]],
              "speedup": [round(f / b, 4) if b > 0 and math.isfinite(f / b) else None
                          for f, b in zip(medians["fp32"], medians["bf16"], strict=True)],
              "repeats": repeats, "passes": len(medians["fp32"]), "probe_s": round(time.perf_counter() - began, 4)}
    values = medians["fp32"] + medians["bf16"]
    shown = (f"fp32 {', '.join(f'{t * 1e3:.3g}' for t in medians['fp32'])} ms vs bf16 "
             f"{', '.join(f'{t * 1e3:.3g}' for t in medians['bf16'])} ms (median per pass)")
    if not all(math.isfinite(t) and t > 0 for t in values):
        record.update(choice="fp32", source="unsure", reason=f"the probe's times are not all positive and finite: "
                                                               f"{shown}")
    elif all(b <= (1 - margin) * f for f, b in zip(medians["fp32"], medians["bf16"], strict=True)):
        record.update(choice="bf16", source="measured",
                      reason=f"bf16 took at most {1 - margin:.0%} of fp32's time in every pass: {shown}")
    else:
        record.update(choice="fp32", source="measured",
                      reason=f"bf16 was not at least {margin:.0%} faster in every pass: {shown}")
    return record


def choose_precision(
    setting: str,
    device: str | torch.device,
    work: Callable[[], Tensor],
    *,
    key: str,
    backward: bool = False,
    timer: Timer | None = None,
    distributed: bool = False,
    previous: dict | None = None,
) -> tuple[str, dict]:
    """The precision to run ``work`` in for ``setting`` in `PRECISIONS`, and the record of why.

    ``"fp32"``/``"bf16"`` are kept as given (``source: "explicit"``; ``work`` is not run). ``"auto"`` is
    `probe_precision` of ``work`` (same ``key``, ``backward``, ``timer``), except:

    * ``previous``: the record of an earlier run of the same job (a resumed training); when it was an
      ``"auto"`` choice on the same device for the same ``key``, it is kept (``source: "resumed"``), so a resumed
      run computes like the interrupted one;
    * ``distributed`` (under an initialised ``torch.distributed`` group): rank 0 decides and broadcasts its
      record, so every rank runs in the same precision; the others do not run ``work``.

    Raises:
        ValueError: ``setting`` is not in `PRECISIONS` (before any work).
    """
    check_precision(setting)
    device = torch.device(device)
    if setting != "auto":
        return setting, {"setting": setting, "choice": setting, "source": "explicit", "reason": "set explicitly"}
    sharing = distributed and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    record = None
    if not sharing or dist.get_rank() == 0:
        if (isinstance(previous, dict) and previous.get("setting") == "auto" and previous.get("choice") in
                ("fp32", "bf16") and previous.get("device") == str(device) and previous.get("workload") == key):
            record = {**previous, "source": "resumed",
                      "reason": f"kept from the run this one resumes: {previous.get('reason', '')}"}
        else:
            record = probe_precision(work, device, key=key, backward=backward, timer=timer)
    if sharing:
        box = [record]
        dist.broadcast_object_list(box, src=0)
        record = box[0]
    return record["choice"], record
