"""`python -m vgjax.synthetic --out DIR [--preset tiny|demo|full] [--seed 0] [--workers N]`."""

import sys

from vgjax.synthetic.cli import main

if __name__ == "__main__":
    sys.exit(main())
