"""What the benchmarks share: the binaries, processes on pinned CPUs, loadgen and wrk runs, RSS.

The machine has 2 cores: the service under test runs on CPU 0 and the load generator on CPU 1, so
that the two do not take turns on the same core and runs are comparable.
"""

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "local"))

import mariadb_server  # noqa: E402
from ports import free_port  # noqa: E402,F401 (the benchmarks import it from here)


def target_dir():
    """Cargo's target directory, where `make release` builds (CARGO_TARGET_DIR and build.target-dir
    honoured); ROOT/target if cargo cannot say."""
    try:
        out = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)["target_directory"]
    except (OSError, subprocess.CalledProcessError, ValueError, KeyError):
        return os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")


RELEASE = os.path.join(target_dir(), "release")


def binary(name):
    """The path of a release binary (`examples/hello_server` too), or a message naming the missing one."""
    path = os.path.join(RELEASE, name)
    if not os.access(path, os.X_OK):
        raise SystemExit(f"{path} is missing: `make bench-tools` builds the benchmarks' binaries there")
    return path
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
SERVICE_CPU, LOAD_CPU = "0", "1"


def pinned(cpu, argv):
    return ["taskset", "-c", cpu] + argv if shutil.which("taskset") else argv


def wait_for_port(port, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


class Process:
    """A background process, stopped (SIGTERM, then SIGKILL) on exit from `with`."""

    def __init__(self, argv, env=None, cpu=None, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        self.popen = subprocess.Popen(pinned(cpu, argv) if cpu else argv, env={**os.environ, **(env or {})},
                                      stdout=stdout, stderr=stderr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self, timeout=20):
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def rss_kib(self, field="VmRSS"):
        """VmRSS (now) or VmHWM (peak) of the process, in KiB."""
        pid = self.popen.pid
        # taskset execs the program, so the pid is the program's.
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise RuntimeError(f"no {field} for {pid}")


# The ways the benchmarks run the service: untraced, and traced by each exporter (`TRACE_EXPORTER`,
# docs/service.md): the default, then Datadog's own Rust tracer.
EXPORTERS = ("opentelemetry-datadog", "datadog-opentelemetry")
MODES = ("untraced",) + EXPORTERS


def service_env(agent_url=None, traced=True, extra=None, exporter=None):
    """The service's environment in the benchmarks (all but PORT): JSON logs, spans to agent_url (by
    default a port where nothing listens), through `exporter` (by default TRACE_EXPORTER's value in
    the caller's environment, else the service's default)."""
    return {"HOST": "127.0.0.1", "LOG_FORMAT": "json", "DD_TRACE_ENABLED": str(traced).lower(),
            "DD_TRACE_AGENT_URL": agent_url or f"http://127.0.0.1:{free_port()}",
            **({"TRACE_EXPORTER": exporter} if exporter else {}), **(extra or {})}


def mode_env(mode, agent_url=None, extra=None):
    """service_env for one of MODES."""
    traced = mode != "untraced"
    return service_env(agent_url, traced, extra, exporter=mode if traced else None)


def service(port, agent_url=None, traced=True, extra=None, exporter=None):
    env = {**service_env(agent_url, traced, extra, exporter), "PORT": str(port)}
    process = Process([binary("apm-demo")], env=env, cpu=SERVICE_CPU)
    wait_for_port(port)
    return process


def null_sink(count=False, delay=0.0):
    """A trace agent that discards what it receives and answers what each exporter asks of an Agent
    (bench/null_agent.py); with `count`, it decodes the payloads to count their spans (`sink_counts`);
    with `delay`, it answers each trace payload that many seconds late (a slow Agent)."""
    python = os.path.join(VENV_BIN, "python")
    argv = [python if os.access(python, os.X_OK) else sys.executable, os.path.join(ROOT, "bench", "null_agent.py")]
    argv += (["--count"] if count else []) + (["--delay", str(delay)] if delay else [])
    process = Process(argv, cpu=LOAD_CPU, stdout=subprocess.PIPE)
    address = process.popen.stdout.readline().decode().strip()
    if not address:
        process.stop()
        raise RuntimeError("bench/null_agent.py did not start")
    return process, f"http://{address}"


def sink_counts(sink_url):
    """What the null sink has received: {"requests"/"bytes": {"METHOD /path": n}, and with counting "spans"}."""
    with urllib.request.urlopen(f"{sink_url}/counts") as response:
        return json.load(response)


def test_agent(port):
    args = [os.path.join(VENV_BIN, "ddapm-test-agent"), "--port", str(port), "--otlp-http-port", str(free_port()),
            "--otlp-grpc-port", str(free_port())]
    process = Process(args, cpu=LOAD_CPU)
    wait_for_port(port)
    return process


# The seed's routes and a 404, as loadgen's default mix had them before it gained the database routes:
# the benchmarks that run the service without a database (memory, export) keep measuring what they did.
SEED_MIX = "/=6,/api/apm=7,/api/trace=6,/no-such-page=1"


def loadgen(base_url, *args, path=None):
    """loadgen's JSON summary of a run against base_url: the seed's mix unless `args` has its own
    `--mix`, or only `path`, which must then answer 200 every time (so that a wrong URL cannot pass for
    a fast benchmark)."""
    if path:
        mix = ["--mix", f"{path}=1"]
    else:
        mix = [] if "--mix" in args else ["--mix", SEED_MIX]
    argv = pinned(LOAD_CPU, [binary("loadgen"), base_url, "--json", *mix, *args])
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    summary = json.loads(out)
    if path and set(summary["status_codes"]) != {"200"}:
        raise RuntimeError(f"{base_url}{path} answered {summary['status_codes']}, not only 200")
    return summary


def wrk(url, connections, seconds):
    """wrk's requests per second and p99 (ms) against url."""
    argv = pinned(LOAD_CPU, ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url])
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"{url} did not always answer 2xx: {out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()
    p99 = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    return {"rps": rps, "p99": p99}


def median(values):
    return statistics.median(values)


class MariaDb(mariadb_server.MariaDB):
    """A private MariaDB server from the project's one launcher (local/mariadb_server.py), as `make
    local` and the database suite start it: set up as the compose MySQL is, pinned to the load
    generator's CPU (the service's core stays the service's). `env` is what the service needs to use
    it; the server and its directory are removed on exit from `with`."""

    def __init__(self, cpu=LOAD_CPU):
        self.base = tempfile.mkdtemp(prefix="apm-demo-bench-db-")
        super().__init__(self.base, command_prefix=pinned(cpu, []))

    @property
    def env(self):
        """The service's database settings for this server (DD_DBM_PROPAGATION_MODE is the caller's)."""
        return {"MYSQL_HOST": self.host, "MYSQL_PORT": str(self.port),
                "MYSQL_PASSWORD": self.passwords["MYSQL_APP_PASSWORD"]}

    def stop(self):
        super().stop()
        shutil.rmtree(self.base, ignore_errors=True)
