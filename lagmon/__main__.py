"""`python -m lagmon --config PATH [--debug]` runs the monitor (the spec's `python -m main`);
`python -m lagmon COMMAND ...` is the `lagmon` command."""

import sys

from lagmon.cli import COMMANDS, main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv = ["run", *argv]
    sys.exit(main(argv))
