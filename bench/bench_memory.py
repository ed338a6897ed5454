"""bench-memory: the service's resident memory idle, under sustained load, and after 1,000,000
requests with no agent listening (the bounded export queue must cap it)."""

import argparse
import time

from common import free_port, loadgen, null_sink, service

# Access logs off (1M lines of them would only measure the log pipe); the service's own lines stay.
QUIET = {"RUST_LOG": "warn,apm_demo=info,apm_demo::access=warn"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sustained", type=int, default=60, help="seconds of sustained load")
    parser.add_argument("--requests", type=int, default=1_000_000)
    args = parser.parse_args()
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
        after, peak = svc.rss_kib(), svc.rss_kib("VmHWM")
    print(f"  {summary['requests']} requests, no agent ({summary['achieved_rate']:.0f} req/s, {summary['errors']} errors): "
          f"RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
