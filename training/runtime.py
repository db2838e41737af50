"""What a running training loop needs besides the maths: the device, interruption and divergence (issue 13).

- `resolve_device` checks a device name before any work (``"bogus"``, ``"cuda"`` on a CPU-only build).
- `StopRequest` turns SIGINT (Ctrl-C) and SIGTERM into a flag that the loop reads between steps, so an
  interrupted run saves a consistent checkpoint at a step boundary and raises `TrainingInterrupted`.
  A second signal interrupts at once; after the last step (`StopRequest.finishing`, the end phase) a first
  signal is acknowledged on stderr and a second raises `TrainingInterrupted` of the checkpoint already saved.
- `check_health` stops a diverging run (`TrainingDiverged`) before a non-finite checkpoint is written.
- `check_training_tensor` refuses data a run cannot learn from (`check_source_resolution`: a streamed source's
  float32 resolution, from its statistics); `check_manifold` a known manifold of another dimension or whose
  ``point_dimension``/``tangent_basis`` the validation cannot use; `settings_diff` says what a resume would change;
  `init_distributed` starts the process group under torchrun (the backend and each rank's GPU from the device);
  it, `resolve_device` and `distributed_backend` live in `devices` and are re-exported here.
- `caller_state_off` makes a run independent of the caller's grad mode, inference mode, default dtype and default
  device (the trainer's `train` also switches off the caller's autocast, `learned_manifold.precision.full_precision`);
  `StepAutocast` is the trainer's own bf16 autocast, whose cast weights last one step even inside a caller's.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import signal
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from learned_manifold.checks import FLOAT32_RESOLUTION, float_resolution_problem
from learned_manifold.evaluation import basis_deviation
from learned_manifold.metrics.base import check_finite_points

from .devices import distributed_backend, init_distributed, resolve_device

__all__ = ["FLOAT32_RESOLUTION", "StepAutocast", "StopRequest", "TrainingDiverged", "TrainingInterrupted",
           "caller_state_off", "check_health", "check_manifold", "check_point_dimension", "check_source_resolution",
           "check_training_tensor", "distributed_backend", "init_distributed", "resolve_device", "settings_diff",
           "stop_requested"]

_F32 = torch.finfo(torch.float32)  # the model's precision: its limits, for the data checks here, in batches and trainer
SPREAD_LIMITS = (1e-15, 1e15)
"""The RMS spreads ``s`` of training data accepted (`check_training_tensor`): geodesics, flows and curvature square
data-unit quantities in float32 (``s²``, its sums over path points, ``1/s²``), whose normal range is
1.2·10⁻³⁸..3.4·10³⁸. Measured on one model re-expressed in other units (outside test s33/D): exact up to
10^±17, wrong beyond about 10^±18 (0, NaN or short lengths at 10⁻²⁰, errors at 10¹⁹); these limits keep a factor
100 in ``s`` (10⁴ in ``s²``) from that edge and accept the physical units users have (10^±12 included)."""
_F = TypeVar("_F", bound=Callable)


def caller_state_off(fn: _F) -> _F:
    """Run ``fn`` (a training entry point) as if the caller had switched nothing on: out of ``inference_mode``,
    with grad enabled, float32 as the default dtype and the CPU as the default device (a caller's
    ``torch.set_default_device("meta")`` reached the run's own tensors; the run puts its tensors on its
    ``device`` explicitly); the caller's settings are back on return or error.

    The default dtype is process-wide in torch: a thread that builds tensors with the default dtype while a run
    under a float64 default is in progress gets float32 ones. The default device is per thread; it is switched
    (a ``torch.device("cpu")`` context, a small cost on every torch call) only where it is not the CPU.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        previous = torch.get_default_dtype()
        try:
            if previous != torch.float32:
                torch.set_default_dtype(torch.float32)
            on_cpu = torch.get_default_device().type == "cpu"
            with (torch.inference_mode(False), torch.enable_grad(),
                  contextlib.nullcontext() if on_cpu else torch.device("cpu")):
                return fn(*args, **kwargs)
        finally:
            if previous != torch.float32:
                torch.set_default_dtype(previous)

    return wrapper  # type: ignore[return-value]


