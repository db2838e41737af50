"""Case generators of the reliability suite: hostile inputs to every public entry point, each classified.

Every generated case is put in exactly one category (`CATEGORIES`):

* ``ok``: valid input gave a finite result of the documented shape and dtype satisfying the entry point's
  invariants (``proju`` idempotent, ``inner`` symmetric and non-negative, descent lowers the objective, ...);
* ``clean_error``: invalid input raised one `ValueError`/`TypeError` (or `FileNotFoundError`/`ModelFileError`
  for files) whose message names the offending argument;
* ``silent_bad_output``: a result with NaN/inf from finite valid input, a wrong shape or dtype, a broken
  invariant, or invalid input accepted without an error;
* ``crash``: any other exception, or a clean exception type on valid input or without the argument's name;
* ``hang``: the call ran past its time bound (``signal.setitimer``; main thread only);
* ``data_lost``: (CLI) an existing model file was changed or removed by a run that did not succeed.

A family is a function ``family(draw, ctx) -> Outcome`` where ``draw`` is hypothesis' ``st.data().draw`` and
``ctx`` a `Context` of models and fields; `tests/test_fuzz_runtime.py` asserts every outcome is ``ok`` or
``clean_error``, and ``python -m benchmarks.reliability`` counts the categories with a larger budget.
The families are in `benchmarks.reliability_runtime` and `benchmarks.reliability_cli`.
"""

from __future__ import annotations

import contextlib
import math
import signal
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from hypothesis import strategies as st

from learned_manifold.model_file import ModelFileError

__all__ = ["CATEGORIES", "CLEAN_TYPES", "Batch", "Context", "Outcome", "Timeout", "classify", "close", "combine",
           "count_expect", "draw_points", "finite_rows", "number_expect", "sphere_points", "time_limit"]

CATEGORIES = ("ok", "clean_error", "silent_bad_output", "crash", "hang", "data_lost")
CLEAN_TYPES = (ValueError, TypeError, FileNotFoundError, ModelFileError)

VALID, INVALID, EITHER = "valid", "invalid", "either"


@dataclass
class Outcome:
    """One classified case: its ``category`` (one of `CATEGORIES`) and a line saying what happened."""

    category: str
    detail: str


@dataclass
class Context:
    """What the families run against: a learned S² model (with denoiser), its data, and its file's bytes."""

    sphere_model: torch.nn.Module
    sphere_data: torch.Tensor
    model_bytes: bytes


