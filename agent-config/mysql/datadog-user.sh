#!/bin/sh
# Creates the `datadog` database user of the Agent's MySQL integration, with the least privileges
# the metrics that conf.d/mysql.d/conf.yaml enables need, and what Database Monitoring (DBM) adds:
# the `datadog` schema with its procedures, the explain procedure in the app's schema, and the two
# locked accounts those procedures run as. Works unchanged on MySQL 8 and MariaDB 10.5+
# (agent-config/tests run it on MariaDB 10.11).
#
# - In docker compose this directory is the MySQL image's /docker-entrypoint-initdb.d: the image's
#   entrypoint runs its files once, at the database's first start, in name order, so
#   apm-demo-user.sh has created the app's schema `apm_demo` before this runs; its docker_process_sql
#   function connects as root.
# - By hand or in tests, after apm-demo-user.sh: MYSQL="mysql -uroot -p" sh datadog-user.sh
#
# The password comes from MYSQL_DATADOG_PASSWORD, never from a file in the repository.
set -e

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
-- Every thread's state (SHOW ENGINE INNODB STATUS, information_schema.PROCESSLIST).
GRANT PROCESS ON *.* TO 'datadog'@'%';
-- Query and table I/O metrics, and the statement samples, digests, waits and consumers of DBM.
GRANT SELECT ON performance_schema.* TO 'datadog'@'%';
-- DBM: the schema that holds the procedures the Agent calls, which it may call and nothing else.
CREATE SCHEMA IF NOT EXISTS datadog;
GRANT EXECUTE ON datadog.* TO 'datadog'@'%';
-- The accounts the procedures run as (SQL SECURITY DEFINER), each holding what its procedures need
-- and nothing else, and locked: nobody logs in as them (MySQL's mysql.sys and MariaDB's mariadb.sys,
-- the definers of their system views, are locked accounts for the same reason). Never root, as
-- Datadog's page leaves them: EXPLAIN evaluates constant subqueries while it plans, so a plan
-- ("const" or "Impossible WHERE") tells whether any condition holds, and whatever the definer may
-- read, the datadog user learns one bit per CALL.
-- The explain procedures' account reads the app's schema, which EXPLAIN of its statements needs.
CREATE USER IF NOT EXISTS 'datadog_explain'@'localhost' ACCOUNT LOCK;
GRANT SELECT ON apm_demo.* TO 'datadog_explain'@'localhost';
-- The consumers procedure's account updates setup_consumers, and reads it for its WHERE on name.
CREATE USER IF NOT EXISTS 'datadog_consumers'@'localhost' ACCOUNT LOCK;
GRANT UPDATE ON performance_schema.setup_consumers TO 'datadog_consumers'@'localhost';
GRANT SELECT ON performance_schema.setup_consumers TO 'datadog_consumers'@'localhost';
SQL

# The procedures, as Datadog's DBM setup gives them. Their bodies hold `;`, so this input ends each
# statement with `//`, set by the client's --delimiter option (MySQL 8's mysql and MariaDB's client
# both have it) rather than by DELIMITER lines, which Datadog's `$$` would also have turned into this
# shell's process id. DROP then CREATE keeps the script re-runnable and the bodies current (MySQL has
# CREATE PROCEDURE IF NOT EXISTS only since 8.0.29, and no CREATE OR REPLACE PROCEDURE); dropping a
# procedure drops its grants too, so they follow each CREATE.
# SQL SECURITY DEFINER: a procedure runs with its definer's privileges (the accounts above), so the
# `datadog` user explains statements on the app's tables, which it cannot read, and switches consumers
# it cannot update. The server checks EXECUTE on the procedure for the definer as well as for the
# caller, hence each definer's grant on its own procedures.
run_sql --delimiter=// <<'SQL'
-- Explain plans of statements run without a default schema (the FQ_PROCEDURE strategy of the Agent).
DROP PROCEDURE IF EXISTS datadog.explain_statement //
CREATE DEFINER = 'datadog_explain'@'localhost' PROCEDURE datadog.explain_statement(IN query TEXT)
    SQL SECURITY DEFINER
