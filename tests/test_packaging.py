"""What a build of the project holds beyond its modules (the PEP 561 marker, the licence, the sdist's documents),
and that the packages import cleanly under ``-W error``."""

import os
import subprocess
import sys
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


def test_the_licence_ships_as_pep_639_metadata_and_the_sdist_takes_the_documents_not_the_tests():
    """``license`` is an SPDX expression with ``license-files`` (a TOML table is deprecated by setuptools, whose
    PEP 639 support starts at 77), the MIT text is there, and ``MANIFEST.in`` keeps the test suite (which needs
    the whole repository) out of the sdist and puts the documents the README names in (the sdist's contents were
    checked by hand with ``python -m build``)."""
    text = (ROOT / "pyproject.toml").read_text()
    project = text.split("\n[project]\n", 1)[1].split("\n[", 1)[0]
    assert 'license = "MIT"' in project.splitlines() and 'license-files = ["LICENSE"]' in project.splitlines()
    assert 'requires = ["setuptools>=77"]' in text.split("[build-system]", 1)[1].split("\n[", 1)[0]
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "the learned-manifold developers" in licence
    rules = [line.split() for line in (ROOT / "MANIFEST.in").read_text().splitlines() if line and line[0] != "#"]
    assert ["prune", "tests"] in rules
    included = [pattern for rule in rules if rule[0] == "include" for pattern in rule[1:]]
    for document in ("docs/SPEC.md", "tutorials/README.md", "benchmarks/RESULTS.md"):
        assert document in included and (ROOT / document).is_file(), document
    assert list(ROOT.glob("tutorials/*.ipynb")) and "tutorials/*.ipynb" in included


def test_the_packages_import_under_warnings_as_errors():
    """``python -W error -c 'import learned_manifold'``: geoopt's ``torch.jit.script`` DeprecationWarning (torch
    2.13) is kept inside the import, so downstream suites with ``filterwarnings = error`` can import the library."""
    code = "import learned_manifold, learned_manifold_training.cli; print('imported')"
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": ""})
    assert done.returncode == 0 and done.stdout.strip() == "imported", done.stderr[-2000:]


def test_the_librarys_forward_mode_products_raise_no_warning_under_warnings_as_errors():
    """torch loads its forward-mode AD decompositions, which call the deprecated ``torch.jit.script``, on a process's
    first ``torch.func.jvp``: the trainer's self-consistency check (`diagnostics._denoiser_jvp`) and the score
    Jacobian field raised that DeprecationWarning in a user's ``-W error`` run. They load them quietly now."""
    code = (
        "import torch\n"
        "from learned_manifold import MetricModel, ModelConfig\n"
        "from learned_manifold.diagnostics import _denoiser_jvp\n"
        "model = MetricModel(ModelConfig(data_shape=(3,), rank=2, arch_kwargs={'hidden': 8, 'depth': 1, "
        "'emb_dim': 4}))\n"
        "x = torch.randn(2, 3)\n"
        "print(tuple(_denoiser_jvp(model, x, torch.randn(2, 3, 2), 0.1).shape))\n"
    )
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": ""})
    assert done.returncode == 0 and done.stdout.strip() == "(2, 3, 2)", done.stderr[-2000:]
