#!/usr/bin/env bash
# One call on a GPU machine: prints the device, then model, mining, input-pipeline, whole-system
# (bench.py) and precision numbers
# as JSON (also written under $OUT when set). Packages missing there (ml-collections, faiss-cpu)
# travel as Python wheels in .whl/ and are installed to /tmp/site first.
#   bash scripts/device_check.sh [quick]
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
out="${OUT:-/tmp/vgjax-device-check}"
mkdir -p "$out"
steps=20
[ "${1:-}" = "quick" ] && steps=5
python3 -c "import jax; print('devices:', jax.devices(), 'jax', jax.__version__)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
for agg in netvlad gem; do
  for dtype in bfloat16 float32; do
    python3 scripts/bench_model.py --config "configs/resnet18_${agg}.py" --dtype "$dtype" \
      --steps "$steps" | tee "$out/model_${agg}_${dtype}.json"
  done
done
python3 scripts/bench_pipeline.py --num-images 512 --workers "1,8,$(nproc)" \
  | tee "$out/pipeline.json"
python3 scripts/bench_positives.py | tee "$out/positives.json"
# the one benchmark of everything, and the precision check (TF32 vs highest vs bfloat16)
python3 scripts/bench.py | tee "$out/bench.json"
python3 scripts/check_precision.py --root /tmp/vgjax-city | tee "$out/precision.json"
python3 scripts/bench_cache.py --root /tmp/vgjax-city --config configs/smoke.py \
  --modes none device --queries 32 --out /tmp/vgjax-bench-cache | tee "$out/cache.json"
