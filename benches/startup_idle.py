#!/usr/bin/env python3
"""Start-to-ready time and idle memory of the release binary with the embedded default config.

Usage: python3 benches/startup_idle.py [runs] [binary]   (after `cargo build --release`)

Each run starts the binary (default `target/release/sluice`) in a fresh directory, times how
long until the OTLP gRPC and HTTP ports accept connections, waits 3 s, reads VmRSS and its two
parts (RssAnon: the process's own memory; RssFile: pages of the binary and shared libraries
mapped from the page cache, clean and shared), and stops it with SIGTERM. Prints the median
and the range over the runs.
"""
import os, signal, socket, statistics, subprocess, sys, tempfile, time

BINARY = os.path.join(os.path.dirname(__file__), "..", "target", "release", "sluice")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepting(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.05):
            return True
    except OSError:
        return False


def rss_kib(pid):
    """(VmRSS, RssAnon, RssFile) in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                values[key] = int(rest.split()[0])
    return values.get("VmRSS", 0), values.get("RssAnon", 0), values.get("RssFile", 0)


def one_run():
    grpc, http = free_port(), free_port()
    env = dict(os.environ, SLUICE_OTLP_GRPC_ENDPOINT=f"127.0.0.1:{grpc}",
               SLUICE_OTLP_HTTP_ENDPOINT=f"127.0.0.1:{http}", RUST_LOG="warn")
    with tempfile.TemporaryDirectory() as cwd:
        start = time.perf_counter()
        proc = subprocess.Popen([os.path.abspath(BINARY)], cwd=cwd, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not (accepting(grpc) and accepting(http)):
            if proc.poll() is not None:
                raise SystemExit("sluice exited early")
            if time.perf_counter() - start > 10:
                proc.kill()
                raise SystemExit("ports never accepted connections")
        ready_ms = (time.perf_counter() - start) * 1000
        time.sleep(3)
        rss = rss_kib(proc.pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        return ready_ms, rss


def main():
    global BINARY
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    if len(sys.argv) > 2:
        BINARY = sys.argv[2]
    results = [one_run() for _ in range(runs)]
    ready = [r[0] for r in results]
    print(f"runs: {runs}")
    print(f"start to ports accepting: median {statistics.median(ready):.1f} ms "
          f"(min {min(ready):.1f}, max {max(ready):.1f})")
    for i, label in [(0, "idle RSS after 3 s"), (1, "  of which RssAnon"),
                     (2, "  of which RssFile")]:
        values = [r[1][i] / 1024 for r in results]
        print(f"{label}: median {statistics.median(values):.1f} MiB "
              f"(min {min(values):.1f}, max {max(values):.1f})")


if __name__ == "__main__":
    main()
