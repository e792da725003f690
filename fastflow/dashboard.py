"""``fastflow dashboard DB_DIR``: the dashboard page of a store at rest, until Ctrl-C.

The page is the one ``fastflow run --api`` serves at ``/``; here its ``/status`` comes from
the store (``_observe/at_rest.py``): executions, epochs, partitions, sizes and live keys
per step, read again whenever a partition file changes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fastflow.run import EXIT_BAD_INPUT, EXIT_INTERRUPTED

DASHBOARD_DESCRIPTION = (
    "Serve the dashboard page for the recovery store in DB_DIR (executions, epochs, "
    "partitions, sizes, live keys per step), as `fastflow run --api` serves it for a "
    "running flow; read-only, safe while a flow runs on it. Ctrl-C stops it."
)


def add_dashboard_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments of ``fastflow dashboard``."""
    from fastflow._observe.options import DEFAULT_PORT

    parser.add_argument("db_dir", metavar="DB_DIR", type=Path,
                        help="directory of the recovery partitions")
    parser.add_argument(
        "--api", metavar="[HOST:]PORT", default=str(DEFAULT_PORT),
        help=f"where to serve the page: on 127.0.0.1 unless HOST is given (default port "
        f"{DEFAULT_PORT}; 0 picks a free one)",
    )


def dashboard_command(args: argparse.Namespace, prog: str) -> int:
    """Serve the page of ``args.db_dir`` until Ctrl-C; returns the exit code."""
    from fastflow._observe.api import start_api
    from fastflow._observe.at_rest import sources
    from fastflow._observe.options import BadOption, parse_address
    from fastflow.errors import RecoveryError

    try:
        host, port = parse_address(args.api)
        served = sources(args.db_dir)
        served.status()  # a directory that is not a usable store is refused before serving
    except (BadOption, RecoveryError) as ex:
        print(f"{prog}: error: {ex}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        server = start_api(host, port, served)
    except OSError as ex:
        print(f"{prog}: error: --api: cannot listen on {host}:{port}: {ex.strerror or ex}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    host, port = server.address
    print(f"dashboard of {args.db_dir} at http://{host}:{port}/ (Ctrl-C stops it)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        server.close()
