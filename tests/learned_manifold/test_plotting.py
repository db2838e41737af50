"""The figures explain themselves: labelled axes, integer ticks on integer axes, markers, honest legends and the
key number in the title (issue 11, item 4). Checked on closed forms, so a wrong number fails."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from learned_manifold.plotting import View3D, plot_paths, plot_spectrum, plot_tangent_frames  # noqa: E402


class UnitCircle:
    """The unit circle in the plane ``x₃ = 0`` of ``R³``, with its exact distance."""

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        return torch.hypot(x[:, :2].norm(dim=-1) - 1, x[:, 2])


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _circle(n: int) -> torch.Tensor:
    t = torch.linspace(0, 2 * math.pi, n + 1)[:-1]
    return torch.stack([t.cos(), t.sin(), torch.zeros_like(t)], dim=-1)


def _legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def test_view_labels_name_coordinates_or_principal_axes_with_their_variance():
    assert View3D(torch.randn(50, 3)).labels == ["x₁", "x₂", "x₃"]
    assert View3D(torch.randn(50, 2)).labels[2] == "unused (D = 2)"
    g = torch.Generator().manual_seed(0)
    data = torch.randn(400, 6, generator=g) * torch.tensor([3.0, 1.0, 1.0, 0.1, 0.1, 0.1])
    labels = View3D(data).labels
    shares = [float(lab.split("(")[1].split("%")[0]) for lab in labels]
    assert labels[0].startswith("PC 1") and shares[0] > 70 and sum(shares) <= 100.5


def test_tangent_frames_legend_says_which_arrows_are_too_short_and_title_gives_the_dimension(tmp_path):
    data = _circle(200)
    pts = data[::20]  # 10 points
    tangent = torch.stack([-pts[:, 1], pts[:, 0], torch.zeros(10)], dim=-1)
    vectors = torch.stack([tangent, pts, torch.tensor([0.0, 0.0, 1.0]).expand(10, 3)], dim=-1)  # (10, 3, 3)
    values = torch.tensor([1.0, 0.01, 0.0]).expand(10, 3)
    out = tmp_path / "frames.png"
    fig = plot_tangent_frames(data, pts, vectors, values, caption="tangent error 0.000", path=out)
    ax = fig.axes[0]
    assert out.stat().st_size > 0
    assert [ax.get_xlabel(), ax.get_ylabel(), ax.get_zlabel()] == ["x₁", "x₂", "x₃"]
    legend = _legend_texts(ax)
    assert legend[0] == "10 points"
    assert "mean λ₁/λ₁ = 1.00" in legend[1] and "too short" not in legend[1]
    assert "too short to see" in legend[2] and "too short to see" in legend[3]
    assert "gap-rule dimension 1 at 100% of these points" in ax.get_title()
    assert any(t.get_text() == "tangent error 0.000" for t in fig.texts)


def test_spectrum_has_integer_ticks_explained_whiskers_and_the_share_of_right_dimensions():
    values = torch.tensor([[1.0, 0.9, 0.05]] * 3 + [[1.0, 0.5, 0.45]])  # dims 2, 2, 2, 1
    fig = plot_spectrum(values, true_dim=2)
    left, right = fig.axes
    assert [t.get_text() for t in left.get_xticklabels()] == ["1", "2", "3"]
    assert all(float(t).is_integer() for t in right.get_xticks())
    assert "whiskers: ± 1 std" in left.get_title() and "mean over 4 points" in left.get_title()
    assert "the true d = 2 at 75% of 4 points" in right.get_title()
    assert _legend_texts(left) == ["largest gap: d = 2 (lower median)"]
    assert left.get_xlabel() and left.get_ylabel() and right.get_xlabel() and right.get_ylabel()
    assert {t.get_text() for t in left.texts} >= {"1.00", "0.80"}  # the means, printed on the bars


def test_the_dimension_histogram_counts_points_where_g_is_zero():
    """Points where G = 0 read dimension 0 (SPEC §5): the histogram's bins started at 0.5 and dropped them."""
    values = torch.tensor([[1.0, 0.9, 0.05]] * 3 + [[0.0, 0.0, 0.0]])  # dims 2, 2, 2, 0
    _, right = plot_spectrum(values).axes
    assert sum(p.get_height() for p in right.patches) == 4
    plt.close("all")


@pytest.mark.parametrize("low", [1, 2, 9])
def test_spectrum_and_frames_report_the_lower_median_dimension(low):
    """SPEC §5's global dimension is the lower median: dimensions {d, d, d + 1, d + 1} give d. plot_spectrum used
    np.round(np.median(dims)), which said 2 for {1, 1, 2, 2} and 10 for {9, 9, 10, 10} (tester C)."""
    values = torch.tensor([[1.0] * d + [0.01] * (12 - d) for d in (low, low, low + 1, low + 1)])
    fig = plot_spectrum(values)
    left, right = fig.axes
    assert _legend_texts(left) == [f"largest gap: d = {low} (lower median)"]
    assert right.get_title() == f"pointwise dimension: d = {low} at 50% of 4 points"
    frames = plot_tangent_frames(torch.randn(20, 3), torch.randn(4, 3), torch.randn(4, 3, 12), values)
    assert f"gap-rule dimension {low} at 50% of these points" in frames.axes[0].get_title()


def test_paths_mark_starts_and_ends_and_report_the_exact_largest_distance():
    data = _circle(400)
    a = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    b = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    line = torch.lerp(a.unsqueeze(1), b.unsqueeze(1), torch.linspace(0, 1, 21).unsqueeze(-1))  # (2, 21, 3)
    fig = plot_paths(data, {"LERP": line}, manifold=UnitCircle(), caption="two chords of a quarter circle")
    ax3d, prof = fig.axes
    # a chord of a quarter circle comes closest to the centre at its midpoint: 1 − cos(π/4) from the circle
    assert _legend_texts(prof) == [f"LERP: largest {1 - math.cos(math.pi / 4):.3f}, mean length {math.sqrt(2):.2f}"]
    assert _legend_texts(ax3d) == ["LERP", "start (pair number)", "end of each path"]
    assert sorted(t.get_text().strip() for t in ax3d.texts) == ["1", "2"]  # the pairs are numbered at their starts
    assert prof.get_xlabel().startswith("position along the path") and "manifold" in prof.get_ylabel()
    # without a manifold the distance is to the nearest data point (a dense circle: nearly the same number)
    fig2 = plot_paths(data, {"LERP": line})
    largest = float(_legend_texts(fig2.axes[1])[0].split("largest ")[1].split(",")[0])
    assert largest == pytest.approx(1 - math.cos(math.pi / 4), abs=2e-3)
    assert "nearest data point" in fig2.axes[1].get_ylabel()
