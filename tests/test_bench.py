"""scripts/bench.py --smoke prints one JSON object with every section, filled with numbers."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

NUMBER = (int, float)
MODEL_FIELDS = ["train_images_per_step", "train_compile_s", "train_step_ms", "train_img_per_s",
                "train_step_buffers_gib", "infer_batch", "infer_compile_s", "infer_ms",
                "infer_img_per_s", "descriptor_dim", "gflops_per_image"]
RATE_FIELDS = ["workers", "img_per_s", "img_per_s_per_worker"]
ROUND_FIELDS = ["queries", "database", "cache_images", "train_steps", "train_images",
                "first_round_s", "first_round_cache_s", "decode_cache_images_s",
                "decode_train_images_s", "cache_descriptors_s", "mining_s", "train_steps_s",
                "train_img_per_s", "round_s"]
EVAL_FIELDS = ["database", "queries", "descriptor_dim", "decode_s", "database_descriptors_s",
               "query_descriptors_s", "descriptors_s", "descriptors_img_per_s", "search_s",
               "total_s", "eval_views_decode_s"]
ENV_FIELDS = ["date", "commit", "command", "python", "jax", "jaxlib", "flax", "optax", "numpy",
              "faiss", "platform", "cpu", "cpu_count", "jax_backend", "device_kind",
              "device_count"]


def _numbers(row: dict, fields, where: str):
    for f in fields:
        assert f in row, f"{where}: no field {f}"
        value = row[f]
        assert isinstance(value, NUMBER) and not isinstance(value, bool), f"{where}.{f}={value!r}"
        assert math.isfinite(value) and value >= 0, f"{where}.{f}={value!r}"


def _run_smoke(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), "--smoke",
         "--profile", str(tmp_path / "profile"), "--workdir", str(tmp_path / "work")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)  # the whole of stdout is one JSON object


def test_bench_smoke_json(tmp_path):
    out = _run_smoke(tmp_path)
    assert out["benchmark"] == "vgjax" and out["mode"] == "smoke"
    env = out["environment"]
    for f in ENV_FIELDS:
        assert env.get(f) not in (None, ""), f"environment.{f}"
    assert env["device_count"] >= 1 and env["cpu_count"] >= 1

    # model-only: NetVLAD and GeM, bfloat16 and float32
    rows = {(r["aggregation"], r["dtype"]): r for r in out["model"]}
    assert set(rows) == {(a, d) for a in ("netvlad", "gem") for d in ("float32", "bfloat16")}
    for key, row in rows.items():
        _numbers(row, MODEL_FIELDS, f"model{key}")
        assert row["size"] == [32, 48] and row["resnet_width"] == 8
        assert "peak_device_memory_gib" in row
        if env["jax_backend"] != "cpu":
            _numbers(row, ["peak_device_memory_gib"], f"model{key}")
    assert rows["netvlad", "float32"]["descriptor_dim"] == 8 * 32  # NetVLAD-8 on 32 channels

    # EfficientNet-Lite0 (stride 16, 112 channels) beside the config's ResNet-18-conv4
    # (the full run adds Lite0 + NetVLAD; a smoke run leaves out that second compile)
    side = {(r["backbone"], r["aggregation"]): r for r in out["backbones"]}
    assert set(side) == {("resnet18conv4", "netvlad"), ("resnet18conv4", "gem"),
                         ("efficientnet_lite0", "gem")}
    for key, row in side.items():
        _numbers(row, MODEL_FIELDS, f"backbones{key}")
        assert row["dtype"] == "float32" and row["size"] == [32, 48]
    assert side["resnet18conv4", "gem"] == rows["gem", "float32"]
    assert side["efficientnet_lite0", "gem"]["descriptor_dim"] == 112
    assert side["efficientnet_lite0", "gem"]["resnet_width"] is None
    # DINOv2: a 2-block 16-wide ViT + cls stands in for the ViT-B/14 rows of a full run
    vit = out["vit"]
    assert [(r["backbone"], r["aggregation"], r["remat"]) for r in vit] == [
        ("dinov2_custom_d2_w16_h1_g3", "cls", False)]
    _numbers(vit[0], MODEL_FIELDS, "vit")
    assert vit[0]["descriptor_dim"] == 16 and vit[0]["size"] == [42, 42]
    assert (tmp_path / "profile").is_dir() and any((tmp_path / "profile").rglob("*.xplane.pb"))

    # input pipeline: threads and processes from 1 to N workers, and the TFDS copy
    pipe = out["pipeline"]
    _numbers(pipe, ["images", "mean_jpeg_kb"], "pipeline")
    for key in ("folder_threads", "folder_processes", "tfds_threads"):
        assert [r["workers"] for r in pipe[key]] == [1, 2] or \
            [r["workers"] for r in pipe[key]] == [1], key
        for r in pipe[key]:
            _numbers(r, RATE_FIELDS, f"pipeline.{key}")
    _numbers(pipe, ["tfds_build_s"], "pipeline")

    # one mining round, the epoch estimate, the evaluation
    rnd = out["round"]
    _numbers(rnd, ROUND_FIELDS, "round")
    assert rnd["queries"] == 12 and rnd["train_steps"] == 6 and rnd["loss_finite"]
    assert rnd["round_s"] >= rnd["cache_descriptors_s"] + rnd["mining_s"]
    _numbers(out["epoch"], ["queries", "rounds", "estimate_s"], "epoch")
    assert out["epoch"]["rounds"] == 5
    ev = out["eval"]
    _numbers(ev, EVAL_FIELDS, "eval")
    assert ev["database"] == 40 and ev["queries"] == 24
    assert ev["search_backend"] in ("jax", "jax-blocks", "faiss-gpu", "faiss-cpu")

    # the targets, each with its measured value (no verdict on a smoke run)
    assert out["targets_comparable"] is False
    names = {t["name"] for t in out["targets"]}
    assert names == {"train_img_per_s_netvlad_bf16", "infer_img_per_s_netvlad_bf16",
                     "train_img_per_s_gem_bf16", "train_step_peak_memory_gib_netvlad_bf16",
                     "mining_s", "round_s", "epoch_s", "eval_s"}
    for t in out["targets"]:
        assert t["met"] is None
        if t["name"] != "train_step_peak_memory_gib_netvlad_bf16" or env["jax_backend"] != "cpu":
            _numbers(t, ["target", "measured"], f"targets.{t['name']}")
