"""The whole system on the current device, printed as ONE JSON object on stdout.

    python scripts/bench.py [--smoke] [--config configs/resnet18_netvlad.py] [--profile DIR]
        [--size H W] [--steps N] [--round-queries Q] [--eval-database N] ...
        [--config.section.field=value ...]

Sections of the JSON:
- `environment`: date, commit, command, Python and library versions, CPU count, JAX devices.
- `model`: model-only train step (`make_train_step`, random uint8 images, a step =
  `queries_per_step` x (2 + `negatives_per_query`) images: 48 for the reference) and inference
  (`make_describe_fn`, batches of `--infer-batch`) images/s, for NetVLAD and GeM, float32 and
  bfloat16; compile time; the step's buffers from XLA's memory analysis; the process's peak
  device memory where the device reports it (configurations run in the listed order, so the
  first one's peak is its own and later ones show the running maximum).
- `backbones`: the same model-only numbers, float32, for EfficientNet-Lite0 cut at stride 16
  (`efficientnet_lite0`, 112 channels) + NetVLAD and + GeM beside the config's backbone
  (ResNet-18-conv4 by default) + NetVLAD and + GeM, in the same run, same sizes (with
  `--smoke`, Lite0 + GeM only).
- `vit`: the same model-only numbers for DINOv2 ViT-B/14 at 322 x 322 (SALAD's evaluation
  size; the last 4 blocks train, as SALAD trains them): + SALAD in bfloat16 and float32, +
  SALAD in bfloat16 with `model.remat`, + BoQ and + `cls` in bfloat16 (with `--smoke`, a
  2-block 16-wide ViT + `cls` at 42 x 42, float32, to test the code path).
- `pipeline`: decoded images/s of a folder of JPEGs the script writes, with threads
  (`BatchLoader`) and with processes (spawn `ProcessPoolExecutor` + `load_image`) from 1 to N
  workers, total and per worker, and of its TFDS copy (`vgjax.data.tfds_builder`) with threads.
- `round`: one mining round end to end on a synthetic dataset in the standard folder format
  (`RoundContext` + `vgjax.train.rounds.run_round`, the config's miner): host decode of the
  round's images alone, cache descriptors (decode + describe), mining, train steps, whole
  round; after a first round on the same queries that compiles everything.
- `epoch`: the estimate for `--epoch-queries` queries (rounds x the measured round).
- `eval`: `vgjax.eval.evaluate` of a Pitts30k-test-sized split (10,000 database images, 6,816
  queries): host decode alone (Pillow resize, and the evaluation's own decode + resampling
  per view), descriptors (decode + describe, overlapped), search (and the backend it chose),
  total.
- `targets`: the project's GPU targets beside the measured numbers; `met` is null unless the
  run is comparable (a GPU, the reference model at 480x640, the full sizes).

`--smoke`: tiny sizes (32x48 images, width-8 ResNet, NetVLAD-8, a few dozen images, 2 steps)
and XLA compiling without backend optimisation, to test the script in the CPU test suite.
The JPEGs are a pool of distinct images hard-linked under many names (decode cost is per
file; the page cache holds them, as it does freshly written data). Logs go to stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SMOKE_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
SMOKE_SOURCE_SIZE = (48, 64)  # JPEGs larger than the model input: the resizes run too
SMOKE_OVERRIDES = [
    "--config.data.resize=(32,48)", "--config.model.resnet_width=8",
    "--config.model.netvlad_clusters=8", "--config.train.queries_per_step=2",
    "--config.train.negatives_per_query=3", "--config.train.neg_samples_num=24",
    "--config.train.infer_batch_size=8", "--config.test.batch_size=8",
    "--config.data.num_workers=2",
]
# bench sizes: (full, smoke)
SIZES = {
    "steps": (20, 2), "infer_batch": (128, 8), "round_queries": (1000, 12),
    "database": (10000, 48), "eval_database": (10000, 40), "eval_queries": (6816, 24),
    "pipeline_images": (512, 24), "jpeg_pool": (64, 4), "epoch_queries": (5000, 60),
}
MODEL_RUNS = [("netvlad", "bfloat16"), ("netvlad", "float32"), ("gem", "bfloat16"),
              ("gem", "float32")]
# other backbones measured beside the config's (float32, each aggregation of BACKBONE_HEADS)
OTHER_BACKBONES = ["efficientnet_lite0"]
BACKBONE_HEADS = ["netvlad", "gem"]
# DINOv2 rows: (backbone, aggregation, dtype, (H, W), extra overrides); smoke: a tiny ViT
VIT_RUNS = [("dinov2_vitb14", "salad", "bfloat16", (322, 322), []),
            ("dinov2_vitb14", "salad", "float32", (322, 322), []),
            ("dinov2_vitb14", "salad", "bfloat16", (322, 322), ["--config.model.remat=True"]),
            ("dinov2_vitb14", "boq", "bfloat16", (322, 322), []),
            ("dinov2_vitb14", "cls", "bfloat16", (322, 322), [])]
SMOKE_VIT_RUNS = [("dinov2_custom_d2_w16_h1_g3", "cls", "float32", (42, 42), [])]
# (name, what, target, "min" | "max"): the project's GPU targets (see docs/PERFORMANCE.md)
TARGETS = [
    ("train_img_per_s_netvlad_bf16", "ResNet-18-conv4 + NetVLAD train step, bfloat16",
     10000, "min"),
    ("infer_img_per_s_netvlad_bf16", "same, inference", 15000, "min"),
    ("train_img_per_s_gem_bf16", "ResNet-18-conv4 + GeM train step, bfloat16", 10000, "min"),
    ("train_step_peak_memory_gib_netvlad_bf16", "peak device memory, NetVLAD train step",
     4.0, "max"),
    ("mining_s", "mining of a round of 1000 queries", 0.2, "max"),
    ("round_s", "whole round of 1000 queries", 5.0, "max"),
    ("epoch_s", "epoch of 5000 queries", 25.0, "max"),
    ("eval_s", "evaluation of a Pitts30k-test-sized set", 4.0, "max"),
]

log = logging.getLogger("bench")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for the test suite")
    p.add_argument("--config", default=str(REPO / "configs" / "resnet18_netvlad.py"),
                   help="the NetVLAD config; GeM runs it with model.aggregation=gem")
    p.add_argument("--profile", default="", help="write a jax.profiler trace of train steps")
    p.add_argument("--size", type=int, nargs=2, default=None, help="H W (default data.resize)")
    p.add_argument("--source-size", type=int, nargs=2, default=None,
                   help="H W of the JPEGs written (default: the model size; 48x64 with --smoke)")
    for name, (full, smoke) in SIZES.items():
        p.add_argument("--" + name.replace("_", "-"), type=int, default=None,
                       help=f"default {full} ({smoke} with --smoke)")
    p.add_argument("--workers", default="",
                   help="comma-separated decode worker counts (default 1, 2, 4, .. CPU count)")
    p.add_argument("--skip", default="", help="comma-separated sections not to run "
                   "(model, backbones, vit, pipeline, tfds, round, eval): their fields are "
                   "null")
    p.add_argument("--workdir", default="", help="where to write the images (default: temp)")
    return p.parse_args(argv)


# Environment -----------------------------------------------------------------------------------

def _version(module: str):
    try:
        mod = __import__(module)
    except Exception:  # noqa: BLE001 (a missing or broken optional package)
        return None
    return str(getattr(mod, "__version__", "unknown"))


def _git(*args) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(argv) -> dict:
    import jax
    devices = jax.devices()
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "tracked_files_modified": None if status is None else bool(status),
        "command": " ".join(["python", "scripts/bench.py", *argv]),
        "python": platform.python_version(),
        "jax": jax.__version__, "jaxlib": _version("jaxlib"), "flax": _version("flax"),
        "optax": _version("optax"), "numpy": _version("numpy"), "faiss": _version("faiss"),
        "pillow": _version("PIL"),
        "tensorflow_datasets": _version("tensorflow_datasets"),
        "platform": platform.platform(), "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "device_kind": getattr(devices[0], "device_kind", str(devices[0])),
        "device_count": len(devices), "process_count": jax.process_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_average_1m_start": _load_average(),
    }


def _load_average():
    """The 1-minute load average (other processes sharing the CPUs), None where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


