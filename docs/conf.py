"""Sphinx configuration of the provider's documentation (``make docs``: offline, warnings are errors)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Importing the provider for autodoc imports Airflow: keep it in a throw-away home, quiet, with no examples.
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / "docs" / "_build" / "airflow-home"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "ERROR")

from airflow_provider_cm import __version__  # noqa: E402

project = "airflow-provider-cm"
author = "airflow-provider-cm contributors"
copyright = "the airflow-provider-cm contributors, Apache License 2.0"
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# The API reference: every public module of the package, its members as the docstrings say.
autosummary_generate = True
autodoc_default_options = {"members": True, "show-inheritance": True, "member-order": "bysource"}
autodoc_typehints = "description"
autodoc_class_signature = "separated"
# No intersphinx: the build reads nothing from the network. Names of Airflow, requests and the
# standard library in signatures stay plain text rather than links.
nitpicky = False

html_theme = "furo"
html_title = f"airflow-provider-cm {release}"
html_static_path: list[str] = []
