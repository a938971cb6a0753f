"""The synthetic city, under its old name: `vgjax.synthetic` is the package.

    python -m vgjax.data.synthetic --out data --preset demo   # = python -m vgjax.synthetic
"""

import sys

from vgjax.synthetic import *  # noqa: F401,F403
from vgjax.synthetic import __all__, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
