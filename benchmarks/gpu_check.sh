#!/usr/bin/env bash
# The whole-system GPU acceptance run, one call, about 6-8 minutes on one GPU, no network, no Dagster or GX:
#   1. stylegan doctor (versions, GPUs, compiled-ops build + time, ops parity, fp16 vs fp32, NCCL) -> doctor.log
#   2. the ops' GPU tests (compiled vs reference parity, build plumbing)                             -> ops_tests.log
#   3. the networks' GPU tests (fp16, channels_last, NVIDIA's fp16 parity on the GPU)                -> net_tests.log
#   4. ops/s of reference vs compiled ops                                                             -> ops_bench.log
#   5. train_bench.py at 256 px, cfg auto, batch 16, fp16, one GPU: --impl cuda, then --impl ref     -> train_*.json
#   6. a section under the card's name appended to benchmarks/RESULTS.md (and copied to $OUT_DIR)
# Usage, from anywhere:  bash benchmarks/gpu_check.sh [--dry-run]
# --dry-run (or GPU_CHECK_DRY=1) runs every step that needs no GPU: the doctor, the test selections (collected, not
# run), a 16 px CPU train_bench, and the results section, written to $OUT_DIR only. Every Python step runs through
# benchmarks/isolated.py, which makes Dagster and Great Expectations unimportable.
# $OUT_DIR is $OUT when set (the workplace's device tool brings that folder back), else a new temporary folder.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY="${GPU_CHECK_DRY:-0}"
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT_DIR="${OUT:-$(mktemp -d -t gpu_check.XXXXXX)}"
mkdir -p "$OUT_DIR"
PY="${PYTHON:-python3}"
RUN=("$PY" benchmarks/isolated.py)
export PYTHONUNBUFFERED=1 PYTEST_DISABLE_PLUGIN_AUTOLOAD=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# torch finds ninja on PATH: the one pip installed beside this Python counts too.
export PATH="$(dirname "$("$PY" -c 'import sys; print(sys.executable)')"):$PATH"
[ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ] && export CUDA_HOME=/usr/local/cuda
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-/tmp/stylegan_torch_extensions}"
status=0
declare -A RC

step() {  # step NAME TIMEOUT LOGFILE COMMAND...: run, tee, remember the exit code
  local name="$1" limit="$2" log="$3"
  shift 3
  echo "== $name"
  timeout "$limit" "$@" 2>&1 | tee "$OUT_DIR/$log"
  RC[$name]=${PIPESTATUS[0]}
  [ "${RC[$name]}" -ne 0 ] && status=1
  return 0
}

CARD="$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0))' 2>/dev/null || echo 'no GPU')"
PYTEST=(-m pytest -p no:cacheprovider -q -rfE)
OPS_TESTS=(tests/test_ops_cuda.py tests/test_ops_cuda_host.py tests/test_ops_cuda_build.py)
NET_TESTS=(tests/test_networks_fp16.py tests/test_networks_shapes.py -m gpu)

step doctor 300 doctor.log "${RUN[@]}" -m stylegan_core.cli doctor
if [ "$DRY" = 1 ]; then
  # A test run here would only skip: check that the selections resolve instead.
  step ops_tests 120 ops_tests.log "${RUN[@]}" "${PYTEST[@]}" --collect-only "${OPS_TESTS[@]}"
  step net_tests 120 net_tests.log "${RUN[@]}" "${PYTEST[@]}" --collect-only "${NET_TESTS[@]}"
  step ops_bench 60 ops_bench.log "$PY" -c "import ast; ast.parse(open('benchmarks/ops_gpu.py').read())"
  TRAIN_ARGS=(--resolution 16 --cbase 256 --cmax 32 --map 2 --batch 4 --kimg 0.008 --tick 0.004 --device cpu --threads 1)
  IMPLS=(ref)
  TRAIN_LIMIT=300  # a shared CPU can be slow; the GPU runs below have 150 s each
  RESULTS="$OUT_DIR/RESULTS.dry.md"
