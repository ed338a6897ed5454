#!/usr/bin/env python3
"""The one MariaDB launcher: a private Debian `mariadbd` set up as the compose demo's MySQL container.

Every MariaDB the project starts comes from here: agent-config/tests and the benchmarks import it;
the Rust database suite (tests/common/mariadb.rs) and `make local` (local/run.sh) run it as a
program. It does for a directory what the official MySQL image's entrypoint does for its volume
(docker-library/mysql, 8.4/docker-entrypoint.sh):

- On a directory without data: the system tables (mariadb-install-db, as the image's
  `--initialize-insecure`), then a temporary server on its socket only (no network, as
  docker_temp_server_start) in which root@localhost gets its password (MYSQL_ROOT_PASSWORD, or a
  random one that is never printed) and root exists at no other host, then the init files,
  agent-config/mysql/*, in glob order and as the image runs them (docker_process_init_files: a `.sh`
  sourced, or run when executable; a `.sql` piped to docker_process_sql), and the temporary server
  stops. A failing init file fails the start.
- Then the server: on 127.0.0.1 and a port chosen now (mariadbd cannot bind port 0; a port taken
  between the choice and the bind is detected and another chosen), reading one my.cnf: this
  server's own lines, then `!includedir` of agent-config/mysql-conf, as the image's my.cnf includes
  /etc/mysql/conf.d, where compose mounts those files.
- On a directory with data: only the server, on the port of its last start, as the image skips its
  setup when the volume has data.

As a program it prints one JSON line when the server answers (host, port, socket, root's option
file and password, the init files' passwords), then stays in the foreground until its standard
input reaches end of file (its caller ended, however it ended) or it gets SIGTERM, SIGINT or SIGHUP,
and then stops the server (SIGTERM, a clean InnoDB shutdown). The server also gets SIGTERM if the
launcher itself is killed (PR_SET_PDEATHSIG).

    python3 local/mariadb_server.py DIR [--port N] [--log FILE] [--conf-dir DIR] [--initdb-dir DIR]
                                        [--template DIR]
"""

import argparse
import ctypes
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ports import free_port

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "agent-config" / "mysql-conf"
INITDB_DIR = ROOT / "agent-config" / "mysql"
HOST = "127.0.0.1"
# The passwords agent-config/mysql/*.sh read (compose passes them to the MySQL container): taken from
# the environment, or generated, handed to the init files and reported.
SCRIPT_PASSWORDS = ("MYSQL_APP_PASSWORD", "MYSQL_DATADOG_PASSWORD")
START_SECONDS = 60
STOP_SECONDS = 60
PORT_ATTEMPTS = 10
# What mariadbd logs when its TCP port is taken (errno 98), before it aborts.
PORT_TAKEN = b"Address already in use"

