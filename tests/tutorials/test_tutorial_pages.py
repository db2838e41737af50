"""Every notebook in tutorials/ is listed, opens with a title and a promise, and is run by one of this folder's
test files (`test_first_steps.py` below number 05, `test_images_and_latents.py` from 05 on)."""

from pathlib import Path

import nbformat
import pytest

from tests.tutorials.conftest import NOTEBOOKS, SPLIT


def test_there_are_tutorials_on_both_sides_of_the_split():
    assert [p for p in NOTEBOOKS if p.name < SPLIT] and [p for p in NOTEBOOKS if p.name >= SPLIT]


def test_every_tutorial_is_numbered_so_that_one_file_runs_it():
    unnumbered = [p.name for p in NOTEBOOKS if not p.name[:2].isdigit() or p.name[2] != "_"]
    assert not unnumbered, f"name tutorials NN_title.ipynb: {unnumbered}"


def test_every_tutorial_is_in_the_index():
    index = (Path(__file__).parent.parent.parent / "tutorials" / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in NOTEBOOKS if p.name not in index]
    assert not missing, f"tutorials/README.md does not list {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_tutorial_opens_with_a_title_and_what_the_reader_will_be_able_to_do(path):
    first = nbformat.read(path, as_version=4).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert "able to" in first.source, "say what the reader will be able to do afterwards"