# Model-only throughput -------------------------------------------------------------------------

def _peak_gib():
    import jax
    try:
        stats = jax.local_devices()[0].memory_stats()
    except Exception:  # noqa: BLE001
        stats = None
    if not stats or "peak_bytes_in_use" not in stats:
        return None  # the CPU reports no device memory
    return round(stats["peak_bytes_in_use"] / 2**30, 3)


def _throughput(fn, calls: int) -> float:
    """Seconds per call of `fn` (which returns something to block on), `calls` calls back
    to back after two warm-up calls, blocking only at the end (what a training loop sees)."""
    import jax
    jax.block_until_ready(fn())
    jax.block_until_ready(fn())
    start = time.perf_counter()
    out = None
    for _ in range(calls):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / calls


@dataclasses.dataclass
class ModelKit:
    """What the round and the evaluation reuse of one model benchmark (no recompiling)."""
    cfg: object
    net: object
    variables: dict
    tx: object
    train_step: object   # the compiled train step
    describe: object     # jitted (variables, images) -> descriptors
    mesh: object


def model_config(args, overrides, aggregation: str, dtype: str):
    from vgjax.cli.config import load_config
    extra = [f"--config.model.aggregation={aggregation}", f"--config.model.dtype={dtype}"]
    if aggregation != "netvlad":
        extra.append("--config.model.netvlad_init.enabled=False")
    return load_config(args.config, [*overrides, *extra])


