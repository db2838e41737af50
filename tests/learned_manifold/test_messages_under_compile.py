"""The library's warnings and input errors under ``torch.compile`` give the text eager code gives. A host read
(``int(t)``, ``float(t)``, ``t.item()``) inside an f-string, after a number read from a tensor before it, made
dynamo's resumed frame join that number unformatted: ``TypeError: sequence item 1: expected str instance, int
found`` instead of the warning or the ``ValueError`` (tester C s37, torch 2.13). Each message now reads its
numbers before it is built. (Landing's, through a compiled optimiser step: `test_landing_compiled`.)"""

import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from learned_manifold.curvature import curvature
from learned_manifold.curvature_warnings import warn_about_zero_field
from learned_manifold.metrics.base import CoMetricField, check_finite_points


def _messages(check: Callable[[Tensor], None], inputs: list[Tensor]) -> list[str]:
    """The text of each warning or ``ValueError`` that ``check(x)`` gives, for each ``x`` of ``inputs`` in turn;
    dynamo's own warnings (its graph breaks) are left out."""
    texts = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for x in inputs:
            try:
                check(x)
            except ValueError as error:
                texts.append(str(error))
    return [str(w.message) for w in caught if "Dynamo" not in str(w.message)] + texts


def _same_as_eager(check: Callable[[Tensor], None], inputs: list[Tensor]) -> list[str]:
    """The messages of ``check`` over ``inputs`` compiled (eager backend), after asserting they are the eager
    ones. Dynamo's caches are emptied first: what an earlier test compiled (the same library frames) would change
    which numbers it holds as dynamic."""
    torch._dynamo.reset()
    compiled = _messages(torch.compile(check, backend="eager"), inputs)
    assert compiled == _messages(check, inputs)
    return compiled


def _flags(*counts: int) -> list[Tensor]:
    """``(6,)`` bool masks with the first ``count`` entries set, one per count (a count that changes between calls
    is what turned into a dynamic number)."""
    return [torch.arange(6) < count for count in counts]


class ZeroOffSupport(torch.nn.Module):
    """Stands for a field in the warnings' texts (they name its type)."""


class CircleNaNPastFive(CoMetricField):
    """The unit circle's tangent field in R², its factor ``(B, 2, 1)`` NaN where ``x₀ > 5``."""

    dim, low_rank = 2, True

    def factor(self, x: Tensor, *, sigma: float | Tensor | None = None) -> Tensor:
        tangent = torch.stack([-x[:, 1], x[:, 0]], -1) / x.norm(dim=-1, keepdim=True)
        return torch.where(x[:, :1] > 5, float("nan"), tangent)[..., None]


def test_curvature_warns_of_a_factor_that_is_not_finite_under_compile_as_in_eager_code():
    def curvature_of(nan: Tensor) -> None:  # 6 points of the unit circle, the flagged ones moved to x₀ = 10
        angle = torch.linspace(0, 3, 6, dtype=torch.float64)
        x = torch.stack([torch.where(nan, 10.0, angle.cos()), angle.sin()], -1)
        curvature(CircleNaNPastFive(), x, 1)

    for n, text in zip((1, 2, 3), _same_as_eager(curvature_of, _flags(1, 2, 3)), strict=True):
        assert text.startswith(f"CircleNaNPastFive.factor is not finite (NaN or inf) at {n} of 6 point(s) (the "
                               "first: 0): their curvature is NaN")


def test_the_zero_field_warning_of_curvature_reads_under_compile_as_in_eager_code():
    texts = _same_as_eager(lambda zero: warn_about_zero_field(ZeroOffSupport(), zero), _flags(1, 2, 3))
    for n, text in zip((1, 2, 3), texts, strict=True):
        assert text.startswith(f"ZeroOffSupport: G = 0 (the factor is zero) at {n} of 6 point(s) (the first: 0): ")


def test_check_finite_points_refuses_under_compile_as_in_eager_code():
    def points(bad: Tensor) -> None:
        x = torch.where(bad.unsqueeze(-1), float("nan"), torch.ones(6, 2))
        check_finite_points(x.flip(0), "x")

    assert _same_as_eager(points, _flags(1, 2)) == ["x holds NaN or inf at 1 point(s) (the first: 5)",
                                                    "x holds NaN or inf at 2 point(s) (the first: 4)"]
