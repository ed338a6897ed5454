"""Fixtures: the agent-config tree, and a private MariaDB server for the MySQL tests.

The server is Debian's real `mariadbd`, started on its own data directory, socket and a free
loopback port, and stopped when the session ends, so that the tests never touch a MariaDB the machine
already runs. `make test` installs the package when `mariadbd` is missing.
"""

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pymysql
import pytest
import yaml

AGENT_CONFIG = Path(__file__).resolve().parent.parent


def load_yaml(relative):
    with open(AGENT_CONFIG / relative) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="session")
def agent_config():
    return AGENT_CONFIG


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _find(*names):
    for name in names:
        path = shutil.which(name) or (Path("/usr/sbin") / name if (Path("/usr/sbin") / name).exists() else None)
        if path:
            return str(path)
    raise RuntimeError(f"none of {names} is installed: run `make test`, which installs mariadb-server")


class MariaDB:
    """A private mariadbd: root over its socket, other users over TCP on 127.0.0.1."""

    def __init__(self, base):
        self.base = Path(base)
        self.datadir = self.base / "data"
        self.socket = str(self.base / "mysqld.sock")
        self.port = _free_port()
        self.process = None

    def start(self):
        install_db = _find("mariadb-install-db", "mysql_install_db")
        subprocess.run(
            [install_db, f"--datadir={self.datadir}", "--user=root", "--auth-root-authentication-method=socket",
             "--skip-test-db"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self.log = open(self.base / "mariadbd.log", "w")
        self.process = subprocess.Popen(
            [_find("mariadbd", "mysqld"), "--no-defaults", f"--datadir={self.datadir}", "--user=root",
             f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1",
             # What the integration reads: performance_schema (off by default in MariaDB) and a
             # binary log, so that SHOW BINARY LOGS answers instead of failing for want of one.
             "--performance-schema=ON", "--log-bin=mariadb-bin", "--server-id=1",
             f"--pid-file={self.base / 'mysqld.pid'}"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                self.root().close()
                return
            except pymysql.err.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("mariadbd did not start:\n" + (self.base / "mariadbd.log").read_text())
                time.sleep(0.2)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)

    def root(self):
        return pymysql.connect(unix_socket=self.socket, user="root", autocommit=True)

    def connect(self, user, password):
        return pymysql.connect(host="127.0.0.1", port=self.port, user=user, password=password, autocommit=True)

    def client_command(self):
        """The `mysql` command line of root, as datadog-user.sh expects in MYSQL."""
        return f"{_find('mariadb', 'mysql')} --no-defaults --socket={self.socket} -uroot"


@pytest.fixture(scope="session")
def mariadb():
    base = tempfile.mkdtemp(prefix="apm-demo-mariadb-")
    server = MariaDB(base)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def run_setup_script(server, password):
    env = dict(os.environ, MYSQL=server.client_command(), MYSQL_DATADOG_PASSWORD=password)
    return subprocess.run(["sh", str(AGENT_CONFIG / "mysql" / "datadog-user.sh")], env=env,
                          capture_output=True, text=True)


@pytest.fixture(scope="session")
def datadog_password():
    # Quotes and a backslash: the script must quote the password, not just paste it.
    return "dd-" + secrets.token_hex(8) + "'q\\b"


@pytest.fixture(scope="session")
def datadog_user(mariadb, datadog_password):
    """The setup script run once against the server; its result, for the tests to assert."""
    return run_setup_script(mariadb, datadog_password)