class Timeout(BaseException):
    """Raised inside a case that ran past its time bound (a BaseException so no ``except Exception`` eats it)."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise `Timeout` in the main thread after ``seconds`` of wall-clock time (SIGALRM also interrupts a
    blocking open or read); where the platform has no ``setitimer`` the body runs unguarded."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def handler(signum, frame):
        raise Timeout

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def classify(call: Callable[[], object], *, expect: str, names: tuple[str, ...], what: str,
             check: Callable[[object], str | None] | None = None, timeout: float = 20.0) -> Outcome:
    """Run ``call`` once under a time bound and classify it (module docstring).

    Args:
        call: the case, a closure of no arguments.
        expect: ``"valid"`` (must succeed), ``"invalid"`` (must raise cleanly) or ``"either"``.
        names: words of which one must appear in a clean error's message (the argument's name).
        what: a short description of the case, for the outcome's detail line.
        check: for a returned result, ``None`` if it is right, else what is wrong.
        timeout: seconds before the case counts as a hang.
    """
    try:
        with time_limit(timeout):
            result = call()
    except Timeout:
        return Outcome("hang", f"{what}: ran past {timeout} s")
    except CLEAN_TYPES as err:
        message = str(err)
        if expect == VALID:
            return Outcome("crash", f"{what}: valid input refused: {type(err).__name__}: {message}")
        if "\n" in message.strip() or not any(n.lower() in message.lower() for n in names):
            return Outcome("crash", f"{what}: error does not name {names}: {type(err).__name__}: {message}")
        return Outcome("clean_error", f"{what}: {type(err).__name__}: {message[:120]}")
    except Exception as err:  # noqa: BLE001 - every other exception is the finding
        return Outcome("crash", f"{what}: {type(err).__name__}: {err}")
    if expect == INVALID:
        return Outcome("silent_bad_output", f"{what}: invalid input accepted, returned {_brief(result)}")
    problem = check(result) if check is not None else None
    if problem:
        return Outcome("silent_bad_output", f"{what}: {problem}")
    return Outcome("ok", what)


def _brief(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor{tuple(x.shape)} {x.dtype}"
    return type(x).__name__


# ---------------------------------------------------------------------------------------------------------
# hostile value pools

NUMBERS = [0, 0.0, -1.0, -1e-3, float("nan"), float("inf"), -float("inf"), 1e30, 1e-30, 1e-3, 0.1, 1.0, 3,
           True, "0.1", None, [0.1], np.float64(0.5), torch.tensor(0.5)]
COUNTS = [0, -1, 1, 2, 3, 5, 2.0, 2.5, True, "3", None, float("nan"), 10**9, np.int64(2)]


def number_expect(value: object, *, allow_zero: bool, huge: float = 1e6, optional: bool = False) -> str:
    """How a positive real setting should treat ``value``: valid, invalid or either (huge/tiny or numpy)."""
    if value is None:
        return VALID if optional else INVALID
    if isinstance(value, bool) or isinstance(value, (str, list)):
        return INVALID
    if isinstance(value, (np.floating, torch.Tensor)):
        return EITHER  # a 0-d array is a real number to some callers, a tensor to others
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        return INVALID
    if v > huge or (0 < v < 1e-12):
        return EITHER
    return VALID


def count_expect(value: object, *, low: int = 1, high: int | None = None) -> str:
    """How an integer setting in ``low..high`` should treat ``value``."""
    if isinstance(value, np.integer):
        return EITHER
    if isinstance(value, bool) or not isinstance(value, int):
        return INVALID
    if value < low or (high is not None and value > high):
        return INVALID
    return VALID if value < 10**6 else EITHER


# ---------------------------------------------------------------------------------------------------------
# generated point batches


@dataclass
class Batch:
    """A generated batch of points: the object passed, and what a correct callee must make of it."""

    value: object
    expect: str
    batch: tuple[int, ...]
    dtype: torch.dtype | None
    finite: bool
    nan_row: bool
    label: str


def sphere_points(n: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return (x / x.norm(dim=-1, keepdim=True)).to(dtype)


def draw_points(draw, *, dim: int = 3, tensors_only: bool, name: str = "x", seed_offset: int = 0,
                batch: tuple[int, ...] | None = None) -> Batch:
    """Draw a batch: batch shape (incl. empty), width, container, dtype, magnitude and an optional NaN row."""
    if batch is None:
        batch = draw(st.sampled_from([(), (0,), (1,), (4,), (2, 3)]), label=f"{name} batch")
    width = draw(st.sampled_from([dim, dim, dim, dim - 1, dim + 1]), label=f"{name} width")
    container = draw(st.sampled_from(["tensor", "tensor", "tensor", "numpy", "list"]), label=f"{name} container")
    dtype = draw(st.sampled_from([torch.float32, torch.float32, torch.float64, torch.float16, torch.bfloat16,
                                  torch.int64]), label=f"{name} dtype")
    scale = draw(st.sampled_from([1.0, 1.0, 1.0, 1e-30, 1e-3, 1e3, 1e30]), label=f"{name} scale")
    nan_row = draw(st.booleans(), label=f"{name} nan row") if math.prod(batch) > 1 else False
    seed = draw(st.integers(0, 1000), label=f"{name} seed") + seed_offset
    n = math.prod(batch)
    base = sphere_points(n, seed, torch.float64)
    if width != dim:
        base = torch.cat([base, base[:, :1]], 1)[:, :width] if width > dim else base[:, :width]
    base = base * scale
    if nan_row:
        base[0] = float("nan")
    t = base.reshape(*batch, width)
    t = t.round() if dtype == torch.int64 else t
    t = t.to(dtype)
    finite = bool(torch.isfinite(t.double()).all()) if t.dtype != torch.int64 else True
    expect = VALID
    if width != dim or (dtype == torch.int64 and container == "tensor"):
        expect = INVALID
    elif container != "tensor" and tensors_only:
        expect = INVALID
    elif dtype in (torch.float16, torch.bfloat16) or scale >= 1e30 or scale <= 1e-30 or not finite:
        expect = EITHER  # low precision and extreme scales: a right answer or one clear refusal
    value: object = t
    if container == "numpy":
        value = t.double().numpy() if dtype in (torch.float16, torch.bfloat16) else t.numpy()
    elif container == "list":
        value = t.tolist()
        if t.numel() == 0 and expect == VALID:
            expect = EITHER  # an empty list has lost its width: a result or one clear refusal
    out_dtype = None
    if container == "tensor":
        out_dtype = dtype
    elif dtype == torch.int64:
        out_dtype = torch.get_default_dtype()
    elif container == "numpy":
        out_dtype = torch.float64 if dtype != torch.float32 else torch.float32
    label = f"{name}:{container}{tuple(t.shape)}/{str(dtype)[6:]}/x{scale:g}{'/nanrow' if nan_row else ''}"
    return Batch(value, expect, batch, out_dtype, finite and not nan_row, nan_row, label)


def combine(*expects: str) -> str:
    """Invalid if any argument is invalid, else either if any is either, else valid."""
    if INVALID in expects:
        return INVALID
    return EITHER if EITHER in expects else VALID


def finite_rows(t: torch.Tensor, nan_row: bool, batch_ndim: int) -> bool:
    """Every entry finite, except (with ``nan_row``) the first row, which may hold NaN."""
    flat = t.detach().reshape(-1, *t.shape[batch_ndim:]) if batch_ndim else t.detach().reshape(1, *t.shape)
    if nan_row and flat.shape[0]:
        flat = flat[1:]
    return bool(torch.isfinite(flat.double()).all())


def close(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    a, b = a.detach().double(), b.detach().double()
    mask = torch.isfinite(a) & torch.isfinite(b)
    scale = 1.0 + max(a[mask].abs().max().item() if mask.any() else 0.0, 0.0)
    return bool(((a - b).abs()[mask] <= tol * scale).all())
