#!/bin/sh
# Creates the app's database `apm_demo` and its user `apm_demo`@'%', which may read, add, delete and
# create tables there and nothing else: the app creates its `visits` table at start (CREATE TABLE IF
# NOT EXISTS), then inserts and selects visits, and deletes the oldest past MYSQL_KEEP_VISITS (so
# that unauthenticated POSTs cannot fill the disk); it never updates or drops. Works unchanged on
# MySQL 8 and MariaDB 10.5+.
#
# - In docker compose this directory is the MySQL image's /docker-entrypoint-initdb.d: the image's
#   entrypoint runs its files once, at the database's first start, in name order (this one before
#   datadog-user.sh, which puts the Agent's explain procedure in `apm_demo`).
# - By hand or in tests: MYSQL="mysql -uroot -p" sh apm-demo-user.sh
#
# The password comes from MYSQL_APP_PASSWORD (the app's MYSQL_PASSWORD), never from a file in the
# repository.
set -e

if [ -z "${MYSQL_APP_PASSWORD:-}" ]; then
    echo "apm-demo-user.sh: MYSQL_APP_PASSWORD is not set" >&2
    exit 1
fi

run_sql() {
    if command -v docker_process_sql >/dev/null 2>&1; then
        docker_process_sql "$@"
    else
        ${MYSQL:-mysql} "$@"
    fi
}

# Quote the password as an SQL string literal: double backslashes, then escape single quotes.
app_password=$(printf '%s' "$MYSQL_APP_PASSWORD" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g")

run_sql <<SQL
CREATE DATABASE IF NOT EXISTS apm_demo;
CREATE USER IF NOT EXISTS 'apm_demo'@'%' IDENTIFIED BY '${app_password}';
GRANT SELECT, INSERT, DELETE, CREATE ON apm_demo.* TO 'apm_demo'@'%';
SQL
