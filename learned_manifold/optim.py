"""geoopt's Riemannian optimisers with the card's signature: ``RiemannianSGD(params, manifold=M, lr=...)``.

Plain tensors and ``nn.Parameter`` s are bound to ``M`` by making ``M`` the optimiser's default manifold
(geoopt uses ``p.manifold`` for ``ManifoldParameter`` s and the default manifold for everything else); a
``geoopt.ManifoldParameter`` keeps its own manifold. A parameter group's own ``manifold`` key overrides ``M`` for
that group's plain parameters, ``None`` (or ``geoopt.Euclidean()``) keeping them Euclidean: a network's
``Linear(3, 3)`` in its own group had its bias and weight rows landed onto a learned S² by one step with a zero
gradient, as every plain parameter whose last axis is ``D`` was bound to ``M``. The group's manifold is
configuration, not state: ``state_dict`` leaves it out and ``load_state_dict`` keeps the groups' own. Shapes are
checked up front. Options that geoopt would accept and silently ignore are refused.

Without landing nothing holds the parameters to the data: at steps 1, 2, 4, 8, … the points bound to a
`LearnedDataManifold` with ``landing=False`` are compared with the data its field holds (`landing.ends_off_data`,
the flows' check and threshold), and the optimiser warns once where some lie beyond it (a disc's edge optimum was
run past by 1.6 with no word). With landing, landing's own checks apply.

``stabilize=k`` (every ``k`` steps: ``p ← projx(p)`` and the momentum / first moment ``← proju(p, ·)``) applies
to every parameter: geoopt's own ``stabilize_group`` skips plain parameters, so it is overridden here to use
their group's manifold (`_group_manifold`) for them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable

import geoopt
import torch

from .checks import is_real
from .landing import ends_off_data
from .manifold import LearnedDataManifold
from .metrics.base import check_count, check_scalar
from .user_warnings import warn_user

__all__ = ["RiemannianAdam", "RiemannianSGD"]

# torch.optim.Adam keywords that geoopt.optim.RiemannianAdam accepts but never reads, each with why it is refused
# (geoopt's step is its own loop: one parameter at a time, under no_grad, through the manifold's operations).
_IGNORED_BY_GEOOPT_ADAM = {
    "maximize": "geoopt always minimises; negate the objective instead",
    "foreach": "geoopt steps one parameter at a time through its manifold's operations and has no multi-tensor "
               "(foreach) path; leave foreach out, the result is the same",
    "fused": "geoopt has no fused kernel: every step goes through the manifold's operations; leave fused out",
    "capturable": "geoopt's step keeps its step count as a Python int and cannot be captured in a CUDA graph",
    "differentiable": "geoopt's step runs under torch.no_grad, so no gradient flows through it",
    "decoupled_weight_decay": "geoopt adds weight_decay to the gradient (L2, as Adam), never decoupled (AdamW)",
}

_EUCLIDEAN = geoopt.Euclidean()
_KEEP_EUCLIDEAN = ("to keep a parameter Euclidean, put it in a parameter group with its own manifold=None "
                   "({'params': [...], 'manifold': None}) or wrap it as geoopt.ManifoldParameter(w, "
                   "manifold=geoopt.Euclidean())")


def _bind(optimizer: torch.optim.Optimizer, manifold: geoopt.Manifold | None) -> None:
    """Make ``manifold`` the default of plain parameters and check the groups that have no ``manifold`` of their
    own (those were checked against it by `_BoundGroups.add_param_group`). Without ``manifold`` it warns once where
    nothing binds any parameter to a manifold (`_warn_if_unbound`)."""
    if manifold is None:
        _warn_if_unbound(optimizer)
        return
    if not isinstance(manifold, geoopt.Manifold):
        raise TypeError(f"manifold must be a geoopt.Manifold, got {type(manifold).__name__}")
    optimizer._default_manifold = manifold
    for index, group in enumerate(optimizer.param_groups):
        if "manifold" not in group:
            _check_group(manifold, group["params"], index)


def _warn_if_unbound(optimizer: torch.optim.Optimizer) -> None:
    """Built without ``manifold=``: where no group has a ``manifold`` of its own and no parameter is a
    ``geoopt.ManifoldParameter`` on a non-Euclidean manifold, every parameter is Euclidean (geoopt's default for
    plain tensors) and the optimiser is torch's own; a warning (through `warn_user`) says so, since that is almost
    always a forgotten ``manifold=M`` (50 Adam steps on a learned circle ended at radius 1.5 to 3.3, silently)."""
    if any("manifold" in group for group in optimizer.param_groups):
        return  # a group's own manifold (None included) is a deliberate choice
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if any(isinstance(p, geoopt.ManifoldTensor) and not isinstance(p.manifold, geoopt.Euclidean) for p in params):
        return
    name = type(optimizer).__name__
    plain = name.removeprefix("Riemannian")
    warn_user(f"{name}: no parameter is bound to a manifold (no manifold= given and no geoopt.ManifoldParameter), "
              f"so it runs as torch.optim.{plain}: its steps never follow the data; pass manifold=M or wrap the "
              f"points as geoopt.ManifoldParameter(p, manifold=M)")


def _check_group(manifold: geoopt.Manifold, params: Iterable, index: int) -> None:
    """Plain trainable parameters must have the manifold's point shape; frozen ones (``requires_grad=False``, e.g.
    the network weights of a module that also holds the manifold) are never stepped and are not checked."""
    for p in params:
        if isinstance(p, geoopt.ManifoldTensor) or not p.requires_grad:
            continue
        ok, reason = manifold._check_shape(p.shape, "parameter")
        if not ok:
            raise ValueError(f"parameter group {index}: cannot bind a parameter of shape {tuple(p.shape)} to "
                             f"{manifold}: {reason}; {_KEEP_EUCLIDEAN}")


def _group_manifold(optimizer: torch.optim.Optimizer, group: dict) -> geoopt.Manifold:
    """The manifold of a group's plain parameters: the group's own ``manifold`` (``None``: Euclidean), else the
    optimiser's."""
    if "manifold" in group:
        return _EUCLIDEAN if group["manifold"] is None else group["manifold"]
    return optimizer._default_manifold


