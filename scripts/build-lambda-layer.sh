#!/usr/bin/env bash
# Builds sluice as an AWS Lambda extension layer: a zip holding `extensions/sluice` (Lambda
# starts every executable in /opt/extensions) and, with --config FILE, `sluice/config.yaml`
# (read from /opt/sluice/config.yaml when neither --config nor SLUICE_CONFIG is given).
#
#   scripts/build-lambda-layer.sh [--config FILE] [--out DIR]
#
# One zip per architecture under target/lambda/ (sluice-lambda-layer-x86_64.zip, ...-arm64.zip).
# Targets: musl (static, runs on every Lambda runtime) when its Rust target is installed, else
# glibc (build on a system whose glibc is not newer than the runtime's: Amazon Linux 2023 has
# 2.34). arm64 is built when an aarch64 target is installed (`rustup target add
# aarch64-unknown-linux-musl` plus a linker for it, e.g. via CARGO_TARGET_..._LINKER), and
# skipped with a note otherwise. FEATURES (default `lambda,mimalloc`) picks the Cargo features: the
# Docker and Kafka components have no use in a function and stay out of the layer.
set -euo pipefail
cd "$(dirname "$0")/.."

config=""
out="target/lambda"
while [ $# -gt 0 ]; do
  case "$1" in
    --config) config="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
if [ -n "$config" ] && [ ! -f "$config" ]; then
  echo "no such config: $config" >&2; exit 2
fi
features="${FEATURES:-lambda,mimalloc}"
installed="$(rustup target list --installed 2>/dev/null || rustc -vV | sed -n 's/^host: //p')"

pick() { # arch -> the best installed target, or nothing
  for t in "$1-unknown-linux-musl" "$1-unknown-linux-gnu"; do
    if grep -qx "$t" <<<"$installed"; then echo "$t"; return; fi
  done
}

mkdir -p "$out"
built=0
for arch in x86_64 aarch64; do
  target="$(pick "$arch")"
  name="$arch"; [ "$arch" = aarch64 ] && name=arm64
  if [ -z "$target" ]; then
    echo "== $name: no $arch Rust target installed; skipped"
    continue
  fi
  echo "== $name: building for $target (features: $features)"
  if ! cargo build --release --locked --bin sluice --target "$target" \
      --no-default-features --features "$features"; then
    echo "== $name: build failed (missing linker for $target?)" >&2
    [ "$arch" = x86_64 ] && exit 1
    continue
  fi
  stage="$(mktemp -d)"
  mkdir -p "$stage/extensions"
  install -m 0755 "target/$target/release/sluice" "$stage/extensions/sluice"
  if [ -n "$config" ]; then
    mkdir -p "$stage/sluice"
    install -m 0644 "$config" "$stage/sluice/config.yaml"
  fi
  zipfile="$(realpath "$out")/sluice-lambda-layer-$name.zip"
  rm -f "$zipfile"
  (cd "$stage" && zip -q -r -X "$zipfile" .)
  rm -rf "$stage"
  echo "== $name: $zipfile ($(du -h "$zipfile" | cut -f1))"
  built=$((built + 1))
done
[ "$built" -gt 0 ]
