"""bench-export: export completeness: spans received by a healthy test agent / requests sent, at a
fixed 1000 requests/s for 30 s."""

import argparse
import json
import urllib.request

from common import free_port, loadgen, service, test_agent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=30)
    args = parser.parse_args()
    agent_port = free_port()
    with test_agent(agent_port):
        port = free_port()
        with service(port, f"http://127.0.0.1:{agent_port}"):
            summary = loadgen(f"http://127.0.0.1:{port}", "--rate", str(args.rate), "-c", "16",
                              "-d", f"{args.duration}s", "--trace-headers", "datadog")
        # Leaving `with` sent SIGTERM: the service flushed its queue before exiting.
        with urllib.request.urlopen(f"http://127.0.0.1:{agent_port}/test/traces") as response:
            spans = sum(len(trace) for trace in json.load(response))
    sent = summary["requests"]
    print(f"  {sent} requests at {summary['achieved_rate']:.0f}/s, {summary['errors']} failed; "
          f"{spans} spans received: {spans / sent:.4f} ({sent - spans} lost)")


if __name__ == "__main__":
    main()
