#!/usr/bin/env bash
# `make gpu-check`: the one prepared device check (issue 15). Without CUDA it prints one line and exits 0.
# With CUDA it runs, each step timed and under its own timeout (the whole within 8 minutes on one GPU):
#   cpu-reference  the default adversarial track on the CPU, in the background from the start (worker processes on
#                  half the cores): the reference of `equivalence`, made on this machine
#   gpu-tests      the GPU-marked tests (pytest -m gpu; the benchmarks run once, below)
#   adversarial    the default adversarial track on CUDA (bench run --track adversarial --device cuda)
#   uncertainty    the uncertainty track on CUDA
#   benchmarks     the GPU benchmarks (pytest tests/benchmarks -m gpu, pytest-benchmark JSON)
#   equivalence    once cpu-reference is done: CPU and CUDA runs cell by cell (bench compare; no significant change,
#                  Holm over the cells, no job failing on CUDA only; scripts/gpu_report.py --equivalence)
# then writes a report (scripts/gpu_report.py): $OUT_DIR/gpu-check.md and $OUT_DIR/gpu-check.json.
# A failed or timed-out step is recorded and the next one runs; the exit status is 1 when any step failed.
#
# Environment:
#   GPU_CHECK_OUT   output folder (default runs/gpu-check); the files this script writes there are replaced
#   BENCH_WHEELS    a folder of wheels (scripts/gpu_wheels.sh) installed into a temporary site folder, for a GPU
#                   machine with torch preinstalled and no network; nothing is installed without it
#   GPU_CHECK_TIMEOUT_TESTS / _ADVERSARIAL / _UNCERTAINTY / _BENCHMARKS / _CPU_REFERENCE / _EQUIVALENCE   per-step
#                   limits in seconds (cuda: 100 / 160 / 80 / 100 / 420 / 60; a CPU rehearsal: 300 / 1200 / 300 / 300 / 1500 / 60)
#   GPU_CHECK_DEVICE   cuda (default); cpu rehearses the same steps on the CPU (no CUDA needed: the GPU-marked tests
#                   and benchmarks skip, the tracks run with --device cpu), to try the script and its report anywhere
set -u

cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
if [ -x .venv/bin/python ]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi

DEVICE=${GPU_CHECK_DEVICE:-cuda}
case $DEVICE in
    cuda | cpu) ;;
    *) echo "gpu-check: GPU_CHECK_DEVICE must be cuda or cpu, got '$DEVICE'" >&2; exit 2 ;;
esac

# First, and installing nothing: is there a CUDA device at all? (a CPU rehearsal needs none)
[ "$DEVICE" = cpu ] || "$PY" -c '
import sys
try:
    import torch
except Exception:
    sys.exit(3)
sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1
case $? in
    0) ;;
    1) echo "gpu-check: no CUDA device on this machine (torch.cuda.is_available() is False); nothing to check"; exit 0 ;;
    *) echo "gpu-check: $PY cannot import torch; nothing to check"; exit 0 ;;
esac

OUT_DIR=${GPU_CHECK_OUT:-runs/gpu-check}
mkdir -p "$OUT_DIR" || exit 2
OUT_DIR=$(cd "$OUT_DIR" && pwd)
# a fresh check each time: the run folders would otherwise be resumed, and cached models would skip training on CUDA
rm -rf "$OUT_DIR/adversarial" "$OUT_DIR/adversarial-cpu" "$OUT_DIR/uncertainty" "$OUT_DIR/cache" "$OUT_DIR/cache-cpu" "$OUT_DIR/logs" \
    "$OUT_DIR/steps.jsonl" "$OUT_DIR/gpu-tests.xml" "$OUT_DIR/benchmarks.json" "$OUT_DIR/cpu-reference.toml" "$OUT_DIR/equivalence.json" \
    "$OUT_DIR/gpu-check.md" "$OUT_DIR/gpu-check.json"
mkdir -p "$OUT_DIR/logs"
export BENCH_CACHE="$OUT_DIR/cache"     # models trained here, on the device (the cache key does not name the device)
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"

