"""Tutorials 05 onwards (images, latent spaces, your own data) run top to bottom."""

import pytest

from tests.tutorials.conftest import NOTEBOOKS, SPLIT, execute


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.name >= SPLIT], ids=lambda p: p.name)
def test_tutorial_runs(path, tmp_path):
    execute(path, tmp_path)
