"""A guard against the factor's loss blowing up (issue 12): its gradient norm clipped relative to its own recent
history (docs/SPEC.md §3).

Why: the Jacobian-matching loss ``‖AAᵀv − Jv‖²`` is quartic in the factor ``A``. On S¹⁶ in R⁶⁴ (3k points, rank
32) two runs of the default recipe were fitting the sphere's span (loss 0.64, gradient norms 2–10) when, within
50 steps, the factor's gradient norm rose to 10⁵–10¹⁰ and its loss to 10⁸; the factor never came back (top
eigenvalue 20, tangent error 3.2 and 4.4, both flagged NOT TRUSTED) while the denoiser was untouched. A fixed
norm clip hurts elsewhere (at 1.0 on all weights the denoiser does not learn S⁸'s radius), and the scale of a
healthy gradient differs by data, rank and phase; so the bound is relative: the factor's gradient norm is cut to
``ratio`` times the running geometric mean of its recent (cut) norms. With it, a run at 10k points whose factor
loss jumped from 0.6 to 77 mid-run (gradient 2,900 times the bound) came back within 150 steps and learned the
sphere (0.124; ``benchmarks/RESULTS.md``, seventeenth session).

Everything stays on the device (no host sync per step); the state is four scalars, saved with the training
state so that a resumed run repeats an uninterrupted one. A run in which it cuts nothing is bit for bit the run
without it.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

__all__ = ["CLIP_MEMORY", "RelativeClip", "factor_parameters"]

CLIP_MEMORY = 0.99
"""Decay of the running (geometric) mean of the factor's gradient norm: about 100 steps of memory. The guard
clips nothing in the first ``1 / (1 − CLIP_MEMORY)`` steps with gradients, while the factor grows from its
small initial weights (norms vary 1,000-fold then) and the mean forms."""


def factor_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The weights the factor's loss trains: the factor network, or the shared trunk."""
    net = model.factor_net if model.factor_net is not None else model.trunk
    return [p for p in net.parameters() if p.requires_grad]


class RelativeClip:
    """Clip the gradient norm of ``params`` to ``ratio ×`` the running geometric mean of its earlier clipped norms.

    Steps where no parameter has a gradient (the factor during the denoiser's warm-up) leave the state alone;
    the first ``1 / (1 − CLIP_MEMORY)`` steps with gradients are never clipped. ``ratio = 0`` turns it off.
    """

    def __init__(self, params: Iterable[nn.Parameter], ratio: float, device: torch.device):
        self.params = list(params)
        self.ratio = float(ratio)
        self.warm_in = round(1 / (1 - CLIP_MEMORY))
        self.log_mean = torch.zeros((), device=device)
        self.seen = torch.zeros((), device=device, dtype=torch.long)
        self.clipped = torch.zeros((), device=device, dtype=torch.long)
        self.worst = torch.zeros((), device=device)  # the largest norm ÷ bound seen

    def __call__(self) -> None:
        """Clip the gradients in place (after the backward pass, before the optimiser's step)."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if not self.ratio or not grads:
            return
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))).float()
        guarding = self.seen >= self.warm_in
        bound = torch.where(guarding, self.ratio * self.log_mean.exp(), torch.full_like(norm, torch.inf))
        scale = torch.where(norm > bound, bound / norm, torch.ones_like(norm))
        torch._foreach_mul_(grads, scale)
        self.clipped += (scale < 1).long()
        self.worst = torch.maximum(self.worst, norm / bound)
        log_kept = torch.minimum(norm, bound).clamp_min(torch.finfo(norm.dtype).tiny).log()
        decay = torch.where(self.seen > 0, CLIP_MEMORY, 0.0)
        self.log_mean = decay * self.log_mean + (1 - decay) * log_kept
        self.seen += 1

    def state_dict(self) -> dict[str, Tensor]:
        return {k: getattr(self, k).clone() for k in ("log_mean", "seen", "clipped", "worst")}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        for key, value in state.items():
            getattr(self, key).copy_(value)

    def report(self) -> dict:
        """What the guard did, for the model file's validation record."""
        return {"ratio": self.ratio, "clipped_steps": int(self.clipped), "largest_ratio": round(float(self.worst), 3)}