# The image's init-file contract, for this server (docker-library/mysql, 8.4/docker-entrypoint.sh):
# SOCKET and DATADIR as the entrypoint's shell variables; its logging functions; docker_process_sql
# (root over the socket, MYSQL_ROOT_PASSWORD from a pipe, never an argument; `--comments`; the
# database of MYSQL_DATABASE); the `mysql` array it keeps for older scripts; docker_process_init_files
# as it is there. One difference: the client reads its options from that pipe alone
# (--defaults-file, where the image has --defaults-extra-file), so that this machine's own client
# configuration (Debian's /etc/mysql) is not what the scripts run with.
INIT_FILES_RUNNER = r"""
set -eo pipefail
shopt -s nullglob
SOCKET=$1 DATADIR=$2 CLIENT=$3
shift 3
mysql_log() {
	local type="$1"; shift
	local text="$*"; if [ "$#" -eq 0 ]; then text="$(cat)"; fi
	local dt; dt="$(date --rfc-3339=seconds)"
	printf '%s [%s] [Entrypoint]: %s\n' "$dt" "$type" "$text"
}
mysql_note() { mysql_log Note "$@"; }
mysql_warn() { mysql_log Warn "$@" >&2; }
mysql_error() { mysql_log ERROR "$@" >&2; exit 1; }
_mysql_passfile() {
	if [ '--dont-use-mysql-root-password' = "$1" ] || [ -z "$MYSQL_ROOT_PASSWORD" ]; then
		return
	fi
	printf '[client]\nuser=root\npassword="%s"\n' "$MYSQL_ROOT_PASSWORD"
}
docker_process_sql() {
	passfileArgs=()
	if [ '--dont-use-mysql-root-password' = "$1" ]; then
		passfileArgs+=( "$1" )
		shift
	fi
	if [ -n "$MYSQL_DATABASE" ]; then
		set -- --database="$MYSQL_DATABASE" "$@"
	fi
	"$CLIENT" --defaults-file=<( _mysql_passfile "${passfileArgs[@]}" ) --protocol=socket -hlocalhost \
		--socket="${SOCKET}" --comments "$@"
}
docker_process_init_files() {
	mysql=( docker_process_sql )
	echo
	local f
	for f; do
		case "$f" in
			*.sh)
				if [ -x "$f" ]; then
					mysql_note "$0: running $f"
					"$f"
				else
					mysql_note "$0: sourcing $f"
					. "$f"
				fi
				;;
			*.sql)     mysql_note "$0: running $f"; docker_process_sql < "$f"; echo ;;
			*.sql.bz2) mysql_note "$0: running $f"; bunzip2 -c "$f" | docker_process_sql; echo ;;
			*.sql.gz)  mysql_note "$0: running $f"; gunzip -c "$f" | docker_process_sql; echo ;;
			*.sql.xz)  mysql_note "$0: running $f"; xzcat "$f" | docker_process_sql; echo ;;
			*.sql.zst) mysql_note "$0: running $f"; zstd -dc "$f" | docker_process_sql; echo ;;
			*)         mysql_warn "$0: ignoring $f" ;;
		esac
		echo
	done
}
if [ "$1" = --initdb-dir ]; then
	docker_process_init_files "$2"/*
else
	docker_process_init_files "$@"
fi
"""


class StartFailed(RuntimeError):
    """The server did not come up; the message says why and ends with its log's last lines."""


class BadConfiguration(StartFailed):
    """A setting the launcher cannot use; the message names its variable (exit status 2)."""


def program(*names):
    """The first of `names` installed (Debian puts mariadbd in /usr/sbin, often not on PATH)."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/usr/local/sbin"
    for name in names:
        found = shutil.which(name, path=path)
        if found:
            return found
    raise StartFailed(f"none of {', '.join(names)} is installed: `make mariadb` installs mariadb-server")


def sql_string(value):
    """`value` as the body of an SQL string literal: backslashes doubled, single quotes escaped."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


_LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent(parent):
    """In the child before exec: SIGTERM when the process that started it ends (PR_SET_PDEATHSIG)."""
    def arm():
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent ended before the line above
            os.kill(os.getpid(), signal.SIGTERM)
    return arm


