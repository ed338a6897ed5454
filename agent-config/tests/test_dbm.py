"""Database Monitoring (DBM) on the real MariaDB, started from agent-config/mysql-conf/datadog-dbm.cnf
and set up by agent-config/mysql/apm-demo-user.sh and datadog-user.sh as the MySQL image runs them.

The app's user runs statements led by the DBM comment, as the app does; the `datadog` user then does
what the Agent does with them (dbm_agent.py): reads them back from the Performance Schema, comment and
traceparent intact, and explains them through the procedures. Each check is a probe; the tests run
every probe on the whole setup, then, for each line of the .cnf and each statement of
datadog-user.sh, the whole setup without it, and show that the probe that piece is for then fails.
"""

import re
import secrets
import struct
import threading
import time
from contextlib import closing
from dataclasses import dataclass

import pymysql
import pytest
from pymysql.constants import COMMAND

import dbm_agent
from conftest import (AGENT_CONFIG, DBM_CNF, load_yaml, mariadb_server, run_app_script, run_setup_script,
                      script_statements)
from test_mysql import STATEMENTS

DATADOG_USER_SH = AGENT_CONFIG / "mysql" / "datadog-user.sh"
# What the app runs (docs/contract: table `visits`, read by id).
CREATE_VISITS = (
    "CREATE TABLE IF NOT EXISTS visits (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, page VARCHAR(255), "
    "user_agent VARCHAR(255), created_at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))"
)
SELECT_VISIT = "SELECT id, page, created_at FROM visits WHERE id = 1"


def dbm_comment():
    """The comment the app prepends in DD_DBM_PROPAGATION_MODE=full (src/db/comment.rs), with a fresh
    traceparent, so that each probe finds its own statement."""
    traceparent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    return f"/*dddbs='apm_demo',dde='demo',ddps='apm-demo',ddpv='0.1.0',traceparent='{traceparent}'*/ "


# Longer than the servers' default 1024 bytes, within the .cnf's 4096, comment included: every alias
# is a name, so its normalized digest is long as well.
LONG_SELECT = "SELECT " + ", ".join(f"page AS p{i:04d}" for i in range(240)) + " FROM visits WHERE id = 1"


@dataclass
class Setup:
    server: object
    app_password: str
    datadog_password: str
    results: dict  # script run -> CompletedProcess

    def app(self, database="apm_demo"):
        """A connection as the app makes it: its user over TCP, its database as the default schema."""
        return self.server.connect("apm_demo", self.app_password, database=database)

    def datadog(self):
        return self.server.connect("datadog", self.datadog_password)


def set_up(server, datadog_user_sh=DATADOG_USER_SH):
    """Both scripts in the image entrypoint's order, then datadog-user.sh again (a re-run must work)."""
    app_password = "app-" + secrets.token_hex(8) + "'q\\b"  # pragma: allowlist secret
    datadog_password = "dd-" + secrets.token_hex(8) + "'q\\b"  # pragma: allowlist secret
    results = {"apm-demo-user.sh": run_app_script(server, app_password)}
    results["datadog-user.sh"] = run_setup_script(server, datadog_password, datadog_user_sh)
    results["datadog-user.sh again"] = run_setup_script(server, datadog_password, datadog_user_sh)
    return Setup(server, app_password, datadog_password, results)


def run_as_app(app, *statements):
    with closing(app.cursor()) as cursor:
        for statement in statements:
            cursor.execute(statement)
            cursor.fetchall()


def find_sample(setup, statement, table="events_statements_current"):
    with closing(setup.datadog()) as datadog:
        rows = [row for row in dbm_agent.statement_samples(datadog, table) if row["sql_text"] == statement]
    assert rows, f"{statement[:60]}... is not in {table} as the datadog user reads it"
    return rows[-1]


# --- The probes: each raises AssertionError (or a database error) when what it stands for fails. ---

def probe_setup_scripts(setup):
    for name, result in setup.results.items():
        assert result.returncode == 0 and result.stderr == "", (name, result.stderr)