class StepAutocast(torch.autocast):
    """`torch.autocast` that drops autocast's cache of cast weights on every exit.

    torch clears that cache only on leaving the outermost autocast region; inside a caller's ``torch.autocast``
    (even one `full_precision` switched off) the trainer's region is never the outermost, so each step would
    reuse the bf16 weights cast at the first and train on stale copies. Outside any caller's region this is
    what torch does anyway: the same bits.
    """

    def __exit__(self, *exc) -> bool:
        handled = super().__exit__(*exc)
        torch.clear_autocast_cache()
        return handled


def check_manifold(manifold: object, points: Tensor) -> None:
    """Refuse, before any work, a known manifold (`train`'s ``manifold``) that cannot validate the data: one
    without ``tangent_basis``/``point_dimension``, one in another ambient dimension (its ``ambient_dim`` where it
    has one), or one whose methods fail on ``points`` ``(n, D)``, the data's first points, flat, or answer what the
    validation cannot use (`learned_manifold.evaluation.tangent_error`, SPEC §5): ``point_dimension`` must give
    ``n`` integers in ``[0, D]`` and ``tangent_basis`` a finite ``(n, D, k)`` tensor (``k <= D``) whose nonzero
    columns are orthonormal (to 10⁻³), as many at each point as its ``point_dimension``. Without this check a
    broken ``tangent_basis`` failed after the last training step, naming the evaluation's internal argument.

    Raises:
        TypeError: the methods are missing.
        ValueError: naming ``manifold`` and both dimensions, or the method that fails and how.
    """
    if manifold is None:
        return
    if not all(callable(getattr(manifold, name, None)) for name in ("tangent_basis", "point_dimension")):
        raise TypeError(f"manifold must have the methods tangent_basis and point_dimension (e.g. the manifold of a "
                        f"built-in data set), got {type(manifold).__name__}")
    dim = points.shape[1]
    ambient = getattr(manifold, "ambient_dim", None)
    if isinstance(ambient, int) and ambient != dim:
        raise ValueError(f"manifold lies in R^{ambient} (ambient_dim {ambient}) but the data have D = {dim} "
                         "coordinates per point: pass the data's own manifold, or none")
    answers = {}
    for name in ("point_dimension", "tangent_basis"):
        try:
            answers[name] = getattr(manifold, name)(points)
        except Exception as err:  # noqa: BLE001 - any failure here would end the run after its last step
            raise ValueError(f"manifold: its {name} fails on the data's points (D = {dim}): "
                             f"{type(err).__name__}: {err}") from err
    dims = check_point_dimension(answers["point_dimension"], points.shape[0], dim)
    _check_tangent_basis(answers["tangent_basis"], dims, dim)


def check_point_dimension(dims: object, n: int, dim: int) -> Tensor:
    """``manifold.point_dimension``'s answer on ``n`` points of dimension ``dim``, checked: ``(n,)`` integers in
    ``[0, dim]`` (or one integer for all points), as a float64 ``(n,)`` tensor."""
    where = f"manifold.point_dimension on {n} points of dimension D = {dim}"
    try:
        dims = torch.as_tensor(dims, device="cpu").detach().double().reshape(-1)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{where} must return n integers, got {type(dims).__name__}") from err
    if dims.numel() == 1:
        dims = dims.expand(n)
    if dims.numel() != n or not bool(torch.all((dims == dims.round()) & (dims >= 0) & (dims <= dim))):
        raise ValueError(f"{where} must return n = {n} integers in [0, {dim}], got {dims.tolist()[:8]}")
    return dims


