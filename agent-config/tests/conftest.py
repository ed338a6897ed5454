"""Fixtures: the agent-config tree, and private MariaDB servers for the MySQL tests.

A server is Debian's real `mariadbd` started by the project's one launcher (local/mariadb_server.py):
its own data directory, socket and free loopback port, agent-config/mysql-conf/ (or a variant of it)
included as the MySQL image includes conf.d, stopped when its tests end, so that the tests never touch
a MariaDB the machine already runs. `make test` installs the package when `mariadbd` is missing. The
tests run the setup scripts themselves, as the image's entrypoint runs them (the launcher's
run_init_files), so that each can run a variant of a script.
"""

import contextlib
import os
import re
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import pymysql
import pytest
import yaml

AGENT_CONFIG = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(AGENT_CONFIG.parent / "local"))

import mariadb_server as launcher  # noqa: E402


def load_yaml(relative):
    with open(AGENT_CONFIG / relative) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="session")
def agent_config():
    return AGENT_CONFIG


DBM_CNF = AGENT_CONFIG / "mysql-conf" / "datadog-dbm.cnf"
# The MySQL 8.4 default that the demo's options override and MariaDB does not share, placed before
# them as a built-in default: binary logging on, in files named binlog.* (MySQL 8.4 Reference Manual,
# 7.4.4 "The Binary Log": "Binary logging is enabled by default"; MariaDB's default is off). With
# it, each server here shows that the options turn the binary log off, as they must on MySQL 8.4.
MYSQL_84_DEFAULTS = "log-bin = binlog"


@pytest.fixture(scope="session")
def datadir_template():
    """One server directory through the first start's setup (system tables, root's password) and no
    init files, whose data each server copies: installing takes seconds, a copy a fraction of one."""
    with tempfile.TemporaryDirectory(prefix="apm-demo-mariadb-template-") as base:
        launcher.MariaDB(base, initdb_dir=None).install()
        yield base


class MariaDB(launcher.MariaDB):
    """A launcher's server with pymysql connections: root over its socket, other users over TCP on
    127.0.0.1, as the Agent and the app connect."""

    def root(self, **kwargs):
        return pymysql.connect(unix_socket=self.socket, user="root", password=self.root_password, autocommit=True,
                               **kwargs)

    def connect(self, user, password, **kwargs):
        return pymysql.connect(host=self.host, port=self.port, user=user, password=password, autocommit=True,
                               **kwargs)


@contextlib.contextmanager
def mariadb_server(datadir_template, options=None):
    """A server of its own, on a copy of the template's data, with agent-config/mysql-conf/ or, given
    `options`, a directory holding that text as datadog-dbm.cnf in its place; stopped and removed on
    leaving."""
    with tempfile.TemporaryDirectory(prefix="apm-demo-mariadb-") as base:
        conf_dir = launcher.CONF_DIR
        if options is not None:
            conf_dir = Path(base) / "conf"
            conf_dir.mkdir()
            (conf_dir / DBM_CNF.name).write_text(options)
        with MariaDB(Path(base) / "server", template=datadir_template, conf_dir=conf_dir, initdb_dir=None,
                     server_defaults=MYSQL_84_DEFAULTS) as server:
            yield server


@pytest.fixture(scope="session")
def mariadb(datadir_template):
    with mariadb_server(datadir_template) as server:
        yield server


def run_script(server, script, **env):
    """Runs a setup script of agent-config/mysql (or a path) against the server as the MySQL image's
    entrypoint runs /docker-entrypoint-initdb.d (sourced, with docker_process_sql as root)."""
    path = script if isinstance(script, Path) else AGENT_CONFIG / "mysql" / script
    return server.run_init_files([path], env)


def run_by_hand(server, script, **env):
    """Runs a setup script as docs/agent.md says to by hand: `MYSQL="mysql -uroot -p..." sh script`."""
    client = " ".join(server.client("--comments"))
    return subprocess.run(["sh", str(AGENT_CONFIG / "mysql" / script)], env=dict(os.environ, MYSQL=client, **env),
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
