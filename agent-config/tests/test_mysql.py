"""The MySQL parts against a real MariaDB server: the setup script, then every statement the Agent's
MySQL check issues for the enabled options, run as the `datadog` user it creates."""

import re

import pymysql
import pytest

from conftest import load_yaml, mariadb_server, run_by_hand, run_setup_script

# What the MySQL check (Agent 7) reads for the options in conf.d/mysql.d/conf.yaml.
ALWAYS = {
    "global status": "SHOW GLOBAL STATUS",
    "global variables": "SHOW GLOBAL VARIABLES",
    "pid file": "SHOW VARIABLES LIKE 'pid_file'",
    "innodb engine status": "SHOW ENGINE INNODB STATUS",
    "statement digests": "SELECT schema_name, digest_text, count_star, sum_timer_wait "
                         "FROM performance_schema.events_statements_summary_by_digest LIMIT 10",
    "threads": "SELECT thread_id, name, processlist_state FROM performance_schema.threads LIMIT 10",
    "table io waits": "SELECT object_schema, object_name, count_read, count_write "
                      "FROM performance_schema.table_io_waits_summary_by_table LIMIT 10",
    "schema sizes": "SELECT table_schema, SUM(data_length + index_length) FROM information_schema.tables "
                    "GROUP BY table_schema",
    "engines": "SELECT engine, support FROM information_schema.ENGINES",
    "processlist": "SELECT id, user, command, state FROM information_schema.PROCESSLIST",
    # MySQL 8 has a STATUS column here, MariaDB an ENABLED one: the privilege is the same.
    "innodb metrics": "SELECT name, count FROM information_schema.INNODB_METRICS",
}
# Only when the server writes a binary log: DataDog/integrations-core, mysql/datadog_checks/mysql/mysql.py,
# _collect_metrics: `if self._get_variable_enabled(results, 'log_bin')` before _get_binary_log_stats.
# It needs REPLICATION CLIENT (MariaDB: BINLOG MONITOR).
BINARY_LOG = {"binary logs": "SHOW BINARY LOGS"}
# Only with `replication: true`: mysql.py runs them from _collect_replication_metrics, under
# `if is_affirmative(self._config.options.get('replication', ...))` (_get_replica_stats: SHOW REPLICA
# STATUS, then SHOW MASTER STATUS). REPLICATION CLIENT, and on MariaDB SLAVE MONITOR for the first.
REPLICATION = {"replica status": "SHOW REPLICA STATUS", "master status": "SHOW MASTER STATUS"}


def options():
    (instance,) = load_yaml("conf.d/mysql.d/conf.yaml")["instances"]
    return instance.get("options") or {}


def statements(options, log_bin):
    """The statements the check issues for these options, on a server with or without a binary log."""
    return {**ALWAYS, **(BINARY_LOG if log_bin else {}), **(REPLICATION if options.get("replication") else {})}


# agent-config/mysql-conf/datadog-dbm.cnf turns the binary log off (test_the_binary_log_is_off).
STATEMENTS = statements(options(), log_bin=False)


def integration_credentials(password):
    """The user and password as the integration config gives them (the password from its variable)."""
    (instance,) = load_yaml("conf.d/mysql.d/conf.yaml")["instances"]
    variable = re.fullmatch(r"%%env_([A-Z_]+)%%", instance["password"]).group(1)
    assert variable == "MYSQL_DATADOG_PASSWORD", "the variable datadog-user.sh reads"
    return instance["username"], password


@pytest.fixture(scope="module")
def datadog(mariadb, datadog_user, datadog_password):
    assert datadog_user.returncode == 0, datadog_user.stderr
    user, password = integration_credentials(datadog_password)
    connection = mariadb.connect(user, password)
    yield connection
    connection.close()


def test_setup_script_runs_cleanly(datadog_user):
    assert datadog_user.returncode == 0, datadog_user.stderr
    assert datadog_user.stderr == ""


def test_setup_script_is_idempotent(mariadb, datadog_user, datadog_password):
    again = run_setup_script(mariadb, datadog_password)
    assert again.returncode == 0, again.stderr


def test_both_scripts_run_by_hand_as_docs_agent_md_says(datadir_template, datadog_password):
    """`MYSQL="mysql -uroot -p" sh …`, in the same order, outside the image: the scripts' own client
    path (no docker_process_sql)."""
    with mariadb_server(datadir_template) as server:
        for script, variable in (("apm-demo-user.sh", "MYSQL_APP_PASSWORD"), ("datadog-user.sh", "MYSQL_DATADOG_PASSWORD")):
            result = run_by_hand(server, script, **{variable: datadog_password})
            assert result.returncode == 0 and result.stderr == "", (script, result.stderr)
        with server.connect("datadog", datadog_password) as datadog, datadog.cursor() as cursor:
            cursor.execute("CALL datadog.explain_statement('SELECT 1')")
            assert "query_block" in cursor.fetchone()[0]


