"""The version of this package, in one place (read by ``pyproject.toml`` too)."""

__version__ = "0.2.0"
