#!/usr/bin/env bash
# Runs every check and test sluice has, from a clean checkout. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# The file exporter's tests read its output with the standard tools, as users would.
missing=""
for tool in zstd gzip jq; do command -v "$tool" >/dev/null || missing="$missing $tool"; done
if [ -n "$missing" ]; then
  echo "== installing:$missing"
  apt-get update -qq && apt-get install -y -qq $missing
fi

# The docker_stats end-to-end test builds its image from Debian's static busybox (no registry).
if [ ! -x /bin/busybox ]; then
  echo "== installing: busybox-static"
  apt-get install -y -qq busybox-static || { apt-get update -qq && apt-get install -y -qq busybox-static; }
fi

# The Prometheus end-to-end tests (tests/e2e/prometheus.rs) start Debian's Prometheus (with its
# remote write receiver) and node exporter themselves, on free ports with temporary data.
if ! command -v prometheus >/dev/null || ! command -v prometheus-node-exporter >/dev/null; then
  echo "== installing: prometheus prometheus-node-exporter"
  apt-get install -y -qq --no-install-recommends prometheus prometheus-node-exporter \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus prometheus-node-exporter; }
fi

# The CORS test (tests/e2e/browser_cors.rs) loads web pages in Debian's headless Chromium.
if ! command -v chromium >/dev/null; then
  echo "== installing: chromium"
  apt-get install -y -qq --no-install-recommends chromium \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }
fi

# The syslog tests (tests/e2e/syslog.rs) send with util-linux's `logger`.
if ! command -v logger >/dev/null; then
  echo "== installing: bsdutils (logger)"
  apt-get install -y -qq bsdutils || { apt-get update -qq && apt-get install -y -qq bsdutils; }
fi

# The Kafka end-to-end tests (tests/e2e/kafka.rs) start their own tansu brokers on free ports.
if ! command -v tansu >/dev/null; then
  echo "== installing: tansu"
  cargo install tansu --version 0.6.0 --locked --features dynostore,libsql
fi

# Real SDK clients (tests/e2e/answer_without_waiting.rs): an application instrumented with the
# OpenTelemetry Python SDK, from PyPI.
if ! python3 -c "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http" 2>/dev/null; then
  echo "== installing: the OpenTelemetry Python SDK"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    opentelemetry-sdk==1.45.2 opentelemetry-exporter-otlp-proto-grpc==1.45.2 \
    opentelemetry-exporter-otlp-proto-http==1.45.2
fi

echo "== format"
cargo fmt --all -- --check

echo "== lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
cargo test --workspace --locked
