#!/usr/bin/env bash
# TEST SCAFFOLDING ONLY: the entrypoint of the locally built stand-in for `mysql:8.4`, which no
# registry here can supply (tests/containers/engine.py builds it on Debian's MariaDB). It is never
# part of what users run: with Docker Hub, compose pulls the official image and its own entrypoint.
#
# It implements the part of the official image's contract that docker-compose.yml relies on, as
# docker-library/mysql's 8.4/docker-entrypoint.sh does it (read for this file at commit
# 06118821c80d79b251254736b06670828b63b6aa):
# - `mysqld` as the command; started as root, it steps down to the `mysql` user (_main: gosu; here
#   setpriv, which Debian's minbase has).
# - First start, no `mysql` directory in the datadir: a root password option is required
#   (docker_verify_minimum_env); the datadir is initialised with an empty root password
#   (docker_init_database_dir: --initialize-insecure); a temporary server runs on the socket only
#   (docker_temp_server_start: --skip-networking); root gets its password, random with
#   MYSQL_RANDOM_ROOT_PASSWORD and printed once as "GENERATED ROOT PASSWORD: ...", and a root@'%'
#   twin (docker_setup_db, MYSQL_ROOT_HOST defaulting to '%'); `test` is dropped; then every file of
#   /docker-entrypoint-initdb.d in glob (sorted) order: *.sh sourced, or run when executable (a run
#   script does not see docker_process_sql, as in the official image), *.sql piped to
#   docker_process_sql (docker_process_init_files); the temporary server is stopped
#   (docker_temp_server_stop) and the command is exec'd.
# - docker_process_sql: SQL on stdin, run as root over the socket with the root password, comments
#   kept (--comments); `--dont-use-mysql-root-password` first drops the password.
# - Later starts (the datadir has `mysql`) skip all of that and exec the server.
# - Under set -e, a failing init script stops the entrypoint (the container exits), as it does there.
# Not implemented, because this project does not use them: MYSQL_DATABASE, MYSQL_USER and
# MYSQL_PASSWORD (refused, so that a compose file setting them fails here too), *_FILE variables,
# MYSQL_ONETIME_PASSWORD, compressed *.sql.*, /docker-entrypoint-startdb.d, the time zone tables.
set -eo pipefail
shopt -s nullglob

DATADIR=/var/lib/mysql
SOCKET=/run/mysqld/mysqld.sock

log() {
	local level=$1
	shift
	printf '%s [%s] [Entrypoint]: %s\n' "$(date --rfc-3339=seconds)" "$level" "$*"
}
note() { log Note "$@"; }
fail() {
	log ERROR "$@" >&2
	exit 1
}

root_defaults() {
	# A client option file on a pipe (the official _mysql_passfile), so that the password never
	# shows in a process list. Always root: the client's default user would be the `mysql` login.
	printf '[client]\nuser=root\n'
	if [ "${1:-}" != --dont-use-mysql-root-password ] && [ -n "${MYSQL_ROOT_PASSWORD:-}" ]; then
		printf 'password="%s"\n' "$MYSQL_ROOT_PASSWORD"
	fi
}

docker_process_sql() {
	local passfile=()
	if [ "${1:-}" = --dont-use-mysql-root-password ]; then
		passfile=(--dont-use-mysql-root-password)
		shift
	fi
	mysql --defaults-extra-file=<(root_defaults "${passfile[@]}") --protocol=socket -hlocalhost \
		--socket="$SOCKET" --comments "$@"
}

sql_string() {
	# An SQL string literal's body: backslashes doubled, single quotes escaped.
	printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g"
}

