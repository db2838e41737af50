"""The flows' ODE integration (SPEC §6): torchdiffeq on the output grid, with landing after every interval, and
one clear error for every way a solve can fail (`gradient_flow` and `interpolate` in `learned_manifold.flows`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchdiffeq import odeint

from .flow_inputs import FLOW_METHODS
from .landing import normal_landing
from .metrics.base import CoMetricField
from .metrics.factor_checks import FactorContractError

__all__ = ["MAX_ADAPTIVE_STEPS", "ObjectiveWatch", "objective_along"]

MAX_ADAPTIVE_STEPS = 2000
"""Most steps an adaptive method may take between two output times before the flow raises (never hangs)."""


def _integrate(field: CoMetricField, velocity: Callable[[Tensor], Tensor], x0: Tensor, times: Tensor, *,
               method: str, rtol: float, atol: float, step_size: float | None, landing: bool,
               project: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Integrate ``ẋ = velocity(x)`` on the output grid; with landing, land after every interval (by
    ``project``, default one normal-only step `landing.normal_landing`: a caller integrating other coordinates
    gives its own). The caller has checked the settings (`flow_inputs._check_solver`,
    `metrics.field_checks.check_landing`)."""
    adaptive = FLOW_METHODS[method]
    if x0.shape[0] == 0:  # an empty batch: empty paths, nothing to integrate
        return x0.new_zeros(0, len(times), x0.shape[1])
    options = {"max_num_steps": MAX_ADAPTIVE_STEPS} if adaptive else {
        "step_size": step_size if step_size is not None else float(times[1] - times[0])}
    kwargs = {"rtol": rtol, "atol": atol} if adaptive else {}

    def func(t, x):
        return velocity(x)

    def solve(x, t):
        try:
            return odeint(func, x, t, method=method, options=options, **kwargs)
        except FactorContractError:  # a mistake in the field itself, named by its own message
            raise
        except ValueError as err:  # the field (or objective) refused a point the flow reached
            raise ValueError(f"the flow ({method!r}) reached a point its field or objective refuses, so it diverged "
                             f"or left their domain (a smaller step_size, or an adaptive method, may help): {err}"
                             ) from None
        except AssertionError as err:  # torchdiffeq's only way of saying it gave up
            if "underflow in dt" in str(err):  # the step size collapsed: the velocity became NaN or inf
                raise _not_finite(method) from None
            if "max_num_steps" not in str(err):
                raise
            raise ValueError(f"the adaptive solver {method!r} needed more than {MAX_ADAPTIVE_STEPS} steps between "
                             f"two output times (a stiff or very long flow): use a smaller t_end, more n_points, "
                             f"a looser rtol/atol, or a fixed-step method with step_size") from None

    if not landing:
        path = solve(x0, times).transpose(0, 1)
    else:
        out, x = [x0], x0
        for i in range(len(times) - 1):
            x = (project or (lambda z: normal_landing(field, z)))(solve(x, times[i : i + 2])[-1])
            out.append(x)
        path = torch.stack(out, dim=1)
    bad = (~torch.isfinite(path).flatten(1).all(-1)).nonzero().flatten()
    if bad.numel():  # fixed-step methods carry NaN on instead of failing
        raise _not_finite(method, bad.tolist())
    return path


def _not_finite(method: str, rows: list[int] | None = None) -> ValueError:
    where = f"of start points {rows[:8]}{' …' if len(rows) > 8 else ''} " if rows else ""
    return ValueError(f"the flow {where}became NaN or inf ({method!r}): the velocity is not finite somewhere along "
                      f"it, e.g. an objective whose value or gradient is NaN or inf there (sqrt or log of a negative), "
                      f"or a field that is not finite at those points")


class ObjectiveWatch:
    """Keeps `flows.gradient_flow`'s promise that ``f`` is finite along the flow (SPEC §6) at no extra call of
    ``f``: the velocity notes which start points' values were NaN or inf where it evaluates ``f`` anyway (for
    ``∇f``), and `final` adds the one call at the end point. Only a flow that met such a value pays for locating
    it (`objective_along`).

    The velocity's own check (`_integrate`) sees only ``∇f``; an objective such as ``log(x₀ − 1)``, whose autograd
    gradient stays finite past its domain, let an Euler flow step out of it and return NaN values silently.
    """

    def __init__(self, x0: Tensor) -> None:
        """``x0``: the ``(B, D)`` start points; every later evaluation of ``f`` is on ``B`` points too."""
        self.met = torch.zeros(x0.shape[0], dtype=torch.bool, device=x0.device)  # (B,) f met NaN or inf

    def note(self, values: Tensor) -> Tensor:
        """Note which of the ``(B,)`` values of ``f`` are not finite (no host sync); returns ``values`` as given."""
        self.met |= ~torch.isfinite(values.detach())
        return values

    def final(self, f: Callable[[Tensor], Tensor], path: Tensor, times: Tensor, method: str) -> Tensor:
        """``(B,)`` ``f(path[:, -1])``, detached: one call of ``f``. Where ``f`` was NaN or inf there or at a point
        the velocity evaluated, the output points are checked by `objective_along`, which raises naming the start
        points and the first output time; a value met only at a point off the path (an adaptive solver's rejected
        trial step, or a step past ``t_end`` that it interpolates back from) is no error.

        Args:
            f: the objective; path: ``(B, T, D)`` flow paths; times: ``(T,)``; method: the solver's name.
        """
        if path.shape[0] == 0:
            return path.new_zeros(0)
        values = f(path[:, -1]).detach()
        if bool((self.met | ~torch.isfinite(values)).any()):
            objective_along(f, path, times, method)
        return values


def objective_along(f: Callable[[Tensor], Tensor], path: Tensor, times: Tensor, method: str) -> Tensor:
    """``f`` at the end of each flow path, after checking that ``f`` is finite at every output point (SPEC §6,
    `flows.gradient_flow`'s promise): one call of ``f`` per output time, on the ``(B, D)`` points ``path[:, i]``.
    `ObjectiveWatch.final` calls it only for a flow that met a NaN or inf value of ``f``, to locate it.

    Args:
        f: the objective, flat ``(B, D)`` points → ``(B,)``.
        path: ``(B, T, D)`` flow paths; times: ``(T,)`` their output times; method: the solver's name.

    Returns:
        ``(B,)`` ``f(path[:, -1])``, detached.

    Raises:
        ValueError: ``f`` is NaN or inf at some output point (naming the start points and the first time).
    """
    if path.shape[0] == 0:
        return path.new_zeros(0)
    values = torch.stack([f(path[:, i]).detach() for i in range(path.shape[1])], dim=1)  # (B, T)
    bad = ~torch.isfinite(values)
    rows = bad.any(1).nonzero().flatten().tolist()
    if rows:
        at = float(times[int(bad[rows[0]].nonzero()[0])])  # read before the message (`landing._warn_far_landed`)
        raise ValueError(f"the flow of start points {rows[:8]}{' …' if len(rows) > 8 else ''} became NaN or inf "
                         f"({method!r}): f is not finite along it (start point {rows[0]}: first at t = "
                         f"{at:g}), so the flow left f's domain (e.g. log or sqrt of a negative, "
                         f"whose autograd gradient can stay finite there): use a smaller t_end or step_size, or an "
                         f"objective defined along the path")
    return values[:, -1]
