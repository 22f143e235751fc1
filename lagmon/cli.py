"""The `lagmon` console script: check-config, run, status.

main() is thin: parse the arguments, dispatch through COMMANDS, return the exit code.
Exit codes: 0 success, 1 stale data (status), 2 usage or configuration error,
3 database error. `python -m lagmon --config PATH` is `lagmon run --config PATH`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import yaml

from lagmon import __version__, config

EXIT_OK = 0
EXIT_CONFIG = 2


def check_config(args: argparse.Namespace) -> int:
    """Validate the file; print the effective configuration (secrets masked) and any warnings."""
    from lagmon.control import load_config

    cfg = load_config(args.config)
    if cfg is None:
        return EXIT_CONFIG
    print(f"# effective configuration of {args.config} (defaults filled in, secrets masked)")
    print(yaml.safe_dump(config.masked(cfg), sort_keys=False, default_flow_style=False), end="")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """supervisord in the foreground with the three stages (exec: signals reach it)."""
    from lagmon import control

    return control.run(args.config, debug=args.debug, run_dir=args.run_dir)


def status(args: argparse.Namespace) -> int:
    """Groups and stage heartbeats from the database; exit 1 when the data is stale."""
    from lagmon import control

    return control.status(args.config)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "check-config": check_config,
    "run": run,
    "status": status,
}

_HELP = {
    "check-config": "validate the configuration and print it (secrets masked)",
    "run": "run the sampler, reporter and housekeeper",
    "status": "show the state of the stages and the groups",
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", required=True, metavar="PATH", help="YAML configuration file")
    common.add_argument("--debug", action="store_true", help="verbose logging")
    parser = argparse.ArgumentParser(prog="lagmon", description="Kafka consumer-group lag in seconds.")
    parser.add_argument("--version", action="version", version=f"lagmon {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers = {
        name: commands.add_parser(name, parents=[common], help=_HELP.get(name), description=_HELP.get(name))
        for name in COMMANDS
    }
    subparsers["run"].add_argument(
        "--run-dir",
        metavar="DIR",
        default=None,
        help="where supervisord keeps its socket, pid file and logs (default: lagmon-run/ beside the database)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage error (2), --help / --version (0)
        return exc.code if isinstance(exc.code, int) else EXIT_CONFIG
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("lagmon: error: a command is required", file=sys.stderr)
        return EXIT_CONFIG
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
