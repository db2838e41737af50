"""`VAE.input_spread_max` in the VAE's ``state_dict`` (`learned_manifold.vae_spread`: the module's extra state): a
``state_dict`` round trip into a freshly built VAE dropped it, and the far-input check of the copy fell back to the
rule for old files, which let data the recorded largest spread catches through (tester s36/N, problem 7). States
saved before it was recorded still load with ``strict=True``, ``.to(dtype)`` leaves it alone, and the VAE file
holds the same tensors as before (the record in its ``extra``)."""

from __future__ import annotations

import io
import math
import warnings

import pytest
import torch
from safetensors import safe_open

from learned_manifold.vae import VAE, VAEConfig
from learned_manifold.vae_file import load_vae, read_vae_metadata, save_vae
from learned_manifold.vae_spread import BEYOND_FACTOR, STATE_KEY
from tests.learned_manifold.test_vae_spread_file import write_raw

CONFIG = VAEConfig(data_shape=(5,), latent_dim=2, hidden=8, depth=1, n_centres=4)
NOT_FLOAT32 = 1.3000000000000003  # float32 (and float16) would round it: a float64 record keeps it


def vae_with(spread: float | None) -> VAE:
    vae = VAE(CONFIG, scale=1.0)
    vae.input_spread_max = spread
    return vae


def saved_and_loaded(state: dict) -> dict:
    """``state`` through ``torch.save``/``torch.load(weights_only=True)``, as a checkpoint goes."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def far_warnings(vae: VAE, x: torch.Tensor) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vae.encode(x, check=True)
    return len(caught)


def old_state(vae: VAE) -> dict:
    """``vae``'s state dict as the code before the record saved it: its parameters and buffers alone."""
    return {name: t.detach().clone() for name, t in [*vae.named_parameters(), *vae.named_buffers()]}


@pytest.mark.parametrize("spread", [1.3, NOT_FLOAT32, 5e-324, None])
def test_a_state_dict_round_trip_into_a_fresh_vae_keeps_the_recorded_spread_bit_for_bit(spread):
    copy = VAE(CONFIG, scale=1.0)
    copy.input_spread_max = 7.0  # a record the state's own (None included) replaces
    result = copy.load_state_dict(saved_and_loaded(vae_with(spread).state_dict()))
    assert result.missing_keys == [] and result.unexpected_keys == []
    if spread is None:
        assert copy.input_spread_max is None
    else:
        assert type(copy.input_spread_max) is float and copy.input_spread_max == spread


def test_the_copy_warns_of_far_inputs_as_the_original_does():
    """The tester's case: every input at spread 2.5 > 1.5 × 1.3 (the old-file rule, spread > 10, is silent)."""
    original = vae_with(1.3)
    copy = VAE(CONFIG, scale=1.0)
    copy.load_state_dict(original.state_dict())
    x = torch.nn.functional.normalize(torch.randn(200, 5, generator=torch.Generator().manual_seed(0)), dim=1) * 2.5
    assert far_warnings(original, x) == 1 and far_warnings(copy, x) == 1
    assert far_warnings(vae_with(None), x) == 0  # what the copy did before: the record is what catches them


def test_the_state_entry_is_a_float64_tensor_and_holds_none_as_an_empty_one():
    assert torch.equal(vae_with(NOT_FLOAT32).state_dict()[STATE_KEY], torch.tensor([NOT_FLOAT32], dtype=torch.float64))
    assert vae_with(None).state_dict()[STATE_KEY].shape == (0,)
    assert all(isinstance(v, torch.Tensor) for v in vae_with(1.3).state_dict().values())  # tensors only


def test_a_state_saved_before_the_record_loads_strictly_and_leaves_the_vaes_own_as_it_was():
    """No such key (a state dict or checkpoint of the code before): no record for a fresh VAE, and a VAE that has
    one keeps it, as loading such a state always did; also with the VAE as a submodule (a key prefix)."""
    state = old_state(vae_with(None))
    fresh, recorded = VAE(CONFIG, scale=1.0), vae_with(1.3)
    for vae in (fresh, recorded):
        result = vae.load_state_dict(state, strict=True)
        assert result.missing_keys == [] and result.unexpected_keys == []
    assert fresh.input_spread_max is None and recorded.input_spread_max == 1.3
    holder = torch.nn.ModuleDict({"vae": VAE(CONFIG, scale=1.0)})
    holder.load_state_dict({f"vae.{k}": v for k, v in state.items()}, strict=True)
    assert holder["vae"].input_spread_max is None
    holder.load_state_dict({f"vae.{k}": v for k, v in vae_with(1.3).state_dict().items()})
    assert holder["vae"].input_spread_max == 1.3