def _check_group_manifold(param_group: dict, index: int) -> None:
    """A group's own ``manifold`` must be a ``geoopt.Manifold`` or ``None``."""
    own = param_group.get("manifold")
    if own is not None and not isinstance(own, geoopt.Manifold):
        raise TypeError(f"parameter group {index}: manifold must be a geoopt.Manifold or None (Euclidean), got "
                        f"{type(own).__name__}")


class _BoundGroups:
    """``add_param_group`` checks a new group's options (`_check_options`, as the constructor's) and its parameters
    against its manifold (its own ``manifold`` key, else the bound one) before adding it (the constructor's groups
    without their own are bound by `_bind`); torch's constructor adds its groups through it, so every group's
    options are checked. ``state_dict`` / ``load_state_dict`` leave the groups' manifolds out / in place."""

    def add_param_group(self, param_group: dict) -> None:
        index = len(getattr(self, "param_groups", []))
        if isinstance(param_group, dict):  # (else torch's own TypeError)
            given = {k: v for k, v in param_group.items() if k in _OPTION_CHECKS}
            _check_options(f"parameter group {index}: ", **given)
            _check_group_manifold(param_group, index)
            if "betas" in given:
                param_group = {**param_group, "betas": tuple(float(b) for b in given["betas"])}
        params = param_group["params"]
        if not isinstance(params, set):  # (a set: torch's own TypeError)
            params = [params] if isinstance(params, torch.Tensor) else list(params)  # a generator is read once
            _check_group(_group_manifold(self, param_group), params, index)
            param_group = {**param_group, "params": params}
        super().add_param_group(param_group)

    def state_dict(self) -> dict:
        """torch's, without the groups' ``manifold`` (configuration, as the parameters: not pickled with the
        state, a k-NN field's data and all)."""
        state = super().state_dict()
        state["param_groups"] = [{k: v for k, v in g.items() if k != "manifold"} for g in state["param_groups"]]
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """torch's, keeping each group's own ``manifold`` (or its absence) as this optimiser was built."""
        own = [(g["manifold"],) if "manifold" in g else () for g in self.param_groups]
        super().load_state_dict(state_dict)
        for group, kept in zip(self.param_groups, own, strict=True):
            group.pop("manifold", None)
            if kept:
                group["manifold"] = kept[0]