SITE=""
cleanup() { [ -n "$SITE" ] && rm -rf "$SITE"; }
trap cleanup EXIT
if [ -n "${BENCH_WHEELS:-}" ]; then
    SITE=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-site.XXXXXX")
    if ! "$PY" -m pip install -q --no-index --no-deps --target "$SITE" "$BENCH_WHEELS"/*.whl; then
        echo "gpu-check: could not install the wheels of BENCH_WHEELS=$BENCH_WHEELS" >&2
        exit 2
    fi
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"   # the project from this tree: `python -m bench`, no console script

json_string() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }

# step NAME TIMEOUT COMMAND...: run it under `timeout`, its output in logs/NAME.log, then one line of steps.jsonl
step() {
    local name=$1 limit=$2; shift 2
    local log="$OUT_DIR/logs/$name.log" start end rc status seconds
    echo "gpu-check: $name (at most ${limit} s): $*"
    start=$(date +%s.%N)
    timeout --kill-after=5 "$limit" "$@" >"$log" 2>&1
    rc=$?
    end=$(date +%s.%N)
    case $rc in
        0) status=passed ;;
        124 | 137) status=timed-out ;;
        5) status=no-tests-collected ;;  # pytest's exit status when nothing was selected
        *) status=failed ;;
    esac
    seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    printf '{"step": %s, "command": %s, "status": "%s", "rc": %d, "seconds": %s, "timeout": %d, "log": %s}\n' \
        "$(json_string "$name")" "$(json_string "$*")" "$status" "$rc" "$seconds" "$limit" "$(json_string "logs/$name.log")" >>"$OUT_DIR/steps.jsonl"
    echo "gpu-check: $name $status (exit $rc) in ${seconds} s"
}

if [ "$DEVICE" = cuda ]; then LIMITS=(100 160 80 100 420 60); else LIMITS=(300 1200 300 300 1500 60); fi
echo "gpu-check: on $DEVICE, into $OUT_DIR"

# The CPU reference: the default spec as `bench spec` prints it, on worker processes of half the cores (the rest
# drive the GPU), with a model cache of its own (models trained on the CPU)
CORES=$(nproc 2>/dev/null || echo 2)
WORKERS=$(( CORES / 2 > 0 ? CORES / 2 : 1 ))
{ "$PY" -m bench spec --track adversarial && printf '\n[executor]\nname = "processes"\nworkers = %d\nnum_cpus = 1\n' "$WORKERS"; } >"$OUT_DIR/cpu-reference.toml"
BENCH_CACHE="$OUT_DIR/cache-cpu" step cpu-reference "${GPU_CHECK_TIMEOUT_CPU_REFERENCE:-${LIMITS[4]}}" \
    "$PY" -m bench run --config "$OUT_DIR/cpu-reference.toml" --device cpu --out "$OUT_DIR/adversarial-cpu" -q &
REFERENCE=$!

step gpu-tests "${GPU_CHECK_TIMEOUT_TESTS:-${LIMITS[0]}}" \
    "$PY" -m pytest -m gpu -q -p no:cacheprovider --ignore tests/benchmarks --junitxml "$OUT_DIR/gpu-tests.xml"
step adversarial "${GPU_CHECK_TIMEOUT_ADVERSARIAL:-${LIMITS[1]}}" \
    "$PY" -m bench run --track adversarial --device "$DEVICE" --out "$OUT_DIR/adversarial" -q
step uncertainty "${GPU_CHECK_TIMEOUT_UNCERTAINTY:-${LIMITS[2]}}" \
    "$PY" -m bench run --track uncertainty --device "$DEVICE" --out "$OUT_DIR/uncertainty" -q
step benchmarks "${GPU_CHECK_TIMEOUT_BENCHMARKS:-${LIMITS[3]}}" \
    "$PY" -m pytest tests/benchmarks -m gpu --benchmark-enable --benchmark-only -q -p no:cacheprovider --benchmark-json "$OUT_DIR/benchmarks.json"
wait "$REFERENCE"
step equivalence "${GPU_CHECK_TIMEOUT_EQUIVALENCE:-${LIMITS[5]}}" "$PY" scripts/gpu_report.py --equivalence "$OUT_DIR"
[ -f "$OUT_DIR/equivalence.json" ] && tail -n 1 "$OUT_DIR/logs/equivalence.log" | sed 's/^/gpu-check: /'

"$PY" scripts/gpu_report.py "$OUT_DIR"
echo "gpu-check: report in $OUT_DIR/gpu-check.md and $OUT_DIR/gpu-check.json"
# passed: every step has its line in steps.jsonl, each passed
[ "$(grep -c '"status": "passed"' "$OUT_DIR/steps.jsonl")" -eq 6 ] || exit 1
