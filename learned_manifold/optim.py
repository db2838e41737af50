"""geoopt's Riemannian optimisers with the card's signature: ``RiemannianSGD(params, manifold=M, lr=...)``.

Plain tensors and ``nn.Parameter`` s are bound to ``M`` by making ``M`` the optimiser's default manifold
(geoopt uses ``p.manifold`` for ``ManifoldParameter`` s and the default manifold for everything else); a
``geoopt.ManifoldParameter`` keeps its own manifold. Shapes are checked up front. Options that geoopt would
accept and silently ignore are refused.

``stabilize=k`` (every ``k`` steps: ``p ← projx(p)`` and the momentum / first moment ``← proju(p, ·)``) applies
to every parameter: geoopt's own ``stabilize_group`` skips plain parameters, so it is overridden here to use
the default manifold for them.
"""

from __future__ import annotations

from collections.abc import Iterable

import geoopt
import torch

from .metrics.base import check_count, check_scalar

__all__ = ["RiemannianAdam", "RiemannianSGD"]

# torch.optim.Adam keywords that geoopt.optim.RiemannianAdam accepts but never reads.
_IGNORED_BY_GEOOPT_ADAM = ("maximize", "foreach", "capturable", "differentiable", "fused", "decoupled_weight_decay")


def _bind(optimizer: torch.optim.Optimizer, manifold: geoopt.Manifold | None) -> None:
    if manifold is None:
        return
    if not isinstance(manifold, geoopt.Manifold):
        raise TypeError(f"manifold must be a geoopt.Manifold, got {type(manifold).__name__}")
    optimizer._default_manifold = manifold
    for group in optimizer.param_groups:
        for p in group["params"]:
            if isinstance(p, geoopt.ManifoldTensor):
                continue
            ok, reason = manifold._check_shape(p.shape, "parameter")
            if not ok:
                raise ValueError(f"cannot bind a parameter of shape {tuple(p.shape)} to {manifold}: {reason}")


def _manifold_of(optimizer: torch.optim.Optimizer, p: torch.Tensor) -> geoopt.Manifold:
    return p.manifold if isinstance(p, geoopt.ManifoldTensor) else optimizer._default_manifold


def _check_options(*, lr: float, stabilize: int | None, **nonnegative: float) -> None:
    """One clear error for an optimiser option out of range, before geoopt sees it."""
    check_scalar(lr, "lr", allow_zero=True)
    for name, value in nonnegative.items():
        check_scalar(value, name, allow_zero=True)
    if stabilize is not None:
        check_count(stabilize, "stabilize")


class RiemannianSGD(geoopt.optim.RiemannianSGD):
    """geoopt's ``RiemannianSGD`` whose plain parameters live on ``manifold``.

    Args:
        params: tensors (``requires_grad=True``) or parameter groups.
        manifold: the manifold of plain parameters (``None``: geoopt's Euclidean default).
        lr, momentum, dampening, weight_decay, nesterov, stabilize: as in geoopt / ``torch.optim.SGD``.

    Example:
        >>> import torch
        >>> from learned_manifold import LearnedDataManifold, RiemannianSGD
        >>> from learned_manifold.metrics import KNNCDC
        >>> g = torch.Generator().manual_seed(0)
        >>> data = torch.nn.functional.normalize(torch.randn(2000, 3, generator=g), dim=-1)  # S² in R³
        >>> M = LearnedDataManifold(KNNCDC(data, k=32, sigma=0.1), landing=True)
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
        _check_options(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                       stabilize=stabilize)
        if momentum >= 1:
            raise ValueError(f"momentum must be < 1, got {momentum}")
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                         nesterov=nesterov, stabilize=stabilize)
        _bind(self, manifold)

    @torch.no_grad()
    def stabilize_group(self, group: dict) -> None:
        """``p ← projx(p)``, momentum ``← proju(p, momentum)``, for plain and manifold parameters alike."""
        for p in group["params"]:
            manifold = _manifold_of(self, p)
            p.copy_(manifold.projx(p))
            buf = self.state[p].get("momentum_buffer") if group["momentum"] > 0 else None
            if buf is not None:
                buf.copy_(manifold.proju(p, buf))


class RiemannianAdam(geoopt.optim.RiemannianAdam):
    """geoopt's ``RiemannianAdam`` whose plain parameters live on ``manifold``.

    Args:
        params: tensors or parameter groups.
        manifold: the manifold of plain parameters.
        lr, betas, eps, weight_decay, amsgrad, stabilize: as in geoopt / ``torch.optim.Adam``.

    Raises:
        ValueError: for ``torch.optim.Adam`` options geoopt ignores (``maximize``, ``foreach``, ``fused``, ...).

    Example:
        >>> import torch
        >>> from learned_manifold import LearnedDataManifold, RiemannianAdam
        >>> from learned_manifold.metrics import KNNCDC
        >>> g = torch.Generator().manual_seed(0)
        >>> data = torch.nn.functional.normalize(torch.randn(2000, 3, generator=g), dim=-1)  # S² in R³
        >>> M = LearnedDataManifold(KNNCDC(data, k=32, sigma=0.1), landing=True)
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
            raise ValueError(f"geoopt's RiemannianAdam ignores {bad}; refusing rather than silently "
                             f"doing something else (negate the objective instead of maximize=True)")
        _check_options(lr=lr, eps=eps, weight_decay=weight_decay, stabilize=stabilize)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2
                and all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        unknown = sorted(set(unsupported) - set(_IGNORED_BY_GEOOPT_ADAM))
        if unknown:
            raise TypeError(f"unexpected options {unknown}")
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         stabilize=stabilize)
        _bind(self, manifold)

    @torch.no_grad()
    def stabilize_group(self, group: dict) -> None:
        """``p ← projx(p)``, first moment ``← proju(p, exp_avg)``, for plain and manifold parameters alike."""
        for p in group["params"]:
            state = self.state[p]
            if not state:  # no gradient yet
                continue
            manifold = _manifold_of(self, p)
            p.copy_(manifold.projx(p))
            state["exp_avg"].copy_(manifold.proju(p, state["exp_avg"]))