def probe_performance_schema(setup):
    with closing(setup.datadog()) as datadog:
        assert dbm_agent.performance_schema_enabled(datadog)


def probe_statements_consumers_on_from_the_start(setup):
    # Read only: the Agent would call the enable procedure were fewer than three on.
    with closing(setup.datadog()) as datadog:
        assert dbm_agent.enabled_statements_consumers(datadog) == set(dbm_agent.STATEMENT_TABLES)


def probe_waits_consumer_on(setup):
    with closing(setup.datadog()) as datadog:
        assert dbm_agent.waits_current_enabled(datadog)


def probe_sample(table):
    def probe(setup):
        statement = dbm_comment() + SELECT_VISIT
        with closing(setup.app()) as app:
            run_as_app(app, CREATE_VISITS, "INSERT INTO visits (page) VALUES ('/')", statement)
            # Read while the app's connection is open, as the Agent finds it: events_statements_current
            # and _history hold the statements of live connections only.
            sample = find_sample(setup, statement, table)
        assert sample["current_schema"] == "apm_demo"
        assert not dbm_agent.truncated(sample["sql_text"])
    probe.__name__ = f"probe_sample_in_{table}"
    return probe


def probe_explain_in_the_apps_schema(setup):
    statement = dbm_comment() + SELECT_VISIT
    with closing(setup.app()) as app:
        run_as_app(app, CREATE_VISITS, statement)
        sample = find_sample(setup, statement)
    with closing(setup.datadog()) as datadog:
        strategy, plan = dbm_agent.explain(datadog, sample["current_schema"], sample["sql_text"])
    assert strategy == "PROCEDURE", strategy
    assert plan["query_block"]["nested_loop"][0]["table"]["table_name"] == "visits", plan


def probe_explain_without_a_schema(setup):
    # A connection without a default schema names the table in full; the Agent then calls the
    # procedure of the `datadog` schema.
    statement = dbm_comment() + "SELECT id, page FROM apm_demo.visits WHERE id = 1"
    with closing(setup.app(database=None)) as app:
        run_as_app(app, "CREATE TABLE IF NOT EXISTS apm_demo." + CREATE_VISITS.split("EXISTS ", 1)[1], statement)
        sample = find_sample(setup, statement)
    assert sample["current_schema"] is None
    with closing(setup.datadog()) as datadog:
        strategy, plan = dbm_agent.explain(datadog, None, sample["sql_text"])
    assert strategy == "FQ_PROCEDURE", strategy
    assert plan["query_block"]["nested_loop"][0]["table"]["table_name"] == "visits", plan


def probe_long_statement_text(setup):
    statement = dbm_comment() + LONG_SELECT
    assert 1024 < len(statement.encode()) <= 4096
    with closing(setup.app()) as app:
        run_as_app(app, CREATE_VISITS, statement)
        sample = find_sample(setup, statement)
    with closing(setup.datadog()) as datadog:
        strategy, _ = dbm_agent.explain(datadog, "apm_demo", sample["sql_text"])
    assert strategy == "PROCEDURE"


def probe_long_statement_digest(setup):
    with closing(setup.app()) as app:
        run_as_app(app, CREATE_VISITS, dbm_comment() + LONG_SELECT)
    with closing(setup.datadog()) as datadog:
        digests = [row["digest_text"] for row in dbm_agent.statement_digests(datadog)
                   if "p0000" in (row["digest_text"] or "")]
    assert digests, "the long statement has no digest"
    # Cut at its limit, the digest loses the last aliases (and the WHERE after them).
    assert all("p0239" in digest and digest.rstrip().endswith("?") for digest in digests), [d[-40:] for d in digests]


def probe_check_statements(setup):
    with closing(setup.datadog()) as datadog, closing(datadog.cursor()) as cursor:
        for statement in STATEMENTS.values():
            cursor.execute(statement)
            cursor.fetchall()


