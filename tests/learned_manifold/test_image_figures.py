"""The pictures of image geometry (`learned_manifold.image_figures`): what they draw and what their legends say."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from learned_manifold.image_figures import (  # noqa: E402
    plot_dimension_histogram,
    plot_eigenvalue_curves,
    plot_eigenvector_images,
    plot_interpolation_strips,
)


def legend_texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_two_channel_images_are_drawn_by_their_grey_channel():
    """PIL's "LA" (grey + alpha) trains as 2 channels; `show` crashed on them ("Invalid shape (8, 8, 2)")."""
    x = torch.rand(2, 2 * 8 * 8)
    vectors = torch.linalg.qr(torch.randn(2, 128, 3)).Q
    fig = plot_eigenvector_images(x, torch.ones(2, 3), vectors, (2, 8, 8), n_vectors=3)
    first = fig.axes[0].get_images()[0].get_array()
    assert first.shape == (8, 8)
    np.testing.assert_allclose(np.asarray(first), x[0, :64].reshape(8, 8).double().numpy())
    plt.close(fig)


def test_the_90_percent_index_reads_the_whole_spectrum():
    """A flat rank-8 spectrum reaches 90% of Σλ at k = 8 (7/8 < 0.9); with only 3 indices plotted the legend said
    k = 4, and an all-zero spectrum k = 9 of 8."""
    flat = torch.cat([torch.ones(4, 8), torch.zeros(4, 4)], -1)
    for max_index in (None, 3):
        fig = plot_eigenvalue_curves(flat, max_index=max_index)
        assert legend_texts(fig) == ["all points (90% at k=8)"]
        plt.close(fig)
    decaying = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).repeat(3, 1)  # 0.5, 0.8, 0.95: k = 3
    zero = torch.zeros(3, 4)
    fig = plot_eigenvalue_curves(torch.cat([decaying, zero]), torch.tensor([0, 0, 0, 1, 1, 1]))
    assert legend_texts(fig) == ["class 0 (90% at k=3)", "class 1 (90% at k=none)"]
    plt.close(fig)


def test_labels_must_match_the_spectra():
    with pytest.raises(ValueError, match=r"labels must have shape \(5,\)"):
        plot_eigenvalue_curves(torch.rand(5, 4), torch.tensor([0, 1, 2]))


def test_saving_closes_the_figure(tmp_path):
    """Each function with ``path=`` saved the PNG but left the figure open in pyplot (22 saves: 22 open figures and
    matplotlib's "More than 20 figures" warning); saved figures are closed, like `plotting`'s, and still returned."""
    plt.close("all")
    x = torch.rand(2, 64)
    vectors = torch.linalg.qr(torch.randn(2, 64, 3)).Q
    calls = {
        "vectors": lambda p: plot_eigenvector_images(x, torch.ones(2, 3), vectors, (8, 8), n_vectors=3, path=p),
        "curves": lambda p: plot_eigenvalue_curves(torch.rand(5, 4).sort(-1, descending=True).values, path=p),
        "strips": lambda p: plot_interpolation_strips({"LERP": torch.rand(5, 64)}, (8, 8), n_frames=3, path=p),
        "dims": lambda p: plot_dimension_histogram(torch.randint(1, 4, (30,)), path=p),
    }
    for name, call in calls.items():
        path = tmp_path / f"{name}.png"
        fig = call(path)
        assert path.stat().st_size > 0 and fig.axes, name
        assert plt.get_fignums() == [], name
    fig = plot_dimension_histogram(torch.randint(1, 4, (30,)))  # no path: left open for display
    assert plt.get_fignums() == [fig.number]
    plt.close(fig)


def test_the_pictures_save_through_plottings_one_save_function():
    """`image_figures` had a byte-identical copy of `plotting._save` (tester C, item 6): one function serves both."""
    from learned_manifold import image_figures, plotting

    assert image_figures._save is plotting._save


