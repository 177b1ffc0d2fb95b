"""`python -m cra` runs the CLI."""

from cra.cli import main

main()
