"""`python -m vgjax.export FORMAT ...`: each format's own command, chosen by name."""
from __future__ import annotations

import sys

from vgjax import describe, export
from vgjax.export import hloc

PROG = "python -m vgjax.export"
FORMATS = {  # name -> main(argv, prog) returning the exit code
    "hloc": hloc.main,
    "npy": describe.main,
}
USAGE = f"usage: {PROG} {{{','.join(FORMATS)}}} --checkpoint RUN --images DIR --out OUT ..."


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"{USAGE}\n\n{export.__doc__}",
              file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in FORMATS:
        print(f"error: {PROG}: unknown format {name!r} (choose from "
              f"{', '.join(FORMATS)})", file=sys.stderr)
        return 2
    return FORMATS[name](rest, prog=f"{PROG} {name}")