def _warn_if_off_data(optimizer: torch.optim.Optimizer) -> None:
    """After steps 1, 2, 4, 8, … (a few checks in a long run), until it has warned once: where points bound to a
    `LearnedDataManifold` without landing lie beyond the data its field holds, one warning (`landing.ends_off_data`:
    how many, how far, the threshold) per optimiser. Manifolds with landing have landing's own checks; fields
    that hold no data (``beyond_data`` is ``None``) are not checked."""
    optimizer._steps_taken = steps = getattr(optimizer, "_steps_taken", 0) + 1
    if steps & (steps - 1) or getattr(optimizer, "_warned_off_data", False):
        return
    points: dict[int, tuple[LearnedDataManifold, list[torch.Tensor]]] = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            manifold = _manifold_of(optimizer, group, p)
            if p.requires_grad and isinstance(manifold, LearnedDataManifold) and not manifold.landing:
                flat = p.detach().reshape(-1, math.prod(manifold.data_shape))
                points.setdefault(id(manifold), (manifold, []))[1].append(flat)
    for manifold, flats in points.values():
        worst = ends_off_data(manifold.field, {"the optimised points": torch.cat(flats)}, type(optimizer).__name__,
                              "without landing nothing holds them to the data (checked at steps 1, 2, 4, 8, ...; "
                              "said once): use LearnedDataManifold(..., landing=True), or expect steps without "
                              "meaning there")
        if worst is not None and bool((worst > 0).any()):
            optimizer._warned_off_data = True
            return


def _manifold_of(optimizer: torch.optim.Optimizer, group: dict, p: torch.Tensor) -> geoopt.Manifold:
    """A ``ManifoldParameter``'s own manifold, else its group's (`_group_manifold`)."""
    return p.manifold if isinstance(p, geoopt.ManifoldTensor) else _group_manifold(optimizer, group)


def _one_step(manifold: geoopt.Manifold, optimizer: object, p: torch.Tensor) -> contextlib.AbstractContextManager:
    """The manifold's `CachedFactors.one_step` for ``p`` (one cache-key read, pins while ``optimizer`` lives)."""
    one_step = getattr(manifold, "one_step", None)
    return one_step(p, optimizer) if one_step is not None else contextlib.nullcontext()


def _check_flag(value: object, name: str) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def _check_momentum(value: object, name: str) -> None:
    check_scalar(value, name, allow_zero=True)
    if value >= 1:
        raise ValueError(f"{name} must be < 1, got {value}")


def _check_betas(value: object, name: str) -> None:
    if not (isinstance(value, (tuple, list)) and len(value) == 2
            and all(is_real(b) and 0 <= b < 1 for b in value)):
        raise ValueError(f"{name} must be two numbers in [0, 1), got {value!r}")


def _check_stabilize(value: object, name: str) -> None:
    if value is not None:
        check_count(value, name)


# each option of either optimiser, with its check (given the value and the name to report)
_OPTION_CHECKS: dict[str, Callable[[object, str], object]] = {
    "lr": lambda v, n: check_scalar(v, n, allow_zero=True),
    "momentum": _check_momentum,
    "dampening": lambda v, n: check_scalar(v, n, allow_zero=True),
    "weight_decay": lambda v, n: check_scalar(v, n, allow_zero=True),
    "eps": lambda v, n: check_scalar(v, n, allow_zero=True),
    "nesterov": _check_flag,
    "amsgrad": _check_flag,
    "betas": _check_betas,
    "stabilize": _check_stabilize,
}