def bench_model(cfg, steps: int, infer_batch: int, variables=None, profile_dir: str = ""):
    """(JSON row, ModelKit) of one configuration."""
    import jax
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P

    from vgjax.models.backbones import parse_backbone
    from vgjax.models.network import (build_network, init_variables, make_describe_fn,
                                      network_info, trainable_mask)
    from vgjax.train import optim
    from vgjax.train.losses import make_term
    from vgjax.train.state import TrainState
    from vgjax.train.step import make_mesh, make_train_step

    t, size = cfg.train, tuple(int(s) for s in cfg.data.resize)
    mesh = make_mesh(int(t.num_devices))
    net = build_network(cfg.model)
    if variables is None:
        variables = init_variables(cfg.model, int(cfg.seed), size)
    tx = optim.make_optimizer(t, trainable_mask(variables["params"], cfg.model))
    step = make_train_step(net, tx, [make_term(t.loss, dict(t.loss_args))],
                           int(t.negatives_per_query), mesh)
    replicated, batch = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    state = jax.device_put(jax.tree.map(np.asarray, TrainState.create(variables, tx)),
                           replicated)
    n_train = int(t.queries_per_step) * (2 + int(t.negatives_per_query))
    rng = np.random.default_rng(0)
    images = jax.device_put(rng.integers(0, 256, (n_train, *size, 3), dtype=np.uint8), batch)
    start = time.perf_counter()
    compiled = step.lower(state, images).compile()
    compile_s = time.perf_counter() - start
    memory = compiled.memory_analysis()
    step_bytes = None
    if memory is not None:
        step_bytes = (memory.argument_size_in_bytes + memory.output_size_in_bytes
                      - memory.alias_size_in_bytes + memory.temp_size_in_bytes)
    box = {"state": state}

    def train_once():
        box["state"], metrics = compiled(box["state"], images)
        return metrics["loss"]

    train_s = _throughput(train_once, steps)
    if profile_dir:
        import jax.profiler
        with jax.profiler.trace(profile_dir):
            for _ in range(3):
                loss = train_once()
            jax.block_until_ready(loss)
    describe = make_describe_fn(net)
    infer_images = jax.device_put(rng.integers(0, 256, (infer_batch, *size, 3), np.uint8))
    start = time.perf_counter()
    jax.block_until_ready(describe(variables, infer_images))
    infer_compile_s = time.perf_counter() - start
    infer_s = _throughput(lambda: describe(variables, infer_images), steps)
    info = network_info(cfg.model, size)
    row = {
        "aggregation": cfg.model.aggregation, "dtype": cfg.model.dtype,
        "backbone": cfg.model.backbone,
        "resnet_width": (int(cfg.model.resnet_width)
                         if parse_backbone(cfg.model.backbone).uses_width else None),
        "size": list(size), "descriptor_dim": info["descriptor_dim"],
        "gflops_per_image": round(info["gflops_per_image"], 4),
        "train_images_per_step": n_train, "train_compile_s": round(compile_s, 2),
        "train_step_ms": round(train_s * 1e3, 3),
        "train_img_per_s": round(n_train / train_s, 1),
        "train_step_buffers_gib": None if step_bytes is None else round(step_bytes / 2**30, 4),
        "infer_batch": infer_batch, "infer_compile_s": round(infer_compile_s, 2),
        "infer_ms": round(infer_s * 1e3, 3), "infer_img_per_s": round(infer_batch / infer_s, 1),
        "peak_device_memory_gib": _peak_gib(),
    }
    return row, ModelKit(cfg, net, variables, tx, compiled, describe, mesh)


def bench_backbones(args, overrides, sizes, model_rows) -> list[dict]:
    """float32 rows of the config's backbone (from the model section, measured here if it
    was skipped) and of OTHER_BACKBONES, with each of BACKBONE_HEADS (with --smoke the other
    backbones with GeM only: their train-step compile is most of the smoke run)."""
    rows = []
    for agg in BACKBONE_HEADS:
        row = next((r for r in model_rows
                    if (r["aggregation"], r["dtype"]) == (agg, "float32")), None)
        if row is None:
            log.info("backbones: config's backbone, %s float32", agg)
            row, _ = bench_model(model_config(args, overrides, agg, "float32"), sizes["steps"],
                                 sizes["infer_batch"])
        rows.append(row)
    for backbone in OTHER_BACKBONES:
        for agg in (["gem"] if args.smoke else BACKBONE_HEADS):
            log.info("backbones: %s, %s float32", backbone, agg)
            cfg = model_config(args, [*overrides, f"--config.model.backbone={backbone}"], agg,
                               "float32")
            rows.append(bench_model(cfg, sizes["steps"], sizes["infer_batch"])[0])
    return rows