def probe_connection_limit(setup):
    deadline = time.monotonic() + 10
    with closing(setup.server.root()) as root, closing(root.cursor()) as cursor:
        # Connections closed by earlier probes end on the server a moment later.
        while True:
            cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE user = 'datadog'")
            if cursor.fetchone()[0] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    connections = [setup.datadog() for _ in range(5)]
    try:
        try:
            setup.datadog().close()
        except pymysql.err.OperationalError as refused:
            assert refused.args[0] == 1226, refused  # max_user_connections exceeded
        else:
            raise AssertionError("a sixth connection of the datadog user was let in")
    finally:
        for connection in connections:
            connection.close()


def probe_agent_turns_consumers_back_on(setup):
    """Consumers off at run time (a restart without the .cnf): the Agent's call turns them on."""
    with closing(setup.server.root()) as root, closing(root.cursor()) as cursor:
        cursor.execute("UPDATE performance_schema.setup_consumers SET enabled = 'NO' "
                       "WHERE name LIKE 'events_statements_%' OR name = 'events_waits_current'")
    try:
        with closing(setup.datadog()) as datadog:
            enabled, error = dbm_agent.ensure_statements_consumers(datadog)
            assert error is None, error
            assert enabled == set(dbm_agent.STATEMENT_TABLES)
            assert dbm_agent.waits_current_enabled(datadog)
    finally:
        with closing(setup.server.root()) as root, closing(root.cursor()) as cursor:
            cursor.execute("UPDATE performance_schema.setup_consumers SET enabled = 'YES' "
                           "WHERE name LIKE 'events_statements_%' OR name = 'events_waits_current'")


def probe_binary_log_off(setup):
    """The demo's options turn the binary log off, over MySQL 8.4's default (conftest.MYSQL_84_DEFAULTS)."""
    with closing(setup.datadog()) as datadog, closing(datadog.cursor()) as cursor:
        cursor.execute("SHOW GLOBAL VARIABLES LIKE 'log_bin'")
        assert cursor.fetchone() == ("log_bin", "OFF")


# A security review's oracle: EXPLAIN evaluates a constant subquery while it plans, so the plan says
# whether the condition holds ("const" for id 1, "Impossible WHERE" for 999), here a condition on the
# server's accounts; one CALL per bit. Explained by a root definer it answers; by the explain
# procedures' own account it is refused.
ORACLE = ("SELECT id FROM apm_demo.visits WHERE id = "
          "IF((SELECT COUNT(*) FROM mysql.user WHERE user = 'root') > 0, 1, 999)")


def probe_explain_reads_nothing_outside_apm_demo(setup):
    with closing(setup.app()) as app:  # a visit with id 1: the two plans differ
        run_as_app(app, CREATE_VISITS, "INSERT INTO visits (page) VALUES ('/')")
    with closing(setup.datadog()) as datadog, closing(datadog.cursor()) as cursor:
        cursor.execute("USE apm_demo")
        for procedure in ("explain_statement", "datadog.explain_statement"):
            try:
                cursor.execute(f"CALL {procedure}(%s)", (ORACLE,))
                plan = cursor.fetchone()[0]
            except pymysql.err.MySQLError as refused:
                # SELECT command denied to user 'datadog_explain'@'localhost' for table `mysql`.`user`
                assert refused.args[0] == 1142 and "`mysql`.`user`" in refused.args[1], refused
            else:
                raise AssertionError(f"{procedure} explained a statement that reads mysql.user: {plan[:200]}")


# The locked accounts the procedures run as, and what each holds (test_mysql.py holds the `datadog`
# user's own grants).
DEFINER_GRANTS = {
    "datadog_explain@localhost": {"USAGE ON *.*", "SELECT ON apm_demo.*",
                                  "EXECUTE ON PROCEDURE datadog.explain_statement",
                                  "EXECUTE ON PROCEDURE apm_demo.explain_statement"},
    "datadog_consumers@localhost": {"USAGE ON *.*", "SELECT ON performance_schema.setup_consumers",
                                    "UPDATE ON performance_schema.setup_consumers",
                                    "EXECUTE ON PROCEDURE datadog.enable_events_statements_consumers"},
}
PROCEDURE_DEFINERS = {
    "datadog.explain_statement": "datadog_explain@localhost",
    "apm_demo.explain_statement": "datadog_explain@localhost",
    "datadog.enable_events_statements_consumers": "datadog_consumers@localhost",
}


