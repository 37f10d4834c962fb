#!/usr/bin/env bash
# Runs on the lent GPU machine, from the repository root, after scripts/gpu/build-bundle.sh
# built .device/ (and .gl/) here:
#
#   run(command="bash .device/run.sh", carry=[".device", ".gl"], timeout_s=600)
#
# In one call, on one card: PyTorch's reference (fp32, --tf32, --amp) and `cats bench --json`
# on cuda (fp32: a cold kernel cache, then warm; then bf16 mixed precision) and vulkan, at
# seed128 batch 64 and dcgan64 base 64 batch 64, in order of importance (PyTorch first: a
# baseline even if the rest runs out of time). Every program runs under `timeout` and prints a line per step (plus a
# heartbeat every 20 s while a first step compiles kernels); a step that does not fit in
# what is left of BUDGET_S is skipped, and the table says so. The table is printed last and
# written to $OUT/results.md, with $OUT/results.jsonl, $OUT/log.txt.gz (and
# $OUT/cubecl.log.gz with CUBECL_LOG=1), and the kernel cache after the cold and bf16 runs
# as $OUT/kernel-cache.tgz: put it in .device/ and the next call's warm runs start from it.
#
# Knobs (environment): BUDGET_S (default 570: the whole script), RUNS (names to run, space
# separated; default all, in the order below), STEPS (timed steps, 20), WARMUP (2),
# COLD_S (timeout of the cold CUDA run, 300; on an H100 it needed ~410 s in all,
# 2026-11-27), BF16_S (timeout of the bf16 run, 240), SCALING (GPU counts of the
# data-parallel runs, "1 2 4 8": those the machine has), CUBECL_LOG=1 (log every kernel
# compilation), AUTOTUNE (`cats --autotune`: fast|balanced|full; default: the tool's).
# Every `cats bench` row says how many kernels its first step compiled and how many
# operations it autotuned (src/kernel_stats.rs).
set -uo pipefail

BUNDLE="${BUNDLE:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
[ -f "$BUNDLE/cats.gz" ] || BUNDLE="$PWD/.device"
OUT="${OUT:-/tmp/catgan-gpu-out}"
W=/tmp/catgan-gpu
BUDGET_S="${BUDGET_S:-570}"
STEPS="${STEPS:-20}"
WARMUP="${WARMUP:-2}"
RUNS="${RUNS:-torch-seed128 cuda-seed128-cold cuda-seed128-warm cuda-seed128-bf16 vulkan-seed128 torch-dcgan64 cuda-dcgan64 vulkan-dcgan64 cuda-scaling}"
START=$(date +%s)
mkdir -p "$OUT" "$W"
LOG="$W/log.txt"
: >"$LOG"
: >"$OUT/results.jsonl"