# Synthetic data ----------------------------------------------------------------------------------

def bench_vit(args, overrides, sizes) -> list[dict]:
    """Rows of VIT_RUNS (SMOKE_VIT_RUNS with --smoke), each with `remat` added."""
    rows = []
    for backbone, agg, dtype, (h, w), extra in (SMOKE_VIT_RUNS if args.smoke else VIT_RUNS):
        log.info("vit: %s + %s %s %dx%d %s", backbone, agg, dtype, h, w, " ".join(extra))
        cfg = model_config(args, [*overrides, f"--config.model.backbone={backbone}",
                                  f"--config.data.resize=({h},{w})",
                                  "--config.model.trainable_from=auto", *extra], agg, dtype)
        row = bench_model(cfg, sizes["steps"], sizes["infer_batch"])[0]
        rows.append({**row, "remat": bool(cfg.model.remat)})
    return rows


def jpeg_pool(n: int, size, seed: int = 0) -> list[bytes]:
    """Smooth random colour fields with facade-like edges (JPEG sizes close to street photos:
    ~110 KB at 480x640), encoded at quality 90."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = size
    out = []
    for _ in range(n):
        coarse = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        arr = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC)).copy()
        arr[:, :: max(1, w // 40)] //= 2
        arr = np.clip(arr.astype(np.int16) + rng.integers(-12, 13, arr.shape), 0, 255)
        buf = io.BytesIO()
        Image.fromarray(arr.astype(np.uint8)).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


class ImageWriter:
    """Writes the pool once; every dataset file is a hard link to a pool file (a copy where
    the file system refuses links)."""

    def __init__(self, folder: Path, pool: list[bytes]):
        folder.mkdir(parents=True, exist_ok=True)
        self.files = []
        for i, data in enumerate(pool):
            path = folder / f"pool_{i}.jpg"
            path.write_bytes(data)
            self.files.append(path)
        self.count = 0

    def write(self, path: Path) -> None:
        src = self.files[self.count % len(self.files)]
        self.count += 1
        try:
            os.link(src, path)
        except OSError:
            path.write_bytes(src.read_bytes())

    @property
    def mean_kb(self) -> float:
        return sum(f.stat().st_size for f in self.files) / len(self.files) / 1024


def write_split(writer: ImageWriter, dataset_dir: Path, split: str, n_db: int, n_q: int,
                spacing: float = 4.0, east0: float = 500000.0) -> None:
    """Database images every `spacing` m on a line; queries 1 m along and 3 m beside
    database images spread over it: ~5 database images within 10 m of each query (hard
    positives), ~12 within 25 m (soft)."""
    from vgjax.data.format import make_filename
    base = dataset_dir / "images" / split
    for role in ("database", "queries"):
        (base / role).mkdir(parents=True, exist_ok=True)
    for i in range(n_db):
        writer.write(base / "database" / make_filename(east0 + i * spacing, 4100000.0, ".jpg",
                                                       pano_id=f"d{i}"))
    for j in range(n_q):
        i = j * n_db // max(n_q, 1)
        writer.write(base / "queries" / make_filename(east0 + i * spacing + 1.0, 4100003.0,
                                                      ".jpg", pano_id=f"q{j}", note="day"))


def decode_all(paths, size, workers: int, batch: int, load_fn=None) -> float:
    """Seconds to decode `paths` to `size` with `BatchLoader` (host only)."""
    from vgjax.data.pipeline import BatchLoader
    start = time.perf_counter()
    for _ in BatchLoader(list(paths), size, batch, num_workers=workers, prefetch=2,
                         load_fn=load_fn):
        pass
    return time.perf_counter() - start


# Input pipeline ----------------------------------------------------------------------------------

def _rate(n: int, seconds: float, workers: int) -> dict:
    return {"workers": workers, "img_per_s": round(n / seconds, 1),
            "img_per_s_per_worker": round(n / seconds / workers, 1)}


def bench_threads(paths, size, workers_list, batch: int, repeats: int, load_fn=None):
    rows = []
    for w in workers_list:
        best = min(decode_all(paths, size, w, batch, load_fn) for _ in range(repeats))
        rows.append(_rate(len(paths), best, w))
    return rows


def bench_processes(paths, size, workers_list, repeats: int):
    """Decoding with `load_image` in spawned worker processes (arrays sent back pickled)."""
    import concurrent.futures as cf
    import functools
    import multiprocessing

    from vgjax.data.pipeline import load_image

    fn = functools.partial(load_image, size=tuple(size))
    ctx = multiprocessing.get_context("spawn")
    rows = []
    for w in workers_list:
        with cf.ProcessPoolExecutor(w, mp_context=ctx) as pool:
            list(pool.map(fn, paths[:w]))  # start the workers (imports) before timing
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                for _ in pool.map(fn, paths, chunksize=max(1, len(paths) // (8 * w))):
                    pass
                best = min(best, time.perf_counter() - start)
        rows.append(_rate(len(paths), best, w))
    return rows


def bench_pipeline(writer_dir: Path, pool, n: int, size, workers_list, batch: int,
                   smoke: bool, skip_tfds: bool) -> dict:
    from vgjax.data.format import list_images
    writer = ImageWriter(writer_dir / "pool_pipeline", pool)
    dataset = writer_dir / "bench_pipeline"
    write_split(writer, dataset, "test", n, 4)
    paths = list_images(dataset / "images" / "test" / "database")
    repeats = 1 if smoke else 2
    out = {"images": len(paths), "size": list(size), "mean_jpeg_kb": round(writer.mean_kb, 1),
           "folder_threads": bench_threads(paths, size, workers_list, batch, repeats),
           "folder_processes": bench_processes(paths, size, workers_list, repeats),
           "tfds_threads": None, "tfds_build_s": None, "tfds_error": None}
    if skip_tfds:
        out["tfds_error"] = "skipped (--skip tfds)"
        return out
    try:
        from vgjax.data import tfds_builder
        start = time.perf_counter()
        tfds_builder.build(dataset, writer_dir / "tfds")
        out["tfds_build_s"] = round(time.perf_counter() - start, 2)
        split, images = tfds_builder.load_split_tfds(writer_dir / "tfds", dataset.name, "test")
        out["tfds_threads"] = bench_threads(list(split.database.paths), size, workers_list,
                                            batch, repeats, load_fn=images.loader(tuple(size)))
    except ImportError as e:  # tensorflow-datasets not installed
        out["tfds_error"] = f"{type(e).__name__}: {e}"
    return out


# One mining round --------------------------------------------------------------------------------

def bench_round(kit: ModelKit, dataset: Path, round_queries: int, workdir: Path) -> dict:
    import jax
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P

    from vgjax.data.dataset import load_split
    from vgjax.data.ops import train_query
    from vgjax.data.sources import FOLDER_READER, with_view
    from vgjax.train import mining, rounds
    from vgjax.train.run_dir import MetricsWriter
    from vgjax.train.state import Progress, TrainState, round_rng

    cfg, t = kit.cfg, kit.cfg.train
    size = tuple(int(s) for s in cfg.data.resize)
    train = load_split(dataset, "train", cfg.data.soft_positives_dist,
                       cfg.data.hard_positives_dist)
    reader = FOLDER_READER.with_draft(bool(cfg.data.get("jpeg_draft", False)))
    if cfg.data.get("train_query_crop", True):
        reader = with_view(reader, train.queries.paths, train_query)
    metrics = MetricsWriter(workdir / "metrics.jsonl", enabled=False)
    fields = {
        "train": train, "reader": reader, "tables": mining.MiningTables.from_split(train),
        "mining": t.mining, "describe": kit.describe, "train_step": kit.train_step,
        "mesh": kit.mesh, "metrics": metrics, "size": size, "seed": int(cfg.seed),
        "queries_per_step": int(t.queries_per_step),
        "negatives_per_query": int(t.negatives_per_query),
        "neg_samples_num": int(t.neg_samples_num), "infer_batch_size": int(t.infer_batch_size),
        "num_workers": int(cfg.data.num_workers), "prefetch": int(cfg.data.prefetch)}
    for f in dataclasses.fields(rounds.RoundContext):  # optional fields (e.g. a target set)
        fields.setdefault(f.name, None)
    ctx = rounds.RoundContext(**fields)
    replicated = NamedSharding(kit.mesh, P())
    state = jax.device_put(jax.tree.map(np.asarray, TrainState.create(kit.variables, kit.tx)),
                           replicated)
    queries = np.arange(min(round_queries, len(train.queries)))
    negative_cache = (np.full((len(train.queries), int(t.negatives_per_query)), -1, np.int32)
                      if mining.get_miner(t.mining).remembers_negatives else None)
    times: dict = {}
    original = rounds.mine_round

    def timed_mine_round(*a, **kw):  # run_round's own split of cache and mining time
        out = original(*a, **kw)
        times.update(out[2], positives=out[0], negatives=out[1])
        return out

    rounds.mine_round = timed_mine_round
    try:
        start = time.perf_counter()
        result = rounds.run_round(ctx, state, Progress(), queries, negative_cache)
        first_s = time.perf_counter() - start
        first = dict(times)
        start = time.perf_counter()
        result = rounds.run_round(ctx, result.state, Progress(), queries, negative_cache)
        jax.block_until_ready(result.state.step)
        round_s = time.perf_counter() - start
    finally:
        rounds.mine_round = original
    # The images the round reads, decoded on the host alone (what caching decoded images
    # would save): its cache (queries + database rows) and its train steps' groups.
    plan = mining.plan_round(t.mining, ctx.tables, queries, round_rng(int(cfg.seed), 0, 0),
                             ctx.neg_samples_num)
    cache_paths = np.concatenate([train.queries.paths[queries],
                                  train.database.paths[plan.cache_db_ids[:plan.num_cache]]])
    load = reader.loader(size)
    decode_s = decode_all(cache_paths, size, ctx.num_workers, ctx.infer_batch_size, load)
    b = ctx.queries_per_step
    steps = len(queries) // b
    step_images = b * (2 + ctx.negatives_per_query)
    positives, negatives = times["positives"], times["negatives"]
    groups = np.concatenate([train.queries.paths[queries][:, None],
                             train.database.paths[positives][:, None],
                             train.database.paths[negatives]], axis=1)[:steps * b]
    steps_decode_s = decode_all(groups.reshape(-1), size, ctx.num_workers, step_images, load)
    train_s = round_s - times["cache_s"] - times["mining_s"]
    return {
        "mining": t.mining, "queries": len(queries), "database": len(train.database),
        "cache_images": int(times["cache_images"]), "train_steps": steps,
        "train_images": steps * step_images,
        "first_round_s": round(first_s, 2),
        "first_round_cache_s": round(first["cache_s"], 2),
        "decode_cache_images_s": round(decode_s, 3),
        "decode_train_images_s": round(steps_decode_s, 3),
        "cache_descriptors_s": round(times["cache_s"], 3),
        "mining_s": round(times["mining_s"], 4),
        "train_steps_s": round(train_s, 3),
        "train_img_per_s": round(steps * step_images / max(train_s, 1e-9), 1),
        "round_s": round(round_s, 3),
        "loss_finite": result.bad_step is None,
    }


# Evaluation ------------------------------------------------------------------------------------

def bench_eval(kit: ModelKit, dataset: Path) -> dict:
    import ml_collections
    import numpy as np

    from vgjax.data.dataset import Index, load_split
    from vgjax.data.ops import resampling
    from vgjax.data.sources import FOLDER_READER
    from vgjax.eval.evaluate import evaluate
    from vgjax.eval.extract import Describer
    from vgjax.eval.methods import ViewPlan
    from vgjax.eval.search import choose_backend, exact_search

    cfg = kit.cfg
    test_cfg = ml_collections.ConfigDict(cfg.test.to_dict())
    test_cfg.save_predictions = False
    test_cfg.num_pictures = 0
    split = load_split(dataset, "test", cfg.data.soft_positives_dist,
                       cfg.data.hard_positives_dist)
    describer = Describer(kit.describe, kit.variables)
    # Warm-up: describe at the evaluation's batch and dtypes (a small split), and the search
    # at the full shapes (zeros), so the timed run compiles nothing.
    b = int(test_cfg.batch_size)
    small = dataclasses.replace(
        split, database=Index(split.database.paths[:b], split.database.utm[:b]),
        queries=Index(split.queries.paths[:b], split.queries.utm[:b]))
    evaluate(small, describer, test_cfg, cfg.data)
    dim = int(np.asarray(describer(np.zeros((b, *cfg.data.resize, 3), np.uint8))).shape[1])
    k = max(int(v) for v in test_cfg.recall_values)
    if test_cfg.index == "flat":
        exact_search(_zeros_store(len(split.database), dim), np.zeros((len(split.queries), dim),
                                                                    np.float32), k,
                     chunk_bytes=int(float(test_cfg.search_chunk_mb) * 2**20))
    result = evaluate(split, describer, test_cfg, cfg.data)
    size = tuple(int(s) for s in cfg.data.resize)
    paths = np.concatenate([split.database.paths, split.queries.paths])
    workers = int(cfg.data.num_workers)
    decode_s = decode_all(paths, size, workers, b, FOLDER_READER.loader(size))
    # the evaluation's own host path: decode + its resampling (data.eval_resize) per view
    views_s = 0.0
    for role, plan in (("database", ViewPlan.for_database), ("queries", ViewPlan.for_queries)):
        plan = plan(test_cfg, size, FOLDER_READER, resampling(cfg.data, test_cfg))
        if plan.fixed_shapes and len(plan.view_shapes()) == 1:
            views_s += decode_all(getattr(split, role).paths, plan.view_shapes()[0], workers,
                                  b, lambda path, plan=plan: plan.load_views(path)[0])
        else:
            views_s = None  # several views per image: not timed here
            break
    backend = (choose_backend(len(split.database), dim, len(split.queries),
                              int(float(test_cfg.search_chunk_mb) * 2**20))
               if test_cfg.index == "flat" else ("faiss-ivfpq", "test.index=ivfpq"))
    tm = result.timings
    return {
        "database": len(split.database), "queries": len(split.queries),
        "descriptor_dim": result.descriptor_dim, "method": test_cfg.method,
        "decode_s": round(decode_s, 3),
        "eval_views_decode_s": None if views_s is None else round(views_s, 3),
        "database_descriptors_s": round(tm["database_s"], 3),
        "query_descriptors_s": round(tm["queries_s"], 3),
        "descriptors_s": round(tm["database_s"] + tm["queries_s"], 3),
        "descriptors_img_per_s": round((len(split.database) + len(split.queries))
                                       / max(tm["database_s"] + tm["queries_s"], 1e-9), 1),
        "search_s": round(tm["search_s"], 4), "search_backend": backend[0],
        "search_backend_reason": backend[1], "total_s": round(tm["total_s"], 3),
    }


def _zeros_store(n: int, dim: int):
    import numpy as np

    from vgjax.eval.store import DescriptorStore
    store = DescriptorStore((n, dim), np.float32)
    store.write(0, np.zeros((n, dim), np.float32))
    return store


# Targets ---------------------------------------------------------------------------------------

def target_rows(out: dict, comparable: bool) -> list[dict]:
    model = {f"{r['aggregation']}_{'bf16' if r['dtype'] == 'bfloat16' else 'f32'}": r
             for r in (out["model"] or [])}
    nv, gem = model.get("netvlad_bf16", {}), model.get("gem_bf16", {})
    rnd, ev, ep = out["round"] or {}, out["eval"] or {}, out["epoch"] or {}
    measured = {
        "train_img_per_s_netvlad_bf16": nv.get("train_img_per_s"),
        "infer_img_per_s_netvlad_bf16": nv.get("infer_img_per_s"),
        "train_img_per_s_gem_bf16": gem.get("train_img_per_s"),
        "train_step_peak_memory_gib_netvlad_bf16": nv.get("peak_device_memory_gib"),
        "mining_s": rnd.get("mining_s"), "round_s": rnd.get("round_s"),
        "epoch_s": ep.get("estimate_s"), "eval_s": ev.get("total_s"),
    }
    rows = []
    for name, what, target, kind in TARGETS:
        value = measured[name]
        met = None
        if comparable and value is not None:
            met = bool(value >= target) if kind == "min" else bool(value <= target)
        rows.append({"name": name, "what": what, "target": target,
                     "kind": "at least" if kind == "min" else "at most", "measured": value,
                     "met": met})
    return rows


# Main ------------------------------------------------------------------------------------------

def _workers_list(text: str, smoke: bool) -> list[int]:
    if text:
        return [int(w) for w in text.split(",")]
    n = os.cpu_count() or 1
    if smoke:
        return sorted({1, min(2, n)})
    out, w = [], 1
    while w < n:
        out.append(w)
        w *= 2
    return out + [n]


def run(args, overrides, argv) -> dict:
    import numpy as np  # noqa: F401  (imported before the timings)

    from vgjax import quiet_library_logs

    quiet_library_logs()
    mode = 1 if args.smoke else 0
    sizes = {k: (getattr(args, k) if getattr(args, k) is not None else v[mode])
             for k, v in SIZES.items()}
    if args.smoke:
        overrides = [*SMOKE_OVERRIDES, *overrides]
    if args.size:
        overrides = [*overrides, f"--config.data.resize=({args.size[0]},{args.size[1]})"]
    skip = {s for s in args.skip.split(",") if s}
    out: dict = {"benchmark": "vgjax", "mode": "smoke" if args.smoke else "full",
                 "environment": environment(argv), "sizes": sizes, "model": None,
                 "backbones": None, "vit": None, "pipeline": None, "round": None,
                 "epoch": None,
                 "eval": None}
    from vgjax.cli.config import load_config
    base = load_config(args.config, overrides)
    size = tuple(int(s) for s in base.data.resize)
    out["config"] = {"file": os.path.relpath(args.config, REPO) if os.path.isabs(args.config)
                     else args.config, "overrides": overrides,
                     "backbone": base.model.backbone, "resnet_width": int(base.model.resnet_width),
                     "netvlad_clusters": int(base.model.netvlad_clusters), "size": list(size),
                     "queries_per_step": int(base.train.queries_per_step),
                     "negatives_per_query": int(base.train.negatives_per_query),
                     "mining": base.train.mining, "round_dtype": base.model.dtype}
    round_key = ("netvlad", out["config"]["round_dtype"])

    # model benchmarks (the round and the evaluation reuse the compiled NetVLAD one)
    kit = None
    rows = []
    variables = {}
    needs_kit = not {"round", "eval"} <= skip  # the NetVLAD model they reuse
    for agg, dtype in MODEL_RUNS:
        if "model" in skip and ((agg, dtype) != round_key or not needs_kit):
            continue
        cfg = model_config(args, overrides, agg, dtype)
        log.info("model: %s %s %s", agg, dtype, size)
        row, k = bench_model(cfg, sizes["steps"], sizes["infer_batch"], variables.get(agg),
                             args.profile if (agg, dtype) == MODEL_RUNS[0] else "")
        variables[agg] = k.variables
        if (agg, dtype) == round_key:
            kit = k
        if "model" not in skip:
            rows.append(row)
    out["model"] = rows or None
    _section_done("model", out["model"])
    if "backbones" not in skip:
        out["backbones"] = bench_backbones(args, overrides, sizes, rows)
        _section_done("backbones", out["backbones"])
    if "vit" not in skip:
        out["vit"] = bench_vit(args, overrides, sizes)
        _section_done("vit", out["vit"])

    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="vgjax_bench_")
    workdir = Path(args.workdir or tmp.name)
    try:
        source = (tuple(args.source_size) if args.source_size
                  else SMOKE_SOURCE_SIZE if args.smoke else size)
        log.info("writing %d distinct %dx%d JPEGs", sizes["jpeg_pool"], *source)
        pool = jpeg_pool(sizes["jpeg_pool"], source)
        workers = _workers_list(args.workers, args.smoke)
        if "pipeline" not in skip:
            log.info("pipeline: %d images, workers %s", sizes["pipeline_images"], workers)
            out["pipeline"] = bench_pipeline(workdir, pool, sizes["pipeline_images"], size,
                                             workers, 32 if not args.smoke else 8, args.smoke,
                                             "tfds" in skip)
            _section_done("pipeline", out["pipeline"])
        writer = ImageWriter(workdir / "pool", pool)
        dataset = workdir / "bench_city"
        if "round" not in skip:
            write_split(writer, dataset, "train", sizes["database"], sizes["round_queries"])
            log.info("round: %d queries, %d database images", sizes["round_queries"],
                     sizes["database"])
            out["round"] = bench_round(kit, dataset, sizes["round_queries"], workdir)
            _section_done("round", out["round"])
            rounds_per_epoch = -(-sizes["epoch_queries"] // out["round"]["queries"])
            out["epoch"] = {"queries": sizes["epoch_queries"], "rounds": rounds_per_epoch,
                            "estimate_s": round(rounds_per_epoch * out["round"]["round_s"], 2),
                            "note": "rounds x the measured round; validation not included"}
        if "eval" not in skip:
            write_split(writer, dataset, "test", sizes["eval_database"], sizes["eval_queries"],
                        east0=600000.0)
            log.info("eval: %d database, %d queries", sizes["eval_database"],
                     sizes["eval_queries"])
            out["eval"] = bench_eval(kit, dataset)
            _section_done("eval", out["eval"])
    finally:
        if tmp is not None:
            tmp.cleanup()
    if args.profile:
        out["profile_dir"] = args.profile
    full = all(sizes[k] == SIZES[k][0] for k in ("round_queries", "eval_database",
                                                  "eval_queries"))
    comparable = (not args.smoke and full and size == (480, 640)
                  and int(base.model.resnet_width) == 64 and base.model.backbone ==
                  "resnet18conv4" and int(base.model.netvlad_clusters) == 64
                  and out["environment"]["jax_backend"] != "cpu")
    out["environment"]["load_average_1m_end"] = _load_average()
    out["targets_comparable"] = comparable
    out["targets"] = target_rows(out, comparable)
    return out


def _section_done(name: str, value) -> None:
    """Logs a finished section's numbers at once, so a run stopped later keeps them."""
    log.info("section %s: %s", name, json.dumps(value, default=str))


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from vgjax.config import split_argv
    overrides, rest = split_argv(argv)
    args = parse_args(rest)
    if args.smoke and "jax" not in sys.modules and "XLA_FLAGS" not in os.environ:
        os.environ["XLA_FLAGS"] = SMOKE_XLA_FLAGS  # faster compiles; smoke numbers mean nothing
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # only the JSON goes to stdout
        result = run(args, overrides, argv)
    print(json.dumps(result, indent=1), file=stdout, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
