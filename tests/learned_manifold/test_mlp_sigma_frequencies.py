"""The σ embedding's frequencies (`mlp.SigmaEmbedding.freqs`, SPEC §4): not stored in model files, so computed,
in the network's dtype: a float32 network holds the values every trained file was computed with, a float64 one
its own float64 values also after a conversion (the loader builds in float32, then casts)."""

import math

import torch

from learned_manifold.mlp import FiLMResMLP, SigmaEmbedding, sigma_frequencies
from learned_manifold.unet import UNet


def _exact(dtype: torch.dtype) -> torch.Tensor:
    """``exp(linspace(log 0.05, log 8, 16))`` computed in ``dtype`` on the CPU: ``(16,)``."""
    return torch.exp(torch.linspace(math.log(0.05), math.log(8.0), 16, dtype=dtype))


def test_float32_frequencies_are_those_every_trained_network_used():
    assert torch.equal(SigmaEmbedding(4).freqs, _exact(torch.float32))
    assert torch.equal(SigmaEmbedding(4).double().float().freqs, _exact(torch.float32))


def test_a_float32_build_cast_to_float64_holds_the_float64_frequencies_not_rounded_float32_ones():
    freqs = SigmaEmbedding(4).double().freqs
    assert freqs.dtype == torch.float64
    assert torch.equal(freqs, _exact(torch.float64))
    assert not torch.equal(freqs, _exact(torch.float32).double())  # what it held before: ~1e-8 off


def test_every_conversion_recomputes_them_in_the_new_dtype_and_narrow_ones_round_the_float32_values():
    emb = SigmaEmbedding(4)
    assert torch.equal(emb.to(torch.float64).freqs, _exact(torch.float64))
    assert torch.equal(emb.half().freqs, _exact(torch.float32).half())
    assert torch.equal(emb.to(torch.bfloat16).freqs, _exact(torch.float32).bfloat16())
    assert torch.equal(sigma_frequencies(16, 0.05, 8.0, torch.float64, "cpu"), _exact(torch.float64))


def test_the_backbones_embeddings_follow_the_network_dtype_and_outputs_match_a_float64_build():
    """A float64 network built under a float64 default and one built in float32 then cast (the loader's path)
    with the same weights give the same output, bit for bit, for the MLP and the UNet."""
    torch.manual_seed(0)
    builds = (lambda: FiLMResMLP((3,), 2, hidden=8, depth=1, emb_dim=4),
              lambda: UNet((1, 8, 8), 2, channels=8, channel_mult=(1,)))
    inputs = ((torch.randn(5, 3, dtype=torch.float64),), (torch.randn(5, 1, 8, 8, dtype=torch.float64),))
    for build, (z,) in zip(builds, inputs, strict=True):
        cast = build().double()
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            native = build()
        finally:
            torch.set_default_dtype(previous)
        with torch.no_grad():
            for p in cast.parameters():  # random weights everywhere: zero heads would hide the embedding
                p.add_(0.3 * torch.randn_like(p))
        native.load_state_dict(cast.state_dict())
        sigma = torch.tensor([0.01, 0.1, 0.3, 1.0, 2.0], dtype=torch.float64)
        assert torch.equal(cast.embed.freqs, native.embed.freqs)
        assert torch.equal(cast(z, sigma), native(z, sigma))
