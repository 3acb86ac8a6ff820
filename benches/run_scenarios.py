#!/usr/bin/env python3
"""Runs every BENCHMARKS.md scenario of issue #6 and prints medians with min-max.

Usage (after `cargo build --release -p sluice -p sluice-loadgen`):

    python3 benches/run_scenarios.py                 # every scenario, 5 runs each
    python3 benches/run_scenarios.py --runs 3 --duration 5 --only 1,2
    python3 benches/run_scenarios.py --quick         # 1 short run of each: checks the script

The collector is pinned to core 0 and the load generator to core 1 (`taskset`). Scenarios:
  0  the load generator alone, against its own do-nothing sink: how fast it sends on one core
  1  max sustained items/s, OTLP/gRPC -> batch -> nop for spans, log records and metric data
     points, and OTLP/HTTP protobuf for spans
  2  single-core protobuf decode rate of the same requests (sluice's decoder) and the ratio
     of scenario 1 to it
  3  10k spans/s steady: the collector's CPU (% of one core, from /proc/PID/stat) and RSS
  4  idle RSS, start to ready (benches/startup_idle.py), stripped binary size
  5  OTLP -> Kafka (a tansu broker; skipped when tansu is not installed) and OTLP -> file
     (JSON, JSON+zstd, protobuf+zstd): items/s the exporter delivered
"""
import argparse, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SLUICE = os.path.join(ROOT, "target", "release", "sluice")
LOADGEN = os.path.join(ROOT, "target", "release", "sluice-loadgen")
COLLECTOR_CORE, LOADGEN_CORE = "0", "1"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except Exception:
        return None, ""


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def metric(text, prefix):
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def spread(values, fmt="{:.0f}"):
    if not values:
        return "n/a"
    med = statistics.median(values)
    return (f"median {fmt.format(med)} (min {fmt.format(min(values))}, "
            f"max {fmt.format(max(values))}, {len(values)} runs)")


PIPELINES = """
service:
  extensions: [health_check]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [{exporter}]
    metrics:
      receivers: [otlp]
      processors: [batch]
      exporters: [{exporter}]
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [{exporter}]
"""

BASE = """
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      http:
        endpoint: 127.0.0.1:{http}
processors:
  batch: {batch}
exporters:
{exporters}
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
"""


class Collector:
    """`sluice run` pinned to the collector core with a generated config; stopped on exit."""

    batch = "{}"

    def __init__(self, exporters_yaml, exporter_id="nop"):
        self.dir = tempfile.TemporaryDirectory()
        self.grpc, self.http, self.metrics, self.health = (free_port() for _ in range(4))
        config = BASE.format(grpc=self.grpc, http=self.http, health=self.health,
                             exporters=exporters_yaml.replace("@DIR@", self.dir.name),
                             batch=Collector.batch)
        config += PIPELINES.format(metrics=self.metrics, exporter=exporter_id)
        path = os.path.join(self.dir.name, "config.yaml")
        with open(path, "w") as f:
            f.write(config)
        self.log = open(os.path.join(self.dir.name, "sluice.log"), "w")
        self.proc = subprocess.Popen(
            ["taskset", "-c", COLLECTOR_CORE, SLUICE, "run", "--config", path],
            cwd=self.dir.name, stdout=subprocess.DEVNULL, stderr=self.log,
            env=dict(os.environ, RUST_LOG="warn"))
        deadline = time.time() + 30
        while http_get(self.health, "/")[0] != 200:
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                sys.exit(f"sluice did not become ready; log:\n{self.logs()}")
            time.sleep(0.02)

    def logs(self):
        with open(os.path.join(self.dir.name, "sluice.log")) as f:
            return f.read()

    def metrics_text(self):
        return http_get(self.metrics, "/metrics")[1]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.dir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def loadgen(args, port, extra, during=None):
    """Runs `sluice-loadgen run` pinned to the load generator core; returns its JSON report.
    `during(proc)` is called while it runs (to sample the collector)."""
    cmd = ["taskset", "-c", LOADGEN_CORE, LOADGEN, "run", "--endpoint", f"127.0.0.1:{port}",
           "--json"] + extra
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if during:
        during(proc)
    out, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"loadgen failed: {' '.join(cmd)}\n{err}")
    return json.loads(out)


