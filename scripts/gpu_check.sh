#!/usr/bin/env bash
# The GPU checks of the training loop, as one script for a machine with a CUDA GPU and the data (VAE_DATA_MIRROR or
# VAE_DATA_DIR, as in the README):
#   PY=.venv/bin/python bash scripts/gpu_check.sh
# Steps, each under its own `timeout`, each logged; a failed or timed-out step does not stop the next one:
#   1. the CUDA tests (tests/test_train_cuda.py: captured steps against eager ones, no per-batch host sync);
#   2. benchmarks/bench.py --device cuda: eager and captured steps, the matmul ceiling;
#   3. chapter 1.9's training command, a few epochs, with CUDA-graph capture on and off (per-epoch seconds);
#   4. evaluate --iw-samples 5000 on the 10 000 test images with the model from step 3.
# Results go to $OUT (default: $TMPDIR/gpu-check): summary.txt and 7 other files at most.
# The step limits add up to 570 s, so the whole script ends within ten minutes.
# Without CUDA the CUDA tests skip and the benchmark is skipped; TINY=1 shrinks steps 3-4 to a CPU smoke run.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-${TMPDIR:-/tmp}/gpu-check}
PY=${PY:-python3}
mkdir -p "$OUT"
WORK=$(mktemp -d)
summary="$OUT/summary.txt"
: >"$summary"
note() { echo "$*" | tee -a "$summary"; }

# step NAME SECONDS COMMAND...: run COMMAND under `timeout`, its output appended to $OUT/${LOG:-NAME}.log, its
# status and wall time to the summary.
step() {
  local name=$1 limit=$2 log="$OUT/${LOG:-$1}.log"
  shift 2
  local tic rc ms
  tic=$(date +%s%N)
  echo "== $name: $*" >>"$log"
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
  rc=$?
  ms=$((($(date +%s%N) - tic) / 1000000))
  note "$(printf '%-14s rc=%-3s %4d.%01d s wall (limit %s s)' "$name" "$rc" $((ms / 1000)) $((ms % 1000 / 100)) "$limit")"
  return $rc
}

cuda=$($PY -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
note "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
note "$($PY -c "import torch; d = torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA'; print(f'torch {torch.__version__}, {d}')")"

# 1. The CUDA tests (they skip without CUDA).
step tests 150 $PY -m pytest -o addopts="" -p no:cacheprovider -q -rs tests/test_train_cuda.py
tail -n 3 "$OUT/tests.log" | sed 's/^/    /' | tee -a "$summary"

# 2. The benchmark: eager and captured steps and the matmul ceiling in one run.
if [ "$cuda" = 1 ]; then
  step bench 150 $PY benchmarks/bench.py --device cuda --models 500,500 --batches 128 --reps 3 --samples 10240 \
    --out "$OUT/results-cuda.json"
  sed -n '/^CUDA: one step/,/^$/p' "$OUT/bench.log" | sed 's/^/    /' | tee -a "$summary"
else
  note "bench          skipped: no CUDA"
fi

# 3. Chapter 1.9's training command (static binarized MNIST, 784-500-500-20 ELU, batch 128): a few epochs with the
#    step captured (the default) and eager (--no-cuda-graph). history.json holds each epoch's seconds, validation
#    included, checkpoint writing not.
if [ "$cuda" = 1 ] && [ -z "${TINY:-}" ]; then
  device=(--device cuda) threads=()
  model=(--hidden 500,500 --activation elu --batch-size 128 --lr 0.002 --schedule cosine --seed 0)
  graph_epochs=10 eager_epochs=3 evaluate=(--iw-samples 5000)
else  # a smoke run of the same steps on whatever is here
  device=(--device "$([ "$cuda" = 1 ] && echo cuda || echo cpu)") threads=(--threads 1)
  model=(--hidden 20 --z-dim 2 --batch-size 2000 --seed 0)
  graph_epochs=2 eager_epochs=1 evaluate=(--iw-samples 10 --limit 200)
fi
for mode in graph eager; do
  epochs=$graph_epochs flag=()
  [ "$mode" = eager ] && epochs=$eager_epochs flag=(--no-cuda-graph)
  LOG=train step "train-$mode" 90 $PY -m vae_core train "${device[@]}" "${threads[@]}" "${model[@]}" --epochs "$epochs" "${flag[@]}" \
    --no-progress --out "$WORK/$mode"
  cp "$WORK/$mode/history.json" "$OUT/history-$mode.json" 2>/dev/null
  $PY - "$OUT/history-$mode.json" <<'PY' 2>&1 | sed "s/^/    $mode: /" | tee -a "$summary"
import json, sys
rows = json.load(open(sys.argv[1]))
later = [r["seconds"] for r in rows[1:]] or [rows[0]["seconds"]]
print(f"epoch 1 {rows[0]['seconds']:.3f} s, later epochs median {sorted(later)[len(later) // 2]:.3f} s "
      f"(validation included), last valid ELBO {rows[-1]['valid_elbo']:.2f}")
PY
done

# 4. The importance-weighted bound with K = 5000 over the test set, with the captured run's model.
step evaluate 100 $PY -m vae_core evaluate "${device[@]}" --checkpoint "$WORK/graph/model" --split test \
  "${evaluate[@]}" --json
tail -n 1 "$OUT/evaluate.log" | sed 's/^/    /' | tee -a "$summary"
rm -rf "$WORK"
echo "results in $OUT"
