"""What the benchmarks share: the binaries, processes on pinned CPUs, loadgen and wrk runs, RSS.

The machine has 2 cores: the service under test runs on CPU 0 and the load generator on CPU 1, so
that the two do not take turns on the same core and runs are comparable.
"""

import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    def stop(self):
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
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


def service_env(agent_url=None, traced=True, extra=None):
    """The service's environment in the benchmarks (all but PORT): JSON logs, spans to agent_url (by
    default a port where nothing listens)."""
    return {"HOST": "127.0.0.1", "LOG_FORMAT": "json", "DD_TRACE_ENABLED": str(traced).lower(),
            "DD_TRACE_AGENT_URL": agent_url or f"http://127.0.0.1:{free_port()}", **(extra or {})}


def service(port, agent_url=None, traced=True, extra=None):
    env = {**service_env(agent_url, traced, extra), "PORT": str(port)}
    process = Process([binary("apm-demo")], env=env, cpu=SERVICE_CPU)
    wait_for_port(port)
    return process


def null_sink():
    """A trace agent that accepts every payload and discards it: loadgen's minimal `hello_server`."""
    process = Process([binary("examples/hello_server")], cpu=LOAD_CPU, stdout=subprocess.PIPE)
    address = process.popen.stdout.readline().decode().strip()
    return process, f"http://{address}"


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


def sbin(*names):
    """The first of `names` installed (Debian puts mariadbd in /usr/sbin, often not on PATH)."""
    for name in names:
        found = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/local/sbin")
        if found:
            return found
    raise SystemExit(f"none of {names} is installed: `make mariadb` installs mariadb-server")


class MariaDb:
    """A private MariaDB server, as `make local` (local/run.sh) and tests/common/mariadb.rs start it:
    Debian's mariadbd on its own data directory, socket and free loopback port, with the server options
    Database Monitoring needs (agent-config/mysql-conf/datadog-dbm.cnf, as compose mounts it), set up by
    the scripts the MySQL container runs at its first start (agent-config/mysql/*.sh), in their order.
    Pinned to the load generator's CPU: the service's core stays the service's. `env` is what the
    service needs to use it; everything is removed on exit from `with`."""

    def __init__(self, cpu=LOAD_CPU):
        self.base = tempfile.mkdtemp(prefix="apm-demo-bench-db-")
        self.port, self.socket = free_port(), os.path.join(self.base, "mysqld.sock")
        self.app_password = secrets.token_urlsafe(16)
        self.process = None
        try:
            subprocess.run([sbin("mariadb-install-db", "mysql_install_db"), f"--datadir={self.base}/data",
                            "--user=root", "--auth-root-authentication-method=socket", "--skip-test-db"],
                           check=True, capture_output=True)
            with open(os.path.join(ROOT, "agent-config/mysql-conf/datadog-dbm.cnf")) as f:
                options = f.read()
            options += (f"\n[mysqld]\ndatadir = {self.base}/data\nuser = root\nsocket = {self.socket}\n"
                        f"port = {self.port}\nbind-address = 127.0.0.1\npid-file = {self.base}/mysqld.pid\n")
            with open(os.path.join(self.base, "my.cnf"), "w") as f:
                f.write(options)
            self.log = open(os.path.join(self.base, "mariadbd.log"), "w")
            self.process = Process([sbin("mariadbd", "mysqld"), f"--defaults-file={self.base}/my.cnf"], cpu=cpu,
                                   stdout=self.log, stderr=self.log)
            self._wait()
            env = {"MYSQL": f"{self.client()} --comments", "MYSQL_APP_PASSWORD": self.app_password,
                   "MYSQL_DATADOG_PASSWORD": secrets.token_urlsafe(16)}
            for script in ("apm-demo-user.sh", "datadog-user.sh"):  # the image's order: sorted
                subprocess.run(["sh", os.path.join(ROOT, "agent-config/mysql", script)], env={**os.environ, **env},
                               check=True, capture_output=True)
        except BaseException:
            self.stop()
            raise

    def client(self):
        """The `mariadb` command line of root over the socket."""
        return f"{sbin('mariadb', 'mysql')} --no-defaults --socket={self.socket} -uroot"

    def sql(self, statement):
        """`statement` run as root; its output (tab-separated, no header)."""
        argv = self.client().split() + ["--batch", "-N", "-e", statement]
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout

    def _wait(self, timeout=60):
        deadline = time.monotonic() + timeout
        while subprocess.run(self.client().split() + ["-e", "SELECT 1"], capture_output=True).returncode != 0:
            if self.process.popen.poll() is not None or time.monotonic() > deadline:
                with open(os.path.join(self.base, "mariadbd.log")) as f:
                    tail = "".join(f.readlines()[-15:])
                raise RuntimeError(f"MariaDB did not start (its log ends with):\n{tail}")
            time.sleep(0.1)

    @property
    def env(self):
        """The service's database settings for this server (DD_DBM_PROPAGATION_MODE is the caller's)."""
        return {"MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": str(self.port), "MYSQL_PASSWORD": self.app_password}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if self.process:
            self.process.stop()
            self.log.close()
        shutil.rmtree(self.base, ignore_errors=True)