def max_load(args, protocol, signal_name):
    """Loadgen flags for a max-throughput run. Requests are answered only once the batch they
    went into is exported, so more than one batch's worth must be in flight (8000 items by
    default here): 128 requests of 100 items."""
    extra = ["--protocol", protocol, "--signal", signal_name, "--items-per-request", "100",
             "--concurrency", str(args.concurrency), "--duration", f"{args.duration}s",
             "--warmup", f"{args.warmup}s"]
    if protocol == "grpc":
        extra += ["--connections", str(max(1, args.concurrency // 64))]
    return extra


def scenario0(args):
    print("\n== 0. the load generator alone: against `sluice-loadgen sink` (core "
          f"{COLLECTOR_CORE}), generator on core {LOADGEN_CORE}")
    for protocol in ["grpc", "http-proto", "http-json"]:
        port = free_port()
        sink = subprocess.Popen(["taskset", "-c", COLLECTOR_CORE, LOADGEN, "sink", "--listen",
                                 f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.time() > deadline:
                        sys.exit("the sink did not start")
                    time.sleep(0.02)
            sent, per_cpu = [], []
            for _ in range(args.runs):
                r = loadgen(args, port, ["--protocol", protocol, "--items-per-request", "100",
                                         "--concurrency", "32", "--duration",
                                         f"{min(args.duration, 5)}s"])
                sent.append(r["items_per_sec"])
                per_cpu.append(r["items_per_cpu_sec"])
        finally:
            sink.send_signal(signal.SIGINT)
            sink.wait(timeout=10)
        print(f"{protocol:10} spans/s sent: {spread(sent)}")
        print(f"{'':10} spans per CPU second of the generator: {spread(per_cpu)}")


def scenario1(args, results):
    print("\n== 1. max sustained throughput, otlp -> batch -> nop "
          f"(collector on core {COLLECTOR_CORE}, load generator on core {LOADGEN_CORE})")
    for protocol, signal_name in [("grpc", "traces"), ("grpc", "logs"), ("grpc", "metrics"),
                                  ("http-proto", "traces")]:
        rates, p99s, cpus, refused = [], [], [], 0
        with Collector("  nop:") as c:
            port = c.grpc if protocol == "grpc" else c.http
            for _ in range(args.runs):
                window = {}

                def sample(proc, c=c, window=window):
                    time.sleep(args.warmup)
                    window["t0"], window["c0"] = time.time(), cpu_ticks(c.proc.pid)
                    proc.wait()
                    window["t1"], window["c1"] = time.time(), cpu_ticks(c.proc.pid)

                r = loadgen(args, port, max_load(args, protocol, signal_name), sample)
                rates.append(r["items_per_sec"])
                p99s.append(r["latency"]["p99_us"] / 1000)
                refused += sum(v["items"] for v in r["refused"].values())
                cpus.append(100 * (window["c1"] - window["c0"]) / TICKS
                            / max(window["t1"] - window["t0"], 1e-9))
        item = r["item_name"]
        results[(protocol, signal_name)] = statistics.median(rates)
        print(f"{protocol:10} {signal_name:8} {item}/s: {spread(rates)}")
        print(f"{'':19} request p99 ms: {spread(p99s, '{:.1f}')}; collector CPU %: "
              f"{spread(cpus)}; refused items: {refused}; request: {r['payload']['encoded_bytes']} bytes")


def scenario2(args, results):
    print("\n== 2. single-core protobuf decode rate of the same requests (sluice's decoder, "
          f"core {COLLECTOR_CORE})")
    for signal_name in ["traces", "logs", "metrics"]:
        rates = []
        for _ in range(args.runs):
            out = subprocess.run(
                ["taskset", "-c", COLLECTOR_CORE, LOADGEN, "decode-rate", "--signal", signal_name,
                 "--items-per-request", "100", "--duration", f"{min(args.duration, 3)}s",
                 "--json"], capture_output=True, text=True, check=True)
            r = json.loads(out.stdout)
            rates.append(r["items_per_sec"])
        decode = statistics.median(rates)
        line = f"{signal_name:8} {r['item_name']}/s decoded: {spread(rates)}"
        for protocol in ["grpc", "http-proto"]:
            sustained = results.get((protocol, signal_name))
            if sustained:
                line += f"; scenario 1 {protocol} / decode = {100 * sustained / decode:.1f}%"
        print(line)


def scenario3(args):
    print("\n== 3. 10k spans/s steady (otlp/grpc -> batch -> nop): collector CPU and RSS")
    cpus, rsses = [], []
    for _ in range(args.runs):
        with Collector("  nop:") as c:
            window = {}

            def sample(proc, c=c, window=window):
                time.sleep(args.warmup)
                window["t0"], window["c0"] = time.time(), cpu_ticks(c.proc.pid)
                proc.wait()
                window["t1"], window["c1"] = time.time(), cpu_ticks(c.proc.pid)
                window["rss"] = rss_kib(c.proc.pid)

            r = loadgen(args, c.grpc, [
                "--protocol", "grpc", "--signal", "traces", "--items-per-request", "100",
                "--rate", "10000", "--concurrency", "64", "--duration",
                f"{args.steady_duration}s", "--warmup", f"{args.warmup}s"], sample)
            if abs(r["items_per_sec"] - 10000) > 500:
                print(f"   warning: sent {r['items_per_sec']:.0f} spans/s, not 10000")
            cpus.append(100 * (window["c1"] - window["c0"]) / TICKS
                        / max(window["t1"] - window["t0"], 1e-9))
            rsses.append(window["rss"] / 1024)
    print(f"collector CPU, % of one core: {spread(cpus, '{:.2f}')}")
    print(f"collector RSS at the end, MiB: {spread(rsses, '{:.1f}')}")


def scenario4(args):
    print("\n== 4. idle RSS, start to ready, binary size (benches/startup_idle.py)")
    subprocess.run([sys.executable, os.path.join(ROOT, "benches", "startup_idle.py"),
                    str(max(args.runs, 1)), SLUICE], check=True)
    with tempfile.TemporaryDirectory() as d:
        copy = os.path.join(d, "sluice")
        shutil.copy(SLUICE, copy)
        if shutil.which("strip"):
            subprocess.run(["strip", copy], check=True)
        print(f"release binary: {os.path.getsize(SLUICE)} bytes; after strip: "
              f"{os.path.getsize(copy)} bytes ({os.path.getsize(copy) / 1e6:.1f} MB)")


def exporter_throughput(args, exporters_yaml, exporter_id, label, item_metric):
    rates, accepted = [], []
    with Collector(exporters_yaml, exporter_id) as c:
        prefix = f'otelcol_exporter_sent_{item_metric}_total{{exporter="{exporter_id}"}}'
        for _ in range(args.runs):
            window = {}

            def sample(proc, c=c, window=window):
                time.sleep(args.warmup)
                window["t0"], window["s0"] = time.time(), metric(c.metrics_text(), prefix)
                proc.wait()
                window["t1"], window["s1"] = time.time(), metric(c.metrics_text(), prefix)

            r = loadgen(args, c.grpc, max_load(args, "grpc", "traces"), sample)
            accepted.append(r["items_per_sec"])
            rates.append((window["s1"] - window["s0"]) / max(window["t1"] - window["t0"], 1e-9))
    print(f"{label:28} spans/s delivered: {spread(rates)}")
    print(f"{'':28} spans/s accepted:  {spread(accepted)}")


def tansu_binary():
    found = shutil.which("tansu")
    home = os.path.join(os.path.expanduser("~"), ".cargo", "bin", "tansu")
    return found or (home if os.path.isfile(home) else None)


def scenario5(args):
    print("\n== 5. OTLP/gRPC -> batch -> Kafka and -> file (spans delivered by the exporter)")
    tansu = tansu_binary()
    if not tansu:
        print("kafka: skipped (tansu is not installed; scripts/test.sh installs it)")
    else:
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        with tempfile.TemporaryDirectory() as d:
            # The broker shares the load generator's core: the collector keeps its own.
            broker = subprocess.Popen(
                ["taskset", "-c", LOADGEN_CORE, tansu, "broker", "--listener-url", url,
                 "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                deadline = time.time() + 30
                while True:
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                        break
                    except OSError:
                        if time.time() > deadline:
                            sys.exit("tansu did not start")
                        time.sleep(0.05)
                subprocess.run([tansu, "topic", "create", "bench-spans", "--partitions", "1",
                                "--broker", url], check=True, capture_output=True)
                kafka = (f"  kafka:\n    brokers: [127.0.0.1:{port}]\n"
                         "    traces: {topic: bench-spans, encoding: otlp_proto}\n"
                         "    metrics: {topic: bench-spans}\n    logs: {topic: bench-spans}\n")
                exporter_throughput(args, kafka, "kafka", "kafka (tansu, memory, proto)",
                                    "spans")
            finally:
                broker.send_signal(signal.SIGTERM)
                try:
                    broker.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    broker.kill()
                    broker.wait()
    for label, fmt, compression in [("file json", "json", "none"),
                                    ("file json zstd", "json", "zstd"),
                                    ("file proto zstd", "proto", "zstd")]:
        yaml = (f"  file:\n    path: @DIR@/out\n    format: {fmt}\n"
                f"    compression: {compression}\n")
        exporter_throughput(args, yaml, "file", label, "spans")


def main():
    global SLUICE
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5, help="repetitions per figure (default 5)")
    p.add_argument("--duration", type=float, default=10, help="seconds measured per run")
    p.add_argument("--warmup", type=float, default=2, help="seconds sent before measuring")
    p.add_argument("--steady-duration", type=float, default=30,
                   help="seconds measured in scenario 3 (default 30)")
    p.add_argument("--concurrency", type=int, default=128,
                   help="requests in flight for the max-throughput runs (default 128)")
    p.add_argument("--batch", default="{send_batch_size: 8000, send_batch_max_bytes: 0}",
                   help="the batch processor's settings as a YAML flow mapping (default: "
                        "batches of 8000 items, a multiple of the 100-item requests, with no "
                        "byte cap; `{}` for sluice's defaults; see BENCHMARKS.md)")
    p.add_argument("--only", default="0,1,2,3,4,5", help="comma-separated scenarios to run")
    p.add_argument("--sluice", default=SLUICE,
                   help="the collector binary to measure (default target/release/sluice), "
                        "e.g. a copy built with another allocator")
    p.add_argument("--quick", action="store_true",
                   help="1 run of 2 s each: checks the script works, measures nothing")
    args = p.parse_args()
    SLUICE = os.path.abspath(args.sluice)
    if args.quick:
        args.runs, args.duration, args.warmup, args.steady_duration = 1, 2, 0.5, 2
    for binary in (SLUICE, LOADGEN):
        if not os.path.isfile(binary):
            sys.exit(f"{binary} is missing: cargo build --release -p sluice -p sluice-loadgen")
    if not shutil.which("taskset"):
        sys.exit("taskset (util-linux) is needed to pin the processes to cores")
    only = set(args.only.split(","))
    Collector.batch = args.batch.strip() or "{}"
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {os.cpu_count()} cores, runs={args.runs}, "
          f"duration={args.duration}s, warmup={args.warmup}s, "
          f"batch processor: {Collector.batch}")
    results = {}
    if "0" in only:
        scenario0(args)
    if "1" in only:
        scenario1(args, results)
    if "2" in only:
        scenario2(args, results)
    if "3" in only:
        scenario3(args)
    if "4" in only:
        scenario4(args)
    if "5" in only:
        scenario5(args)


if __name__ == "__main__":
    main()
