#!/usr/bin/env bash
# TEST SCAFFOLDING ONLY: the entrypoint of the locally built stand-in for `mysql:8.4`, which no
# registry here can supply (tests/containers/engine.py builds it on Debian's MariaDB). It is never
# part of what users run: with Docker Hub, compose pulls the official image and its own entrypoint.
#
# It implements the part of the official image's contract that docker-compose.yml and the
# Kubernetes StatefulSet rely on, as docker-library/mysql's 8.4/docker-entrypoint.sh does it (read
# for this file at commit 7f30fdb0738041fc5125e8218e393e0a891243e9):
# - `mysqld` as the command. Started as root, it steps down to the `mysql` user, uid 999 (_main:
#   gosu; here setpriv, which Debian's minbase has); started as any other user (compose's and
#   Kubernetes' 999), it runs as that user and switches nothing.
# - MYSQL_ROOT_PASSWORD and MYSQL_ROOT_HOST, each also from the file that VAR_FILE names, never both,
#   read before the switch (docker_setup_env, file_env); MYSQL_ROOT_HOST defaults to '%'.
# - First start, no `mysql` directory in the datadir: a root password option is required
#   (docker_verify_minimum_env); the datadir is initialised with an empty root password
#   (docker_init_database_dir: --initialize-insecure); a temporary server runs on the socket only
#   (docker_temp_server_start: --skip-networking); then one batch (docker_setup_db) gives
#   root@localhost its password, random with MYSQL_RANDOM_ROOT_PASSWORD and then printed once as
#   "GENERATED ROOT PASSWORD: ...", adds a root@MYSQL_ROOT_HOST twin with every privilege unless that
#   host is `localhost`, and drops `test`. The password goes into the SQL and the client's option
#   file as it is, unescaped, as there: one with ', " or \ breaks the first start in both.
# - Then every file of /docker-entrypoint-initdb.d in glob (sorted) order: *.sh sourced, or run when
#   executable (a run script does not see docker_process_sql, as in the official image), *.sql piped
#   to docker_process_sql (docker_process_init_files); the temporary server is stopped
#   (docker_temp_server_stop) and the command is exec'd.
# - docker_process_sql: SQL on stdin, run as root over the socket, the password in an option file on a
#   pipe (_mysql_passfile), never in a process list, comments kept (--comments);
#   `--dont-use-mysql-root-password` first drops the password.
# - Log lines as mysql_log prints them: '<date --rfc-3339=seconds> [Note] [Entrypoint]: <text>'.
# - Later starts (the datadir has `mysql`) skip all of that and exec the server.
# - Under set -e, a failing init script stops the entrypoint (the container exits), as it does there.
# Not implemented, because this project does not use them: MYSQL_DATABASE, MYSQL_USER,
# MYSQL_PASSWORD and MYSQL_ONETIME_PASSWORD (refused, so that a configuration setting them fails here
# too), compressed *.sql.*, the time zone tables.
set -eo pipefail
shopt -s nullglob

DATADIR=/var/lib/mysql
SOCKET=/var/run/mysqld/mysqld.sock

mysql_log() {
	local level=$1
	shift
	printf '%s [%s] [Entrypoint]: %s\n' "$(date --rfc-3339=seconds)" "$level" "$*"
}
mysql_note() { mysql_log Note "$@"; }
mysql_error() {
	mysql_log ERROR "$@" >&2
	exit 1
}

# NAME from NAME, or from the file NAME_FILE names (Docker and Kubernetes secrets), or DEFAULT;
# exported, NAME_FILE unset. Both set is an error.
file_env() {
	local name=$1 file_name="$1_FILE" value=${2:-}
	if [ -n "${!name:-}" ] && [ -n "${!file_name:-}" ]; then
		mysql_error "Both $name and $file_name are set (but are exclusive)"
	fi
	if [ -n "${!name:-}" ]; then
		value=${!name}
	elif [ -n "${!file_name:-}" ]; then
		value=$(<"${!file_name}")
	fi
	export "$name=$value"
	unset "$file_name"
}

_mysql_passfile() {
	# A client option file on a pipe, so that the password never shows in a process list.
	if [ "${1:-}" != --dont-use-mysql-root-password ] && [ -n "${MYSQL_ROOT_PASSWORD:-}" ]; then
		printf '[client]\npassword="%s"\n' "$MYSQL_ROOT_PASSWORD"
	fi
}

docker_process_sql() {
	local passfile=()
	if [ "${1:-}" = --dont-use-mysql-root-password ]; then
		passfile=(--dont-use-mysql-root-password)
		shift
	fi
	mysql --defaults-extra-file=<(_mysql_passfile "${passfile[@]}") --protocol=socket -uroot -hlocalhost \
		--socket="$SOCKET" --comments "$@"
}