def test_the_histogram_marks_the_lower_median_of_spec_5():
    """SPEC §5's global dimension is the lower median, a dimension some point has: {9, 9, 10, 10} gives 9 (as
    `geometry.global_dimension` and `info` say); the histogram marked np.median's 9.5."""
    fig = plot_dimension_histogram(torch.tensor([10, 9, 10, 9]))
    assert legend_texts(fig) == ["median 9"]
    plt.close(fig)


def test_class_curves_are_named_by_the_class_names():
    """Folders 2, 9, 10 sort as '10', '2', '9' (labels 0, 1, 2): the legend said "class 2" for folder 9."""
    values = torch.tensor([[1.0, 0.0]]).repeat(3, 1)
    fig = plot_eigenvalue_curves(values, torch.tensor([2, 0, 1]), class_names=("10", "2", "9"))
    assert legend_texts(fig) == ["class 10 (90% at k=1)", "class 2 (90% at k=1)", "class 9 (90% at k=1)"]
    plt.close(fig)


def test_every_rows_panels_are_titled_with_that_points_own_eigenvalues():
    """Row ``i`` of the eigenvector picture shows point ``i``'s spectrum (tester A, item 2: a mutant titling every
    row with point 0's eigenvalues passed)."""
    x = torch.rand(2, 64)
    values = torch.tensor([[3.0, 2.0, 1.0], [0.9, 0.5, 0.1]])
    vectors = torch.linalg.qr(torch.randn(2, 64, 3)).Q
    fig = plot_eigenvector_images(x, values, vectors, (8, 8), n_vectors=3)
    titles = [[fig.axes[4 * i + 1 + j].get_title() for j in range(3)] for i in range(2)]
    assert titles == [["λ1=3.00", "λ2=2.00", "λ3=1.00"], ["λ1=0.90", "λ2=0.50", "λ3=0.10"]]
    plt.close(fig)


def test_eigenvector_entries_are_red_where_positive_and_blue_where_negative_as_the_title_says():
    """The suptitle promises "red +, blue −" (tester A, item 8: a reversed colour map passed)."""
    vectors = torch.zeros(1, 64, 1)
    vectors[0, 0, 0], vectors[0, 1, 0] = 1.0, -1.0
    fig = plot_eigenvector_images(torch.rand(1, 64), torch.ones(1, 1), vectors, (8, 8), n_vectors=1)
    assert "red +, blue −" in fig.get_suptitle()
    image = fig.axes[1].get_images()[0]
    (positive, negative), = image.to_rgba(np.asarray(image.get_array())[:1, :2])
    assert positive[0] > 2 * positive[2]  # red: (0.40, 0.00, 0.12) at the top of RdBu_r
    assert negative[2] > 2 * negative[0]  # blue: (0.02, 0.19, 0.38) at its bottom
    plt.close(fig)


def test_each_strip_row_is_labelled_with_its_own_score():
    """Tester A, item 4: a mutant giving every row the first method's score passed."""
    strips = {name: torch.rand(5, 64) for name in ("LERP", "gradient flow", "geodesic")}
    scores = {"LERP": "near 7.9", "gradient flow": "near 3.1", "geodesic": "near 4.2"}
    fig = plot_interpolation_strips(strips, (8, 8), scores=scores, n_frames=3)
    assert [fig.axes[3 * i].get_ylabel() for i in range(3)] == [f"{name}\n{scores[name]}" for name in strips]
    plt.close(fig)


def test_strip_frames_are_labelled_by_their_place_on_the_path_from_0_to_1():
    """The first frame is the path's start (t=0), the last its end (t=1), the middle one of 17 points t=0.50
    (tester A, item 4: labels ``j / n_frames`` ending at t=0.89 passed)."""
    fig = plot_interpolation_strips({"LERP": torch.rand(17, 64)}, (8, 8), n_frames=9)
    labels = [ax.get_xlabel() for ax in fig.axes]
    assert labels[0] == "t=0.00" and labels[4] == "t=0.50" and labels[-1] == "t=1.00"
    assert labels == [f"t={j / 8:.2f}" for j in range(9)]
    plt.close(fig)