def privileges(grants):
    """SHOW GRANTS rows as a set of "PRIVILEGE ON object", backquotes dropped."""
    found = set()
    for what, on in re.findall(r"GRANT (.+?) ON ((?:PROCEDURE )?\S+) TO", " ".join(grants)):
        found |= {f"{p.strip()} ON {on.replace('`', '')}" for p in what.split(",")}
    return found


def probe_procedures_run_as_their_own_definers(setup):
    with closing(setup.server.root()) as root, closing(root.cursor()) as cursor:
        cursor.execute("SELECT CONCAT(ROUTINE_SCHEMA, '.', ROUTINE_NAME), DEFINER, SECURITY_TYPE "
                       "FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA IN ('datadog', 'apm_demo')")
        routines = {name: (definer, security) for name, definer, security in cursor.fetchall()}
        assert routines == {name: (definer, "DEFINER") for name, definer in PROCEDURE_DEFINERS.items()}, routines
        for account, expected in DEFINER_GRANTS.items():
            user, host = account.split("@")
            cursor.execute("SHOW GRANTS FOR %s@%s", (user, host))
            assert privileges(row[0] for row in cursor.fetchall()) == expected, account


def probe_definers_cannot_log_in(setup):
    """Not even over the socket with their empty password, where an unlocked one would get in."""
    for account in DEFINER_GRANTS:
        try:
            pymysql.connect(unix_socket=setup.server.socket, user=account.split("@")[0], password="").close()
        except pymysql.err.OperationalError as refused:
            assert refused.args[0] == 4151, refused  # Access denied, this account is locked
        else:
            raise AssertionError(f"{account} logged in")


# By name. The last switches the consumers off and back on; on the shared server it runs after those
# that read them.
PROBES = {probe.__name__.removeprefix("probe_"): probe for probe in [
    probe_setup_scripts,
    probe_binary_log_off,
    probe_performance_schema,
    probe_statements_consumers_on_from_the_start,
    probe_waits_consumer_on,
    *(probe_sample(table) for table in dbm_agent.STATEMENT_TABLES),
    probe_explain_in_the_apps_schema,
    probe_explain_without_a_schema,
    probe_explain_reads_nothing_outside_apm_demo,
    probe_procedures_run_as_their_own_definers,
    probe_definers_cannot_log_in,
    probe_long_statement_text,
    probe_long_statement_digest,
    probe_check_statements,
    probe_connection_limit,
    probe_agent_turns_consumers_back_on,
]}


PROBE_FAILURES = (AssertionError, pymysql.err.MySQLError, dbm_agent.ExplainFailed)


# --- The whole setup: every probe passes. ---

@pytest.fixture(scope="module")
def dbm(datadir_template):
    with mariadb_server(datadir_template) as server:
        yield set_up(server)


@pytest.mark.parametrize("name", PROBES)
def test_probe_passes_with_the_whole_setup(dbm, name):
    PROBES[name](dbm)


def test_the_sample_keeps_the_apps_comment_and_traceparent(dbm):
    comment = dbm_comment()
    with closing(dbm.app()) as app:
        run_as_app(app, CREATE_VISITS, comment + SELECT_VISIT)
        sample = find_sample(dbm, comment + SELECT_VISIT)
    assert sample["sql_text"].startswith(comment)
    assert re.search(r"traceparent='00-[0-9a-f]{32}-[0-9a-f]{16}-01'", sample["sql_text"])
    assert sample["processlist_user"] == "apm_demo"


