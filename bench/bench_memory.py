"""bench-memory: the service's resident memory idle, under sustained load, after 1,000,000 requests
with no agent listening (the bounded export queue must cap it), and per open connection: silent,
idle between requests, and holding an unfinished request head of the largest size served, at 1,000
and 10,000 connections; from those, how many connections fit the container's memory."""

import argparse
import os
import resource
import socket
import time

from common import SERVICE_CPU, Process, binary, free_port, loadgen, null_sink, service, service_env, wait_for_port

# Access logs off (1M lines of them would only measure the log pipe); the service's own lines stay.
QUIET = {"RUST_LOG": "warn,apm_demo=info,apm_demo::access=warn"}

# The largest request head the service reads (src/server.rs MAX_HEAD_BYTES): one byte less is held.
MAX_HEAD_BYTES = 16 * 1024
# What the Kubernetes manifest gives the service's container (deploy/kubernetes/manifests/10-app.yaml).
CONTAINER_MIB = 64
# Kept free in the container for what the figures do not show: allocator fragmentation, a burst of
# spans, the kernel's socket memory (charged to the container, not in RSS).
HEADROOM_MIB = 8

# What each kind of connection sends before it holds still.
KINDS = {
    "silent": b"",
    "idle keep-alive": b"GET /api/apm HTTP/1.1\r\nHost: bench\r\n\r\n",
    "full head": None,  # an unfinished head of MAX_HEAD_BYTES - 1 bytes, built below
}


def full_head(size):
    start = b"GET /api/apm HTTP/1.1\r\nHost: bench\r\nX-Fill: "
    return start + b"a" * (size - 1 - len(start))


def open_files():
    """Raise this process's soft limit on open files to its hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def hold(port, count, payload, answered):
    """`count` connections that each send `payload` (and read the answer, if `answered`), held open."""
    held = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if payload:
            s.sendall(payload)
        if answered:
            if not s.recv(4096).startswith(b"HTTP/1.1 200"):
                raise RuntimeError("the keep-alive request was not answered 200")
        held.append(s)
    return held


def settled_rss(svc, expected_fds, timeout=60):
    """The service's RSS once it holds `expected_fds` descriptors and its RSS has stopped moving."""
    deadline = time.monotonic() + timeout
    while open_fds(svc.popen.pid) < expected_fds:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the service holds {open_fds(svc.popen.pid)} descriptors, not {expected_fds}")
        time.sleep(0.05)
    previous = svc.rss_kib()
    while True:
        time.sleep(0.5)
        now = svc.rss_kib()
        if abs(now - previous) < 64 or time.monotonic() > deadline:
            return now
        previous = now


def per_connection(path, counts, head_bytes):
    """{kind: (idle RSS, [(count, RSS)])}: a fresh service per kind, connections added up to each count."""
    results = {}
    for kind, payload in KINDS.items():
        payload = full_head(head_bytes) if payload is None else payload
        port = free_port()
        env = {**service_env(traced=True, extra=QUIET), "PORT": str(port),
               # Room for every connection, and none closed while measured.
               "MAX_CONNECTIONS": str(max(counts) + 100), "HEADER_READ_TIMEOUT": "600s"}
        with Process([path], env=env, cpu=SERVICE_CPU) as svc:
            wait_for_port(port)
            time.sleep(1)
            base_fds = open_fds(svc.popen.pid)
            idle = settled_rss(svc, base_fds)
            held, rows = [], []
            try:
                for count in counts:
                    held += hold(port, count - len(held), payload, kind == "idle keep-alive")
                    rows.append((count, settled_rss(svc, base_fds + count)))
            finally:
                for s in held:
                    s.close()
        results[kind] = (idle, rows)
    return results


def connections(args):
    path = args.binary or binary("apm-demo")
    limit = open_files()
    counts = [c for c in map(int, args.counts.split(",")) if c + 200 < limit]
    if len(counts) < 2:
        print(f"  (this process may open {limit} files: measuring {counts} connections only)")
    results = per_connection(path, counts, args.head_bytes)
    print(f"  per connection ({os.path.basename(path)}; a head of {args.head_bytes - 1} bytes held unfinished):")
    worst = 0.0
    for kind, (idle, rows) in results.items():
        cells = []
        for count, rss in rows:
            each = (rss - idle) / count
            worst = max(worst, each)
            cells.append(f"{count:>6,}: RSS {rss / 1024:6.1f} MiB, {each:5.1f} KiB each")
        print(f"    {kind:16} idle RSS {idle / 1024:5.1f} MiB; " + "; ".join(cells))
    return worst


def fit(worst_kib, peak_mib):
    """How many connections, each at the costliest measured, fit the container beside the service's
    own peak under load and the headroom."""
    room = CONTAINER_MIB - peak_mib - HEADROOM_MIB
    fits = int(room * 1024 / worst_kib)
    print(f"  the container's {CONTAINER_MIB} MiB - {peak_mib:.1f} MiB peak under load - {HEADROOM_MIB} MiB headroom "
          f"= {room:.1f} MiB: {fits:,} connections at {worst_kib:.1f} KiB each")


def load(args):
    """Idle, sustained and 1M-request figures; returns the sustained peak in MiB."""
    sink, sink_url = null_sink()
    with sink:
        port = free_port()
        with service(port, sink_url, extra=QUIET) as svc:
            time.sleep(2)
            idle = svc.rss_kib()
            summary = loadgen(f"http://127.0.0.1:{port}", "-c", "32", "-d", f"{args.sustained}s")
            peak = svc.rss_kib("VmHWM")
        print(f"  idle                                RSS {idle / 1024:6.1f} MiB")
        print(f"  {args.sustained} s sustained load ({summary['achieved_rate']:.0f} req/s)  peak RSS {peak / 1024:6.1f} MiB")

    port = free_port()
    with service(port, extra=QUIET) as svc:  # the agent URL points at a port nothing listens on
        before = svc.rss_kib()
        summary = loadgen(f"http://127.0.0.1:{port}", "-c", "32", "-n", str(args.requests))
        after, peak_no_agent = svc.rss_kib(), svc.rss_kib("VmHWM")
    print(f"  {summary['requests']} requests, no agent ({summary['achieved_rate']:.0f} req/s, {summary['errors']} errors): "
          f"RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB, peak {peak_no_agent / 1024:.1f} MiB")
    return peak / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sustained", type=int, default=60, help="seconds of sustained load")
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--part", choices=["all", "load", "connections"], default="all")
    parser.add_argument("--binary", help="the service binary of the connections part (default: the release build)")
    parser.add_argument("--counts", default="1000,10000", help="connections held, in steps")
    parser.add_argument("--head-bytes", type=int, default=MAX_HEAD_BYTES,
                        help="the largest head the binary reads (its unfinished heads are one byte less)")
    parser.add_argument("--peak-mib", type=float, default=23.0,
                        help="the service's own peak under load, when the load part is not run (bench/README.md)")
    args = parser.parse_args()
    peak = load(args) if args.part in ("all", "load") else args.peak_mib
    if args.part in ("all", "connections"):
        fit(connections(args), peak)


if __name__ == "__main__":
    main()
