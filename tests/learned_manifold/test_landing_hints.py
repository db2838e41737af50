"""The public helpers of `learned_manifold.landing` carry full type hints (DESIGN.md): every parameter and the
return value, a field parameter as a `CoMetricField` (tester B, s34, item 7: the ``field`` parameters had none)."""

import inspect
import typing

from learned_manifold import LearnedDataManifold, landing
from learned_manifold.metrics.base import CoMetricField


def test_every_public_landing_helper_is_fully_hinted_and_takes_a_co_metric_field():
    for name in landing.__all__:
        fn = getattr(landing, name)
        hints = typing.get_type_hints(fn, localns={"LearnedDataManifold": LearnedDataManifold})  # `land`'s
        params = inspect.signature(fn).parameters
        assert set(params) | {"return"} == set(hints), (name, sorted(set(params) | {"return"} - set(hints)))
        if "field" in params:
            assert hints["field"] is CoMetricField, name
