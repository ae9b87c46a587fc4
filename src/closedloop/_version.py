"""The version of closedloop (one place; the package and the run files it writes read it)."""

__version__ = "0.2.0"
