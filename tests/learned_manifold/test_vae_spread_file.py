"""`VAE.input_spread_max` in the VAE file (`learned_manifold.vae_file`): `save_vae` writes only a finite positive
real number and `load_vae` refuses a file holding anything else under that key, naming the file and the key,
instead of dropping it silently (tester s36/N, problem 1); the VAE's own value is what the file records."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

from learned_manifold.model_checksum import CHECKSUM_KEY, checksum
from learned_manifold.model_file import ModelFileError
from learned_manifold.vae import VAE, VAEConfig
from learned_manifold.vae_file import VAE_FORMAT, VAE_VERSION, load_vae, read_vae_metadata, save_vae


def small_vae(spread: object = None) -> VAE:
    vae = VAE(VAEConfig((5,), 2, hidden=8, depth=1, n_centres=4))
    vae.input_spread_max = spread
    return vae


def write_raw(vae: VAE, path: Path, extra: dict) -> Path:
    """A VAE file built by hand as the writer of commit cc164c5 built it (`model_file.write_module_file` of the
    VAE, whose state dict was then its parameters and buffers alone), its ``extra`` whatever is given (as an
    edited or foreign file may hold): `save_vae`'s own checks bypassed."""
    tensors = {name: t.detach().contiguous() for name, t in [*vae.named_parameters(), *vae.named_buffers()]}
    metadata = {"format": VAE_FORMAT, "version": VAE_VERSION, "config": json.dumps(vae.config.to_dict()),
                "extra": json.dumps(extra)}
    metadata[CHECKSUM_KEY] = checksum(metadata, tensors)
    path.write_bytes(st_save(tensors, metadata=metadata))
    return path


@pytest.mark.parametrize("bad", [-1.0, 0.0, math.nan, math.inf, "big", [1.3], True, torch.ones(1)])
def test_save_vae_refuses_an_input_spread_max_that_is_not_a_finite_positive_number(tmp_path, bad):
    with pytest.raises((TypeError, ValueError), match=r"vae\.input_spread_max must be a"):
        save_vae(small_vae(bad), tmp_path / "vae.lvae")
    assert not (tmp_path / "vae.lvae").exists()


@pytest.mark.parametrize("given, stored", [(2, 2.0), (torch.tensor(1.5), 1.5), (torch.tensor(1.5, dtype=torch.float64),
                                                                               1.5)])
def test_save_vae_stores_an_int_or_a_0d_tensor_as_a_float(tmp_path, given, stored):
    loaded = load_vae(save_vae(small_vae(given), tmp_path / "vae.lvae"))
    assert type(loaded.input_spread_max) is float and loaded.input_spread_max == stored


@pytest.mark.parametrize("bad", [-1.0, 0, math.nan, math.inf, "big", [1.3], True, 10**400])
def test_load_vae_refuses_a_file_holding_an_invalid_input_spread_max_naming_file_and_key(tmp_path, bad):
    path = write_raw(small_vae(), tmp_path / "edited.lvae", {"input_spread_max": bad, "note": "x"})
    for read in (load_vae, read_vae_metadata):
        with pytest.raises(ModelFileError, match="edited.lvae.*has an invalid extra 'input_spread_max'"):
            read(path)


def test_load_vae_reads_a_json_integer_as_a_float_and_a_missing_or_null_key_as_unknown(tmp_path):
    assert load_vae(write_raw(small_vae(), tmp_path / "int.lvae", {"input_spread_max": 2})).input_spread_max == 2.0
    assert load_vae(write_raw(small_vae(), tmp_path / "old.lvae", {"note": "x"})).input_spread_max is None
    assert load_vae(write_raw(small_vae(), tmp_path / "null.lvae", {"input_spread_max": None})).input_spread_max is None


def test_the_file_records_the_vaes_own_value_not_extras(tmp_path):
    """An ``extra`` copied from an older file (``input_spread_max: None``) does not erase the VAE's value; one that
    names another value is refused rather than silently overridden either way."""
    loaded = load_vae(save_vae(small_vae(1.3), tmp_path / "a.lvae", extra={"input_spread_max": None, "n": 1}))
    assert loaded.input_spread_max == 1.3
    assert read_vae_metadata(tmp_path / "a.lvae")["extra"] == {"input_spread_max": 1.3, "n": 1}
    assert load_vae(save_vae(small_vae(1.3), tmp_path / "b.lvae", extra={"input_spread_max": 1.3})).input_spread_max \
        == 1.3
    save_vae(small_vae(None), tmp_path / "c.lvae", extra={"input_spread_max": None})
    assert read_vae_metadata(tmp_path / "c.lvae")["extra"] == {}
    for vae_value, extra_value in ((1.3, 2.0), (None, 2.0)):
        with pytest.raises(ValueError, match=r"extra\['input_spread_max'\] = 2.0 differs from vae.input_spread_max"):
            save_vae(small_vae(vae_value), tmp_path / "d.lvae", extra={"input_spread_max": extra_value})
    assert not (tmp_path / "d.lvae").exists()
