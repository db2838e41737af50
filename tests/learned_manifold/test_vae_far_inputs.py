"""`encode_data` (and the CLI's ``encode``) warn where a data set lies far from the data the VAE was trained on
(`learned_manifold.vae.far_inputs`, module docstring of `learned_manifold.vae`): raw counts given to a VAE trained on
the log-normalised counts of the same cells were encoded silently to codes up to 7 times the training codes' radius
(tester s36/B, problem 3). No part of the training data warns (review s36/R, item 3), and `VAE.encode` itself stays
silent, free of host syncs and usable under ``torch.func.vmap`` (items 4 and 10).

The check reads only the stored standardisation (mean ``m``, scale ``s = sqrt(E‖x − m‖²)`` of the training data), so
an untrained VAE holding the training data's standardisation stands for a trained one here.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from learned_manifold.vae import (
    BEYOND_FACTOR,
    FAR_MEDIAN,
    FAR_POINT,
    MEDIAN_ROWS,
    SPREAD_DROP,
    VAE,
    VAEConfig,
    far_inputs,
    training_spread_limit,
)
from learned_manifold_training.batches import standardisation
from learned_manifold_training.vae_trainer import encode_data

FAR_TEXT = "far from the data the VAE was trained on"


def single_cells(n: int = 2000, genes: int = 500, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(counts, log1p)`` ``(n, genes)`` float32: the tester's cells (``p03_encode_wrong_units_silent.py``), Poisson
    counts along a 1-D trajectory with library-size variation and 50 never-expressed genes, and their log1p of
    counts per 10⁴ (the single-cell user's two matrices of the same cells)."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 1, n)
    centres, widths, amp = rng.uniform(0, 1, genes), rng.uniform(0.1, 0.4, genes), np.exp(rng.normal(0, 1.5, genes))
    mu = amp * np.exp(-(t[:, None] - centres) ** 2 / (2 * widths**2))
    mu[:, :50] = 0.0
    counts = rng.poisson(mu * np.exp(rng.normal(0, 0.5, n))[:, None]).astype(np.float64)
    log1p = np.log1p(counts / counts.sum(1, keepdims=True).clip(1) * 1e4)
    return torch.tensor(counts, dtype=torch.float32), torch.tensor(log1p, dtype=torch.float32)


def vae_of(train: torch.Tensor, *, known_max: bool = True) -> VAE:
    """A VAE holding ``train``'s standardisation and, with ``known_max``, its largest spread after dropping the top
    `SPREAD_DROP` (as `train_vae` stores them; without: a file written before the largest spread was recorded)."""
    scale, mean = standardisation(train)
    vae = VAE(VAEConfig((train.shape[1],), 2, hidden=8, depth=1, n_centres=4), scale=scale, mean=mean)
    vae.input_spread_max = training_spread_limit(vae.input_spread(train)) if known_max else None
    return vae


@pytest.mark.parametrize("cells", [600, 2000])
def test_raw_counts_given_to_a_vae_of_log_normalised_cells_warn_with_the_measured_gap(cells):
    counts, log1p = single_cells(cells)
    vae = vae_of(log1p)
    spread = vae.input_spread(counts)
    assert float((spread > BEYOND_FACTOR * vae.input_spread_max).float().mean()) > 0.25  # the slip the check is for
    with pytest.warns(UserWarning, match=FAR_TEXT) as caught:
        codes = encode_data(vae, counts)
    assert codes.shape == (len(counts), 2)
    text = str(caught[0].message)
    assert text.startswith("encode_data: ")
    assert f"{float(spread.median()):.3g} times the training data's RMS spread" in text
    assert f"at most {vae.input_spread_max:.3g}" in text and f"up to {float(spread.max()):.3g}" in text
    assert "Other units" in text


def test_without_the_recorded_largest_spread_far_counts_still_warn_by_their_median():
    """A file written before ``input_spread_max`` was recorded: the median rule (Markov's bound) alone."""
    counts, log1p = single_cells(2000)
    vae = vae_of(log1p, known_max=False)
    assert float(vae.input_spread(counts).median()) > FAR_MEDIAN
    with pytest.warns(UserWarning, match="at most 1.41 at the median"):
        encode_data(vae, counts)


def test_the_training_data_and_new_cells_of_the_same_kind_stay_silent():
    _, log1p = single_cells()
    vae = vae_of(log1p[:1500])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails
        encode_data(vae, log1p[:1500])  # the training data
        encode_data(vae, log1p[1500:])  # held-out cells of the same data
        encode_data(vae, log1p[:1])  # one cell
        encode_data(vae, log1p, batch=64)


def sample(kind: str, n: int, g: torch.Generator) -> torch.Tensor:
    """``(n, D)`` points of a named distribution (heavy tails, clusters, a curve)."""
    if kind == "gaussian":
        return torch.randn(n, 5, generator=g)
    if kind == "lognormal":
        return torch.randn(n, 3, generator=g).exp()
    if kind == "student_t":  # 3 degrees of freedom: a heavy tail
        return torch.randn(n, 4, generator=g) / (torch.randn(n, 3, generator=g).pow(2).mean(-1, keepdim=True)).sqrt()
    if kind == "uniform_cube":
        return torch.rand(n, 3, generator=g) * 2 - 1
    if kind == "two_clusters":
        return torch.randn(n, 8, generator=g) * 0.1 + 5 * (torch.arange(n) % 2)[:, None]
    angle = torch.rand(n, generator=g) * 2 * math.pi
    return torch.stack([angle.cos(), angle.sin()], 1)


@pytest.mark.parametrize("kind", ["gaussian", "lognormal", "student_t", "uniform_cube", "two_clusters", "circle"])
def test_no_training_distribution_is_called_far(kind):
    """Over its own training data the spread is 1 in RMS, so the median is at most sqrt(2) (Markov) whatever the
    distribution; new points of the same distribution (heavy tails and clusters included) are not far either."""
    g = torch.Generator().manual_seed(1)
    x = sample(kind, 2000, g)
    vae = vae_of(x)
    spread = vae.input_spread(x)
    assert float(spread.pow(2).mean().sqrt()) == pytest.approx(1.0, rel=1e-4)
    assert float(spread.median()) <= math.sqrt(2) < FAR_MEDIAN
    assert far_inputs(spread) is None  # without the largest spread: the median and 1% beyond 10 (Markov)
    assert far_inputs(spread, vae.input_spread_max) is None
    assert far_inputs(vae.input_spread(sample(kind, 500, g)), vae.input_spread_max) is None


@pytest.mark.parametrize("known_max", [True, False])
def test_one_point_far_beyond_the_training_data_warns_alone_among_near_ones(known_max):
    _, log1p = single_cells()
    vae = vae_of(log1p, known_max=known_max)
    far = vae.mean + 2 * FAR_POINT * vae.scale * torch.nn.functional.normalize(torch.randn(1, 500), dim=-1)
    with pytest.warns(UserWarning, match="1 of 11 lie beyond"):
        encode_data(vae, torch.cat([log1p[:10], far]))


def test_other_units_warn_once_over_all_chunks_of_encode_data_and_check_false_is_silent():
    counts, log1p = single_cells()
    vae = vae_of(log1p)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encode_data(vae, counts, batch=250)  # 8 chunks, one warning over all rows
        vae.encode(counts)  # a batch, not a data set: no check
        encode_data(vae, counts, check=False)
    assert len(caught) == 1 and str(caught[0].message).startswith("encode_data: ")
    assert f"of {len(counts)} lie beyond" in str(caught[0].message)


def minority_cluster(n: int = 4000, seed: int = 0) -> torch.Tensor:
    """``(n, 10)``: a tight cloud with 5% of its rows (a rare cell type) 10 units away in every coordinate, so that
    the minority lies about 4.4 RMS spreads from the mean (review s36/R, ``vae_false_alarm.py``)."""
    x = 0.3 * torch.randn(n, 10, generator=torch.Generator().manual_seed(seed))
    x[: n // 20] += 10.0
    return x


def test_no_part_of_the_training_data_warns_a_minority_cluster_or_single_rows():
    """The median rule is bounded by Markov over the whole training set only: a minority cluster's median, or one
    row's spread, may exceed `FAR_MEDIAN`, but never the training data's largest spread, against which the median
    is judged where it is known; fewer than `MEDIAN_ROWS` rows are judged by the far-point rule alone."""
    x = minority_cluster()
    vae = vae_of(x)
    minority = x[:200]
    assert float(vae.input_spread(minority).median()) > FAR_MEDIAN  # what warned before
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encode_data(vae, minority)
        encode_data(vae, x)
        for i in (0, 1, 199):  # single rows of the minority, each beyond FAR_MEDIAN
            assert float(vae.input_spread(x[i : i + 1])) > FAR_MEDIAN
            encode_data(vae, x[i : i + 1])
        encode_data(vae, minority[: MEDIAN_ROWS - 1])
    spread = vae.input_spread(minority)
    assert far_inputs(spread[:MEDIAN_ROWS], None) is not None  # without the largest spread, the median rule applies
    assert far_inputs(spread[: MEDIAN_ROWS - 1], None) is None  # ... from MEDIAN_ROWS rows on


def test_vae_encode_is_silent_and_works_under_vmap_and_checks_only_when_asked():
    """`VAE.encode` has no host sync and no data-dependent control flow (the check belongs to data sets), so
    ``torch.func.vmap`` maps it over single rows; ``check=True`` asks for the data-set check."""
    counts, log1p = single_cells(600)
    vae = vae_of(log1p)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        codes = vae.encode(counts)
        one_by_one = torch.func.vmap(lambda row: vae.encode(row[None])[0])(counts[:8])
    torch.testing.assert_close(one_by_one, codes[:8])
    with pytest.warns(UserWarning, match="^VAE.encode: the inputs lie far from"):
        vae.encode(counts, check=True)


def test_the_largest_training_spread_survives_save_and_load_and_old_files_have_none(tmp_path):
    from learned_manifold.vae_file import load_vae, read_vae_metadata, save_vae

    _, log1p = single_cells(600)
    vae = vae_of(log1p)
    loaded = load_vae(save_vae(vae, tmp_path / "new.lvae", extra={"note": "cells"}))
    assert loaded.input_spread_max == vae.input_spread_max
    assert read_vae_metadata(tmp_path / "new.lvae")["extra"] == {"input_spread_max": vae.input_spread_max,
                                                                 "note": "cells"}
    vae.input_spread_max = None  # a file written before the largest spread was recorded
    assert load_vae(save_vae(vae, tmp_path / "old.lvae")).input_spread_max is None


def test_one_outlier_among_the_training_rows_does_not_raise_the_recorded_limit():
    """`training_spread_limit` drops the top `SPREAD_DROP` of the training spreads before taking the largest (tester
    s36/N, problem 4): with one row at 200 among 2,000 the true largest is about 30 times it."""
    x = sample("circle", 2000, torch.Generator().manual_seed(2))
    x[7] = 200.0
    vae = vae_of(x)
    spread = vae.input_spread(x)
    assert vae.input_spread_max == float(spread.sort().values[-1 - math.floor(SPREAD_DROP * 2000)])
    assert vae.input_spread_max < float(spread.max()) / 30
    other_units = 100 * sample("circle", 500, torch.Generator().manual_seed(3))
    assert far_inputs(vae.input_spread(other_units), float(spread.max())) is None  # what the largest let through
    with pytest.warns(UserWarning, match=FAR_TEXT):
        encode_data(vae, other_units)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encode_data(vae, torch.cat([x[:7], x[8:]]))  # the other training rows stay silent
    assert training_spread_limit(spread[:999]) == float(spread[:999].max())  # fewer than 1,000: none dropped


@pytest.mark.parametrize("odd_row", [math.nan, math.inf])
def test_a_non_finite_row_does_not_silence_a_far_data_set(odd_row):
    """A NaN spread (a NaN row) is not judged and an infinite one counts as far (tester s36/N, problem 2)."""
    counts, log1p = single_cells(600)
    vae = vae_of(log1p)
    odd = torch.full((1, counts.shape[1]), odd_row)
    with pytest.warns(UserWarning, match=FAR_TEXT):
        vae.encode(torch.cat([counts, odd]), check=True)
    problem = far_inputs(torch.tensor([0.5] * 30 + [odd_row]), 1.0)  # 30 near inputs and the odd one
    if math.isnan(odd_row):
        assert problem is None  # the NaN row not judged, the others near
    else:
        assert "1 of 31 lie beyond" in problem


def test_finite_inputs_whose_float32_spread_overflows_are_far():
    _, log1p = single_cells(600)
    vae = vae_of(log1p)
    huge = torch.full((200, log1p.shape[1]), 1e25)
    assert not bool(torch.isfinite(vae.input_spread(huge)).any())  # the norm overflows float32
    with pytest.warns(UserWarning, match=FAR_TEXT):
        encode_data(vae, huge)


@pytest.mark.parametrize("arch, shape", [("mlp", (5,)), ("conv", (8, 8))])
def test_an_empty_batch_gives_empty_codes_and_spreads(arch, shape):
    vae = VAE(VAEConfig(shape, 2, arch=arch, hidden=8, depth=1, n_centres=4))
    vae.input_spread_max = 1.3
    empty = torch.zeros(0, *shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert vae.encode(empty).shape == (0, 2) and vae.encode(empty, check=True).shape == (0, 2)
        assert vae.encode(torch.zeros(0, math.prod(shape))).shape == (0, 2)  # flat
    assert vae.input_spread(empty).shape == (0,)
    assert [t.shape for t in vae.encode_stats(empty)] == [(0, 2), (0, 2)]


def test_without_the_recorded_largest_spread_one_input_at_spread_twenty_among_fifty_warns_and_at_eight_does_not():
    """The absolute threshold of old files (no `VAE.input_spread_max`), not read from `FAR_POINT`: the training data
    lie beyond 10 at most 1% (Markov), so one input of 50 at spread 20 is far, and one at 8 is not (the others at
    spread 1, their median below `FAR_MEDIAN`)."""
    for far, warns in ((20.0, True), (8.0, False)):
        spread = torch.cat([torch.ones(49, dtype=torch.float64), torch.tensor([far], dtype=torch.float64)])
        note = far_inputs(spread)
        assert (note is not None) == warns, far
        assert not warns or "1 of 50 lie beyond 10" in note
