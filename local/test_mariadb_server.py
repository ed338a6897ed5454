"""local/mariadb_server.py, the one MariaDB launcher, against Debian's real mariadbd: the MySQL image's
init-file contract, root at localhost only, the port chosen again when taken, a restart on the same
directory, and the server stopped however its caller ends (stdin closed, SIGTERM, the launcher killed).
The callers' own suites (agent-config/tests, tests/database.rs, local/test_local.py) run it too."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pymysql
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mariadb_server  # noqa: E402
from ports import free_port  # noqa: E402

LAUNCHER = Path(mariadb_server.__file__)

# Init files that record how they ran: the sourced ones share the entrypoint's shell (its functions,
# SOCKET, their own variables), an executable one runs apart with the exported environment only.
INIT_FILES = {
    "10-sourced.sh": """
        docker_process_sql --database=mysql <<SQL
        CREATE DATABASE launcher_test;
        CREATE TABLE launcher_test.ran (n INT AUTO_INCREMENT PRIMARY KEY, file VARCHAR(64), note VARCHAR(255));
        INSERT INTO launcher_test.ran (file, note) VALUES ('10-sourced.sh', '$(basename "$SOCKET")');
        SQL
        SOURCED_BEFORE=yes
    """,
    "20-executable.sh": """#!/bin/bash
        echo "$(type -t docker_process_sql || echo none) ${SOURCED_BEFORE:-unset} ${MYSQL_ROOT_PASSWORD:+has-root-password} ${MYSQL_ROOT_HOST}" > "$MARKS/20"
    """,
    "30-array.sh": """
        echo "INSERT INTO launcher_test.ran (file, note) VALUES ('30-array.sh', '$SOURCED_BEFORE')" | "${mysql[@]}"
    """,
    "40-plain.sql": "INSERT INTO launcher_test.ran (file) VALUES ('40-plain.sql');\n",
    "50-ignored.txt": "not an init file\n",
    "9-last.sh": """
        echo "INSERT INTO launcher_test.ran (file) VALUES ('9-last.sh')" | docker_process_sql
    """,
}


def write_init_files(directory, files):
    directory.mkdir()
    for name, text in files.items():
        path = directory / name
        path.write_text("\n".join(line.strip() for line in text.strip().splitlines()) + "\n")
        path.chmod(0o755 if text.startswith("#!") else 0o644)
    return directory


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A directory installed with no init files: each test's server copies its data."""
    directory = tmp_path_factory.mktemp("template")
    mariadb_server.MariaDB(directory, initdb_dir=None).install()
    return directory


def servers_of(directory):
    """The pids of mariadbd processes started on `directory`'s my.cnf."""
    needle = f"--defaults-file={Path(directory).resolve() / 'my.cnf'}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and needle in (entry / "cmdline").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


def wait_until_gone(directory, seconds=30):
    deadline = time.monotonic() + seconds
    while servers_of(directory):
        assert time.monotonic() < deadline, f"mariadbd on {directory} still runs after {seconds} s"
        time.sleep(0.1)


def launch(directory, *args, env=None):
    """The launcher as a program; its report once the server answers."""
    process = subprocess.Popen([sys.executable, str(LAUNCHER), str(directory), *args], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **(env or {})})
    line = process.stdout.readline()
    assert line, process.communicate()[1]
    return process, json.loads(line)


def as_root(report, sql):
    with pymysql.connect(unix_socket=report["socket"], user="root", password=report["root_password"]) as root:
        with root.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall()