def _write_private(path, text):
    """Written readable by its owner only: it holds a password."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class MariaDB:
    """A private mariadbd in `directory` (data/, my.cnf, mysqld.sock, root.cnf, launcher.json and,
    unless `log` says otherwise, mariadbd.log).

    conf_dir: the option files the server includes (default agent-config/mysql-conf).
    initdb_dir: the init files of the first start (default agent-config/mysql; None for none).
    server_defaults: [mysqld] lines placed before the included files, as a server's built-in
        defaults that those files override (a test plays MySQL 8.4's with it).
    init_env: the init files' environment on top of this process's (their passwords,
        MYSQL_ROOT_PASSWORD): each of SCRIPT_PASSWORDS not given is generated.
    port: the TCP port, fixed; by default one is chosen at the first start and kept after.
    command_prefix: run mariadbd under this (e.g. taskset -c 1).
    template: the directory of a server installed with initdb_dir=None (see install()), whose data
        this one copies instead of installing its own (seconds saved per server).
    """

    def __init__(self, directory, *, conf_dir=CONF_DIR, initdb_dir=INITDB_DIR, server_defaults="", init_env=None,
                 port=None, log=None, command_prefix=(), template=None, pick_port=free_port):
        self.directory = Path(directory).resolve()
        self.datadir = self.directory / "data"
        self.socket = str(self.directory / "mysqld.sock")
        self.my_cnf = self.directory / "my.cnf"
        self.root_cnf = self.directory / "root.cnf"
        self.state_file = self.directory / "launcher.json"
        self.log_path = Path(log).resolve() if log else self.directory / "mariadbd.log"
        self.conf_dir = Path(conf_dir).resolve()
        self.initdb_dir = Path(initdb_dir).resolve() if initdb_dir else None
        self.server_defaults = server_defaults
        self.init_env = dict(init_env or {})
        self.host = HOST
        self.port = port
        self.fixed_port = port is not None
        self.command_prefix = list(command_prefix)
        self.template = Path(template).resolve() if template else None
        self.pick_port = pick_port
        self.root_password = None
        self.passwords = {}
        self.process = None
        self._log = None

    # --- the caller's side ---

    def start(self):
        """Sets up the directory if it has no data yet (install()), then starts the server for use
        and waits until it answers. On failure nothing is left running. Returns self."""
        try:
            if not self.installed():
                self.install()
            else:
                self._load_state()
            self._serve()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        """Stops the server (SIGTERM: a clean shutdown), and waits for it; then SIGKILL."""
        self._stop_process()

    def _stop_process(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def report(self):
        """What a caller needs to use the server (the launcher prints it as JSON)."""
        return {
            "host": self.host, "port": self.port, "socket": self.socket,
            "root_user": "root", "root_password": self.root_password, "root_defaults_file": str(self.root_cnf),
            "passwords": dict(self.passwords), "pid": self.process.pid if self.process else None,
            "datadir": str(self.datadir), "log": str(self.log_path),
        }

    def client(self, *args):
        """The `mariadb` command line of root over the socket, its password read from root.cnf."""
        return [program("mariadb", "mysql"), f"--defaults-file={self.root_cnf}", *args]

    def sql(self, statement):
        """`statement` run as root; its output (tab-separated rows, no header)."""
        return subprocess.run(self.client("--batch", "--skip-column-names", "-e", statement), check=True,
                              capture_output=True, text=True).stdout

    def run_init_files(self, paths, env=None):
        """Runs init files (paths, in this order) against the running server as the image's
        entrypoint runs /docker-entrypoint-initdb.d; the CompletedProcess, output captured as text."""
        return self._init_files([str(p) for p in paths], env, capture=True)

    # --- setting up ---

    def installed(self):
        return (self.datadir / "mysql").is_dir()

    def install(self):
        """The first start's setup, and no server left running: the system tables (or a copy of
        the template's), root's password, the init files."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.passwords = {name: self.init_env.get(name) or os.environ.get(name) or secrets.token_urlsafe(16)
                          for name in SCRIPT_PASSWORDS}
        self._write_my_cnf(port=None)
        if self.template:
            shutil.copytree(self.template / "data", self.datadir, symlinks=True)
            self.root_password = json.loads((self.template / "launcher.json").read_text())["root_password"]
            root_is_set = True
        else:
            self.root_password = self.init_env.get("MYSQL_ROOT_PASSWORD") or os.environ.get("MYSQL_ROOT_PASSWORD") \
                or secrets.token_urlsafe(24)
            if any(c in self.root_password for c in '"\\\n'):
                raise BadConfiguration('MYSQL_ROOT_PASSWORD may not hold ", \\ or a newline (it goes into an option file)')
            self._install_system_tables()
            root_is_set = False
        _write_private(self.root_cnf, f'[client]\nuser = root\npassword = "{self.root_password}"\n'
                                      f"socket = {self.socket}\n")
        self._save_state()
        init_files = self.initdb_dir and any(self.initdb_dir.iterdir())
        if root_is_set and not init_files:
            return
        self._start_process("--skip-networking")
        try:
            if not root_is_set:
                self._wait_until_it_answers(self._root_without_password())
                self._set_root_password()
            self._wait_until_it_answers(self.client())
            if init_files:
                result = self._init_files(["--initdb-dir", str(self.initdb_dir)], None, capture=False)
                if result.returncode != 0:
                    raise StartFailed(f"an init file of {self.initdb_dir} failed (status {result.returncode})"
                                      + self._log_tail())
        finally:
            self._stop_process()

    def _install_system_tables(self):
        # The server's own options (this my.cnf and the included files), as the image initialises
        # with the options it will run with; root@localhost with an empty password, as
        # --initialize-insecure leaves it, for the temporary server to set.
        argv = [program("mariadb-install-db", "mysql_install_db"), f"--defaults-file={self.my_cnf}",
                "--auth-root-authentication-method=normal", "--skip-test-db"]
        if os.geteuid() == 0:
            argv.append("--user=root")
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise StartFailed(f"mariadb-install-db failed (status {result.returncode}):\n{result.stdout}{result.stderr}")

    def _root_without_password(self):
        return [program("mariadb", "mysql"), "--no-defaults", f"--socket={self.socket}", "--user=root"]

    def _set_root_password(self):
        # As docker_setup_db: root@localhost gets the password and keeps every privilege; the other
        # root accounts mariadb-install-db makes (127.0.0.1, ::1, the host name) go, so that root
        # exists at localhost only (the image's MYSQL_ROOT_HOST=localhost); not binary-logged.
        statements = f"""
            SET SESSION sql_log_bin = 0;
            SELECT GROUP_CONCAT(CONCAT(QUOTE(User), '@', QUOTE(Host))) INTO @others FROM mysql.global_priv
                WHERE User <> 'mariadb.sys' AND NOT (User = 'root' AND Host = 'localhost');
            SET @drop = IF(@others IS NULL, 'DO 0', CONCAT('DROP USER ', @others));
            PREPARE drop_others FROM @drop;
            EXECUTE drop_others;
            DEALLOCATE PREPARE drop_others;
            ALTER USER 'root'@'localhost' IDENTIFIED BY '{sql_string(self.root_password)}';
        """
        result = subprocess.run(self._root_without_password(), input=statements, capture_output=True, text=True)
        if result.returncode != 0:
            raise StartFailed(f"setting root's password failed: {result.stderr}")

    def _init_files(self, args, env, capture):
        environment = {**os.environ, **self.passwords, **self.init_env, "MYSQL_ROOT_PASSWORD": self.root_password,
                       "MYSQL_ROOT_HOST": "localhost", "LC_ALL": "C", **(env or {})}
        argv = ["bash", "-c", INIT_FILES_RUNNER, "mariadb_server.py", self.socket, str(self.datadir),
                program("mariadb", "mysql"), *args]
        if capture:
            return subprocess.run(argv, env=environment, capture_output=True, text=True)
        with open(self.log_path, "ab") as log:  # the entrypoint's lines and the server's, one log
            return subprocess.run(argv, env=environment, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def _write_my_cnf(self, port):
        lines = [
            "# Written by local/mariadb_server.py: this server's own options, then the demo's option files.",
            "[mysqld]",
            f"datadir = {self.datadir}",
            f"socket = {self.socket}",
            f"pid-file = {self.directory / 'mysqld.pid'}",
            f"bind-address = {HOST}",
        ]
        if port:
            lines.append(f"port = {port}")
        if os.geteuid() == 0:
            lines.append("user = root")  # mariadbd refuses to run as root without it
        lines += [self.server_defaults.strip(), f"!includedir {self.conf_dir}", ""]
        self.my_cnf.write_text("\n".join(line for line in lines if line != "") + "\n")

    def _save_state(self):
        _write_private(self.state_file, json.dumps({"root_password": self.root_password, "port": self.port,
                                                    "passwords": self.passwords}))

    def _load_state(self):
        if not self.state_file.exists():
            raise StartFailed(f"{self.datadir} has data but {self.state_file} is missing: not a launcher's directory")
        state = json.loads(self.state_file.read_text())
        self.root_password, self.passwords = state["root_password"], state["passwords"]
        if not self.fixed_port and state["port"]:
            self.port, self.fixed_port = state["port"], True

    # --- running ---

    def _serve(self):
        for _ in range(PORT_ATTEMPTS):
            if not self.fixed_port:
                self.port = self.pick_port()
            self._write_my_cnf(self.port)
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._start_process()
            if self._wait_until_it_answers(self.client(), port_log_offset=offset):
                self._save_state()
                return
            if self.fixed_port:
                raise StartFailed(f"port {self.port} is taken" + self._log_tail())
        raise StartFailed(f"{PORT_ATTEMPTS} ports in a row were taken before mariadbd could bind them")

    def _start_process(self, *args):
        self.directory.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        argv = [*self.command_prefix, program("mariadbd", "mysqld"), f"--defaults-file={self.my_cnf}", *args]
        # Its own process group, so that a Ctrl-C at the terminal reaches the launcher, which stops it
        # in order. Not its own session: a session is a scheduling group of its own (autogroup), and on a
        # loaded machine that doubled the server's INSERT latency against one started in the caller's.
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                        process_group=0, preexec_fn=_die_with_parent(os.getpid()))

    def _wait_until_it_answers(self, client, port_log_offset=None):
        """True once `client` runs SELECT 1 over the socket. False if the server exited because its
        TCP port was taken (checked when port_log_offset, where this start's log begins, is given);
        StartFailed if it exited otherwise or did not answer in time."""
        deadline = time.monotonic() + START_SECONDS
        while True:
            status = self.process.poll()
            if status is not None:
                self._log.close()
                self._log = None
                if port_log_offset is not None:
                    with open(self.log_path, "rb") as log:
                        log.seek(port_log_offset)
                        if PORT_TAKEN in log.read():
                            return False
                raise StartFailed(f"mariadbd exited (status {status}) before it answered" + self._log_tail())
            if subprocess.run([*client, "-e", "SELECT 1"], capture_output=True).returncode == 0:
                return True
            if time.monotonic() > deadline:
                raise StartFailed(f"mariadbd did not answer within {START_SECONDS} s" + self._log_tail())
            time.sleep(0.05)

    def _log_tail(self, lines=20):
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return f"; the last lines of {self.log_path}:\n" + "\n".join("    " + line for line in tail)


