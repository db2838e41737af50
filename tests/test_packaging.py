"""What a wheel of the project holds beyond its modules: the PEP 561 marker, so type checkers read the hints."""

from pathlib import Path

import learned_manifold
import learned_manifold_training

ROOT = Path(__file__).resolve().parents[1]


def test_both_packages_carry_the_typed_marker_and_the_build_ships_it():
    """``py.typed`` sits in both installed packages and ``pyproject.toml`` lists it as their package data (a
    wheel built without that entry has no marker: checked by hand with ``pip wheel``)."""
    for package in (learned_manifold, learned_manifold_training):
        assert (Path(package.__file__).parent / "py.typed").is_file()
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    assert 'learned_manifold = ["py.typed"]' in section and 'learned_manifold_training = ["py.typed"]' in section
