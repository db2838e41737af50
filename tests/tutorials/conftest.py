"""Running the notebooks of tutorials/ (stored without outputs, executed here on CPU).

The runs are split over two test files, by number, so that pytest-xdist's ``--dist loadfile`` can put them on
both workers: together they take about six minutes of one core.
"""

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent.parent / "tutorials").glob("*.ipynb"))
SPLIT = "05"  # notebooks numbered below run in test_first_steps.py, the rest in test_images_and_latents.py


def execute(path: Path, tmp_path: Path) -> None:
    """Run the notebook at ``path`` top to bottom in ``tmp_path``; it must be stored without outputs."""
    nb = nbformat.read(path, as_version=4)
    assert all(cell.get("outputs", []) == [] for cell in nb.cells if cell.cell_type == "code"), "stored with outputs"
    # Under pytest-xdist another worker shares the CPU: the kernel takes one thread, as the workers do.
    one_thread = {"env": {**os.environ, "OMP_NUM_THREADS": "1"}} if "PYTEST_XDIST_WORKER" in os.environ else {}
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute(**one_thread)
