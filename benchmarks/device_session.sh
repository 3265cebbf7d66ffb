#!/usr/bin/env bash
# One prepared GPU session (CI never has a GPU): everything that needs CUDA, in one command.
#   1. the demo model's UNet + text encoder trained on CUDA (tools/train_demo_model.py), starting
#      from the stage-1 VAE checkpoint made on the CPU (`--stop-after vae`, carried in VAE_CKPT);
#      the number of steps is chosen from a timed probe so the stage fits DEMO_S seconds, and the
#      exact command is printed and kept in the log;
#   2. benchmarks.png_save (our PNG encoder vs Pillow on this machine's cores) and
#      benchmarks.preview_cost (TAESD and linear previews against a UNet step on this GPU);
#   3. benchmarks.gpu_suite with whatever time is left (it skips phases that would not fit).
# Results go to $OUT (the demo model as a split tar, logs, the suite's JSON). SUITE_ARGS are
# passed on to the suite (e.g. --profile); DEMO_S=0 skips the training. SUITE_RUNS instead runs
# the suite several times in fresh processes, "SECONDS:ARGS" items separated by ';' (the last
# item gets whatever time is left), each to its own gpu_suite-N.json and .log, e.g. to compare
# fast-mode variants on the same machine:
#   SUITE_RUNS="150:--families sd15;0:--families sd15 --inductor coordinate_descent_tuning=1"
#
#   OUT=/tmp/out VAE_CKPT=.devcarry/vae.pt bash benchmarks/device_session.sh 585
set -u
TOTAL=${1:-585}
T0=$(date +%s)
OUT=${OUT:-/tmp/device-out}
DEMO_S=${DEMO_S:-200}
VAE_CKPT=${VAE_CKPT:-.devcarry/vae.pt}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
left() { echo $((TOTAL - ($(date +%s) - T0))); }

if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,temperature.gpu --format=csv
  python3 -c "import sys, torch, transformers, diffusers; print(sys.version.split()[0], \
torch.__version__, torch.version.cuda, transformers.__version__, diffusers.__version__)"
  nproc
} 2>&1 | tee "$OUT/env.txt"

DEVICE=${DEMO_DEVICE:-cuda}
BATCH=${DEMO_BATCH:-256}
POOL=${DEMO_POOL:-40000}
MIN_STEPS=${DEMO_MIN_STEPS:-1000}
if [ -f "$VAE_CKPT" ] && [ "$DEMO_S" -gt 0 ]; then
  WORK=/tmp/demo_work
  rm -rf "$WORK" && mkdir -p "$WORK"
  cp "$VAE_CKPT" "$WORK/vae.pt"
  per_step=$(timeout 120 python3 tools/train_demo_model.py --device "$DEVICE" --work "$WORK" \
    --batch "$BATCH" --probe 40 | tail -1 | python3 -c "import json,sys; \
print(json.load(sys.stdin)['probe_s_per_step'])")
  if [ -n "$per_step" ]; then
    # DEMO_S minus ~45 s for start-up, the latent pool and saving.
    steps=$(python3 -c "print(max($MIN_STEPS, min(20000, int(($DEMO_S - 45) / $per_step) // 500 * 500)))")
    cmd="python3 tools/train_demo_model.py --device $DEVICE --work $WORK --out $WORK/demo \
--pool $POOL --batch $BATCH --unet-steps $steps"
    echo "probe: ${per_step} s/step at batch $BATCH -> $steps steps; command: $cmd" \
      | tee "$OUT/demo_train.log"
    timeout $((DEMO_S + 60)) $cmd >>"$OUT/demo_train.log" 2>&1
    tail -2 "$OUT/demo_train.log"
    if [ -f "$WORK/summary.json" ]; then
      (cd "$WORK" && sha256sum demo/*/*.safetensors >demo/SHA256SUMS \
        && tar -cf - demo summary.json) | split -b 12m - "$OUT/demo.tar.part-"
    fi
  else
    echo "demo training probe failed; no training" | tee "$OUT/demo_train.log"
  fi
fi

# The PNG encoders (ours with zlib and with ISA-L, Pillow) on this machine's cores, back to back
# and with a pause before each encode as the app writes (~10 s + ~15 s).
timeout 60 python3 -m benchmarks.png_save 2>&1 | tee "$OUT/png_save.log"
timeout 60 python3 -m benchmarks.png_save --gap-s 0.1 2>&1 | tee "$OUT/png_save_gap.log"
# What a preview costs against a UNet step, and the cadence the preview budget gives (~30 s).
timeout 90 python3 -m benchmarks.preview_cost 2>&1 | tee "$OUT/preview_cost.log"

suite() {  # suite BUDGET_S NAME ARGS...: one gpu_suite process
  local budget=$1 name=$2
  shift 2
  echo "gpu_suite $name: budget ${budget} s, args: $*" | tee -a "$OUT/$name.log"
  timeout $((budget + 15)) python3 -m benchmarks.gpu_suite --quick --budget-s "$budget" \
    --json-out "$OUT/$name.json" "$@" 2>&1 | tee -a "$OUT/$name.log"
}
if [ -n "${SUITE_RUNS:-}" ]; then
  IFS=';' read -ra runs <<<"$SUITE_RUNS"
  for i in "${!runs[@]}"; do
    want=${runs[$i]%%:*}
    budget=$(($(left) - 20))
    if [ "$i" -lt $((${#runs[@]} - 1)) ] && [ "$want" -lt "$budget" ]; then budget=$want; fi
    # shellcheck disable=SC2086  # the run's arguments are meant to split
    suite "$budget" "gpu_suite-$((i + 1))" ${runs[$i]#*:}
  done
else
  # shellcheck disable=SC2086
  suite $(($(left) - 20)) gpu_suite ${SUITE_ARGS:-}
fi
echo "session done in $(($(date +%s) - T0)) s"
