"""Specification tests for the built-in image data sets, the digits and the blobs, and the blob manifold's exact
geometry (SPEC §9)."""

from __future__ import annotations

import re

import pytest
import torch

from learned_manifold_training.data import (
    Blobs,
    get_dataset,
    get_image_dataset,
    is_image_source,
    resolve_data,
    resolve_images,
)
from learned_manifold_training.data.builtin import split_image_name

F64 = torch.float64


# ------------------------------------------------------------------------------------------------------
# Built-in image data sets
# ------------------------------------------------------------------------------------------------------


def test_digits_as_images_with_labels() -> None:
    pytest.importorskip("sklearn")
    data, manifold = get_image_dataset("digits")
    assert manifold is None and data.x.shape == (1797, 1, 8, 8) and data.labels.shape == (1797,)
    assert sorted(set(data.labels.tolist())) == list(range(10)) and data.class_names == tuple("0123456789")
    assert float(data.x.min()) == 0.0 and float(data.x.max()) == 16.0 and torch.equal(data.x, data.x.round())
    assert data.value_range == (0.0, 16.0) and data.stored_dtype == "float64"
    # The point view keeps its old convention, (n, 8, 8) in [0, 1].
    torch.testing.assert_close(get_dataset("digits", 0)[0], data.x[:, 0] / 16, rtol=0, atol=0)
    sub, _ = get_image_dataset("digits", 100, seed=1)
    pairs = {(bytes(x.numpy()), int(y)) for x, y in zip(data.x, data.labels, strict=True)}
    assert sub.x.shape == (100, 1, 8, 8)
    assert all((bytes(x.numpy()), int(y)) in pairs for x, y in zip(sub.x, sub.labels, strict=True))
    assert torch.equal(get_image_dataset("digits", 100, seed=1)[0].labels, sub.labels)
    assert torch.equal(resolve_data("digits")[0], data.x) and is_image_source("digits")


def test_blobs_data_set_and_names() -> None:
    data, manifold = resolve_images("blobs:32", n=6, seed=3)
    assert isinstance(manifold, Blobs) and manifold.ambient_dim == 1024
    assert data.x.shape == (6, 1, 32, 32) and data.source == "blobs:32" and data.value_range == (0.0, 1.0)
    assert float(manifold.distance(data.x.reshape(6, -1)).max()) < 1e-5
    assert torch.equal(resolve_data("blobs:32", n=6, seed=3)[0], data.x)
    x, m = resolve_data("blobs", n=4)
    assert x.shape == (4, 1, 16, 16) and m.ambient_dim == 256
    flat, m = get_dataset("blobs", 4)
    assert flat.shape == (4, 256) and m.name == "blobs"
    for bad in ["blobs:3", "blobs:x", "digits:8", "blobs:"]:
        with pytest.raises(ValueError, match="blobs:SIDE"):
            resolve_data(bad)
    with pytest.raises(ValueError, match="positive"):
        get_image_dataset("blobs", 0)


@pytest.mark.parametrize("name", ["blobs:²", "blobs:٣٢", "blobs:３２", "blobs:+32", "blobs: 32", "blobs:32.0"])
def test_a_blob_side_is_ascii_digits_only(name) -> None:
    """``str.isdigit`` accepts "²" (then ``int`` failed with a bare "invalid literal for int()") and Arabic-Indic
    "٣٢" (read as 32) (tester B, s32): a side is ASCII digits, anything else gets the function's own message."""
    with pytest.raises(ValueError, match=rf"^bad image data set '{re.escape(name)}': only blobs takes a size, as "
                       r"blobs:SIDE with an integer SIDE >= 4 \(e\.g\. blobs:32 for 32×32 images\)$"):
        split_image_name(name)
    assert split_image_name("blobs:32") == ("blobs", 32)


