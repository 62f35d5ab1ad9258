"""The installed version of rramfx, in one place for the package and the files it writes."""

__version__ = "0.1.0"

__all__ = ["__version__"]
