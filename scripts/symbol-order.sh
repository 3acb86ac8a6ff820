#!/usr/bin/env bash
# Regenerates link/symbol-order.txt, the code layout of release builds (build.rs): which
# functions run when idle, which on the OTLP path and which only at start-up, measured with
# callgrind.
#
#   scripts/symbol-order.sh
#
# Needs valgrind and python3. Run it after a rustc or dependency upgrade (symbol names carry a
# hash of both, and names the build no longer has are ignored) or when start-up changes much;
# then compare `python3 benches/startup_idle.py` before and after (BENCHMARKS.md, "Code
# layout"). Takes about five minutes on top of the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
work="$root/target/link-order"
mkdir -p "$work"
rm -f "$work"/*.callgrind "$work"/*.callgrind.* "$work"/*.log

SLUICE_LINK_MAP="$work/sluice.map" cargo build --release --locked -p sluice --bin sluice
cargo build --release --locked -p sluice-loadgen
binary="$root/target/release/sluice"
loadgen="$root/target/release/sluice-loadgen"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# One callgrind run of sluice: $1 name, $2 seconds idle after ready, $3 "traffic" or "", $4
# config file or "" for the embedded default. Leaves $work/$1.callgrind.
run() {
  local name=$1 idle=$2 traffic=$3 config=$4 dir grpc http pid
  dir="$(mktemp -d)"
  grpc=$(free_port); http=$(free_port)
  local args=()
  if [ -n "$config" ]; then
    sed -e "s/@GRPC@/$grpc/; s/@HTTP@/$http/; s/@HEALTH@/$(free_port)/; s/@METRICS@/$(free_port)/" \
      "$config" > "$dir/config.yaml"
    args=(run --config "$dir/config.yaml")
  fi
  (cd "$dir" && SLUICE_OTLP_GRPC_ENDPOINT="127.0.0.1:$grpc" SLUICE_OTLP_HTTP_ENDPOINT="127.0.0.1:$http" \
    RUST_LOG=warn exec valgrind --tool=callgrind --dump-instr=yes --compress-pos=no \
    --compress-strings=no --callgrind-out-file="$work/$name.callgrind" "$binary" "${args[@]}") \
    > "$work/$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do
    (echo > "/dev/tcp/127.0.0.1/$http") 2>/dev/null && break
    sleep 0.2
  done
  # Everything until now is start-up: dump it as its own part ($1.callgrind.1). What runs
  # from here on (timers, scrapes, the first connections as a readiness probe makes them, and
  # traffic) is what stays in use once sluice releases its start-up pages; it goes to
  # $1.callgrind.
  sleep 1
  callgrind_control -d "$pid" > /dev/null
  (echo > "/dev/tcp/127.0.0.1/$grpc") 2>/dev/null || true
  (echo > "/dev/tcp/127.0.0.1/$http") 2>/dev/null || true
  sleep "$idle"
  if [ "$traffic" = traffic ]; then
    for signal in traces logs metrics; do
      "$loadgen" run --endpoint "127.0.0.1:$grpc" --protocol grpc --signal "$signal" \
        --concurrency 4 --items 5000 > /dev/null
      "$loadgen" run --endpoint "127.0.0.1:$http" --protocol http-proto --signal "$signal" \
        --concurrency 4 --items 3000 > /dev/null
      "$loadgen" run --endpoint "127.0.0.1:$http" --protocol http-json --signal "$signal" \
        --concurrency 2 --items 1000 > /dev/null
    done
    "$loadgen" run --endpoint "127.0.0.1:$grpc" --protocol grpc --compression gzip \
      --items 2000 > /dev/null
    sleep 2
  fi
  kill -TERM "$pid"
  wait "$pid" || true
  rm -rf "$dir"
}

# The benchmark pipeline: OTLP -> batch -> nop, with the health check and self-metrics.
cat > "$work/nop.yaml" <<'EOF'
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:@GRPC@"}
      http: {endpoint: "127.0.0.1:@HTTP@"}
processors:
  batch:
exporters:
  nop:
extensions:
  health_check: {endpoint: "127.0.0.1:@HEALTH@"}
service:
  extensions: [health_check]
  telemetry:
    metrics: {address: "127.0.0.1:@METRICS@"}
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [nop]}
    metrics: {receivers: [otlp], processors: [batch], exporters: [nop]}
    logs: {receivers: [otlp], processors: [batch], exporters: [nop]}
EOF

# Start-up, then idle, with the embedded default config (host metrics scrapes included).
run startup 12 "" ""
run default-traffic 1 traffic ""
run nop-traffic 1 traffic "$work/nop.yaml"

# Code in use after start-up first (idle, then the OTLP path), so that what comes back after
# the start-up pages are released sits together; start-up-only code last.
python3 scripts/symbol_order.py "$work/sluice.map" "$binary" link/symbol-order.txt \
  "$work/startup.callgrind" "$work/default-traffic.callgrind" "$work/nop-traffic.callgrind" \
  "$work/startup.callgrind.1" "$work/nop-traffic.callgrind.1"
echo "now rebuild (cargo build --release) and measure: python3 benches/startup_idle.py"