def _check_tangent_basis(basis: object, dims: Tensor, dim: int) -> None:
    """``manifold.tangent_basis``'s answer on ``n = len(dims)`` points of dimension ``dim``, checked: a finite
    ``(n, dim, k)`` tensor, ``k <= dim``, whose nonzero columns are orthonormal (to 10⁻³, as
    `learned_manifold.evaluation.tangent_error` demands), ``dims`` ``(n,)`` of them at each point."""
    n = dims.shape[0]
    where = f"manifold.tangent_basis on {n} points of dimension D = {dim}"
    shape = tuple(basis.shape) if isinstance(basis, Tensor) else type(basis).__name__
    if not isinstance(basis, Tensor) or basis.ndim != 3 or basis.shape[:2] != (n, dim) or basis.shape[2] > dim:
        raise ValueError(f"{where} must return orthonormal bases of shape (n, D, k) = ({n}, {dim}, k), k <= {dim}, "
                         f"got {shape}")
    basis = basis.detach().cpu().double()
    if not bool(torch.isfinite(basis).all()):
        raise ValueError(f"{where} returned non-finite values (NaN or inf)")
    used, off = basis_deviation(basis)  # (n, k), (n,): zero columns are padding (a lower-dimensional piece)
    if bool((off > 1e-3).any()):
        i = int(off.argmax())
        raise ValueError(f"{where} must return orthonormal (or zero) columns; at point {i} |VᵀV − I| reaches "
                         f"{float(off[i]):.3g}")
    counts = used.sum(-1).double()
    if not torch.equal(counts, dims):
        i = int((counts != dims).nonzero()[0])
        raise ValueError(f"{where} returned {int(counts[i])} nonzero columns at point {i}, but "
                         f"manifold.point_dimension gives {int(dims[i])} there")


def check_training_tensor(data: object) -> None:
    """Refuse, before any work, a tensor a trainer cannot learn from: not a dense tensor ``(N ≥ 10, ...)``, not
    floating point (integer images: ``data.float()``, the units may stay), NaN/inf, beyond float32's range, or so
    far from the origin for their spread that float32 merges distinct points (`FLOAT32_RESOLUTION`; judged on the
    coordinates that vary: a constant coordinate, however large, is harmless), or a spread (RMS distance from the
    mean) outside `SPREAD_LIMITS` (units such as kg for molecules: the model's geometry would over/underflow).
    The spread and the resolution are judged here on up to 4,096 evenly spaced rows (quick, before any work), and
    by the run again on the statistics its model is standardised with (all training rows, SPEC §1:
    `check_source_resolution`), as a streamed file's are.

    Raises:
        ValueError: naming what is wrong with ``data``: not a tensor (a NumPy array: ``torch.from_numpy``), one axis
            (a 1-D tensor of N values: ``data.reshape(-1, 1)``), fewer than 10 points, and the rest above.
    """
    if isinstance(data, np.ndarray):
        raise ValueError(f"data must be a torch tensor, got a NumPy array of shape {data.shape}: convert it with "
                         "torch.from_numpy(data)")
    if not isinstance(data, Tensor):
        raise ValueError(f"data must be a tensor of shape (N, ...), got {type(data).__name__}")
    if data.ndim < 2:
        raise ValueError(f"data must have shape (N, ...) with a point per row, got shape {tuple(data.shape)}: N "
                         f"values of one coordinate are data.reshape(-1, 1)")
    if data.shape[0] < 10:
        raise ValueError(f"data must have at least 10 points, got shape {tuple(data.shape)}")
    data = data.detach()  # a tensor that requires grad: its values only are read here
    if data.layout != torch.strided:
        raise ValueError(f"data must be a dense tensor, got layout {data.layout} (call .to_dense())")
    if not data.is_floating_point():
        raise ValueError(f"data must be floating point, got {data.dtype}: convert it with data.float() (the values "
                         f"may keep their units, e.g. 0..255: the model standardises them)")
    check_finite_points(data, "data", ": training needs finite data")
    top = float(data.abs().max())
    if top > _F32.max:
        raise ValueError(f"data values overflow float32 (largest |x| = {top:.3g}, float32 holds up to "
                         f"{_F32.max:.3g}): rescale the data")
    if 0 < top < _F32.tiny:
        raise ValueError(f"data values underflow float32 (largest |x| = {top:.3g}, float32's smallest normal "
                         f"number is {_F32.tiny:.3g}): rescale the data")
    top, spread = _top_and_spread(data)
    _check_spread(spread)
    _check_resolution(top, spread)


def _top_and_spread(data: Tensor) -> tuple[float, float]:
    """``(top, spread)`` of up to 4,096 evenly spaced points of ``data`` ``(N, ...)``: the largest ``|x|`` of a
    coordinate that varies (0 if none) and the RMS distance from their mean, computed in float64. A quick check
    before any work; the run judges the same limits again on the statistics of all its training rows
    (`check_source_resolution` in `train_loop.run`), which rare rows far out cannot slip past (tester B, s34)."""
    index = torch.linspace(0, data.shape[0] - 1, min(data.shape[0], 4096), device=data.device).long()
    rows = data.detach()[index].reshape(-1, data[0].numel()).double()
    centred = rows - rows.mean(0)
    spread = float(centred.pow(2).sum(-1).mean().sqrt())
    # only coordinates that vary: a constant one (a column of 1e4) is removed exactly by the mean, merging nothing
    varying = centred.abs().amax(0) > 0
    top = float(rows.abs().amax(0)[varying].max()) if bool(varying.any()) else 0.0
    return top, spread


