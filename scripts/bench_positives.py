"""Time of the soft/hard positive search (k-d tree) on a large random database (JSON).

    python scripts/bench_positives.py [--database 1000000] [--queries 10000]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from vgjax.data.positives import positives_within


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--extent", type=float, default=20_000.0, help="square side, metres")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    db = rng.uniform(0, args.extent, (args.database, 2)) + [585000.0, 4477000.0]
    q = rng.uniform(0, args.extent, (args.queries, 2)) + [585000.0, 4477000.0]
    out = {"benchmark": "positives", "cpu_count": os.cpu_count(), "database": args.database,
           "queries": args.queries, "extent_m": args.extent}
    for radius in (10.0, 25.0):
        start = time.perf_counter()
        found = positives_within(db, q, radius)
        out[f"seconds_{radius:g}m"] = round(time.perf_counter() - start, 3)
        out[f"mean_positives_{radius:g}m"] = round(float(np.mean([len(f) for f in found])), 2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
