"""The package version, at the bottom of the layers: sources and mirrors put it in User-Agent and indexes."""

__version__ = "0.1.0"
