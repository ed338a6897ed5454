"""Fixtures: the agent-config tree, and private MariaDB servers for the MySQL tests.

A server is Debian's real `mariadbd`, started from agent-config/mysql-conf/datadog-dbm.cnf (or a
variant of it) on its own data directory, socket and a free loopback port, and stopped when its
tests end, so that the tests never touch a MariaDB the machine already runs. `make test` installs
the package when `mariadbd` is missing.
"""

import contextlib
import os
import re
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


DBM_CNF = AGENT_CONFIG / "mysql-conf" / "datadog-dbm.cnf"


@pytest.fixture(scope="session")
def datadir_template():
    """One freshly installed data directory, copied for each server: installing takes seconds, a copy
    a fraction of one."""
    base = tempfile.mkdtemp(prefix="apm-demo-mariadb-template-")
    datadir = Path(base) / "data"
    subprocess.run(
        [_find("mariadb-install-db", "mysql_install_db"), f"--datadir={datadir}", "--user=root",
         "--auth-root-authentication-method=socket", "--skip-test-db"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    yield datadir
    shutil.rmtree(base, ignore_errors=True)


class MariaDB:
    """A private mariadbd: root over its socket, other users over TCP on 127.0.0.1.

    Its options file is `options` (by default agent-config/mysql-conf/datadog-dbm.cnf, as docker
    compose mounts it) followed by what this fixture needs, and mariadbd reads that file alone
    (--defaults-file), so the tests see exactly the server options the file gives."""

    def __init__(self, base, datadir_template, options=None):
        self.base = Path(base)
        self.datadir = self.base / "data"
        self.socket = str(self.base / "mysqld.sock")
        self.port = _free_port()
        self.options = DBM_CNF.read_text() if options is None else options
        self.datadir_template = datadir_template
        self.process = None

    def start(self):
        shutil.copytree(self.datadir_template, self.datadir, symlinks=True)
        defaults = self.base / "my.cnf"
        defaults.write_text(self.options + "\n".join([
            "",
            "# The fixture's own: a private data directory, socket and port.",
            "[mysqld]",
            f"datadir = {self.datadir}",
            "user = root",
            f"socket = {self.socket}",
            f"port = {self.port}",
            "bind-address = 127.0.0.1",
            f"pid-file = {self.base / 'mysqld.pid'}",
            # A binary log, so that SHOW BINARY LOGS answers instead of failing for want of one (the
            # MySQL 8 image logs by default).
            "log-bin = mariadb-bin",
            "server-id = 1",
            # Small, so that the servers the tests start now and then stay cheap.
            "innodb_buffer_pool_size = 16M",
            "",
        ]))
        self.log = open(self.base / "mariadbd.log", "w")
        self.process = subprocess.Popen(
            [_find("mariadbd", "mysqld"), f"--defaults-file={defaults}"],
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
                time.sleep(0.1)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)
        if self.process:
            self.log.close()

    def root(self, **kwargs):
        return pymysql.connect(unix_socket=self.socket, user="root", autocommit=True, **kwargs)

    def connect(self, user, password, **kwargs):
        return pymysql.connect(host="127.0.0.1", port=self.port, user=user, password=password, autocommit=True,
                               **kwargs)

    def client_command(self):
        """The `mysql` command line of root, as the setup scripts expect in MYSQL. --comments as the
        MySQL image's docker_process_sql passes it: the scripts' SQL comments must not break there."""
        return f"{_find('mariadb', 'mysql')} --no-defaults --socket={self.socket} -uroot --comments"


@contextlib.contextmanager
def mariadb_server(datadir_template, options=None):
    """A server of its own, on its own data directory, stopped and removed on leaving."""
    base = tempfile.mkdtemp(prefix="apm-demo-mariadb-")
    server = MariaDB(base, datadir_template, options)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb(datadir_template):
    with mariadb_server(datadir_template) as server:
        yield server


def run_script(server, script, **env):
    """Runs a setup script of agent-config/mysql (or a path) against the server, as root."""
    path = script if isinstance(script, Path) else AGENT_CONFIG / "mysql" / script
    return subprocess.run(["sh", str(path)], env=dict(os.environ, MYSQL=server.client_command(), **env),
                          capture_output=True, text=True)


def script_statements(script):
    """The SQL statements of a setup script: the bodies of its run_sql heredocs, split at the delimiter
    each is run with (`;`, or `//` where it passes --delimiter=//), leaving out `--` comment lines.
    Each comes with its delimiter, as the script ends it (`//` after a space)."""
    statements = []
    for args, body in re.findall(r"^run_sql([^<\n]*)<<'?SQL'?\n(.*?)^SQL$", script, flags=re.S | re.M):
        delimiter = " //" if "--delimiter=//" in args else ";"
        sql = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("--"))
        statements += [(s.strip(), delimiter) for s in sql.split(delimiter.strip()) if s.strip()]
    return statements


def run_setup_script(server, password, script="datadog-user.sh"):
    return run_script(server, script, MYSQL_DATADOG_PASSWORD=password)


def run_app_script(server, password):
    return run_script(server, "apm-demo-user.sh", MYSQL_APP_PASSWORD=password)


@pytest.fixture(scope="session")
def datadog_password():
    # Quotes and a backslash: the script must quote the password, not just paste it.
    return "dd-" + secrets.token_hex(8) + "'q\\b"


@pytest.fixture(scope="session")
def app_password():
    return "app-" + secrets.token_hex(8) + "'q\\b"


@pytest.fixture(scope="session")
def app_user(mariadb, app_password):
    """apm-demo-user.sh run once against the server, as the image's entrypoint runs it: first."""
    return run_app_script(mariadb, app_password)


@pytest.fixture(scope="session")
def datadog_user(mariadb, app_user, datadog_password):
    """The setup script run once against the server, after apm-demo-user.sh; its result, for the
    tests to assert."""
    assert app_user.returncode == 0, app_user.stderr
    return run_setup_script(mariadb, datadog_password)