initialise() {
	if [ -z "${MYSQL_ROOT_PASSWORD:-}" ] && [ -z "${MYSQL_ALLOW_EMPTY_PASSWORD:-}" ] &&
		[ -z "${MYSQL_RANDOM_ROOT_PASSWORD:-}" ]; then
		fail "Database is uninitialized and password option is not specified: set one of" \
			"MYSQL_ROOT_PASSWORD, MYSQL_ALLOW_EMPTY_PASSWORD, MYSQL_RANDOM_ROOT_PASSWORD"
	fi
	# Unreadable init scripts fail here, before a half-initialised datadir exists.
	ls /docker-entrypoint-initdb.d/ >/dev/null

	note "Initializing database files"
	# MariaDB's equivalent of --initialize-insecure: root@localhost with an empty password.
	mariadb-install-db --datadir="$DATADIR" --auth-root-authentication-method=normal \
		--skip-test-db >/dev/null
	note "Database files initialized"

	note "Starting temporary server"
	# MariaDB has no --daemonize: background it and wait until it answers on its socket.
	"$@" --skip-networking --socket="$SOCKET" &
	local temp_server=$!
	local tries
	for tries in $(seq 60); do
		mysqladmin --socket="$SOCKET" --user=root ping >/dev/null 2>&1 && break
		kill -0 "$temp_server" 2>/dev/null || fail "Unable to start server."
		sleep 0.5
	done
	[ "$tries" -lt 60 ] || fail "Unable to start server."
	note "Temporary server started."

	if [ -n "${MYSQL_RANDOM_ROOT_PASSWORD:-}" ]; then
		MYSQL_ROOT_PASSWORD=$(head -c 18 /dev/urandom | base64)
		export MYSQL_ROOT_PASSWORD
		note "GENERATED ROOT PASSWORD: $MYSQL_ROOT_PASSWORD"
	fi
	local password root_host=${MYSQL_ROOT_HOST:-%}
	password=$(sql_string "${MYSQL_ROOT_PASSWORD:-}")
	# MySQL's --initialize makes root@localhost and nothing else: mariadb-install-db's other root
	# hosts and anonymous users go, so that the users are those the official image leaves.
	docker_process_sql --dont-use-mysql-root-password --database=mysql <<-SQL
		SET autocommit = 1;
		SET @@SESSION.SQL_LOG_BIN = 0;
		DELETE FROM global_priv WHERE NOT (User = 'root' AND Host = 'localhost') AND User <> 'mariadb.sys';
		DELETE FROM proxies_priv WHERE NOT (User = 'root' AND Host = 'localhost');
		FLUSH PRIVILEGES;
		ALTER USER 'root'@'localhost' IDENTIFIED BY '${password}';
		GRANT ALL ON *.* TO 'root'@'localhost' WITH GRANT OPTION;
		FLUSH PRIVILEGES;
		DROP DATABASE IF EXISTS test;
	SQL
	if [ "$root_host" != localhost ]; then
		docker_process_sql --database=mysql <<-SQL
			CREATE USER 'root'@'${root_host}' IDENTIFIED BY '${password}';
			GRANT ALL ON *.* TO 'root'@'${root_host}' WITH GRANT OPTION;
		SQL
	fi

	# Scripts written for the official image may call "${mysql[@]}" (kept there for compatibility).
	# shellcheck disable=SC2034
	mysql=(docker_process_sql)
	local f
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
		*.sh)
			if [ -x "$f" ]; then
				note "$0: running $f"
				"$f"
			else
				note "$0: sourcing $f"
				# shellcheck disable=SC1090
				. "$f"
			fi
			;;
		*.sql)
			note "$0: running $f"
			docker_process_sql <"$f"
			;;
		*) log Warn "$0: ignoring $f" >&2 ;;
		esac
	done

	note "Stopping temporary server"
	mysqladmin --defaults-extra-file=<(root_defaults) --socket="$SOCKET" shutdown
	wait "$temp_server" || true
	note "Temporary server stopped"
	note "MySQL init process done. Ready for start up."
}

main() {
	if [ "${1:0:1}" = - ]; then
		set -- mysqld "$@"
	fi
	if [ "$1" != mysqld ] && [ "$1" != mariadbd ]; then
		exec "$@"
	fi
	local name
	for name in MYSQL_DATABASE MYSQL_USER MYSQL_PASSWORD; do
		[ -z "${!name:-}" ] || fail "$name is set: the stand-in does not implement it (docker-compose.yml must not use it)"
	done
	if [ "$(id -u)" = 0 ]; then
		mkdir -p "$DATADIR" "$(dirname "$SOCKET")"
		find "$DATADIR" "$(dirname "$SOCKET")" \! -user mysql -exec chown --no-dereference mysql:mysql '{}' +
		note "Switching to dedicated user 'mysql'"
		exec setpriv --reuid=mysql --regid=mysql --init-groups "${BASH_SOURCE[0]}" "$@"
	fi
	if [ ! -d "$DATADIR/mysql" ]; then
		initialise "$@"
	fi
	exec "$@"
}

main "$@"
