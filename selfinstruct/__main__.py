"""Run the CLI with `python -m selfinstruct`."""

from selfinstruct.cli import main

main()
