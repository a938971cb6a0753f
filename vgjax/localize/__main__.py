"""`python -m vgjax.localize`: the command of `vgjax.localize.cli` (see its docstring)."""

import sys

from vgjax.localize.cli import main

if __name__ == "__main__":
    sys.exit(main())
