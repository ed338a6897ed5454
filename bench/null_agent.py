"""A trace agent that accepts every payload and discards it: the benchmarks' null sink.

It answers what each exporter asks of a Datadog Agent 7, so that both are measured doing their
usual work and not an error path (DataDog/datadog-agent, pkg/trace/api/info.go):

- `GET /info`: the Agent's discovery document, with the fields datadog-opentelemetry reads:
  `/v0.6/stats` among the endpoints and `client_drop_p0s` (together they switch its client-side
  stats on: libdd-data-pipeline's `is_stats_computation_supported`), the span kinds the Agent
  computes stats for, and its default peer tags (pkg/trace/config/peer_tags.ini);
- `PUT`/`POST /v0.4/traces` (datadog-opentelemetry), `/v0.5/traces` (opentelemetry-datadog): the
  sampling rates, the Agent's default key at rate 1 (keep everything, as the test agent does);
- `POST /v0.6/stats` (client-side stats), `/telemetry/proxy/api/v2/apmtelemetry`
  (instrumentation telemetry): accepted;
- `POST /v0.7/config` (remote configuration): `{}`, no configuration for this client, which is
  what Datadog's test agent answers too.

Every other path answers 404, so an exporter that asks for something else shows in the counts.

    python3 bench/null_agent.py [--count] [--delay SECONDS] [ADDRESS]

prints the address it listens on (127.0.0.1 and a free port by default), then serves until killed.
`GET /counts` answers the requests and bytes received per method and path, and with `--count` the spans
received (decoded from the msgpack payloads: costs CPU, so only for the runs that compare counts;
needs the `msgpack` package of the project's virtualenv). With `--delay`, every trace payload is
answered that many seconds after it arrived: a slow Agent (bench_export.py).
"""

import argparse
import hashlib
import json
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# What the Agent's /info says, reduced to what a tracer reads (info.go's infoPayload).
INFO = json.dumps({
    "version": "7.70.0",
    "git_commit": "",
    "endpoints": ["/v0.3/traces", "/v0.4/traces", "/v0.5/traces", "/v0.7/traces", "/v0.6/stats", "/info",
                  "/telemetry/proxy/", "/v0.7/config", "/evp_proxy/v4/"],
    "client_drop_p0s": True,
    "span_meta_structs": True,
    "long_running_spans": True,
    "span_events": True,
    "config": {"default_env": "none", "target_tps": 10, "max_eps": 200, "receiver_port": 8126,
               "max_request_bytes": 26214400, "statsd_port": 8125},
    # The Agent's default peer tags: "_dd.base_service" and every precursor of peer_tags.ini, sorted.
    "peer_tags": sorted({"_dd.base_service", *",".join([
        "tablename", "streamname", "bucketname,aws.s3.bucket", "queuename", "db.cassandra.contact.points",
        "db.couchbase.seed.nodes", "db.name,mongodb.db,db.instance,cassandra.keyspace,db.namespace",
        "db.system,active_record.db.vendor,db.type,sequel.db.vendor",
        "peer.hostname,hostname,net.peer.name,db.hostname,network.destination.name,grpc.host,http.host,"
        "server.address,http.server_name,out.host,dns.hostname,network.destination.ip",
        "messaging.kafka.bootstrap.servers",
        "topicname,messaging.destination,messaging.destination.template,messaging.destination.name,"
        "messaging.rabbitmq.exchange,amqp.destination,amqp.queue,amqp.exchange,msmq.queue.path,aws.queue.name",
        "messaging.system", "rpc.service", "rpc.system", "peer.service"]).split(",")}),
    "span_kinds_stats_computed": ["server", "consumer", "client", "producer"],
    "obfuscation_version": 1,
}).encode()
# The Agent sends the hash of its /info in every answer; a tracer fetches /info again when it changes.
AGENT_STATE = hashlib.sha256(INFO).hexdigest()
RATES = b'{"rate_by_service":{"service:,env:":1}}'

TRACES = ("/v0.4/traces", "/v0.5/traces")
ANSWERS = {
    ("GET", "/info"): (200, "application/json", INFO),
    **{(method, path): (200, "application/json", RATES) for path in TRACES for method in ("PUT", "POST")},
    ("POST", "/v0.6/stats"): (200, "text/plain", b"OK"),
    ("POST", "/telemetry/proxy/api/v2/apmtelemetry"): (202, "application/json", b"{}"),
    ("POST", "/v0.7/config"): (200, "application/json", b"{}"),
}


def spans_in(path, body):
    """The number of spans in a v0.4 payload ([[span, ...], ...]) or a v0.5 one ([strings, [[span
    fields], ...]]), without building the spans."""
    import msgpack  # the virtualenv's; only the counting runs need it

    unpacker = msgpack.Unpacker(raw=True, max_buffer_size=len(body) + 1)
    unpacker.feed(body)
    if path == "/v0.5/traces":
        if unpacker.read_array_header() != 2:
            raise ValueError("a v0.5 payload is [strings, traces]")
        unpacker.skip()  # the string table
    spans = 0
    for _ in range(unpacker.read_array_header()):
        chunk = unpacker.read_array_header()
        spans += chunk
        for _ in range(chunk):
            unpacker.skip()
    return spans


class Agent(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, count_spans, delay=0.0):
        super().__init__(address, Handler)
        self.count_spans = count_spans
        self.delay = delay
        self.lock = threading.Lock()
        self.requests = Counter()
        self.bytes = Counter()
        self.spans = 0
        self.undecodable = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the exporters' clients expect

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def answer(self):
        path = self.path.split("?")[0]
        body = self.body()
        agent = self.server
        spans = None
        if agent.count_spans and path in TRACES and self.command in ("PUT", "POST"):
            try:
                spans = spans_in(path, body)
            except Exception:  # msgpack's errors: counted as undecodable below
                spans = None
        with agent.lock:
            if path != "/counts":
                agent.requests[f"{self.command} {path}"] += 1
                agent.bytes[f"{self.command} {path}"] += len(body)
            if spans is not None:
                agent.spans += spans
            elif agent.count_spans and path in TRACES:
                agent.undecodable += 1
        if agent.delay and path in TRACES:
            time.sleep(agent.delay)
        if self.command == "GET" and path == "/counts":
            status, kind, text = 200, "application/json", self.counts()
        else:
            status, kind, text = ANSWERS.get((self.command, path), (404, "text/plain", b"not found"))
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(text)))
        self.send_header("Datadog-Agent-State", AGENT_STATE)
        self.end_headers()
        self.wfile.write(text)

    def counts(self):
        agent = self.server
        with agent.lock:
            counts = {"requests": dict(agent.requests), "bytes": dict(agent.bytes)}
            if agent.count_spans:
                counts.update(spans=agent.spans, undecodable_payloads=agent.undecodable)
        return json.dumps(counts).encode()

    do_GET = do_PUT = do_POST = answer

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", nargs="?", default="127.0.0.1:0")
    parser.add_argument("--count", action="store_true", help="count the spans of every trace payload")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before answering a trace payload")
    args = parser.parse_args()
    host, port = args.address.rsplit(":", 1)
    agent = Agent((host, int(port)), args.count, args.delay)
    print(f"{agent.server_address[0]}:{agent.server_address[1]}", flush=True)
    try:
        agent.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
