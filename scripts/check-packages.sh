#!/usr/bin/env bash
# Packages the four library crates as crates.io would receive them, then builds and runs
# the README's "As a library" example in a fresh crate outside the workspace that depends
# on those packages (by version, patched to the unpacked .crate files: what a user of
# crates.io gets). Run from anywhere; `.ci/run` calls it.
#
#   scripts/check-packages.sh [--allow-dirty]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CRATES=(flex-kernels dcgan-data dcgan-core dcgan-metrics)
VERSION=$(cargo metadata --no-deps --format-version 1 |
  python3 -c 'import json,sys; print({p["name"]: p["version"] for p in json.load(sys.stdin)["packages"]}["dcgan-core"])')

args=()
for c in "${CRATES[@]}"; do args+=(-p "$c"); done
# cargo's own verification would build burn once per crate, from scratch; the fresh crate
# below compiles all four packages from their .crate contents instead, in one build.
cargo package --no-verify "${args[@]}" "$@"

# Nothing internal travels: no workspace-only files, no data, no build output.
for c in "${CRATES[@]}"; do
  listing=$(cargo package -p "$c" --list "$@" 2>/dev/null)
  for required in Cargo.toml README.md LICENSE-MIT LICENSE-APACHE src/lib.rs; do
    grep -qx "$required" <<<"$listing" || { echo "$c: the package lacks $required" >&2; exit 1; }
  done
  if grep -E '^(target/|\.ci/|benches/|docs/)|\.catgan$|fidstats$' <<<"$listing"; then
    echo "$c: the package contains files that are not the crate's" >&2
    exit 1
  fi
done

FRESH=$ROOT/target/fresh-crate
rm -rf "$FRESH" && mkdir -p "$FRESH/packages"
for c in "${CRATES[@]}"; do
  tar -xzf "target/package/$c-$VERSION.crate" -C "$FRESH/packages"
done
# cargo packages every file with the same fixed mtime, and the build below shares the
# workspace's target folder: without fresh mtimes a rerun would reuse the packages' old
# compiled code (seen: "cannot find function" for functions added since).
find "$FRESH/packages" -type f -exec touch {} +
mkdir -p "$FRESH/app/src"
# The README's library example, verbatim.
python3 - "$ROOT/README.md" "$FRESH/app/src/main.rs" <<'PY'
import re, sys
readme = open(sys.argv[1]).read()
section = readme.split("## As a library", 1)[1]
code = re.search(r"```rust[^\n]*\n(.*?)```", section, re.S).group(1)
open(sys.argv[2], "w").write(code)
PY
cat > "$FRESH/app/Cargo.toml" <<TOML
[package]
name = "readme-example"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]

[dependencies]
dcgan-core = "$VERSION"
dcgan-data = "$VERSION"
# Not used by the example: compiled to prove its package builds too.
dcgan-metrics = "$VERSION"
burn = { version = "=0.21.0", features = ["std", "autodiff", "flex"] }
serde_json = "1"

# As the workspace builds (dependencies optimised: a DCGAN step in an unoptimised burn
# takes seconds).
[profile.dev]
opt-level = 1
debug = "line-tables-only"

[profile.dev.package."*"]
opt-level = 3
debug = false

[patch.crates-io]
$(for c in "${CRATES[@]}"; do echo "$c = { path = \"../packages/$c-$VERSION\" }"; done)
TOML
# The workspace's lock file pins the same versions of everything (no surprise upgrades,
# and the build reuses what the workspace compiled).
cp Cargo.lock "$FRESH/app/Cargo.lock"
cd "$FRESH/app"
CARGO_TARGET_DIR=$ROOT/target cargo run --quiet -- "$ROOT/crates/dcgan-data/assets/cats" | tee run.log
grep -q "^step 20 " run.log
test -s cats.catgan
echo "the README's library example builds and runs against the packaged crates"
