"""The dimension rule's checks of a ``d`` (SPEC §5): `dropped_share` and `warn_if_dropping` (dropped directions),
`split_ratio` and `warn_if_splitting` (a split cluster)."""

import warnings

import pytest
import torch

from learned_manifold.dimension import (
    CLUSTER_RATIO,
    DROPPED_LIMIT,
    dropped_share,
    intrinsic_dimension,
    split_ratio,
    warn_if_dropping,
    warn_if_splitting,
)


def test_dropped_share_is_the_next_eigenvalue_over_the_largest():
    values = torch.tensor([[0.25, 1.0, 0.0], [2.0, 0.1, 1.9], [3.0, 3.0, 3.0], [0.0, 0.0, 0.0]])
    d = intrinsic_dimension(values)
    assert d.tolist() == [1, 2, 3, 0]  # G = 0: no direction (it read 1)
    torch.testing.assert_close(dropped_share(values, d), torch.tensor([0.25, 0.05, 0.0, 0.0]))
    torch.testing.assert_close(dropped_share(values, 1), torch.tensor([0.25, 0.95, 1.0, 0.0]))


def test_a_full_rank_metric_read_as_one_dimensional_is_warned_about():
    # a full-rank metric G = diag(1, 0.3) (polar coordinates at r ≈ 1.8): the gap rule keeps one direction
    values = torch.tensor([[1.0, 0.3]])
    with pytest.warns(UserWarning, match=r"drop an eigenvalue above 0\.25 λ₁ at 1 of 1 points \(up to 0\.3 λ₁\)"):
        assert warn_if_dropping(values, intrinsic_dimension(values), "test: the lengths")