def test_init_files_run_as_the_mysql_image_runs_them(template, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    initdb = write_init_files(tmp_path / "initdb", INIT_FILES)
    with mariadb_server.MariaDB(tmp_path / "server", template=template, initdb_dir=initdb,
                                init_env={"MARKS": str(marks)}) as server:
        report = server.report()
        ran = as_root(report, "SELECT file, note FROM launcher_test.ran ORDER BY n")
    # Glob order (bytes: 9-last.sh after 50-...), sourced files sharing one shell, .sql piped, .txt skipped.
    assert ran == (("10-sourced.sh", "mysqld.sock"), ("30-array.sh", "yes"), ("40-plain.sql", None),
                   ("9-last.sh", None))
    # The executable one ran in a process of its own: no docker_process_sql, no shell variables, but
    # the exported environment, as in the image.
    assert (marks / "20").read_text().split() == ["none", "unset", "has-root-password", "localhost"]
    log = Path(report["log"]).read_text()
    assert "ignoring" in log and "50-ignored.txt" in log


def test_root_exists_at_localhost_only_and_needs_its_password(template, tmp_path):
    with mariadb_server.MariaDB(tmp_path / "server", template=template, initdb_dir=None) as server:
        report = server.report()
        accounts = as_root(report, "SELECT user, host FROM mysql.user WHERE user <> 'mariadb.sys'")
        assert accounts == (("root", "localhost"),)
        with pytest.raises(pymysql.err.OperationalError) as refused:
            pymysql.connect(unix_socket=report["socket"], user="root").close()
        assert refused.value.args[0] == 1045, refused.value
        assert oct(os.stat(report["root_defaults_file"]).st_mode & 0o777) == "0o600"
        assert server.sql("SELECT @@bind_address, @@port, @@performance_schema").split() == [
            "127.0.0.1", str(report["port"]), "1"]  # the demo's options, included from agent-config/mysql-conf


def test_a_port_taken_before_mariadbd_binds_it_is_detected_and_another_chosen(template, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        picks = iter([busy, free_port()])
        with mariadb_server.MariaDB(tmp_path / "server", template=template, initdb_dir=None,
                                    pick_port=lambda: next(picks)) as server:
            assert server.port != busy
            assert server.sql("SELECT @@port").strip() == str(server.port)
        assert mariadb_server.PORT_TAKEN.decode() in server.log_path.read_text()


def test_a_second_start_on_the_directory_keeps_its_port_and_data_and_runs_no_init_file(template, tmp_path):
    initdb = write_init_files(tmp_path / "initdb", {"10-table.sql": "CREATE DATABASE kept; CREATE TABLE kept.t (n INT);"
                                                                    " INSERT INTO kept.t VALUES (1);"})
    directory = tmp_path / "server"
    with mariadb_server.MariaDB(directory, template=template, initdb_dir=initdb) as first:
        first.sql("INSERT INTO kept.t VALUES (2)")
    with mariadb_server.MariaDB(directory, template=template, initdb_dir=initdb) as second:
        assert second.port == first.port
        assert second.sql("SELECT n FROM kept.t ORDER BY n").split() == ["1", "2"]


def test_the_program_reports_and_stops_the_server_when_its_stdin_closes(template, tmp_path):
    directory = tmp_path / "server"
    process, report = launch(directory, "--template", str(template), "--initdb-dir", "",
                             env={"MYSQL_APP_PASSWORD": "app-pw"})  # pragma: allowlist secret (a test password)
    assert report["host"] == "127.0.0.1" and report["socket"] == str(directory / "mysqld.sock")
    assert report["passwords"]["MYSQL_APP_PASSWORD"] == "app-pw"  # pragma: allowlist secret (from the environment)
    assert len(report["passwords"]["MYSQL_DATADOG_PASSWORD"]) >= 16  # generated
    assert as_root(report, "SELECT 1") == ((1,),)
    assert servers_of(directory) == [report["pid"]]
    process.stdin.close()  # as when the caller ends
    assert process.wait(timeout=60) == 0
    assert servers_of(directory) == []
    assert "Shutdown complete" in Path(report["log"]).read_text()


def test_sigterm_stops_the_server_cleanly(template, tmp_path):
    process, report = launch(tmp_path / "server", "--template", str(template), "--initdb-dir", "")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    assert servers_of(tmp_path / "server") == []
    assert "Shutdown complete" in Path(report["log"]).read_text()


def test_the_server_stops_when_the_launcher_is_killed(template, tmp_path):
    process, report = launch(tmp_path / "server", "--template", str(template), "--initdb-dir", "")
    process.kill()
    process.wait()
    try:
        wait_until_gone(tmp_path / "server")  # PR_SET_PDEATHSIG: SIGTERM, a clean shutdown
    finally:
        for pid in servers_of(tmp_path / "server"):  # left behind only if this test fails
            os.kill(pid, signal.SIGKILL)
    assert "Shutdown complete" in Path(report["log"]).read_text()


def test_a_failing_init_file_fails_the_start_naming_it_and_leaves_no_server(template, tmp_path):
    initdb = write_init_files(tmp_path / "initdb", {"10-fails.sh": "echo 'CREATE TABLE nowhere.t (n INT)' | docker_process_sql"})
    process = subprocess.run([sys.executable, str(LAUNCHER), str(tmp_path / "server"), "--template", str(template),
                              "--initdb-dir", str(initdb)], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=120)
    assert process.returncode == 1 and process.stdout == ""
    assert "an init file of" in process.stderr and "Unknown database 'nowhere'" in process.stderr, process.stderr
    assert servers_of(tmp_path / "server") == []


def test_a_root_password_an_option_file_cannot_hold_is_refused_naming_its_variable(tmp_path):
    process = subprocess.run([sys.executable, str(LAUNCHER), str(tmp_path / "server")], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, env={**os.environ, "MYSQL_ROOT_PASSWORD": 'a"b'})
    assert process.returncode == 2 and "MYSQL_ROOT_PASSWORD" in process.stderr, process.stderr


def test_the_four_callers_use_the_launcher_and_no_copy_of_its_setup():
    root = LAUNCHER.parent.parent
    callers = ["agent-config/tests/conftest.py", "bench/common.py", "tests/common/mariadb.rs", "local/run.sh"]
    for caller in callers:
        text = (root / caller).read_text()
        assert "mariadb_server" in text, caller
        for copy in ("mariadb-install-db", "mysql_install_db", "--skip-test-db", "bind-address"):
            assert copy not in text, (caller, copy)
        # The init files' order is the glob's, the launcher's: no caller lists them.
        assert not re.search(r"apm-demo-user\.sh\W+(agent-config/mysql/)?datadog-user\.sh", text), caller
