"""lagmon's exit codes, the same for the `lagmon` command and the stage processes, and the one
way a configuration error is printed.

    0  EXIT_OK        success; a stage stopped cleanly
    1  EXIT_FAILED    a --once step failed; `lagmon status`: the data is stale
    2  EXIT_CONFIG    configuration or usage error (each error line printed on stderr)
    3  EXIT_DATABASE  the SQLite file is missing, unusable or not lagmon's
    4  EXIT_LOCKED    another copy of the stage (or another supervisord) already runs on this database
"""

from __future__ import annotations

import sys
from typing import TextIO

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_DATABASE = 3
EXIT_LOCKED = 4


def config_error(exc: Exception, stream: TextIO | None = None) -> int:
    """Print a ConfigError's lines (one problem a line) on stderr; returns EXIT_CONFIG."""
    out = stream if stream is not None else sys.stderr
    for line in getattr(exc, "errors", None) or [str(exc)]:
        print(line, file=out)
    return EXIT_CONFIG


def database_error(message: object, stream: TextIO | None = None) -> int:
    """Print ``database error: <message>`` on stderr; returns EXIT_DATABASE."""
    print(f"database error: {message}", file=stream if stream is not None else sys.stderr)
    return EXIT_DATABASE
