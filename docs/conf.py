"""Sphinx configuration of closedloop's documentation site.

Build it with ``bash scripts/docs.sh`` (the site lands in ``docs/_build/html``). The API pages
are written at build time from the package's modules (:func:`write_api_pages`), the command
line reference from the Click commands, and the tutorials (``docs/tutorials/*.md``, MyST
notebooks) are executed by the build.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import closedloop

HERE = Path(__file__).resolve().parent

project = "closedloop"
author = "the closedloop developers"
copyright = "2026, the closedloop developers"
release = version = closedloop.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx_click",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
html_theme = "pydata_sphinx_theme"
smartquotes = False            # command lines keep their "--"
html_title = f"closedloop {version}"
html_theme_options = {"navigation_depth": 2, "show_toc_level": 2}
suppress_warnings = ["myst.header",   # the pages keep the headings GitHub renders them with
                    "ref.python"]    # an attribute name shared by several classes links to one

myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
nb_execution_mode = "cache"
nb_execution_in_temp = True
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

autodoc_default_options = {"members": True, "undoc-members": False, "ignore-module-all": True}
autodoc_typehints = "none"
autodoc_inherit_docstrings = False
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True
napoleon_custom_sections = [  # the sections of the extension points' base classes
    ("A subclass writes", "params_style"), ("A kind writes", "params_style"),
    ("and, where the default does not fit, overrides", "params_style"),
    ("and, where the default does not fit, sets or overrides", "params_style"), "It gets"]

LAYERS = {
    "config": "Config files and presets",
    "core": "Plants, agents, tasks, the rollout and costs",
    "runs": "Run files",
    "analysis": "Spectra, stages, theory, gains, claims",
    "training": "The trainer, learning rules and loggers",
    "scale": "Jobs, sweeps and clusters",
    "studies": "Studies beyond the paper",
    "paper": "The paper's figures and the report",
    "plotting": "Plots",
}
"""The package's layers, in import order, each an API page."""

HIDDEN = {"closedloop.cli", "closedloop._version"}


def public_modules(layer: str) -> list[str]:
    """Every module of ``closedloop.<layer>`` (the package itself first), private ones left
    out."""
    package = importlib.import_module(f"closedloop.{layer}")
    names = [package.__name__]
    if hasattr(package, "__path__"):
        names += sorted(info.name for info in pkgutil.walk_packages(
            package.__path__, prefix=f"{package.__name__}.")
            if not any(part.startswith("_") for part in info.name.split(".")))
    return [name for name in names if name not in HIDDEN]


def _directive(value: object) -> str:
    """The autodoc directive that documents ``value``."""
    return "autoclass" if isinstance(value, type) else "autofunction"


def write_api_pages(app: object = None) -> None:
    """``docs/api/<layer>.md`` for every layer and ``docs/api/index.md``, from the package's
    modules (generated, not kept in the repository)."""
    folder = HERE / "api"
    folder.mkdir(exist_ok=True)
    index = ["# API reference", "",
             "The package is layered; each layer imports only the ones above it here. The "
             "top-level names (`closedloop.train`, `closedloop.load_run`, ...) are listed "
             "first.", "", "```{toctree}", ":maxdepth: 1", "", "top-level", *LAYERS, "```", ""]
    top = ["# `closedloop`", "", "```{eval-rst}", ".. automodule:: closedloop",
           "   :no-members:", "```", ""]
    for name in closedloop.__all__:
        if name != "__version__":
            value = getattr(closedloop, name)
            top += ["```{eval-rst}", f".. {_directive(value)}:: closedloop.{name}",
                    *(["   :no-members:"] if isinstance(value, type) else []),
                    "   :no-index:", "```", ""]
    pages = {"index": "\n".join(index), "top-level": "\n".join(top)}
    for layer, title in LAYERS.items():
        body = [f"# `closedloop.{layer}`: {title}", ""]
        for module in public_modules(layer):
            body += [f"## `{module}`", "", "```{eval-rst}", f".. automodule:: {module}",
                     "```", ""]
        pages[layer] = "\n".join(body)
    for name, text in pages.items():
        path = folder / f"{name}.md"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def escape_bars(lines: list[str]) -> None:
    """``|x|`` (an absolute value, a norm) in plain docstring text as a literal bar, not a
    reStructuredText substitution; literals and doctests are left alone (the package's
    docstrings have no grid tables)."""
    for index, line in enumerate(lines):
        stripped = line.lstrip()
        if "|" not in line or stripped.startswith((">>>", "...")):
            continue
        parts = line.split("``")
        lines[index] = "``".join(part.replace("|", "\\|") if number % 2 == 0 else part
                                 for number, part in enumerate(parts))


def _docstring_bars(app: object, what: str, name: str, obj: object, options: object,
                    lines: list[str]) -> None:
    escape_bars(lines)


def _click_bars(app: object, ctx: object, lines: list[str]) -> None:
    escape_bars(lines)


def setup(app: object) -> None:
    """Hooks of this site: bars in docstrings and in the command line's help escaped."""
    app.connect("autodoc-process-docstring", _docstring_bars, priority=900)
    for part in ("description", "usage", "options", "arguments", "envvars", "epilog"):
        app.connect(f"sphinx-click-process-{part}", _click_bars)


write_api_pages()
