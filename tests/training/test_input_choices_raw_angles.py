"""The trainer's note on columns that look like raw angles (`training/raw_angles.raw_angle_note`, called by
`input_choices.choose_by_dimension`): periodic coordinates must be given as (cos, sin) (tester B, s36)."""

import math
import warnings

import pytest
import torch

from learned_manifold_training.batches import TrainingRows
from learned_manifold_training.config import TrainConfig
from learned_manifold_training.input_choices import choose_by_dimension
from learned_manifold_training.raw_angles import raw_angle_note


def torsions(n=3000, seed=0):
    """Torsion pairs in [-pi, pi): one uniform, one with a well at the cut (trans, 180 degrees)."""
    g = torch.Generator().manual_seed(seed)
    phi = torch.rand(n, generator=g) * 2 * math.pi - math.pi
    psi = torch.remainder(math.pi + 0.4 * torch.randn(n, generator=g) + math.pi, 2 * math.pi) - math.pi
    return torch.stack([phi, psi], 1)


@pytest.mark.parametrize("form", ["radians", "radians from 0", "degrees", "degrees from 0"])
def test_raw_angles_get_the_note_in_every_usual_range(form):
    x = torsions()
    x = {"radians": x, "radians from 0": x + math.pi, "degrees": x * 180 / math.pi,
         "degrees from 0": (x + math.pi) * 180 / math.pi}[form]
    note = raw_angle_note(x)
    assert note is not None and "(cos, sin)" in note and "column(s) 0, 1" in note


def test_data_that_are_not_wrapping_angles_get_no_note():
    g = torch.Generator().manual_seed(1)
    cases = {
        "cos-sin": torch.cat([torsions().cos(), torsions().sin()], 1),
        "uniform [-3, 3]": torch.rand(3000, 2, generator=g) * 6 - 3,
        "pixels": torch.randint(0, 256, (500, 16), generator=g).float(),
        "unit interval": torch.rand(2000, 3, generator=g),
        "one torsion's single well": 1.0 + 0.3 * torch.randn(3000, 1, generator=g),
        "two single wells in degrees": torch.rad2deg(0.3 * torch.randn(3000, 2, generator=g) + torch.tensor([1, -1.2])),
    }
    for n in (100, 300, 500, 1000, 3000):  # Gaussian points of every size, many draws: their tails stay thin
        for seed in range(20):
            cases[f"gaussian {n}/{seed}"] = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    noted = [name for name, x in cases.items() if raw_angle_note(x) is not None]
    assert noted == []


def test_a_single_well_column_does_not_hide_the_columns_that_wrap():
    """Molecular-dynamics tables: phi/psi wrap, a side-chain torsion chi sits in one well (tester N, s36)."""
    g = torch.Generator().manual_seed(2)
    chi = 1.0 + 0.3 * torch.randn(3000, 1, generator=g)
    cases = [(torch.cat([torsions(), chi], 1), "column(s) 0, 1 "), (torch.cat([chi, torsions()], 1), "column(s) 1, 2 ")]
    for x, wrapping in cases:
        for data in (x, torch.rad2deg(x)):
            note = raw_angle_note(data)
            assert note is not None and wrapping in note


def test_the_trainer_notes_raw_angles_before_training_and_not_their_embedding():
    cfg = TrainConfig()

    def notes(data):
        rows = TrainingRows(data, val_points=100, seed=0, batch_size=64, device=torch.device("cpu"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            choose_by_dimension(cfg, rows, "film_mlp", 2)
        return [str(w.message) for w in caught if "(cos, sin)" in str(w.message)]

    assert len(notes(torsions())) == 1
    assert notes(torch.cat([torsions().cos(), torsions().sin()], 1)) == []


def one_end_piled(n=2000, seed=0):
    """Two columns spanning [-pi, pi] with their mass piled at -pi, thinning towards +pi: 0.4% of the values within
    2.5% of +pi (below `END_SHARE`), one exactly at +pi. They reach both ends but do not wrap."""
    g = torch.Generator().manual_seed(seed)
    x = -math.pi + 2 * math.pi * torch.rand(n, 2, generator=g, dtype=torch.float64) ** 6
    x[0] = math.pi
    return x


@pytest.mark.parametrize("end", ["bottom", "top"])
def test_columns_spanning_the_range_with_mass_at_only_one_end_get_no_note(end):
    """Mass on both sides of the cut is what marks a wrapping angle (module docstring): a column reaching both ends
    of [-pi, pi] with a pile at one end and under `END_SHARE` (here 0.4%) at the other is silent."""
    x = one_end_piled() if end == "bottom" else -one_end_piled()
    thin = torch.minimum((x >= 0.95 * math.pi).double().mean(0), (x <= -0.95 * math.pi).double().mean(0))
    assert (thin > 0.001).all() and (thin < 0.01).all()  # within 2.5% of the thin end: between 0.1% and 1%
    assert raw_angle_note(x) is None
    assert raw_angle_note(torch.rad2deg(x)) is None


def test_data_reaching_beyond_every_angle_range_get_no_note():
    """Values uniform over [-4, 4] (and so over [-229, 229] degrees) span [-pi, pi] with mass at both its ends but
    reach beyond it: no column lies within an angle range, so no note."""
    g = torch.Generator().manual_seed(3)
    x = -4 + 8 * torch.rand(2000, 3, generator=g, dtype=torch.float64)
    assert raw_angle_note(x) is None
    assert raw_angle_note(torch.rad2deg(x)) is None