else
  step ops_tests 200 ops_tests.log "${RUN[@]}" "${PYTEST[@]}" "${OPS_TESTS[@]}"
  step net_tests 120 net_tests.log "${RUN[@]}" "${PYTEST[@]}" "${NET_TESTS[@]}"
  step ops_bench 90 ops_bench.log "${RUN[@]}" benchmarks/ops_gpu.py --reps 10 --markdown "$OUT_DIR/ops_section.md"
  TRAIN_ARGS=(--resolution 256 --cfg auto --batch 16 --kimg 3 --tick 0.5 --device cuda)
  IMPLS=(cuda ref)
  TRAIN_LIMIT=150
  RESULTS=benchmarks/RESULTS.md
fi
for impl in "${IMPLS[@]}"; do
  step "train_$impl" "$TRAIN_LIMIT" "train_$impl.log" "${RUN[@]}" benchmarks/train_bench.py "${TRAIN_ARGS[@]}" --impl "$impl"
  sed -n '/^{/,/^}/p' "$OUT_DIR/train_$impl.log" > "$OUT_DIR/train_$impl.json"
done

echo "== record"
SECTION="$OUT_DIR/results_section.md"
"$PY" - "$OUT_DIR" "$CARD" "$DRY" "${IMPLS[@]}" > "$SECTION" <<'EOF'
import json, pathlib, re, sys, time
out, card, dry, impls = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", sys.argv[4:]
def tail(name, pattern):
    text = (out / name).read_text(errors="replace") if (out / name).exists() else ""
    found = [line for line in text.splitlines() if re.search(pattern, line)]
    return found[-1].strip() if found else "(no output)"
print(f"\n### GPU acceptance run{' (DRY RUN, no GPU)' if dry else ''} — {card} ({time.strftime('%Y-%m-%d', time.gmtime())})\n")
print("`bash benchmarks/gpu_check.sh`" + (" --dry-run" if dry else "") + ":\n")
verdict, ops = tail("doctor.log", r"^doctor:"), tail("doctor.log", r"\] ops:")
print(f"- doctor: {verdict}; {ops}")
for line in ("nvcc", "gpu0", "ops parity", "fp16 cuda", "nccl"):
    found = tail("doctor.log", r"\] " + line + ":")
    if found != "(no output)":
        print(f"  - {found}")
SUMMARY = r"passed|failed|error|collected|tests? "
print("- ops GPU tests: " + tail("ops_tests.log", SUMMARY))
print("- networks GPU tests: " + tail("net_tests.log", SUMMARY))
rows = []
for impl in impls:
    try:
        result = json.loads((out / f"train_{impl}.json").read_text())
    except (OSError, ValueError):
        rows.append(f"| {impl} | failed (see train_{impl}.log) | | | |")
        continue
    c = result["config"]
    rows.append(f"| {impl} | {result['sec_per_kimg']} | {result['peak_gpu_gb']} | {result['peak_rss_gb']} | "
                f"{c['resolution']} px {c['cfg']} batch {c['batch']} fp16 res {c['num_fp16_res']} {c['device']} |")
print("\n| impl | sec/kimg (steady) | peak GPU GiB | peak RSS GiB | run |\n|---|---|---|---|---|")
print("\n".join(rows))
if len(impls) == 2 and not rows[0].count("failed") and not rows[1].count("failed"):
    a, b = (json.loads((out / f"train_{i}.json").read_text())["sec_per_kimg"] for i in impls)
    print(f"\nref / cuda sec/kimg ratio: {b / a:.2f}")
if (out / "ops_section.md").exists():
    print((out / "ops_section.md").read_text())
EOF
cat "$SECTION" >> "$RESULTS"
cat "$SECTION"
for name in "${!RC[@]}"; do echo "exit code $name: ${RC[$name]}"; done | sort
exit $status
