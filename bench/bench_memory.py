"""bench-memory: the service's resident memory idle, under sustained load, after 1,000,000 requests
with no agent listening, with its span queue full (an agent that accepts and never answers, requests
carrying the largest URL and user agent a head can hold: the bounded export queue must cap it), and
per open connection: silent, idle between requests, and holding an unfinished request head of the
largest size served, at 1,000 and 10,000 connections; from those, how many connections fit the
container's memory."""

import argparse
import http.client
import os
import resource
import socket
import time

from common import SERVICE_CPU, Process, binary, free_port, loadgen, null_sink, service, service_env, wait_for_port

# Access logs off (1M lines of them would only measure the log pipe); the service's own lines stay.
QUIET = {"RUST_LOG": "warn,apm_demo=info,apm_demo::access=warn"}

# The largest request head the service reads (src/server.rs MAX_HEAD_BYTES): one byte less is held.
MAX_HEAD_BYTES = 16 * 1024
# What the Kubernetes manifest gives the service's container, and the exporter it runs
# (deploy/kubernetes/manifests/10-app.yaml).
CONTAINER_MIB = 64
CONTAINER_EXPORTER = "opentelemetry-datadog"
# Kept free in the container for what no figure shows: allocator fragmentation, page cache charged to
# the container's cgroup (deploy/kubernetes/tests/test_k8s_consistency.py keeps as much free).
HEADROOM_MIB = 8

# The peak with the span queue full (the queue part), for the connections part run alone.
QUEUE_PEAK_MIB = 30.9
# The kernel's memory for one connected socket, charged to the container's cgroup but not in RSS
# (/proc/slabinfo: TCP 2,368 bytes, sock_inode_cache 832, filp, dentry and eventpoll_epi 512).
SOCKET_KIB = 3.7

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
    own peak (under load, or with its span queue full: the higher) and the headroom."""
    room = CONTAINER_MIB - peak_mib - HEADROOM_MIB
    each = worst_kib + SOCKET_KIB
    fits = int(room * 1024 / each)
    print(f"  the container's {CONTAINER_MIB} MiB - {peak_mib:.1f} MiB the service's own peak - {HEADROOM_MIB} MiB "
          f"headroom = {room:.1f} MiB: {fits:,} connections at {worst_kib:.1f} + {SOCKET_KIB} KiB (its socket) each, "
          f"held still (a flood adds what the allocator keeps of the connections it frees: tests/limits.rs)")


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


def stalled_agent():
    """A trace agent that accepts connections and never reads or answers: every export waits for its
    timeout while the queue fills. Returns the listening socket (close it to stop) and its URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # connections complete in the kernel's backlog; nothing ever accepts them
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


def full_queue(args):
    """Peak RSS of the service with its span queue full, printed per exporter: requests as fast as
    one client sends them for `--queue-seconds`, each with a URL and a user agent far past what a
    span keeps (trace_layer.rs MAX_CLIENT_VALUE, 1 KiB), to an agent that never answers. Returns the
    container's exporter's peak, in MiB."""
    query = "/api/apm?fill=" + "q" * 4000
    agent_header = "ua-" + "u" * 8000
    peaks = {}
    for exporter in args.exporters.split(","):
        listener, agent_url = stalled_agent()
        try:
            port = free_port()
            env = {**service_env(agent_url, extra=QUIET), "PORT": str(port), "TRACE_EXPORTER": exporter}
            with Process([args.binary or binary("apm-demo")], env=env, cpu=SERVICE_CPU) as svc:
                wait_for_port(port)
                time.sleep(1)
                idle = svc.rss_kib()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                sent, started = 0, time.monotonic()
                while time.monotonic() - started < args.queue_seconds:
                    conn.request("GET", query, headers={"User-Agent": agent_header})
                    response = conn.getresponse()
                    response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{exporter}: answered {response.status}")
                    sent += 1
                conn.close()
                peak = svc.rss_kib("VmHWM")
        finally:
            listener.close()
        peaks[exporter] = peak / 1024
        print(f"  span queue full ({exporter}, agent never answers; {sent:,} requests in {args.queue_seconds} s "
              f"with a {len(query):,}-byte URL and a {len(agent_header):,}-byte user agent): "
              f"RSS {idle / 1024:.1f} MiB idle, peak {peak / 1024:.1f} MiB")
    for exporter, peak in peaks.items():
        if peak + HEADROOM_MIB >= CONTAINER_MIB:
            print(f"  with {exporter} the service alone does not fit the container's {CONTAINER_MIB} MiB")
    return peaks.get(CONTAINER_EXPORTER, args.queue_peak_mib)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sustained", type=int, default=60, help="seconds of sustained load")
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--part", choices=["all", "load", "queue", "connections"], default="all")
    parser.add_argument("--binary", help="the service binary of the connections part (default: the release build)")
    parser.add_argument("--counts", default="1000,10000", help="connections held, in steps")
    parser.add_argument("--head-bytes", type=int, default=MAX_HEAD_BYTES,
                        help="the largest head the binary reads (its unfinished heads are one byte less)")
    parser.add_argument("--peak-mib", type=float, default=23.0,
                        help="the service's own peak under load, when the load part is not run (bench/README.md)")
    parser.add_argument("--queue-seconds", type=int, default=10, help="seconds of requests into a full queue")
    parser.add_argument("--exporters", default="opentelemetry-datadog,datadog-opentelemetry",
                        help="the TRACE_EXPORTER values whose full queue is measured")
    parser.add_argument("--queue-peak-mib", type=float, default=QUEUE_PEAK_MIB,
                        help="the peak with the span queue full, when the queue part is not run (bench/README.md)")
    args = parser.parse_args()
    peak = load(args) if args.part in ("all", "load") else args.peak_mib
    queue = full_queue(args) if args.part in ("all", "queue") else args.queue_peak_mib
    if args.part in ("all", "connections"):
        fit(connections(args), max(peak, queue))


if __name__ == "__main__":
    main()
