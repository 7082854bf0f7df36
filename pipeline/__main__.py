"""`python -m pipeline` is the `pipeline` command."""

from pipeline.cli import entry_point

entry_point()