def test_a_cdc_spectrum_is_not_warned_about():
    # a CDC's tangent eigenvalues near 1, normal ones below the trainer's outside limit
    values = torch.tensor([[1.0, 0.98, DROPPED_LIMIT * 0.9], [0.97, 1.0, 0.001]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_if_dropping(values, intrinsic_dimension(values), "test: the lengths")
        assert not warn_if_dropping(values[:0], 1, "test: nothing")


def test_only_an_all_zero_spectrum_reads_dimension_zero():
    values = torch.tensor([[0.0, 0.0, 0.0], [1e-30, 0.0, 0.0], [-1e-12, -2e-12, 0.0], [1e-7, 1e-7, 1e-9]])
    assert intrinsic_dimension(values).tolist() == [0, 1, 0, 2]  # scale-free wherever λ₁ > 0
    assert intrinsic_dimension(torch.zeros(2, 3, 5)).tolist() == [[0, 0, 0], [0, 0, 0]]  # any batch shape


def test_no_eigenvalues_have_no_dimension():
    with pytest.raises(ValueError, match=r"values has r = 0 eigenvalues \(shape \(3, 0\)\)"):
        intrinsic_dimension(torch.zeros(3, 0))


def test_a_real_direction_at_or_below_the_limit_is_dropped_silently_as_documented():
    """Tester D (s30, item 1), a documented limit: ``G = diag(1, 0.2)`` (full rank) reads d = 1 and nothing warns,
    so its lengths are 0.41 of the truth; the docstrings and SPEC §5 say so and name the remedies (``tangent_dim=``,
    ``δ > 0``). Just above the limit it warns."""
    values = torch.tensor([[1.0, 0.2]])
    assert intrinsic_dimension(values).tolist() == [1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_if_dropping(values, 1, "test: the lengths")
    doc = " ".join(warn_if_dropping.__doc__.split())
    assert "dropped **without a warning**" in doc and "pass ``tangent_dim=`` or use ``δ > 0``" in doc
    with pytest.warns(UserWarning, match="drop an eigenvalue above 0.25"):
        warn_if_dropping(torch.tensor([[1.0, 0.26]]), 1, "test: the lengths")


def test_split_ratio_is_the_next_eigenvalue_over_the_last_kept():
    values = torch.tensor([[0.97, 1.0, 0.01], [2.0, 0.1, 1.0], [0.0, 0.0, 0.0], [1.0, 0.5, 0.5]])
    torch.testing.assert_close(split_ratio(values, 1), torch.tensor([0.97, 0.5, float("nan"), 0.5]), equal_nan=True)
    torch.testing.assert_close(split_ratio(values, 2), torch.tensor([0.01 / 0.97, 0.1, float("nan"), 1.0]),
                               equal_nan=True)
    torch.testing.assert_close(split_ratio(values, 3), torch.tensor([0.0, 0.0, float("nan"), 0.0]), equal_nan=True)


def test_warn_if_splitting_warns_above_the_cluster_ratio_only():
    """The one message `curvature` and `LearnedDataManifold` share: a given ``d`` names ``tangent_dim``, the gap
    rule's names itself; at or below `CLUSTER_RATIO` (and for NaN: no point to judge) nothing is said."""
    values = torch.tensor([[1.0, 0.97, 0.01]])
    with pytest.warns(RuntimeWarning, match=r"^tangent_dim 1 splits a cluster of eigenvalues: λ_2 / λ_1 is 0\.97 at "
                                            r"the median point \(above 0\.5\), so X \(the gap rule reads dimension 2 "
                                            r"here\)$"):
        assert warn_if_splitting(0.97, 1, values, "X", given=True)
    with pytest.warns(RuntimeWarning, match=r"^the field's eigenvalues show no clear tangent/normal split at the gap "
                                            r"rule's dimension 1: λ_2 / λ_1 is 0\.6"):
        warn_if_splitting(0.6, 1, values, "X", given=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_if_splitting(CLUSTER_RATIO, 1, values, "X", given=True)
        assert not warn_if_splitting(float("nan"), 1, values, "X", given=True)


def _spectrum(x: torch.Tensor, low: float) -> torch.Tensor:
    """``(B, 2)`` eigenvalues ``(s, 0.8 s)`` where ``x[:, 0, 0] > 0`` and ``(s, low · s)`` elsewhere, from a batch ``x``
    ``(B, 5, 2)``, computed inside the compiled function: how many points keep a real second direction changes from
    batch to batch (a count that changes is what broke the compiled message)."""
    s = x.square().flatten(1).sum(1)
    return torch.stack([s, torch.where(x[:, 0, 0] > 0, 0.8, low) * s], -1)


def _compiled_warnings(check, calls: int = 3) -> list[str]:
    """The warning texts of ``calls`` calls of ``check(x)`` under ``torch.compile`` (eager backend), ``x`` a fresh
    ``(8, 5, 2)`` batch each call (`_spectrum` makes its eigenvalues)."""
    compiled = torch.compile(check, backend="eager")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for seed in range(calls):
            compiled(torch.randn(8, 5, 2, generator=torch.Generator().manual_seed(seed)))
    return [str(w.message) for w in caught]


def test_the_dimension_checks_warn_under_torch_compile_as_in_eager_code():
    """A compiled optimiser step that reached `warn_if_dropping` died with ``TypeError: sequence item 4: expected
    str instance, int found`` once the count of points changed between calls (tester C s37): a host sync in the
    middle of the message's f-string broke the graph there, and the resumed frame joined the count (by then a
    dynamic int) among the pieces. Each message is built from str pieces after the numbers are read, so the compiled
    check warns with the eager check's text."""
    def dropping(x: torch.Tensor) -> None:
        values = _spectrum(x, 0.1)  # 0.8 λ₁ dropped at some points, 0.1 λ₁ (silently) at the others
        warn_if_dropping(values, 1, "the compiled step's lengths")

    def splitting(x: torch.Tensor) -> None:
        values = _spectrum(x, 0.6)  # λ₂/λ₁ of 0.8 or 0.6 everywhere: the median is above CLUSTER_RATIO
        warn_if_splitting(float(split_ratio(values, 1).median()), 1, values, "noise follows", given=True)

    for check, start in ((dropping, "the compiled step's lengths keep the gap rule's directions"),
                         (splitting, "tangent_dim 1 splits a cluster of eigenvalues: λ_2 / λ_1 is ")):
        texts = _compiled_warnings(check)
        assert len(texts) == 3 and all(text.startswith(start) for text in texts), texts
        x = torch.randn(8, 5, 2, generator=torch.Generator().manual_seed(2))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check(x)
        assert [str(w.message) for w in caught] == texts[-1:]  # the same text as eager code