initialise() {
	if [ -z "${MYSQL_ROOT_PASSWORD:-}" ] && [ -z "${MYSQL_ALLOW_EMPTY_PASSWORD:-}" ] &&
		[ -z "${MYSQL_RANDOM_ROOT_PASSWORD:-}" ]; then
		mysql_error "Database is uninitialized and password option is not specified: set one of" \
			"MYSQL_ROOT_PASSWORD, MYSQL_ALLOW_EMPTY_PASSWORD, MYSQL_RANDOM_ROOT_PASSWORD"
	fi
	# Unreadable init scripts fail here, before a half-initialised datadir exists.
	ls /docker-entrypoint-initdb.d/ >/dev/null

	mysql_note "Initializing database files"
	# MariaDB's equivalent of --initialize-insecure: root@localhost with an empty password.
	mariadb-install-db --datadir="$DATADIR" --auth-root-authentication-method=normal \
		--skip-test-db >/dev/null
	mysql_note "Database files initialized"

	mysql_note "Starting temporary server"
	# MariaDB has no --daemonize: background it and wait until it answers on its socket.
	"$@" --skip-networking --socket="$SOCKET" &
	local temp_server=$!
	local tries
	for tries in $(seq 60); do
		mysqladmin --socket="$SOCKET" --user=root ping >/dev/null 2>&1 && break
		kill -0 "$temp_server" 2>/dev/null || mysql_error "Unable to start server."
		sleep 0.5
	done
	[ "$tries" -lt 60 ] || mysql_error "Unable to start server."
	mysql_note "Temporary server started."

	if [ -n "${MYSQL_RANDOM_ROOT_PASSWORD:-}" ]; then
		MYSQL_ROOT_PASSWORD=$(head -c 24 /dev/urandom | base64)
		export MYSQL_ROOT_PASSWORD
		mysql_note "GENERATED ROOT PASSWORD: $MYSQL_ROOT_PASSWORD"
	fi
	local root_create=
	if [ -n "$MYSQL_ROOT_HOST" ] && [ "$MYSQL_ROOT_HOST" != localhost ]; then
		root_create="CREATE USER 'root'@'${MYSQL_ROOT_HOST}' IDENTIFIED BY '${MYSQL_ROOT_PASSWORD}';
			GRANT ALL ON *.* TO 'root'@'${MYSQL_ROOT_HOST}' WITH GRANT OPTION;"
	fi
	# MySQL's --initialize makes root@localhost and nothing else: mariadb-install-db's other root
	# hosts and anonymous users go first, so that the users are those the official image leaves.
	docker_process_sql --dont-use-mysql-root-password --database=mysql <<-SQL
		SET autocommit = 1;
		SET @@SESSION.SQL_LOG_BIN = 0;
		DELETE FROM global_priv WHERE NOT (User = 'root' AND Host = 'localhost') AND User <> 'mariadb.sys';
		DELETE FROM proxies_priv WHERE NOT (User = 'root' AND Host = 'localhost');
		FLUSH PRIVILEGES;
		ALTER USER 'root'@'localhost' IDENTIFIED BY '${MYSQL_ROOT_PASSWORD}';
		GRANT ALL ON *.* TO 'root'@'localhost' WITH GRANT OPTION;
		FLUSH PRIVILEGES;
		${root_create}
		DROP DATABASE IF EXISTS test;
	SQL

	# Scripts written for the official image may call "${mysql[@]}" (kept there for compatibility).
	# shellcheck disable=SC2034
	mysql=(docker_process_sql)
	local f
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
		*.sh)
			if [ -x "$f" ]; then
				mysql_note "$0: running $f"
				"$f"
			else
				mysql_note "$0: sourcing $f"
				# shellcheck disable=SC1090
				. "$f"
			fi
			;;
		*.sql)
			mysql_note "$0: running $f"
			docker_process_sql <"$f"
			;;
		*) mysql_log Warn "$0: ignoring $f" >&2 ;;
		esac
	done

	mysql_note "Stopping temporary server"
	mysqladmin --defaults-extra-file=<(_mysql_passfile) -uroot --socket="$SOCKET" shutdown
	wait "$temp_server" || true
	mysql_note "Temporary server stopped"
	mysql_note "MySQL init process done. Ready for start up."
}

_main() {
	if [ "${1:0:1}" = - ]; then
		set -- mysqld "$@"
	fi
	if [ "$1" != mysqld ] && [ "$1" != mariadbd ]; then
		exec "$@"
	fi
	local name
	for name in MYSQL_DATABASE MYSQL_USER MYSQL_PASSWORD MYSQL_ONETIME_PASSWORD; do
		[ -z "${!name:-}" ] || mysql_error "$name is set: the stand-in does not implement it"
	done
	file_env MYSQL_ROOT_HOST '%'
	file_env MYSQL_ROOT_PASSWORD
	mkdir -p "$DATADIR" "$(dirname "$SOCKET")"
	if [ "$(id -u)" = 0 ]; then
		find "$DATADIR" "$(dirname "$SOCKET")" \! -user mysql -exec chown --no-dereference mysql '{}' +
		mysql_note "Switching to dedicated user 'mysql'"
		exec setpriv --reuid=mysql --regid=mysql --init-groups "${BASH_SOURCE[0]}" "$@"
	fi
	if [ ! -d "$DATADIR/mysql" ]; then
		initialise "$@"
	fi
	exec "$@"
}

# Sourced (by tests/compose, for mysql_log's line format), it only defines the functions.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	_main "$@"
fi
