#!/usr/bin/env python3
"""Scenarios that look like real clients (issue #17), sluice side by side with another
collector in the same run.

SDK exporters send one request at a time per signal, so what matters to them is how long each
request takes to be answered, not how many a collector takes with 128 in flight. Each scenario
runs against sluice (`otlp -> batch -> nop`, the batch processor with its defaults) and, when
`--rotel PATH` is given, against that Rotel binary (`--exporter blackhole`), each pinned to
core 0 with the load generator on core 1:

  A  sequential clients: 1, 4 and 32 of them (each waits for its answer before sending again),
     OTLP/gRPC and OTLP/HTTP protobuf, 100 and 512 spans per request: spans/s, latency p50/p99
  B  10k spans/s steady from one sequential client at 100 requests/s: latency, collector CPU
     % of one core and RSS
  C  many in flight (128 requests of 100 spans): spans/s, for the per-core ratio

Usage (after `cargo build --release -p sluice -p sluice-loadgen`):

    python3 benches/real_clients.py --rotel /path/to/rotel --runs 3
    python3 benches/real_clients.py --only A --duration 5

Rotel is not built by this repository; build it beside the project from its own sources.
"""
import argparse, os, socket, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_scenarios as rs  # noqa: E402


class Rotel:
    """A Rotel collector with its blackhole exporter, pinned to the collector core."""

    def __init__(self, binary):
        self.dir = tempfile.TemporaryDirectory()
        self.grpc, self.http = rs.free_port(), rs.free_port()
        self.log = open(os.path.join(self.dir.name, "rotel.log"), "w")
        self.proc = subprocess.Popen(
            ["taskset", "-c", rs.COLLECTOR_CORE, binary, "start",
             "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc}",
             "--otlp-http-endpoint", f"127.0.0.1:{self.http}",
             "--exporter", "blackhole"],
            cwd=self.dir.name, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.time() + 30
        for port in (self.grpc, self.http):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if self.proc.poll() is not None or time.time() > deadline:
                        self.stop()
                        sys.exit("rotel did not start")
                    time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
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


def collectors(args):
    """(name, context manager factory) for every collector under test."""
    out = [("sluice", lambda: rs.Collector("  nop:"))]
    if args.rotel:
        out.append(("rotel", lambda: Rotel(args.rotel)))
    return out


def measure(args, port, extra, pid):
    """One load run; returns (items/s, p50 ms, p99 ms, collector CPU %, collector RSS MiB)."""
    window = {}

    def sample(proc):
        time.sleep(args.warmup)
        window["t0"], window["c0"] = time.time(), rs.cpu_ticks(pid)
        rss = []
        while proc.poll() is None:
            rss.append(rs.rss_kib(pid))
            time.sleep(0.2)
        window["t1"], window["c1"] = time.time(), rs.cpu_ticks(pid)
        window["rss"] = statistics.median(rss) / 1024 if rss else 0

    r = rs.loadgen(args, port, extra + ["--duration", f"{args.duration}s",
                                        "--warmup", f"{args.warmup}s"], sample)
    cpu = 100 * (window["c1"] - window["c0"]) / rs.TICKS / max(window["t1"] - window["t0"], 1e-9)
    refused = sum(v["items"] for v in r["refused"].values())
    if refused:
        print(f"   ({refused} items refused)")
    return (r["items_per_sec"], r["latency"]["p50_us"] / 1000, r["latency"]["p99_us"] / 1000,
            cpu, window["rss"])


def med(values, fmt):
    return rs.spread(values, fmt)


def scenario_a(args):
    print("\n== A. sequential clients (each waits for its answer), spans; collector on core "
          f"{rs.COLLECTOR_CORE}, load generator on core {rs.LOADGEN_CORE}")
    print("| collector | protocol | clients | spans/request | spans/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for name, make in collectors(args):
        for protocol in ["grpc", "http-proto"]:
            for clients in [1, 4, 32]:
                for per_request in [100, 512]:
                    rows = []
                    with make() as c:
                        port = c.grpc if protocol == "grpc" else c.http
                        extra = ["--protocol", protocol, "--items-per-request", str(per_request),
                                 "--concurrency", str(clients)]
                        if protocol == "grpc":
                            extra += ["--connections", str(clients)]
                        for _ in range(args.runs):
                            rows.append(measure(args, port, extra, c.proc.pid))
                    rates, p50, p99 = zip(*[(r[0], r[1], r[2]) for r in rows])
                    print(f"| {name} | {protocol} | {clients} | {per_request} | "
                          f"{med(rates, '{:.0f}')} | {med(p50, '{:.2f}')} | {med(p99, '{:.2f}')} |",
                          flush=True)


def scenario_b(args):
    print("\n== B. 10k spans/s from one sequential client at 100 requests/s (gRPC)")
    print("| collector | spans/s | p50 ms | p99 ms | CPU % of one core | RSS MiB |")
    print("|---|---|---|---|---|---|")
    for name, make in collectors(args):
        rows = []
        with make() as c:
            for _ in range(args.runs):
                rows.append(measure(args, c.grpc, ["--protocol", "grpc", "--items-per-request",
                                                   "100", "--concurrency", "1", "--rate",
                                                   "10000"], c.proc.pid))
        cols = list(zip(*rows))
        print(f"| {name} | {med(cols[0], '{:.0f}')} | {med(cols[1], '{:.2f}')} | "
              f"{med(cols[2], '{:.2f}')} | {med(cols[3], '{:.2f}')} | {med(cols[4], '{:.1f}')} |",
              flush=True)


def scenario_c(args):
    print("\n== C. many in flight: 128 requests of 100 spans (gRPC, 2 connections)")
    print("| collector | spans/s | p99 ms | CPU % |")
    print("|---|---|---|---|")
    for name, make in collectors(args):
        rows = []
        with make() as c:
            for _ in range(args.runs):
                rows.append(measure(args, c.grpc, ["--protocol", "grpc", "--items-per-request",
                                                   "100", "--concurrency", "128",
                                                   "--connections", "2"], c.proc.pid))
        cols = list(zip(*rows))
        print(f"| {name} | {med(cols[0], '{:.0f}')} | {med(cols[2], '{:.2f}')} | "
              f"{med(cols[3], '{:.0f}')} |", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rotel", help="a Rotel binary to run side by side")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=float, default=8)
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--only", default="A,B,C")
    p.add_argument("--sluice", default=rs.SLUICE)
    args = p.parse_args()
    rs.SLUICE = args.sluice
    for path in (rs.SLUICE, rs.LOADGEN):
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: cargo build --release -p sluice -p sluice-loadgen")
    only = set(args.only.split(","))
    if "A" in only:
        scenario_a(args)
    if "B" in only:
        scenario_b(args)
    if "C" in only:
        scenario_c(args)


if __name__ == "__main__":
    main()
