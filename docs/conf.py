"""Sphinx configuration of the learned-manifold API reference (built by ``tests/test_docs.py`` with ``-W``)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the packages, also when the project is not installed

project = "learned-manifold"
author = "learned-manifold developers"
copyright = "learned-manifold developers"
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # Google-style docstrings (Args:, Returns:, Raises:, Attributes:, Example:)
    "myst_parser",  # SPEC.md as a page
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# `name` in a docstring renders as code (the docstrings use single backticks for names)
default_role = "code"
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "description"
autodoc_class_signature = "separated"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # dataclass attributes as fields of the class, not as objects of their own

myst_heading_anchors = 3
html_theme = "alabaster"
html_title = "learned-manifold"