def test_the_datadog_user_cannot_read_the_apps_table_itself(dbm):
    """So the plan comes from the procedure (run with its definer's rights), not from the user."""
    with closing(dbm.datadog()) as datadog, closing(datadog.cursor()) as cursor:
        for statement in ("SELECT id FROM apm_demo.visits", "EXPLAIN SELECT id FROM apm_demo.visits"):
            with pytest.raises(pymysql.err.MySQLError) as refused:
                cursor.execute(statement)
            assert refused.value.args[0] == 1142, refused.value  # SELECT command denied


def test_the_agent_gets_no_plan_for_the_apps_insert(dbm):
    """EXPLAIN of an INSERT needs INSERT, which the explain procedures' account does not hold. The
    Agent explains INSERTs too (statement_samples.py SUPPORTED_EXPLAIN_STATEMENTS), gets 1142 from
    each strategy (no warning: 1142 is not among its PYMYSQL_MISSING_EXPLAIN_STATEMENT_PROC_ERRORS)
    and sends the sample without a plan; the plan of a one-row VALUES insert has no access path to
    read. The app's SELECTs are explained (the probes above)."""
    statement = dbm_comment() + "INSERT INTO visits (page, user_agent) VALUES ('/', 'test')"
    with closing(dbm.app()) as app:
        run_as_app(app, CREATE_VISITS, statement)
        sample = find_sample(dbm, statement)
    with closing(dbm.datadog()) as datadog, pytest.raises(dbm_agent.ExplainFailed) as failed:
        dbm_agent.explain(datadog, sample["current_schema"], sample["sql_text"])
    codes = {strategy: error.args[0] for strategy, error in failed.value.args[0].items()}
    assert codes == {"PROCEDURE": 1142, "FQ_PROCEDURE": 1142, "STATEMENT": 1142}, failed.value


def test_query_activity_shows_the_running_statement_with_its_comment(dbm):
    statement = dbm_comment() + "SELECT SLEEP(2)"
    app = dbm.app()
    running = threading.Thread(target=run_as_app, args=(app, statement))
    running.start()
    try:
        with closing(dbm.datadog()) as datadog:
            deadline = time.monotonic() + 2
            seen = []
            while not seen and time.monotonic() < deadline:
                seen = [row for row in dbm_agent.activity(datadog) if row["sql_text"] == statement]
                time.sleep(0.05)
        assert seen, "the running statement is not in the activity the datadog user reads"
        assert seen[0]["processlist_user"] == "apm_demo" and seen[0]["processlist_db"] == "apm_demo"
    finally:
        running.join()
        app.close()


# --- Without any piece: the probe that piece is for, which passes with the whole setup (above),
# fails. ---

def cnf_lines():
    return [line for line in DBM_CNF.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]


def cnf_option(line):
    return re.split(r"\s*=\s*", line.strip())[0].replace("_", "-")


# Why each line of datadog-dbm.cnf is there: the probe that fails without it.
CNF_LINE_PROBES = {
    "[mysqld]": "performance_schema",  # without the group header no line applies
    "performance-schema": "performance_schema",
    "performance-schema-consumer-events-statements-current": "sample_in_events_statements_current",
    "performance-schema-consumer-events-statements-history": "sample_in_events_statements_history",
    "performance-schema-consumer-events-statements-history-long": "sample_in_events_statements_history_long",
    "performance-schema-consumer-events-waits-current": "waits_consumer_on",
    "max-digest-length": "long_statement_digest",
    "performance-schema-max-digest-length": "long_statement_digest",
    "performance-schema-max-sql-text-length": "long_statement_text",
    "skip-log-bin": "binary_log_off",
}


@pytest.mark.parametrize("line", cnf_lines(), ids=cnf_option)
def test_without_each_line_of_the_cnf_its_probe_fails(datadir_template, line):
    expected = CNF_LINE_PROBES.get(cnf_option(line))
    assert expected, f"{line!r}: no probe says what this line of datadog-dbm.cnf is for"
    options = DBM_CNF.read_text().replace(line + "\n", "", 1)
    if cnf_option(line) == "[mysqld]":
        options = "[client]\n" + options  # the other lines, then, under a group mariadbd does not read
    with mariadb_server(datadir_template, options) as server, pytest.raises(PROBE_FAILURES):
        PROBES[expected](set_up(server))


