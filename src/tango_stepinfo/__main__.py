"""``python -m tango_stepinfo`` and the ``tango-stepinfo`` command: the same program.

The commands live in :mod:`tango_stepinfo._cli`; this module only starts them.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

__all__ = ["main", "run"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line and return its exit status instead of exiting.

    :param argv: the arguments without the program name; ``sys.argv[1:]`` by default.
    :returns: 0 on success, 1 when ``diff`` finds a difference or ``check`` a bad file, 2 for
        usage errors and for input that cannot be read or decoded.
    """
    from ._cli import main as cli_main

    return cli_main(argv)


def run() -> None:
    """Run the command line and exit with its status (the ``tango-stepinfo`` entry point)."""
    sys.exit(main())


if __name__ == "__main__":
    run()