class _Interrupted(Exception):
    pass


def _interrupt(signum, frame):
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)  # once: the stop that follows is not cut short
    raise _Interrupted(signal.Signals(signum).name)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="A private MariaDB set up as the compose demo's MySQL (see the module's docstring).")
    parser.add_argument("directory", help="the server's directory (made if missing; kept: the caller removes it)")
    parser.add_argument("--port", type=int, help="the TCP port (default: chosen at the first start, kept after)")
    parser.add_argument("--log", help="the server's log (default DIRECTORY/mariadbd.log)")
    parser.add_argument("--conf-dir", default=CONF_DIR, help="option files to include (default %(default)s)")
    parser.add_argument("--initdb-dir", default=INITDB_DIR,
                        help="init files of the first start (default %(default)s; '' for none)")
    parser.add_argument("--template", help="a directory installed with no init files, whose data to copy")
    args = parser.parse_args(argv)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, _interrupt)
    server = MariaDB(args.directory, port=args.port, log=args.log, conf_dir=args.conf_dir,
                     initdb_dir=args.initdb_dir or None, template=args.template)
    ready = False
    try:
        server.start()
        ready = True
        print(json.dumps(server.report()), flush=True)
        while server.process.poll() is None:
            readable, _, _ = select.select([sys.stdin], [], [], 0.5)
            if readable and not os.read(sys.stdin.fileno(), 4096):
                return 0  # end of file: the caller closed it, or ended
        print(f"mariadb_server: mariadbd exited (status {server.process.returncode}) while in use"
              + server._log_tail(), file=sys.stderr)
        return 1
    except StartFailed as e:
        print(f"mariadb_server: {e}", file=sys.stderr)
        return 2 if isinstance(e, BadConfiguration) else 1
    except (_Interrupted, BrokenPipeError):
        return 0 if ready else 1
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
