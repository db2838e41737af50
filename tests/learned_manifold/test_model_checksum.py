"""The checksum of model and VAE files (`learned_manifold.model_checksum`): which files must carry one."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load as st_load

from learned_manifold import ModelFileError, load_vae, save_vae
from learned_manifold.model_checksum import CHECKSUM_KEY, checksum, verify_checksum
from learned_manifold.vae import VAE, VAEConfig


class _Reader:
    """The one thing `verify_checksum` asks of a reader: an error naming the file."""

    def error(self, problem: str) -> ModelFileError:
        return ModelFileError(f"'f.lmm' {problem}")


def _metadata(version: str) -> tuple[dict, dict]:
    tensors = {"w": torch.arange(3.0)}
    metadata = {"format": "learned-manifold", "version": version, "config": "{}", "extra": "{}"}
    return metadata, tensors


def test_only_version_1_files_may_lack_the_checksum() -> None:
    """Every writer of format version 2 wrote a checksum (git history: version 2 came after the checksum, for
    model and VAE files), so a version-2 file without one was edited after writing (tester B, s32: it loaded
    unchecked, even with a changed weight); a version-1 file without one was written before checksums."""
    metadata, tensors = _metadata("1")
    verify_checksum(_Reader(), metadata, tensors)  # passes: no error
    metadata, tensors = _metadata("2")
    with pytest.raises(ModelFileError, match=r"^'f\.lmm' was not loaded: version 2 files carry a checksum "
                       r"\('sha256'\); this one has none: it was edited after writing$"):
        verify_checksum(_Reader(), metadata, tensors)
    verify_checksum(_Reader(), {**metadata, CHECKSUM_KEY: checksum(metadata, tensors)}, tensors)
    with pytest.raises(ModelFileError, match="do not match the SHA-256"):
        verify_checksum(_Reader(), {**metadata, CHECKSUM_KEY: checksum(metadata, tensors)}, {"w": torch.ones(3)})


def test_a_version_2_vae_file_without_its_checksum_is_refused_and_version_1_loads(tmp_path) -> None:
    """VAE files read the same check: version 2 (the checksum and config keys added) always carried one."""
    torch.manual_seed(0)
    vae = VAE(VAEConfig((4,), 2, hidden=8, depth=1, n_centres=3))
    raw = save_vae(vae, tmp_path / "v.lvae").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    assert header["__metadata__"]["version"] == "2"
    del header["__metadata__"][CHECKSUM_KEY]
    for name, version in (("stripped.lvae", "2"), ("old.lvae", "1")):
        header["__metadata__"]["version"] = version
        text = json.dumps(header).encode()
        (tmp_path / name).write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n:])
    with pytest.raises(ModelFileError, match=r"stripped\.lvae' was not loaded: version 2 files carry a checksum"):
        load_vae(tmp_path / "stripped.lvae")
    old = load_vae(tmp_path / "old.lvae")
    for key, value in dict(st_load(raw)).items():
        assert torch.equal(old.state_dict()[key], value), key