# ------------------------------------------------------------------------------------------------------
# The blob manifold's geometry
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("side,chart_dim", [(16, 2), (16, 3), (32, 2), (64, 2)])
def test_blob_tangent_is_exact(side: int, chart_dim: int) -> None:
    m = Blobs(side, chart_dim=chart_dim)
    chart = m.sample_chart(6, generator=torch.Generator().manual_seed(side + chart_dim))
    jac = m.chart_jacobian(chart)
    auto = torch.vmap(torch.func.jacfwd(lambda c: m.render(c[None])[0]))(chart)
    torch.testing.assert_close(jac, auto, rtol=0, atol=1e-12)
    h = 1e-5
    for k in range(chart_dim):
        step = torch.zeros(chart_dim, dtype=F64)
        step[k] = h
        fd = (m.render(chart + step) - m.render(chart - step)) / (2 * h)
        torch.testing.assert_close(jac[:, :, k], fd, rtol=0, atol=1e-8)
    basis = m.tangent_basis(m.render(chart))
    assert basis.shape == (6, side * side, chart_dim)
    eye = torch.eye(chart_dim, dtype=F64).expand(6, -1, -1)
    torch.testing.assert_close(basis.transpose(1, 2) @ basis, eye, rtol=0, atol=1e-12)
    residual = jac - basis @ (basis.transpose(1, 2) @ jac)  # the basis spans exactly the derivatives
    assert float(residual.norm() / jac.norm()) < 1e-12
    assert m.point_dimension(m.render(chart)).tolist() == [chart_dim] * 6


@pytest.mark.parametrize("chart_dim", [2, 3])
def test_blob_projection(chart_dim: int) -> None:
    m = Blobs(16, chart_dim=chart_dim)
    gen = torch.Generator().manual_seed(7)
    chart = m.sample_chart(40, generator=gen)
    assert bool(((chart >= m.low) & (chart <= m.high)).all())
    x = m.render(chart)
    torch.testing.assert_close(m.chart_of(x), chart, rtol=0, atol=1e-9)
    assert float(m.distance(x).max()) < 1e-9
    basis = m.tangent_basis(x)
    normal = torch.randn(x.shape, generator=gen, dtype=F64)
    normal -= torch.einsum("ndk,nk->nd", basis, torch.einsum("ndk,nd->nk", basis, normal))
    normal /= normal.norm(dim=1, keepdim=True)
    for t in (0.05, 0.5):  # along a normal the nearest image is the one we left
        torch.testing.assert_close(m.distance(x + t * normal), torch.full((40,), t, dtype=F64), rtol=0, atol=1e-7)
        torch.testing.assert_close(m.project(x + t * normal), x, rtol=0, atol=1e-6)
    noisy = x + 0.1 * torch.randn(x.shape, generator=gen, dtype=F64)
    proj = m.project(noisy)
    torch.testing.assert_close(m.project(proj), proj, rtol=0, atol=1e-8)
    if chart_dim == 2:  # no worse than a brute-force search over a 0.05-pixel grid of centres
        grid = torch.linspace(float(m.low[0]), float(m.high[0]), 141, dtype=F64)
        brute = torch.cdist(noisy, m.render(torch.cartesian_prod(grid, grid))).min(dim=1).values
        assert float((m.distance(noisy) - brute).max()) < 1e-9
    x32 = m.sample(5, generator=gen)
    assert x32.dtype == torch.float32 and m.tangent_basis(x32).dtype == torch.float32
    assert float(x32.max()) <= 1.0 and float(x32.min()) > 0.0
    assert m.as_images(x32).shape == (5, 1, 16, 16)


def test_blob_arguments() -> None:
    for kwargs, match in [({"side": 3}, "side"), ({"chart_dim": 4}, "chart_dim"), ({"width": -1.0}, "width"),
                          ({"width_range": (1.0, 2.0)}, "chart_dim=3"), ({"margin": 8.0}, "margin"),
                          ({"chart_dim": 3, "width_range": (2.0, 1.0)}, "width_range")]:
        with pytest.raises(ValueError, match=match):
            Blobs(**kwargs)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        Blobs(16).render(torch.zeros(3, 3))
