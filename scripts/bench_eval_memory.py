"""Memory of evaluation search on a large database streamed to disk.

Generates an (N, D) random float32 database chunk by chunk into a .npy descriptor store,
takes Q queries as noisy copies of known database rows, runs the evaluation search
(`vgjax.eval.search.search`) and prints JSON: peak resident memory (getrusage) above the
baseline after imports, compared with the size of the full matrix, and timings.

    python scripts/bench_eval_memory.py [--n-db 100000] [--dim 4096] [--queries 1000]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import ml_collections
import numpy as np

from vgjax.eval.store import DescriptorStore
from vgjax.eval.search import search, search_backend


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-db", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=4096)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--chunk-rows", type=int, default=10_000, help="rows generated at a time")
    p.add_argument("--search-chunk-mb", type=float, default=256.0)
    p.add_argument("--float16", action="store_true", help="store descriptors as float16")
    p.add_argument("--index", default="flat", choices=["flat", "ivfpq"])
    p.add_argument("--dir", default="", help="where to write the store (default: a temp dir)")
    args = p.parse_args(argv)
    if args.queries > args.n_db:
        p.error("--queries must not exceed --n-db")

    try:
        import faiss  # noqa: F401  (library memory belongs to the baseline, not the data)
    except ImportError:
        pass
    baseline = current_rss_mb()
    dtype = np.float16 if args.float16 else np.float32
    tmp = tempfile.TemporaryDirectory(prefix="vgjax_bench_") if not args.dir else None
    folder = Path(args.dir or tmp.name)
    rng = np.random.default_rng(0)
    targets = np.sort(rng.choice(args.n_db, args.queries, replace=False))
    queries = np.empty((args.queries, args.dim), np.float32)

    t0 = time.perf_counter()
    db = DescriptorStore((args.n_db, args.dim), dtype, folder / "database.npy")
    for start in range(0, args.n_db, args.chunk_rows):
        stop = min(start + args.chunk_rows, args.n_db)
        block = np.random.default_rng(start).standard_normal((stop - start, args.dim),
                                                             dtype=np.float32)
        db.write(start, block)
        inside = (targets >= start) & (targets < stop)
        queries[inside] = block[targets[inside] - start]
        del block
    write_s = time.perf_counter() - t0
    queries += 0.1 * rng.standard_normal(queries.shape, dtype=np.float32)
    after_write = peak_rss_mb()

    test_cfg = ml_collections.ConfigDict({"index": args.index, "ivfpq_nlist": 1024,
                                          "ivfpq_m": 64, "ivfpq_nprobe": 16})
    t0 = time.perf_counter()
    _, idx = search(db, queries, args.k, test_cfg,
                    chunk_bytes=int(args.search_chunk_mb * 2**20))
    search_s = time.perf_counter() - t0
    db.close()
    if tmp is not None:
        tmp.cleanup()

    full_mb = args.n_db * args.dim * 4 / 2**20
    peak = peak_rss_mb()
    result = {
        "device": f"CPU {platform.processor() or platform.machine()} x{os.cpu_count()}",
        "backend": search_backend() if args.index == "flat" else "faiss ivfpq",
        "n_db": args.n_db, "dim": args.dim, "queries": args.queries, "k": args.k,
        "store_dtype": np.dtype(dtype).name, "search_chunk_mb": args.search_chunk_mb,
        "full_matrix_mb": round(full_mb, 1),
        "baseline_rss_mb": round(baseline, 1),
        "peak_rss_after_write_mb": round(after_write, 1),
        "peak_rss_mb": round(peak, 1),
        "peak_extra_mb": round(peak - baseline, 1),
        "peak_extra_fraction_of_matrix": round((peak - baseline) / full_mb, 3),
        "write_s": round(write_s, 2), "search_s": round(search_s, 2),
        "top1_is_source_row": float((idx[:, 0] == targets).mean()),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
