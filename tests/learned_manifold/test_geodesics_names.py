"""`learned_manifold.geodesics` keeps the names it had: `landing_rounding` and `LANDING_NOISE` moved to
`learned_manifold.landing` (review s35, finding 11), and old imports from `geodesics` still give the same objects."""

from learned_manifold import landing


def test_the_landing_rounding_names_still_import_from_geodesics():
    from learned_manifold.geodesics import LANDING_NOISE, landing_rounding

    assert landing_rounding is landing.landing_rounding
    assert LANDING_NOISE == landing.LANDING_NOISE == 1e3
