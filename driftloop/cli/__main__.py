"""`python -m driftloop.cli` is the `driftloop` command."""

from driftloop.cli import main

main()
