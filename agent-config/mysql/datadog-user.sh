#!/bin/sh
# Creates the `datadog` database user of the Agent's MySQL integration, with the least privileges
# the metrics that conf.d/mysql.d/conf.yaml enables need. Works unchanged on MySQL 8 and MariaDB 10.5+.
#
# - In docker compose this directory is the MySQL image's /docker-entrypoint-initdb.d: the image's
#   entrypoint runs this file once, at the database's first start, and its docker_process_sql
#   function connects as root.
# - By hand or in tests: MYSQL="mysql -uroot -p" sh datadog-user.sh
#
# The password comes from MYSQL_DATADOG_PASSWORD, never from a file in the repository.

if [ -z "${MYSQL_DATADOG_PASSWORD:-}" ]; then
    echo "datadog-user.sh: MYSQL_DATADOG_PASSWORD is not set" >&2
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
datadog_password=$(printf '%s' "$MYSQL_DATADOG_PASSWORD" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g")

run_sql <<SQL
CREATE USER IF NOT EXISTS 'datadog'@'%' IDENTIFIED BY '${datadog_password}';
-- A resource limit goes in ALTER USER: MySQL 8 refuses it inside GRANT (the seed's
-- 'WITH MAX_USER_CONNECTIONS;' also lacked the number).
ALTER USER 'datadog'@'%' WITH MAX_USER_CONNECTIONS 5;
-- The binary logs (SHOW BINARY LOGS, SHOW MASTER STATUS) and every thread's state (SHOW ENGINE INNODB STATUS,
-- information_schema.PROCESSLIST).
GRANT REPLICATION CLIENT ON *.* TO 'datadog'@'%';
GRANT PROCESS ON *.* TO 'datadog'@'%';
-- Query and table I/O metrics.
GRANT SELECT ON performance_schema.* TO 'datadog'@'%';
SQL
# No SLAVE MONITOR (MariaDB's privilege for SHOW REPLICA STATUS): with `replication: false` the check
# never runs that statement (DataDog/integrations-core, mysql/datadog_checks/mysql/mysql.py:
# _get_replica_replication_status returns at once when replication is not enabled). Turning
# replication on needs `GRANT SLAVE MONITOR ON *.* TO 'datadog'@'%';` on MariaDB as well.
