"""Landing's warnings and refusals under ``torch.compile``: a compiled optimiser step with ``landing=True`` warns
of far-landed points, and refuses points that do not land, with the text eager code gives. A host read (``int(t)``,
``t.item()``) inside an f-string, after a number that changes between calls, made dynamo's resumed frame join that
number unformatted: ``TypeError: sequence item 1: expected str instance, int found`` instead of the warning (tester
C s37, torch 2.13). The messages now read their numbers before they are built."""

import warnings

import pytest
import torch

from learned_manifold import LearnedDataManifold, RiemannianSGD
from tests.learned_manifold.test_landing_off_data_fixed_points import EdgeWithOffDataFixedPoints

ON_DATA, FIXED_POINT_BESIDE, FIXED_POINT_FAR = [5.0, 0.0], [-0.1, 0.2], [-0.3, 0.6]
"""Points of `EdgeWithOffDataFixedPoints`: one on its data, a fixed point of its denoiser 0.224 from the data
(landed and warned of), one 0.67 from it (refused)."""


def _landing_messages(compiled: bool) -> list[str]:
    """The ``"landing: ..."`` warnings of three optimiser steps with ``landing=True`` on 4 points, 1, 2 and 3 of them
    on the fixed point beside the data (so the count in the warning changes from step to step), the step compiled
    (eager backend) or not."""
    torch._dynamo.reset()  # (what earlier tests compiled would change which numbers dynamo holds as dynamic)
    manifold = LearnedDataManifold(EdgeWithOffDataFixedPoints(), landing=True)
    p = torch.nn.Parameter(torch.zeros(4, 2, dtype=torch.float64))
    opt = RiemannianSGD([p], manifold=manifold, lr=0.1)
    step = torch.compile(opt.step, backend="eager") if compiled else opt.step
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for far in (1, 2, 3):
            with torch.no_grad():
                p.copy_(torch.tensor([FIXED_POINT_BESIDE] * far + [ON_DATA] * (4 - far), dtype=torch.float64))
            p.grad = torch.zeros_like(p)
            step()
        with torch.no_grad():
            p.copy_(torch.tensor([FIXED_POINT_FAR] + [ON_DATA] * 3, dtype=torch.float64))
        p.grad = torch.zeros_like(p)
        with pytest.raises(ValueError) as refused:  # a ValueError, not dynamo's TypeError
            step()
    return [str(w.message) for w in caught if str(w.message).startswith("landing:")] + [str(refused.value)]


def test_a_compiled_optimiser_step_with_landing_warns_and_refuses_as_eager_code_does():
    compiled = _landing_messages(compiled=True)
    assert compiled == _landing_messages(compiled=False)
    for n, text in zip((1, 2, 3), compiled[:3], strict=True):
        assert text.startswith(f"landing: {n} of 4 landed point(s) lie up to 0.224 from the nearest data point")
    assert compiled[3].startswith("x: 1 of 4 point(s) did not land on the data: after landing they are up to 0.671")
