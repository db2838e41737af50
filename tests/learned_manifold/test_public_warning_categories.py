"""The warning categories the README and SPEC tell users to filter are importable from ``learned_manifold``
(tester E s33 12: `UncentredFieldWarning` lived only in the internal ``learned_manifold.regularised``)."""

import warnings

import learned_manifold
from learned_manifold.geodesic_init import DisconnectedDataWarning
from learned_manifold.model_file_notes import ModelFileWarning
from learned_manifold.regularised import UncentredFieldWarning


def test_every_documented_warning_category_is_public_at_the_top_level():
    for category in (UncentredFieldWarning, DisconnectedDataWarning, ModelFileWarning):
        assert category.__name__ in learned_manifold.__all__
        assert getattr(learned_manifold, category.__name__) is category
        assert issubclass(category, UserWarning)


def test_a_public_category_filters_its_warnings_only():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=learned_manifold.UncentredFieldWarning)
        warnings.warn("uncentred", UncentredFieldWarning, stacklevel=1)
        warnings.warn("disconnected", DisconnectedDataWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["disconnected"]