def _check_options(where: str = "", **options: object) -> None:
    """One clear error for an optimiser option out of range or of the wrong type, before geoopt sees it: the
    constructor's options (``where`` empty) and each parameter group's own (``where`` naming the group)."""
    for name, value in options.items():
        _OPTION_CHECKS[name](value, where + name)


class RiemannianSGD(_BoundGroups, geoopt.optim.RiemannianSGD):
    """geoopt's ``RiemannianSGD`` whose plain parameters live on ``manifold``.

    Args:
        params: tensors (``requires_grad=True``) or parameter groups; a group's own ``manifold`` overrides
            ``manifold`` for its plain parameters (``None`` or ``geoopt.Euclidean()``: Euclidean, e.g. a network's
            weights), and a ``geoopt.ManifoldParameter(w, manifold=...)`` keeps its own.
        manifold: the manifold of plain parameters (``None``: geoopt's Euclidean default).
        lr, momentum, dampening, weight_decay, nesterov, stabilize: as in geoopt / ``torch.optim.SGD``; the momentum
            buffer starts from the Riemannian gradient, so the first step is ``lr × egrad2rgrad`` as
            ``torch.optim.SGD``'s is ``lr × grad`` (geoopt starts it from the Euclidean gradient: `step`).

    Example:
        >>> import torch
        >>> from learned_manifold import LearnedDataManifold, RiemannianSGD
        >>> from learned_manifold.metrics import KNNCDC
        >>> g = torch.Generator().manual_seed(0)
        >>> data = torch.nn.functional.normalize(torch.randn(2000, 3, generator=g), dim=-1)  # S² in R³
        >>> M = LearnedDataManifold(KNNCDC(data, k=32, sigma=0.1), landing=True, tangent_dim=2)
        >>> p = torch.nn.Parameter(data[:4].clone())  # a plain parameter: bound to M by the optimiser
        >>> opt = RiemannianSGD([p], manifold=M, lr=0.1, momentum=0.5)
        >>> for _ in range(100):  # maximise the height x₃ on the data
        ...     opt.zero_grad()
        ...     (-p[:, 2]).sum().backward()
        ...     opt.step()
        >>> bool((p[:, 2] > 0.9).all()), bool(((p.norm(dim=-1) - 1).abs() < 0.05).all())  # near the top, on S²
        (True, True)
    """

    def __init__(self, params: Iterable, *, manifold: geoopt.Manifold | None = None, lr: float,
                 momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False, stabilize: int | None = None):
        _check_options(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                       stabilize=stabilize)
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                         nesterov=nesterov, stabilize=stabilize)
        _bind(self, manifold)

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One step of geoopt's loop, with the momentum buffer seeded as ``torch.optim.SGD`` seeds it.

        Per parameter ``x`` ``(*shape)`` with gradient ``g``: ``g ← egrad2rgrad(x, g + wd·x)``; without momentum
        ``x ← retr(x, −lr·g)``; with momentum the buffer is ``b = g`` on the first step (no dampening) and
        ``b ← m·b + (1 − dampening)·g`` after, the direction ``b`` (Nesterov: ``g + m·b``), then
        ``x, b ← retr_transp(x, −lr·direction, b)``. The first step is thus ``lr ×`` the Riemannian gradient, as
        ``torch.optim.SGD``'s is ``lr × grad``. geoopt seeds ``b`` with the raw Euclidean gradient instead: a
        non-tangent seed whose normal part ``proju`` removes only for ``δ = 0`` (SPEC §5); for ``δ > 0`` the first
        step on a plane with a target 5 above it rose 0.45 where the Riemannian step is 5e-4. ``p.grad`` is
        modified in place, as geoopt does. Every ``stabilize`` steps, `stabilize_group`.
        """
        loss = closure() if closure is not None else None
        with torch.no_grad():
            for group in self.param_groups:
                group["step"] = group.get("step", 0) + 1
                for point in group["params"]:
                    grad = point.grad
                    if grad is None:
                        continue
                    if grad.is_sparse:
                        raise RuntimeError("RiemannianSGD does not support sparse gradients")
                    manifold = _manifold_of(self, group, point)
                    with _one_step(manifold, self, point):
                        self._sgd_update(group, point, grad, manifold)
                if group["stabilize"] is not None and group["step"] % group["stabilize"] == 0:
                    self.stabilize_group(group)
        _warn_if_off_data(self)
        return loss

    def _sgd_update(self, group: dict, point: torch.Tensor, grad: torch.Tensor, manifold: geoopt.Manifold) -> None:
        """One parameter's update (`step`)."""
        lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
        grad.add_(point, alpha=group["weight_decay"])
        grad = manifold.egrad2rgrad(point, grad)
        if momentum == 0:
            point.copy_(manifold.retr(point, -lr * grad))
            return
        state = self.state[point]
        buf = state.get("momentum_buffer")
        if buf is None:  # the seed: the Riemannian gradient itself, as torch.optim.SGD's first step
            buf = state["momentum_buffer"] = grad.clone()
        else:
            buf.mul_(momentum).add_(grad, alpha=1 - dampening)
        direction = grad.add(buf, alpha=momentum) if group["nesterov"] else buf
        new_point, new_buf = manifold.retr_transp(point, -lr * direction, buf)
        buf.copy_(new_buf)
        point.copy_(new_point)

    @torch.no_grad()
    def stabilize_group(self, group: dict) -> None:
        """``p ← projx(p)``, momentum ``← proju(p, momentum)``, for plain and manifold parameters alike."""
        for p in group["params"]:
            if not p.requires_grad:  # frozen: never stepped
                continue
            manifold = _manifold_of(self, group, p)
            p.copy_(manifold.projx(p))
            buf = self.state[p].get("momentum_buffer") if group["momentum"] > 0 else None
            if buf is not None:
                buf.copy_(manifold.proju(p, buf))