# Why each statement of datadog-user.sh is there: the probe that fails without it.
SCRIPT_STATEMENT_PROBES = [
    (r"^CREATE USER IF NOT EXISTS 'datadog'@", "setup_scripts"),
    (r"^ALTER USER 'datadog'@'%' WITH MAX_USER_CONNECTIONS 5$", "connection_limit"),
    (r"^GRANT PROCESS ON \*\.\*", "check_statements"),
    (r"^GRANT SELECT ON performance_schema\.\*", "sample_in_events_statements_current"),
    (r"^CREATE SCHEMA IF NOT EXISTS datadog$", "setup_scripts"),
    (r"^GRANT EXECUTE ON datadog\.\*", "explain_without_a_schema"),
    # The grant that follows names the account, which must exist (NO_AUTO_CREATE_USER; MySQL 8 never
    # creates one in GRANT).
    (r"^CREATE USER IF NOT EXISTS 'datadog_explain'@'localhost' ACCOUNT LOCK$", "setup_scripts"),
    (r"^GRANT SELECT ON apm_demo\.\* TO 'datadog_explain'", "explain_in_the_apps_schema"),
    (r"^CREATE USER IF NOT EXISTS 'datadog_consumers'@'localhost' ACCOUNT LOCK$", "setup_scripts"),
    (r"^GRANT UPDATE ON performance_schema\.setup_consumers TO 'datadog_consumers'", "agent_turns_consumers_back_on"),
    (r"^GRANT SELECT ON performance_schema\.setup_consumers TO 'datadog_consumers'", "agent_turns_consumers_back_on"),
    # A second run would find the procedure there already.
    (r"^DROP PROCEDURE IF EXISTS datadog\.explain_statement$", "setup_scripts"),
    (r"^CREATE DEFINER = 'datadog_explain'@'localhost' PROCEDURE datadog\.explain_statement\(",
     "explain_without_a_schema"),
    (r"^GRANT EXECUTE ON PROCEDURE datadog\.explain_statement TO 'datadog_explain'", "explain_without_a_schema"),
    (r"^DROP PROCEDURE IF EXISTS datadog\.enable_events_statements_consumers$", "setup_scripts"),
    (r"^CREATE DEFINER = 'datadog_consumers'@'localhost' PROCEDURE datadog\.enable_events_statements_consumers\(",
     "agent_turns_consumers_back_on"),
    (r"^GRANT EXECUTE ON PROCEDURE datadog\.enable_events_statements_consumers TO 'datadog_consumers'",
     "agent_turns_consumers_back_on"),
    (r"^DROP PROCEDURE IF EXISTS apm_demo\.explain_statement$", "setup_scripts"),
    (r"^CREATE DEFINER = 'datadog_explain'@'localhost' PROCEDURE apm_demo\.explain_statement\(",
     "explain_in_the_apps_schema"),
    (r"^GRANT EXECUTE ON PROCEDURE apm_demo\.explain_statement TO 'datadog_explain'", "explain_in_the_apps_schema"),
    (r"^GRANT EXECUTE ON PROCEDURE apm_demo\.explain_statement TO 'datadog'", "explain_in_the_apps_schema"),
]
# Why each clause that is not a statement of its own is there: (its statement, the clause, the probe
# that fails when only the clause is left out).
SCRIPT_CLAUSE_PROBES = [
    (r"^CREATE USER IF NOT EXISTS 'datadog_explain'", " ACCOUNT LOCK", "definers_cannot_log_in"),
    (r"^CREATE USER IF NOT EXISTS 'datadog_consumers'", " ACCOUNT LOCK", "definers_cannot_log_in"),
    (r"^CREATE DEFINER = \S+ PROCEDURE datadog\.explain_statement", "DEFINER = 'datadog_explain'@'localhost' ",
     "explain_reads_nothing_outside_apm_demo"),
    (r"^CREATE DEFINER = \S+ PROCEDURE apm_demo\.explain_statement", "DEFINER = 'datadog_explain'@'localhost' ",
     "explain_reads_nothing_outside_apm_demo"),
    (r"^CREATE DEFINER = \S+ PROCEDURE datadog\.enable_events_statements_consumers",
     "DEFINER = 'datadog_consumers'@'localhost' ", "procedures_run_as_their_own_definers"),
]