BEGIN
    SET @explain := CONCAT('EXPLAIN FORMAT=json ', query);
    PREPARE stmt FROM @explain;
    EXECUTE stmt;
    DEALLOCATE PREPARE stmt;
END //
GRANT EXECUTE ON PROCEDURE datadog.explain_statement TO 'datadog_explain'@'localhost' //
-- Called by the Agent when fewer than three events_statements_* consumers are on (they are off after
-- a restart without agent-config/mysql-conf/datadog-dbm.cnf).
DROP PROCEDURE IF EXISTS datadog.enable_events_statements_consumers //
CREATE DEFINER = 'datadog_consumers'@'localhost' PROCEDURE datadog.enable_events_statements_consumers()
    SQL SECURITY DEFINER
BEGIN
    UPDATE performance_schema.setup_consumers SET enabled = 'YES' WHERE name LIKE 'events_statements_%';
    UPDATE performance_schema.setup_consumers SET enabled = 'YES' WHERE name = 'events_waits_current';
END //
GRANT EXECUTE ON PROCEDURE datadog.enable_events_statements_consumers TO 'datadog_consumers'@'localhost' //
-- Datadog asks for this procedure in every schema whose statements are to be explained: for a
-- statement run with a default schema the Agent runs USE on that schema and then CALL
-- explain_statement, which resolves unqualified table names (visits) in that schema. The `datadog`
-- user's grant is on this one procedure only, which is also what lets it USE the schema.
DROP PROCEDURE IF EXISTS apm_demo.explain_statement //
CREATE DEFINER = 'datadog_explain'@'localhost' PROCEDURE apm_demo.explain_statement(IN query TEXT)
    SQL SECURITY DEFINER
BEGIN
    SET @explain := CONCAT('EXPLAIN FORMAT=json ', query);
    PREPARE stmt FROM @explain;
    EXECUTE stmt;
    DEALLOCATE PREPARE stmt;
END //
GRANT EXECUTE ON PROCEDURE apm_demo.explain_statement TO 'datadog_explain'@'localhost' //
GRANT EXECUTE ON PROCEDURE apm_demo.explain_statement TO 'datadog'@'%' //
SQL
# Left out on purpose, each a privilege no collector of this configuration uses:
# - REPLICATION CLIENT (MariaDB: BINLOG MONITOR), in Datadog's pages: the check runs SHOW BINARY LOGS
#   only when the server writes a binary log, and SHOW MASTER STATUS only with `replication: true`
#   (DataDog/integrations-core, mysql/datadog_checks/mysql/mysql.py: _collect_metrics reads
#   `log_bin` first; _get_replica_stats runs under the replication option), and
#   agent-config/mysql-conf/datadog-dbm.cnf turns the binary log off. A server that writes one needs
#   `GRANT REPLICATION CLIENT ON *.* TO 'datadog'@'%';`, or the check warns at every run.
# - SLAVE MONITOR (MariaDB's privilege for SHOW REPLICA STATUS): with `replication: false` the check
#   never runs that statement (DataDog/integrations-core, mysql/datadog_checks/mysql/mysql.py:
#   _get_replica_replication_status returns at once when replication is not enabled). Turning
#   replication on needs `GRANT SLAVE MONITOR ON *.* TO 'datadog'@'%';` on MariaDB as well.
# - CREATE TEMPORARY TABLES ON datadog.*, in Datadog's MySQL page (not its MariaDB page): it was for
#   the `datadog.temp_events` table of Agents that sampled events_statements_history_long; the
#   Agent's statement_samples.py now reads events_statements_current and creates no table.
# - GRANT EXECUTE ON PROCEDURE datadog.enable_events_statements_consumers TO the `datadog` user, in
#   Datadog's pages: EXECUTE ON datadog.* above already covers it.