def check_stored_resolution(data: Tensor, stored: torch.dtype, label: str) -> None:
    """`check_training_tensor`'s resolution check at the precision ``data`` ``(N, ...)`` were stored in, ``stored``
    (a file's float16 or bfloat16, which reaches the trainer converted to float32 with its merged points): nothing
    for a dtype at least as fine as float32.

    Raises:
        ValueError: after ``label`` (``"data file 'x.npy'"``), the data lie so far from the origin for their spread
            that ``stored`` merges distinct points (`FLOAT32_RESOLUTION`).
    """
    if not stored.is_floating_point or torch.finfo(stored).eps <= _F32.eps or data.shape[0] < 2:
        return
    top, spread = _top_and_spread(data)
    name = str(stored).removeprefix("torch.")
    problem = float_resolution_problem(top, spread, torch.finfo(stored).eps, f"{name}, the file's precision,")
    if problem is not None:
        raise ValueError(f"{label}: {problem}; subtract an offset (e.g. the mean) from the data before storing them "
                         f"in {name}, or store them in float32")


def check_source_resolution(label: str, mean: Tensor, scale: float, sample: Tensor) -> None:
    """`check_training_tensor`'s spread and float32 resolution checks on the statistics a run standardises with,
    for every source (a tensor, or an ``ArraySource`` read row by row, e.g. a streamed float64 ``.npy``, which
    reaches the trainer cast to float32), computed before training: the mean point ``mean`` and scale ``scale``
    (the RMS spread about it, SPEC §1) of the training rows, and ``sample`` ``(m, D)`` of them standardised
    (`TrainingRows.standardised_sample`). A coordinate varies where the sample's does; its largest ``|x|`` is
    bounded by ``|mean| + scale · max |z|``.

    Raises:
        ValueError: as `check_training_tensor`'s, after ``label`` (a file's: ``"data file 'x.npy'"``).
    """
    z_top = sample.double().abs().amax(0)
    varying = z_top > 0
    if bool(varying.any()):
        top = float((mean.reshape(-1).double().abs() + scale * z_top)[varying].max())
        prefix = "" if label == "data" else f"{label}: "
        _check_spread(scale, prefix)
        _check_resolution(top, scale, prefix)


def _check_spread(spread: float, prefix: str = "") -> None:
    """Refuse data whose RMS spread ``spread`` lies outside `SPREAD_LIMITS` (0, all points equal, is left to the
    trainer's other checks), naming the spread and the power of ten that brings it near 1."""
    low, high = SPREAD_LIMITS
    if spread == 0 or low <= spread <= high:
        return
    power = -round(math.log10(spread))
    raise ValueError(f"{prefix}data have an RMS spread about their mean of {spread:.3g}, outside {low:g}..{high:g}: "
                     f"geodesics, flows and curvature square distances in the data's units in float32 (normal range "
                     f"{_F32.tiny:.3g}..{_F32.max:.3g}), which at s² = {spread ** 2:.3g} over- or underflow and give "
                     f"0, NaN or wrong lengths; "
                     f"multiply the data by 1e{power} (a power of ten that brings the spread near 1) before training")


def _check_resolution(top: float, spread: float, prefix: str = "") -> None:
    """Refuse data whose largest ``|x|`` of a varying coordinate, ``top``, float32 cannot resolve at their RMS
    spread ``spread`` (`learned_manifold.checks.float_resolution_problem`, which `KNNCDC` warns by;
    `FLOAT32_RESOLUTION`)."""
    problem = float_resolution_problem(top, spread, _F32.eps, "float32, the model's precision,")
    if problem is not None:
        raise ValueError(f"{prefix}{problem}; subtract an offset (e.g. the mean) from the data before training")