def test_every_statement_of_datadog_user_sh_has_a_probe():
    statements = [s for s, _ in script_statements(DATADOG_USER_SH.read_text())]
    assert len(statements) == len(SCRIPT_STATEMENT_PROBES), statements
    for (pattern, _), statement in zip(SCRIPT_STATEMENT_PROBES, statements, strict=True):
        assert re.search(pattern, statement), (pattern, statement)


def statement_id(statement):
    """A statement's first line, without its password or parameters: the test's id."""
    return re.sub(r"\s+IDENTIFIED BY .*$|\(.*$", "", statement.splitlines()[0])


@pytest.mark.parametrize("index", range(len(SCRIPT_STATEMENT_PROBES)),
                         ids=[statement_id(s) for s, _ in script_statements(DATADOG_USER_SH.read_text())])
def test_without_each_statement_of_datadog_user_sh_its_probe_fails(datadir_template, tmp_path, index):
    script = DATADOG_USER_SH.read_text()
    statement, delimiter = script_statements(script)[index]
    assert script.count(statement + delimiter) == 1, statement
    without = tmp_path / "datadog-user.sh"
    without.write_text(script.replace(statement + delimiter, "", 1))
    with mariadb_server(datadir_template) as server, pytest.raises(PROBE_FAILURES):
        PROBES[SCRIPT_STATEMENT_PROBES[index][1]](set_up(server, without))


@pytest.mark.parametrize("index", range(len(SCRIPT_CLAUSE_PROBES)),
                         ids=[f"{clause.strip()} in {pattern.split()[-1]}" for pattern, clause, _ in SCRIPT_CLAUSE_PROBES])
def test_without_each_clause_of_datadog_user_sh_its_probe_fails(datadir_template, tmp_path, index):
    pattern, clause, probe = SCRIPT_CLAUSE_PROBES[index]
    script = DATADOG_USER_SH.read_text()
    (statement, delimiter), = [(s, d) for s, d in script_statements(script) if re.search(pattern, s)]
    assert clause in statement and script.count(statement + delimiter) == 1, statement
    without = tmp_path / "datadog-user.sh"
    without.write_text(script.replace(statement + delimiter, statement.replace(clause, "", 1) + delimiter))
    with mariadb_server(datadir_template) as server:
        setup = set_up(server, without)
        probe_setup_scripts(setup)  # the script still runs: only the probe's property is gone
        with pytest.raises(PROBE_FAILURES):
            PROBES[probe](setup)


# --- The configuration around it. ---

def test_the_mysql_instance_enables_dbm():
    (instance,) = load_yaml("conf.d/mysql.d/conf.yaml")["instances"]
    assert instance["dbm"] is True


# MySQL 8.4 refuses to start on an option it does not know, so the .cnf holds only names both servers
# have. These are MySQL 8.4's (MySQL 8.4 Reference Manual, "Performance Schema Command Options" and
# "Performance Schema System Variables"; max_digest_length in "Server System Variables").
MYSQL_84_OPTIONS = {
    "performance-schema", "max-digest-length", "performance-schema-max-digest-length",
    "performance-schema-max-sql-text-length",
    *(f"performance-schema-consumer-{c}" for c in (
        "events-stages-current", "events-stages-history", "events-stages-history-long",
        "events-statements-cpu", "events-statements-current", "events-statements-history",
        "events-statements-history-long", "events-transactions-current", "events-transactions-history",
        "events-transactions-history-long", "events-waits-current", "events-waits-history",
        "events-waits-history-long", "global-instrumentation", "statements-digest",
        "thread-instrumentation")),
    # "--skip-log-bin or --disable-log-bin" (7.4.4 "The Binary Log"); an option file takes a long
    # option's name without its dashes (6.2.2.2 "Using Option Files").
    "skip-log-bin",
}