elapsed() { echo $(($(date +%s) - START)); }
say() { echo "[$(printf '%4d' "$(elapsed)") s] $*" | tee -a "$LOG"; }
wants() { case " $RUNS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# Appends a result row (JSON) for the final table.
record() { # name status json-or-empty
  python3 - "$1" "$2" "${3:-}" >>"$OUT/results.jsonl" <<'PY'
import json, sys
name, status, line = sys.argv[1:4]
row = {"run": name, "status": status}
if line:
    try:
        row.update(json.loads(line))
    except ValueError:
        row["status"] += " (bad JSON)"
print(json.dumps(row))
PY
}

# step NAME TIMEOUT COMMAND...: runs COMMAND under timeout (capped by the budget), tees its
# output, prints a heartbeat while it is silent, records its last JSON line.
step() {
  local name=$1 want=$2
  shift 2
  local left=$((BUDGET_S - $(elapsed) - 15))
  local t=$((want < left ? want : left))
  if [ "$t" -lt 30 ]; then
    say "== $name: SKIPPED (budget: ${left}s left of BUDGET_S=$BUDGET_S)"
    record "$name" "skipped (budget)"
    return
  fi
  say "== $name (timeout ${t}s): $*"
  (
    while sleep 20; do say "   ... $name still running"; done
  ) &
  local beat=$!
  timeout -k 10 "$t" "$@" 2>&1 | tee "$W/$name.out" | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  kill "$beat" 2>/dev/null
  wait "$beat" 2>/dev/null
  local json
  json=$(grep '^{' "$W/$name.out" | tail -1)
  if [ "$rc" -eq 0 ] && [ -n "$json" ]; then
    say "== $name: ok"
    record "$name" "ok" "$json"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    say "== $name: TIMED OUT after ${t}s"
    record "$name" "timed out (${t} s)"
  else
    say "== $name: FAILED (exit $rc): $(tail -2 "$W/$name.out" | tr '\n' ' ')"
    record "$name" "failed (exit $rc)" "$json"
  fi
}

# --- environment -------------------------------------------------------------------------
if ls .gl/*.deb >/dev/null 2>&1; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
export LD_LIBRARY_PATH="/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$ICD" ] && export VK_DRIVER_FILES="$ICD"
say "bundle: $BUNDLE; $(tr '\n' ' ' <"$BUNDLE/BUILD_INFO" 2>/dev/null)"
say "card: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
say "date: $(date -u +%FT%TZ); budget ${BUDGET_S}s; runs: $RUNS"

gunzip -c "$BUNDLE/cats.gz" >"$W/cats" && chmod +x "$W/cats" || {
  say "cannot unpack $BUNDLE/cats.gz: run scripts/gpu/build-bundle.sh here and carry .device"
  exit 1
}
cp "$BUNDLE/torch_dcgan.py" "$W/" 2>/dev/null || cp benches/reference/torch_dcgan.py "$W/"
# `cats` keeps compiled kernels (PTX) and autotune results in the user's cache folder
# (src/kernel_cache.rs): point that at a fresh folder here, so "cold" means cold and the
# second run of a config shows the warm start a user gets. No cubecl.toml above $W.
export XDG_CACHE_HOME="$W/xdg"
KCACHE="$XDG_CACHE_HOME/catgan/kernels"
# Counts the compiled kernels (entries of cubecl's table of contents next to the PTX/SPIR-V
# chunks) and autotune results (one JSON entry each), and lists the cache's files.
cache_count() {
  local kernels tune
  kernels=$(find "$KCACHE" -name 'toc*' -type f -exec cat {} + 2>/dev/null | grep -a -o '"key"' | wc -l)
  tune=$(find "$KCACHE" -path '*autotune*' -type f -exec cat {} + 2>/dev/null | grep -a -o '"key"' | wc -l)
  say "   kernel cache: $kernels compiled kernels, $tune autotune results ($(du -sh "$KCACHE" 2>/dev/null | cut -f1))"
  find "$KCACHE" -type f -printf '     %P %s bytes\n' 2>/dev/null | tee -a "$LOG"
}
# A kernel cache carried in from an earlier call (`.device/kernel-cache.tgz`, which
# save_cache below wrote to $OUT): the warm runs start from it even on a fresh machine
# (a warm machine is given back 30 s after a call). The cold run empties it first.
if [ -f "$BUNDLE/kernel-cache.tgz" ]; then
  mkdir -p "$XDG_CACHE_HOME"
  tar -xzf "$BUNDLE/kernel-cache.tgz" -C "$XDG_CACHE_HOME" && say "kernel cache restored from $BUNDLE/kernel-cache.tgz"
  cache_count
fi
# Writes the kernel cache to $OUT/kernel-cache.tgz (files come back up to 16 MiB each), for
# the next call: copy it into .device/ here and carry .device again.
save_cache() {
  tar -czf "$W/kernel-cache.tgz" -C "$XDG_CACHE_HOME" catgan 2>/dev/null || return
  local size
  size=$(stat -c %s "$W/kernel-cache.tgz")
  if [ "$size" -le $((16 * 1024 * 1024)) ]; then
    cp "$W/kernel-cache.tgz" "$OUT/" && say "   kernel cache saved: \$OUT/kernel-cache.tgz ($size bytes)"
  else
    say "   kernel cache is $size bytes gzipped: over the 16 MiB a returned file may have; not saved"
  fi
}
if [ "${CUBECL_LOG:-0}" = 1 ]; then export CUBECL_DEBUG_LOG="$W/cubecl.log"; fi
cd "$W" || exit 1

BENCH=(bench --steps "$STEPS" --warmup "$WARMUP" --json)
# `cats --autotune LEVEL` for every catgan run (AUTOTUNE=balanced|fast|full; default: the
# tool's own default).
[ -n "${AUTOTUNE:-}" ] && BENCH+=(--autotune "$AUTOTUNE")
SEED128=(--preset seed128 --batch-size 64)
DCGAN64=(--preset dcgan64 --base 64 --batch-size 64)
TORCH=(python3 "$W/torch_dcgan.py" --device cuda --batch-size 64 --steps 20 --warmup 5)

# --- PyTorch on the same card (fast: a baseline even if everything else times out) --------
if wants torch-seed128; then
  step torch-seed128-fp32 90 "${TORCH[@]}" --preset seed128
  step torch-seed128-tf32 90 "${TORCH[@]}" --preset seed128 --tf32
  step torch-seed128-amp 90 "${TORCH[@]}" --preset seed128 --amp --channels-last
fi
# --- burn cuda (fp32): cold kernel cache, then warm ----------------------------------------
if wants cuda-seed128-cold; then
  rm -rf "$XDG_CACHE_HOME"
  step cuda-seed128-cold "${COLD_S:-300}" ./cats --backend cuda "${BENCH[@]}" "${SEED128[@]}"
  cache_count
  save_cache
fi
wants cuda-seed128-warm && step cuda-seed128-warm 120 ./cats --backend cuda "${BENCH[@]}" "${SEED128[@]}"
# --- burn cuda, bf16 mixed precision (`--precision bf16`): new kernels (bf16 convolutions,
# casts) on top of the fp32 run's cache, so this is a partly cold start ---------------------
if wants cuda-seed128-bf16; then
  step cuda-seed128-bf16 "${BF16_S:-240}" ./cats --backend cuda "${BENCH[@]}" "${SEED128[@]}" --precision bf16
  cache_count
  save_cache
fi

# --- burn vulkan (wgpu, SPIR-V through the NVIDIA driver) -------------------------------------
wants vulkan-seed128 && step vulkan-seed128 150 ./cats --backend vulkan "${BENCH[@]}" "${SEED128[@]}"

# --- the 64 px model, if time is left ---------------------------------------------------------
if wants torch-dcgan64; then
  step torch-dcgan64-fp32 60 "${TORCH[@]}" --preset dcgan64 --base 64
  step torch-dcgan64-tf32 60 "${TORCH[@]}" --preset dcgan64 --base 64 --tf32
  step torch-dcgan64-amp 60 "${TORCH[@]}" --preset dcgan64 --base 64 --amp --channels-last
fi
# Shares the seed128 run's cache: kernels of the same ops, new autotune keys for new shapes.
if wants cuda-dcgan64; then
  step cuda-dcgan64 150 ./cats --backend cuda "${BENCH[@]}" "${DCGAN64[@]}"
  cache_count
fi

wants vulkan-dcgan64 && step vulkan-dcgan64 120 ./cats --backend vulkan "${BENCH[@]}" "${DCGAN64[@]}"

# --- data parallelism (`--devices N`, burn-collective between the GPUs): seed128, 64 images per GPU,
# for the scaling efficiency img/s(N) / (N · img/s(1)); docs/distributed.md -----------------
if wants cuda-scaling; then
  NGPU=$(nvidia-smi -L 2>/dev/null | wc -l)
  for n in ${SCALING:-1 2 4 8}; do
    if [ "$n" -gt "$NGPU" ]; then
      say "== cuda-scaling-$n: SKIPPED (this machine has $NGPU GPUs)"
      continue
    fi
    step "cuda-scaling-$n" 180 ./cats --backend cuda "${BENCH[@]}" --no-inference \
      --preset seed128 --batch-size $((64 * n)) --devices "$n"
  done
fi

# --- table ---------------------------------------------------------------------------------
CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
python3 - "$OUT/results.jsonl" "${CARD:-unknown card}" "$(date -u +%F)" "$(tr '\n' ' ' <"$BUNDLE/BUILD_INFO" 2>/dev/null)" >"$OUT/results.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{sys.argv[2]} · {sys.argv[3]} · {sys.argv[4].strip()}\n")
print("| run | framework/backend | config | precision | first step (s) | kernels compiled (autotuned) in it | train img/s | G img/s | status |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    fw = "torch " + r["torch_version"] if r.get("framework") == "torch" else r.get("backend", r["run"].split("-")[0])
    cfg = f'{r["preset"]}:{r["base"]}:{r["batch_size"]}' if "preset" in r else "–"
    prec = r.get("precision", "fp32" if "backend" in r else "–")
    if r.get("channels_last"):
        prec += " +CL"
    f = lambda k, d=1: f"{r[k]:,.{d}f}" if isinstance(r.get(k), (int, float)) else "–"
    kernels = (f'{r["first_step_kernels"]} ({r.get("first_step_autotuned", "–")})'
               if "first_step_kernels" in r else "–")
    print(f'| {r["run"]} | {fw} | {cfg} | {prec} | {f("first_step_s", 2)} | {kernels} | {f("train_img_per_s")} | {f("gen_img_per_s")} | {r["status"]} |')
scaling = {r.get("replicas", 1): r["train_img_per_s"] for r in rows
           if r["run"].startswith("cuda-scaling-") and r.get("train_img_per_s")}
if 1 in scaling and len(scaling) > 1:
    print("\n| GPUs | train img/s | scaling efficiency |\n|---|---|---|")
    for n in sorted(scaling):
        print(f"| {n} | {scaling[n]:,.1f} | {scaling[n] / (n * scaling[1]):.0%} |")
PY
gzip -c "$LOG" >"$OUT/log.txt.gz"
[ -f "$W/cubecl.log" ] && gzip -c "$W/cubecl.log" >"$OUT/cubecl.log.gz"
echo
cat "$OUT/results.md"