class RiemannianAdam(_BoundGroups, geoopt.optim.RiemannianAdam):
    """geoopt's ``RiemannianAdam`` whose plain parameters live on ``manifold``.

    Args:
        params: tensors or parameter groups; a group's own ``manifold`` overrides ``manifold`` for its plain
            parameters (``None`` or ``geoopt.Euclidean()``: Euclidean), and a ``geoopt.ManifoldParameter`` keeps
            its own.
        manifold: the manifold of plain parameters (``None``: geoopt's Euclidean default).
        lr, betas, eps, weight_decay, amsgrad, stabilize: as in geoopt / ``torch.optim.Adam``.

    Raises:
        ValueError: for ``torch.optim.Adam`` options geoopt ignores (``maximize``, ``foreach``, ``fused``, ...), each
            named with why it is refused.

    Example:
        >>> import torch
        >>> from learned_manifold import LearnedDataManifold, RiemannianAdam
        >>> from learned_manifold.metrics import KNNCDC
        >>> g = torch.Generator().manual_seed(0)
        >>> data = torch.nn.functional.normalize(torch.randn(2000, 3, generator=g), dim=-1)  # S² in R³
        >>> M = LearnedDataManifold(KNNCDC(data, k=32, sigma=0.1), landing=True, tangent_dim=2)
        >>> p = torch.nn.Parameter(data[:4].clone())
        >>> opt = RiemannianAdam([p], manifold=M, lr=0.05)
        >>> for _ in range(100):  # maximise the height x₃ on the data
        ...     opt.zero_grad()
        ...     (-p[:, 2]).sum().backward()
        ...     opt.step()
        >>> bool((p[:, 2] > 0.9).all()), bool(((p.norm(dim=-1) - 1).abs() < 0.05).all())
        (True, True)
    """

    def __init__(self, params: Iterable, *, manifold: geoopt.Manifold | None = None, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 amsgrad: bool = False, stabilize: int | None = None, **unsupported):
        bad = sorted(k for k, v in unsupported.items() if k in _IGNORED_BY_GEOOPT_ADAM and v)
        if bad:
            reasons = "; ".join(f"{k}={unsupported[k]!r}: {_IGNORED_BY_GEOOPT_ADAM[k]}" for k in bad)
            raise ValueError(f"RiemannianAdam: geoopt's RiemannianAdam ignores {', '.join(bad)}, so it is refused "
                             f"rather than silently doing something else ({reasons})")
        _check_options(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, stabilize=stabilize)
        unknown = sorted(set(unsupported) - set(_IGNORED_BY_GEOOPT_ADAM))
        if unknown:
            raise TypeError(f"unexpected options {unknown}")
        betas = (float(betas[0]), float(betas[1]))  # NumPy scalars too: torch's Adam takes floats or tensors
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         stabilize=stabilize)
        _bind(self, manifold)

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """geoopt's Adam step, each plain parameter on its group's manifold (`_manifold_of`; geoopt's reads only
        the default one).

        Per parameter ``x`` with gradient ``g``: ``g ← egrad2rgrad(x, g + wd·x)``, ``m ← β₁m + (1 − β₁)g``,
        ``v ← β₂v + (1 − β₂)·component_inner(x, g)`` (AMSGrad: the running maximum of ``v``),
        ``x, m ← retr_transp(x, −lr·(m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + eps), m)``, in geoopt's order of
        operations (a resumed run continues bit for bit); every ``stabilize`` steps, `stabilize_group`."""
        loss = closure() if closure is not None else None
        with torch.no_grad():
            for group in self.param_groups:
                stabilize = False
                for point in group["params"]:
                    if point.grad is None:
                        continue
                    if point.grad.is_sparse:
                        raise RuntimeError("RiemannianAdam does not support sparse gradients, use "
                                           "geoopt.optim.SparseRiemannianAdam instead")
                    with _one_step(_manifold_of(self, group, point), self, point):
                        state = self._adam_update(group, point)
                    stabilize |= group["stabilize"] is not None and state["step"] % group["stabilize"] == 0
                if stabilize:
                    self.stabilize_group(group)
        _warn_if_off_data(self)
        return loss

    def _adam_update(self, group: dict, point: torch.Tensor) -> dict:
        """One parameter's update (`step`); returns its state."""
        manifold, (beta1, beta2) = _manifold_of(self, group, point), group["betas"]
        state = self.state[point]
        if len(state) == 0:
            state.update(step=0, exp_avg=torch.zeros_like(point), exp_avg_sq=torch.zeros_like(point))
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = torch.zeros_like(point)
        state["step"] += 1
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        grad = point.grad.add_(point, alpha=group["weight_decay"])
        grad = manifold.egrad2rgrad(point, grad)
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).add_(manifold.component_inner(point, grad), alpha=1 - beta2)
        bias_correction1, bias_correction2 = 1 - beta1 ** state["step"], 1 - beta2 ** state["step"]
        if group["amsgrad"]:
            torch.max(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            exp_avg_sq = state["max_exp_avg_sq"]
        denom = exp_avg_sq.div(bias_correction2).sqrt_()
        direction = exp_avg.div(bias_correction1) / denom.add_(group["eps"])
        new_point, exp_avg_new = manifold.retr_transp(point, -group["lr"] * direction, exp_avg)
        point.copy_(new_point)
        exp_avg.copy_(exp_avg_new)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """As ``torch.optim.Optimizer``'s, but each parameter's step count stays the integer geoopt keeps (torch
        turns it into a float32 tensor, which changed the bias corrections: a resumed run drifted by 3e-6)."""
        super().load_state_dict(state_dict)
        for state in self.state.values():
            if isinstance(state.get("step"), torch.Tensor):
                state["step"] = int(state["step"].item())

    @torch.no_grad()
    def stabilize_group(self, group: dict) -> None:
        """``p ← projx(p)``, first moment ``← proju(p, exp_avg)``, for plain and manifold parameters alike."""
        for p in group["params"]:
            state = self.state[p]
            if not state:  # no gradient yet
                continue
            manifold = _manifold_of(self, group, p)
            p.copy_(manifold.projx(p))
            state["exp_avg"].copy_(manifold.proju(p, state["exp_avg"]))
