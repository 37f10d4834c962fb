#!/usr/bin/env bash
# Builds, on this (GPU-less) machine, everything scripts/gpu/run.sh needs on the lent GPU
# machine, into the git-ignored folders .device/ and .gl/ that the `run` call carries:
#
#   .device/cats.gz          the `cats` tool, release, features "cuda vulkan" (+ default flex),
#                            stripped and gzipped
#   .device/torch_dcgan.py   the PyTorch reference (benches/reference/), same commit
#   .device/run.sh           the device-side script (scripts/gpu/run.sh), same commit
#   .device/BUILD_INFO       commit, date, features, sizes
#   .gl/*.deb                the Vulkan loader (the device README's recipe), for --backend vulkan
#
# Usage: scripts/gpu/build-bundle.sh [--no-gl]
# Then call the device tool (docs/benchmarks.md, "## GPU"):
#   run(command="bash .device/run.sh", carry=[".device", ".gl"], timeout_s=600)
set -euo pipefail
cd "$(dirname "$0")/../.."

WITH_GL=1
[ "${1:-}" = "--no-gl" ] && WITH_GL=0
FEATURES="${FEATURES:-cuda vulkan}"
LIMIT=$((60 * 1024 * 1024)) # the run tool carries 64 MiB with the working tree; keep margin

echo "== cargo build --release --example cats --features \"$FEATURES\" (CUDARC_CUDA_VERSION=13000)"
CUDARC_CUDA_VERSION=13000 cargo build --release --example cats --features "$FEATURES"

mkdir -p .device
cp target/release/examples/cats .device/cats
strip .device/cats
gzip -9 -f .device/cats
cp benches/reference/torch_dcgan.py scripts/gpu/run.sh .device/
{
  echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!.device' 2>/dev/null || echo -dirty)"
  echo "built: $(date -u +%FT%TZ) on $(uname -m)"
  echo "features: $FEATURES"
  echo "cats.gz: $(stat -c %s .device/cats.gz) bytes"
} >.device/BUILD_INFO
cat .device/BUILD_INFO

if [ "$WITH_GL" = 1 ] && ! ls .gl/*.deb >/dev/null 2>&1; then
  echo "== Vulkan loader packages into .gl/ (device README recipe)"
  grep -qx '/.gl/' .git/info/exclude 2>/dev/null || grep -qx '/.gl/' .gitignore || echo /.gl/ >>.git/info/exclude
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  # shellcheck disable=SC2086
  apt-get $o update -qq
  # shellcheck disable=SC2086
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi

total=$(du -cb .device .gl 2>/dev/null | tail -1 | cut -f1)
echo "== carried: $total bytes (.device + .gl); limit for the whole working tree: 64 MiB"
if [ "$total" -gt "$LIMIT" ]; then
  echo "error: the bundle is over $LIMIT bytes: build with fewer features (FEATURES=cuda)" >&2
  exit 1
fi
echo "ready: run(command=\"bash .device/run.sh\", carry=[\".device\", \".gl\"], timeout_s=600)"
