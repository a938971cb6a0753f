#!/usr/bin/env bash
# One call on a GPU machine: prints the device, then the whole-system benchmark (bench.py),
# the precision check, the input pipeline, positives, the device cache and the model-only
# numbers, each as JSON. Every step has its own time limit and appends its JSON to ONE file,
# $OUT/device_check.jsonl (one line per step: {"step": ..., "rc": ..., "result": ...}), so a
# run stopped early still returns what it measured; the log goes to $OUT/device_check.log.
# Packages missing there (ml-collections, faiss-cpu) travel as Python wheels in .whl/ and are
# installed to /tmp/site first.
#   bash scripts/device_check.sh [quick]
set -uo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
out="${OUT:-/tmp/vgjax-device-check}"
mkdir -p "$out"
results="$out/device_check.jsonl"
: > "$results"
steps=20
[ "${1:-}" = "quick" ] && steps=5

# step NAME LIMIT_S COMMAND...: runs COMMAND under a time limit, its stdout (one JSON object)
# appended to $results as {"step", "rc", "seconds", "result"}; stderr to the log.
step() {
  local name="$1" limit="$2"; shift 2
  local tmp; tmp="$(mktemp)"
  local start; start="$(date +%s)"
  echo "== $name (limit ${limit}s): $*" >&2
  timeout "$limit" "$@" > "$tmp"
  local rc=$?
  python3 - "$name" "$rc" "$(( $(date +%s) - start ))" "$tmp" >> "$results" <<'EOF'
import json, sys
name, rc, seconds, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
text = open(path).read()
try:
    result = json.loads(text)
except ValueError:
    result = {"unparsed_stdout_tail": text[-4000:]}
print(json.dumps({"step": name, "rc": rc, "seconds": seconds, "result": result}))
EOF
  cat "$tmp"; rm -f "$tmp"
}

{
python3 -c "import jax; print('devices:', jax.devices(), 'jax', jax.__version__)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# the one benchmark of everything first, then the precision check (TF32 vs highest vs bfloat16)
step bench 270 python3 scripts/bench.py --steps "$steps"
step precision 90 python3 scripts/check_precision.py --root /tmp/vgjax-city
step pipeline 45 python3 scripts/bench_pipeline.py --num-images 512 --workers "1,8,$(nproc)"
step positives 30 python3 scripts/bench_positives.py
step cache 90 python3 scripts/bench_cache.py --root /tmp/vgjax-city --config configs/smoke.py \
  --modes none device --queries 32 --out /tmp/vgjax-bench-cache
for agg in netvlad gem; do
  for dtype in bfloat16 float32; do
    step "model_${agg}_${dtype}" 90 python3 scripts/bench_model.py \
      --config "configs/resnet18_${agg}.py" --dtype "$dtype" --steps "$steps"
  done
done
} 2>&1 | tee "$out/device_check.log"
