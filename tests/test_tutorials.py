"""Every notebook in tutorials/ runs top to bottom (stored without outputs, executed here on CPU)."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "tutorials").glob("*.ipynb"))


def test_there_are_tutorials():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_tutorial_runs(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    assert all(cell.get("outputs", []) == [] for cell in nb.cells if cell.cell_type == "code"), "stored with outputs"
    # Under pytest-xdist another worker shares the CPU: the kernel takes one thread, as the workers do.
    one_thread = {"env": {**os.environ, "OMP_NUM_THREADS": "1"}} if "PYTEST_XDIST_WORKER" in os.environ else {}
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute(**one_thread)


def test_every_tutorial_is_in_the_index():
    index = (Path(__file__).parent.parent / "tutorials" / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in NOTEBOOKS if p.name not in index]
    assert not missing, f"tutorials/README.md does not list {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_tutorial_opens_with_a_title_and_what_the_reader_will_be_able_to_do(path):
    first = nbformat.read(path, as_version=4).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert "able to" in first.source, "say what the reader will be able to do afterwards"