def test_setup_script_refuses_to_run_without_a_password(mariadb):
    result = run_setup_script(mariadb, "")
    assert result.returncode != 0
    assert "MYSQL_DATADOG_PASSWORD" in result.stderr


def test_datadog_user_logs_in_with_the_integrations_credentials(datadog):
    with datadog.cursor() as cursor:
        cursor.execute("SELECT CURRENT_USER()")
        assert cursor.fetchone()[0] == "datadog@%"


def test_wrong_password_is_refused(mariadb, datadog_user):
    with pytest.raises(pymysql.err.OperationalError):
        mariadb.connect("datadog", "not-the-password")


@pytest.mark.parametrize("what", STATEMENTS)
def test_every_statement_of_the_check_succeeds_as_datadog(datadog, what):
    with datadog.cursor() as cursor:
        cursor.execute(STATEMENTS[what])
        cursor.fetchall()


def test_global_status_has_the_metrics_the_dashboards_use(datadog):
    with datadog.cursor() as cursor:
        cursor.execute("SHOW GLOBAL STATUS")
        status = dict(cursor.fetchall())
    # mysql.performance.queries and mysql.performance.threads_connected come from these.
    assert "Queries" in status and "Threads_connected" in status


def test_replication_is_off_so_its_statements_are_not_issued():
    assert options().get("replication") is False
    assert not set(REPLICATION) & set(STATEMENTS)
    assert set(REPLICATION) <= set(statements({"replication": True}, log_bin=False))


def test_the_binary_log_is_off_so_the_check_reads_no_binary_logs(datadog):
    """With MySQL 8.4's default (binary logging on) under the demo's options, as every server of these
    tests has it: the options turn it off, so the check never issues SHOW BINARY LOGS."""
    with datadog.cursor() as cursor:
        cursor.execute("SHOW GLOBAL VARIABLES LIKE 'log_bin'")
        assert cursor.fetchone() == ("log_bin", "OFF")
    assert "binary logs" not in STATEMENTS
    assert "binary logs" in statements(options(), log_bin=True)


def test_no_privilege_beyond_what_the_enabled_options_need(mariadb, datadog):
    """Least privilege: the grants are exactly these. Not REPLICATION CLIENT (MariaDB: BINLOG MONITOR):
    with no binary log and replication off the check issues none of its statements; nor MariaDB's
    SLAVE MONITOR (SHOW REPLICA STATUS, which replication: false never issues). DBM adds EXECUTE on
    the `datadog` schema's procedures and on the app schema's explain procedure, nothing else
    (test_dbm.py shows what each is for)."""
    with datadog.cursor() as cursor:
        cursor.execute("SHOW GRANTS FOR CURRENT_USER()")
        grants = " ".join(row[0] for row in cursor.fetchall()).upper()
    privileges = set()
    for what, on in re.findall(r"GRANT (.+?) ON ((?:PROCEDURE )?\S+) TO", grants):
        privileges |= {f"{p.strip()} ON {on.replace('`', '')}" for p in what.split(",")}
    assert privileges == {"PROCESS ON *.*", "SELECT ON PERFORMANCE_SCHEMA.*",
                          "EXECUTE ON DATADOG.*", "EXECUTE ON PROCEDURE APM_DEMO.EXPLAIN_STATEMENT"}, privileges
    for statement in ("SHOW REPLICA STATUS", "SHOW MASTER STATUS", "SHOW BINARY LOGS"):
        with datadog.cursor() as cursor, pytest.raises(pymysql.err.MySQLError) as refused:
            cursor.execute(statement)
        assert refused.value.args[0] == 1227, (statement, refused.value)  # access denied: privilege needed


@pytest.mark.parametrize("statement", [
    "CREATE DATABASE datadog_should_not",
    "CREATE TABLE mysql.datadog_should_not (id INT)",
    "UPDATE mysql.user SET host = host",
    "GRANT SELECT ON *.* TO 'datadog'@'%'",
])
def test_writes_are_refused(datadog, statement):
    with datadog.cursor() as cursor, pytest.raises(pymysql.err.MySQLError) as refused:
        cursor.execute(statement)
    assert refused.value.args[0] in (1044, 1045, 1142, 1227), refused.value


def test_connections_are_limited_to_five(mariadb, datadog, datadog_password):
    # `datadog` (the fixture) holds one connection already.
    extra = [mariadb.connect("datadog", datadog_password) for _ in range(4)]
    try:
        with pytest.raises(pymysql.err.OperationalError) as refused:
            mariadb.connect("datadog", datadog_password)
        assert refused.value.args[0] == 1226, refused.value  # max_user_connections exceeded
    finally:
        for connection in extra:
            connection.close()
