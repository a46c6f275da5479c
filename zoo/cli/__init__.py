"""The `zoo` command line: parse, call the API, render. Nothing else."""

from zoo.cli.app import cli, main

__all__ = ["cli", "main"]
