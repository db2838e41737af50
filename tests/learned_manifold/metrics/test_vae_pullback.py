"""`VAEPullbackMetric` under a caller's autocast (the rest of its tests are in tests/learned_manifold/test_vae.py)."""

import torch

from learned_manifold.metrics import VAEPullbackMetric
from learned_manifold.metrics.vae_pullback import latent_graph_path
from learned_manifold.vae import VAE, VAEConfig
from tests.conftest import assert_same_under_autocast


def test_a_callers_autocast_changes_nothing():
    """Under ``torch.autocast('cpu', bfloat16)`` the decoder and the algebra ran in bf16: float32 in must give
    float32 out and the same numbers as outside autocast."""
    torch.manual_seed(0)
    vae = VAE(VAEConfig(data_shape=(10,), latent_dim=2, hidden=16))
    vae.std_weights.data.uniform_(0.0, 4.0)
    codes = torch.randn(40, 2)
    field = VAEPullbackMetric(vae, eps=1e-3, codes=codes)
    z, v = torch.randn(5, 2), torch.randn(5, 2)
    path = torch.randn(2, 6, 2)
    calls = {"metric": lambda: field.metric(z, v), "apply": lambda: field.apply(z, v),
             "log_volume": lambda: field.log_volume(z), "energies": lambda: field.segment_energies(path),
             "graph_path": lambda: latent_graph_path(codes, z[:2], z[2:4], 9)}
    assert_same_under_autocast(calls, atol=1e-7)


def test_latent_graph_path_refuses_bad_counts_and_takes_single_ends():
    """``n_points`` below 2 or not an integer is refused by name (it returned a one-point path without ``z0``, or
    failed deep in torch); ``(d,)`` ends give one ``(n_points, d)`` path from ``z0`` to ``z1`` (they failed)."""
    import pytest

    th = torch.linspace(0, 6.0, 200)
    codes = torch.stack([th.cos(), th.sin()], -1)
    z0, z1 = torch.tensor([[1.0, 0.0]]), torch.tensor([[-1.0, 0.0]])
    for bad in (1, 0, -3):
        with pytest.raises(ValueError, match=r"n_points \(both ends included\) must be >= 2"):
            latent_graph_path(codes, z0, z1, bad)
    with pytest.raises(TypeError, match="n_points .* must be an integer, got float"):
        latent_graph_path(codes, z0, z1, 2.5)
    with pytest.raises(ValueError, match=r"z0 and z1 must both have shape \(B, 2\) or \(2,\)"):
        latent_graph_path(codes, z0, torch.zeros(1, 3), 9)
    path = latent_graph_path(codes, z0[0], z1[0], 9)
    assert path.shape == (9, 2)
    assert torch.equal(path[0], z0[0]) and torch.equal(path[-1], z1[0])
    assert torch.allclose(path, latent_graph_path(codes, z0, z1, 9)[0])


def test_latent_graph_path_refuses_a_bad_neighbour_count():
    """``neighbours`` of 0 or below built no graph and returned the straight line silently (tester D, p08)."""
    import pytest

    codes = torch.nn.functional.normalize(torch.randn(60, 2, generator=torch.Generator().manual_seed(0)), dim=-1)
    z0, z1 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0])
    for bad in (0, -5):
        with pytest.raises(ValueError, match=rf"^neighbours \(k of the codes' graph\) must be >= 1, got {bad}$"):
            latent_graph_path(codes, z0, z1, 9, neighbours=bad)
    for bad in (2.0, True):
        with pytest.raises(TypeError, match="^neighbours .* must be an integer"):
            latent_graph_path(codes, z0, z1, 9, neighbours=bad)


def test_latent_graph_path_warns_where_the_codes_do_not_join_the_ends():
    """Ends in two far clusters of codes: the pair gets the straight line through the empty space between them,
    now with a `DisconnectedDataWarning` naming it (as ``geodesic``'s graph start); a pair inside one cluster
    follows the codes, silently."""
    import warnings

    import pytest

    from learned_manifold import DisconnectedDataWarning
    from learned_manifold.evaluation import lerp

    g = torch.Generator().manual_seed(0)
    codes = torch.cat([0.1 * torch.randn(60, 2, generator=g), 0.1 * torch.randn(60, 2, generator=g) + 10])
    z0, z1 = codes[[0, 1]], codes[[70, 2]]  # pair 0 across the clusters, pair 1 inside the first
    with pytest.warns(DisconnectedDataWarning, match=r"does not join the ends of 1 of 2 pair\(s\) \[0\].*straight"):
        path = latent_graph_path(codes, z0, z1, 9)
    torch.testing.assert_close(path[0], lerp(z0[:1], z1[:1], 9)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        latent_graph_path(codes, z0[1:], z1[1:], 9)


def test_the_vae_stays_in_eval_mode_and_the_docstring_says_it_is_frozen_in_place():
    """``.train()`` on a module holding the field put the VAE in train mode (the README says the fields' networks
    stay in eval mode; tester B, p03). The constructor freezes the caller's VAE in place, as `LearnedCDC` does,
    and the docstring says so with the copy recipe (it did not; tester C, p07)."""
    from learned_manifold.metrics import LearnedCDC

    vae = VAE(VAEConfig(data_shape=(10,), latent_dim=2, hidden=16))
    field = VAEPullbackMetric(vae, codes=torch.randn(20, 2))
    holder = torch.nn.Sequential(field)
    holder.train()
    assert field.training and field.data_graph.training
    assert not any(module.training for module in field.vae.modules())
    assert field.vae is vae and not any(p.requires_grad for p in vae.parameters())  # frozen in place
    doc = " ".join(VAEPullbackMetric.__doc__.split())
    assert "It is frozen **in place**" in doc and "``copy.deepcopy(vae)``" in doc
    assert "It is frozen **in place**" in " ".join(LearnedCDC.__doc__.split())
