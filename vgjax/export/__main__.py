"""`python -m vgjax.export {hloc,npy} --checkpoint RUN --images DIR --out OUT ...`."""
import sys

from vgjax.export.cli import main

if __name__ == "__main__":
    sys.exit(main())
