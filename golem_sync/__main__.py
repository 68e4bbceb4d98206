"""``python -m golem_sync <command>``: the SDK's command line.

Commands:
    doctor   check yagna, the app key, payments and the market, one line each (see :mod:`.doctor`)
    jobs     list, show, wait for, cancel and follow jobs in a job store (see :mod:`.jobs_cli`)

Each command lives in its own module, which adds its subparser (``add_parser``) and runs it
(the parser's ``func`` default); this module only dispatches.
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from . import doctor, jobs_cli

    parser = argparse.ArgumentParser(prog="python -m golem_sync",
                                     description="golem_sync's command line (the devnet has its own: "
                                                 "python -m golem_sync.devnet)")
    commands = parser.add_subparsers(dest="command", metavar="command", required=True)
    doctor.add_parser(commands)
    jobs_cli.add_parser(commands)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command, return its exit status."""
    args = _parser().parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