@pytest.mark.parametrize("bad, error", [
    (torch.tensor([-1.0], dtype=torch.float64), ValueError), (torch.tensor([math.nan]), ValueError),
    (torch.tensor([math.inf]), ValueError), (torch.tensor([1.0, 2.0]), TypeError), (torch.tensor(1.3), TypeError),
    (torch.tensor([2]), TypeError), ({"input_spread_max": 1.3}, TypeError), (1.3, TypeError)])
def test_a_bad_recorded_spread_is_refused_naming_the_key_before_any_weight_is_loaded(bad, error):
    vae = vae_with(1.3)
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    state = {**old_state(VAE(CONFIG, scale=2.0)), STATE_KEY: bad}
    with pytest.raises(error, match=r"state_dict\['_extra_state'\] \(the VAE's input_spread_max\)"):
        vae.load_state_dict(state)
    assert vae.input_spread_max == 1.3 and all(torch.equal(v, before[k]) for k, v in vae.state_dict().items())


@pytest.mark.parametrize("bad", [-1.0, math.nan, "big"])
def test_state_dict_of_a_vae_holding_an_invalid_record_names_the_attribute(bad):
    with pytest.raises((TypeError, ValueError), match=r"vae\.input_spread_max must be a"):
        vae_with(bad).state_dict()


@pytest.mark.parametrize("cast", [lambda v: v.double(), lambda v: v.half(), lambda v: v.to(torch.bfloat16),
                                  lambda v: v.double().float()], ids=["double", "half", "bfloat16", "double-float"])
def test_dtype_casts_leave_the_record_and_the_check_by_it_unrounded(cast):
    """A buffer would be cast with the weights (float32 or float16 rounding the record, and so the limit
    ``BEYOND_FACTOR × record`` of the check); the extra state is not."""
    vae = cast(vae_with(NOT_FLOAT32))
    assert vae.input_spread_max == NOT_FLOAT32
    assert torch.equal(vae.state_dict()[STATE_KEY], torch.tensor([NOT_FLOAT32], dtype=torch.float64))
    copy = VAE(CONFIG).to(vae.scale.dtype)
    copy.load_state_dict(vae.state_dict())
    assert copy.input_spread_max == NOT_FLOAT32


def test_the_check_of_a_float64_vae_uses_the_record_exactly():
    """Inputs just beyond / at ``BEYOND_FACTOR × record`` (1e-12 apart, far below float32's rounding of the
    record) are told apart after a ``.double()`` and a state-dict round trip."""
    copy = VAE(CONFIG, scale=1.0).double()
    copy.load_state_dict(vae_with(NOT_FLOAT32).double().state_dict())
    direction = torch.nn.functional.normalize(torch.randn(50, 5, dtype=torch.float64), dim=1)
    limit = BEYOND_FACTOR * NOT_FLOAT32
    assert far_warnings(copy, direction * limit * (1 + 1e-12)) == 1
    assert far_warnings(copy, direction * limit * (1 - 1e-12)) == 0


def test_a_vae_file_holds_the_tensors_it_held_before_and_the_record_in_extra(tmp_path):
    """Files stay as the code before wrote them (no ``_extra_state`` tensor, which that code refuses as an
    unexpected tensor, no float64 tensor beside float32 weights), so they load both ways."""
    path = save_vae(vae_with(NOT_FLOAT32), tmp_path / "v.lvae")
    with safe_open(path, framework="pt") as f:
        names, dtypes = set(f.keys()), {f.get_tensor(k).dtype for k in f.keys()}
    assert names == set(old_state(vae_with(None))) and dtypes == {torch.float32}
    assert read_vae_metadata(path)["extra"] == {"input_spread_max": NOT_FLOAT32}
    loaded = load_vae(path)
    assert loaded.input_spread_max == NOT_FLOAT32 and loaded.state_dict()[STATE_KEY].item() == NOT_FLOAT32


@pytest.mark.parametrize("extra, expected", [({"input_spread_max": NOT_FLOAT32}, NOT_FLOAT32), ({}, None)])
def test_a_file_written_as_the_code_before_wrote_it_loads_with_its_record(extra, expected, tmp_path):
    loaded = load_vae(write_raw(vae_with(None), tmp_path / "old.lvae", extra))
    assert loaded.input_spread_max == expected
    record = torch.tensor([] if expected is None else [expected], dtype=torch.float64)
    assert torch.equal(loaded.state_dict()[STATE_KEY], record)