def test_the_cnf_sets_only_options_mysql_84_knows_too():
    options = {cnf_option(line) for line in cnf_lines()} - {"[mysqld]"}
    assert options <= MYSQL_84_OPTIONS, options - MYSQL_84_OPTIONS
    assert [line for line in cnf_lines() if line.startswith("[")] == ["[mysqld]"]


def test_the_image_runs_the_apps_script_first():
    # The MySQL image's entrypoint runs /docker-entrypoint-initdb.d/* in the order of the glob.
    scripts = sorted(path.name for path in (AGENT_CONFIG / "mysql").glob("*.sh"))
    assert scripts == ["apm-demo-user.sh", "datadog-user.sh"]


def test_datadog_user_sh_before_the_apps_schema_exists_fails_naming_it(datadir_template):
    with mariadb_server(datadir_template) as server:
        result = run_setup_script(server, "dd-password")
    assert result.returncode != 0
    assert "apm_demo" in result.stderr, result.stderr


def execute_binary_prepared(connection, sql, value):
    """COM_STMT_PREPARE then COM_STMT_EXECUTE with one BIGINT parameter: the binary protocol that
    clients use for server-side prepared statements (pymysql itself only sends text queries)."""
    connection._execute_command(COMMAND.COM_STMT_PREPARE, sql)
    header = connection._read_packet().get_all_data()
    assert header[:1] == b"\x00", header  # OK: statement id, columns, parameters
    statement_id, columns, parameters = struct.unpack("<IHH", header[1:9])
    for count in (parameters, columns):  # their definitions, each list ended by an EOF packet
        for _ in range(count + (1 if count else 0)):
            connection._read_packet()
    connection._execute_command(
        COMMAND.COM_STMT_EXECUTE,
        # statement id, no cursor, one iteration, NULL bitmap, types follow, MYSQL_TYPE_LONGLONG, value
        struct.pack("<IBIBBBBq", statement_id, 0, 1, 0, 1, 8, 0, value),
    )
    eofs = 0
    while eofs < 2:  # after the column definitions, then after the rows
        packet = connection._read_packet().get_all_data()
        if packet[:1] == b"\xfe" and len(packet) < 9:
            eofs += 1


def test_a_binary_protocol_prepared_statement_leaves_dbm_no_sample(dbm):
    """What the app's MySQL client must not do for DBM to see its statements: MariaDB records the
    execution of a server-side prepared statement as statement/com/Execute with no SQL text and no
    digest, which the Agent's sample query leaves out: no sample, no traceparent, no explain plan,
    where text queries (above) have all three. MySQL 8, not run here, reports such executions at
    best with their `?` placeholders, which no EXPLAIN takes (MySQL bug #80173; percona/pmm #5712)."""
    comment = dbm_comment()
    with closing(dbm.app()) as app:
        run_as_app(app, CREATE_VISITS)
        execute_binary_prepared(app, comment + "SELECT id, page FROM visits WHERE id = ?", 1)
        with closing(dbm.datadog()) as datadog:
            samples = [row for table in dbm_agent.STATEMENT_TABLES
                       for row in dbm_agent.statement_samples(datadog, table) if comment in row["sql_text"]]
            with closing(datadog.cursor()) as cursor:
                cursor.execute("SELECT event_name, sql_text, digest_text "
                               "FROM performance_schema.events_statements_current "
                               "WHERE thread_id = (SELECT thread_id FROM performance_schema.threads "
                               "WHERE processlist_id = %s)", (app.thread_id(),))
                executed = cursor.fetchone()
    assert samples == []
    assert executed == ("statement/com/Execute", None, None), executed