def check_data_info(data_info: object) -> dict | None:
    """``data_info`` (`train`'s description of the data, stored in the model file's extra metadata), checked
    before the first step: None or a dict that `json.dumps` can write, as the model file will.

    Raises:
        TypeError: naming ``data_info``: not a dict, or a value JSON cannot hold (a set, a tensor).
        ValueError: naming ``data_info``: a circular reference.
    """
    if data_info is None:
        return None
    if not isinstance(data_info, dict):
        raise TypeError(f"data_info must be a dict (stored as JSON in the model file), got {type(data_info).__name__}")
    try:
        json.dumps(data_info)
    except TypeError as err:
        raise TypeError(f"data_info must hold only JSON values (it is stored in the model file): {err}") from None
    except ValueError as err:
        raise ValueError(f"data_info cannot be stored as JSON in the model file: {err}") from None
    return data_info


def settings_diff(saved: dict, now: dict, may_change: tuple[str, ...] = ()) -> str:
    """What a resumed run's settings ``now`` change against the ``saved`` ones, one ``name (--flag): saved X, now
    Y`` per setting (``""`` if none), leaving out ``may_change``. Only ``now``'s settings are compared: saved ones
    unknown here are refused before (`training/resume.py`)."""
    diff = [(k, saved.get(k), v) for k, v in now.items() if saved.get(k) != v and k not in may_change]
    return "; ".join(f"{k} (--{k.replace('_', '-')}): saved {a!r}, now {b!r}" for k, a, b in diff)


class TrainingInterrupted(KeyboardInterrupt):
    """A run stopped by SIGINT/SIGTERM after saving a checkpoint at ``step`` of ``total`` to ``path``."""

    def __init__(self, step: int, total: int, path):
        super().__init__(f"interrupted at step {step} of {total}")
        self.step, self.total, self.path = step, total, path


class TrainingDiverged(ValueError):
    """The loss or the weights became non-finite; the last good checkpoint (if any) is kept."""


class StopRequest:
    """Catch SIGINT and SIGTERM while the loop runs (a context manager); ``requested`` says one came.

    The handlers are installed only in the main thread (Python delivers signals there) and the previous ones
    are restored on exit. A second signal raises ``KeyboardInterrupt`` at once, or, after `finishing`, the
    exception it names (the trainer's end phase: `TrainingInterrupted` of the checkpoint saved at the last step).
    """

    SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict = {}
        self._notice: str | None = None
        self._second: Callable[[], BaseException] = KeyboardInterrupt

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise self._second()
        self.requested = True
        if self._notice is not None:
            _say(self._notice)

    def finishing(self, notice: str, second: Callable[[], BaseException]) -> None:
        """From now on a first signal prints ``notice`` on stderr at once (the work goes on) and a second raises
        ``second()``. A signal that came before this call is acknowledged now: the next one is the second."""
        self._notice, self._second = notice, second
        if self.requested:
            _say(notice)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()


def stop_requested(stop: StopRequest, done: int, world: int, device: torch.device, every: int) -> bool:
    """Whether to stop after step ``done``: this process's flag, or under DDP (every ``every`` steps, so that
    every rank stops at the same step) any rank's."""
    if world == 1:
        return stop.requested
    if done % every:
        return False
    flag = torch.tensor(float(stop.requested), device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def _say(line: str) -> None:
    """``line`` on stderr from a signal handler (a write that fails there must not hide the signal)."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, RuntimeError, ValueError):  # e.g. a re-entrant write to a buffered stderr
        pass


def check_health(step: int, loss_sum: Tensor, params: list[Tensor]) -> None:
    """Raise `TrainingDiverged` if the summed recent losses ``loss_sum`` (a 0-d tensor) or any of ``params`` is
    not finite. One host synchronisation."""
    norms = torch.stack([n.float() for n in torch._foreach_norm(params)]) if params else loss_sum.reshape(1)
    verdict = torch.stack([loss_sum.float().reshape(()), norms.sum()]).tolist()
    if not math.isfinite(verdict[0]):
        raise TrainingDiverged(f"training diverged at step {step}: loss is {verdict[0]}; try a smaller --lr")
    if not math.isfinite(verdict[1]):
        raise TrainingDiverged(f"training diverged at step {step}: the weights are not finite; "
                               f"try a smaller --lr")
