"""Tie rule and coordinate scaling of `spectral_grad` (SPEC §5): closed forms."""

import torch

from learned_manifold import spectral_grad as sg


def test_ties_are_relative_to_the_pair_not_to_the_top_eigenvalue():
    """float32's tie_eps is 3e-5: λ = 1 and 1 + 1e-8 (a float32 projector's split tie) are tied, and so are two
    eigenvalues below the float64 Gram's rounding; 1.6e-5 and 2.5e-7 (relative gap ~1) are not, although their
    gap is below 3e-5 · λ₁ (the former absolute test had dropped their rotation term)."""
    values = torch.tensor([[2.5e-7, 1.6e-5, 1.0, 1.0 + 1e-8]], dtype=torch.float64)
    F = sg._tie_factors(values, sg.tie_eps(torch.float32))
    assert F[0, 2, 3] == 0 and F[0, 3, 2] == 0
    gap = torch.tensor(1.6e-5 - 2.5e-7, dtype=torch.float64)
    torch.testing.assert_close(F[0, 0, 1], 1 / gap, rtol=1e-12, atol=0)
    torch.testing.assert_close(F[0, 1, 0], -1 / gap, rtol=1e-12, atol=0)
    tiny = torch.tensor([[0.0, 1e-15, 1.0]], dtype=torch.float64)
    assert sg._tie_factors(tiny, sg.tie_eps(torch.float64))[0, 0, 1] == 0
    assert (sg._tie_factors(values, 0.0).diagonal(dim1=-2, dim2=-1) == 0).all()


def test_scale_coords_without_a_gradient_is_the_diagonal_power():
    values = torch.tensor([[4.0, 2.0, 1e-20]], dtype=torch.float64)
    coords = torch.tensor([[1.0, 3.0, 5.0]], dtype=torch.float64)
    keep = torch.tensor([[True, True, False]])
    assert sg.scale_coords(values, None, coords, 1, keep).tolist() == [[4.0, 6.0, 5e-20]]
    assert sg.scale_coords(values, None, coords, -1, keep).tolist() == [[0.25, 1.5, 0.0]]
