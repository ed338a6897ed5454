"""What the Agent's Database Monitoring (DBM) reads and calls on MySQL and MariaDB, for the tests to
do the same as the `datadog` user.

Written after DataDog/integrations-core, mysql/datadog_checks/mysql/ (the Agent's MySQL check; it
ships only inside the Agent, so it cannot run here): statement_samples.py (query samples and explain
plans), statements.py (query metrics), activity.py (query activity) and mysql.py (the configuration
checks). Each function names what it stands for; the SQL reads the same tables, with the same
filters, as the `datadog` user would, and calls the procedures in the same order.
"""

import json
from contextlib import closing

import pymysql

# statement_samples.py ENABLED_STATEMENTS_CONSUMERS_QUERY: which events_statements_* consumers are on
# (MySQL 8's events_statements_cpu does not count).
ENABLED_STATEMENTS_CONSUMERS = (
    "SELECT name FROM performance_schema.setup_consumers WHERE enabled = 'YES' "
    "AND name LIKE 'events_statements_%' AND name != 'events_statements_cpu'"
)
# statement_samples.py: the procedure it calls, as `CALL <name>()`, when fewer than three are on.
ENABLE_CONSUMERS_PROCEDURE = "datadog.enable_events_statements_consumers"
# The tables the Agent's samplers have read: events_statements_current today (statement_samples.py
# EVENTS_STATEMENTS_TABLE, and activity.py), history and history_long in earlier Agents.
STATEMENT_TABLES = ("events_statements_current", "events_statements_history", "events_statements_history_long")


def enabled_statements_consumers(connection):
    with closing(connection.cursor()) as cursor:
        cursor.execute(ENABLED_STATEMENTS_CONSUMERS)
        return {name for (name,) in cursor.fetchall()}


def ensure_statements_consumers(connection):
    """statement_samples.py _get_sample_collection_strategy: fewer than three consumers on, and the
    Agent calls the enable procedure (a failure is only logged), then reads them again. Returns the
    consumers on and the procedure's error, if it was called and failed."""
    enabled = enabled_statements_consumers(connection)
    error = None
    if len(enabled) < 3:
        try:
            with closing(connection.cursor()) as cursor:
                cursor.execute(f"CALL {ENABLE_CONSUMERS_PROCEDURE}()")
        except pymysql.err.DatabaseError as e:
            error = e
        enabled = enabled_statements_consumers(connection)
    return enabled, error


def performance_schema_enabled(connection):
    """mysql.py: the check reads the variable; statements.py collects no query metrics when OFF."""
    with closing(connection.cursor()) as cursor:
        cursor.execute("SHOW VARIABLES LIKE 'performance_schema'")
        row = cursor.fetchone()
    return bool(row) and row[1] == "ON"


def waits_current_enabled(connection):
    """mysql.py events_wait_current_enabled: activity.py collects nothing, and warns
    (events-waits-current-not-enabled), unless this consumer is on."""
    with closing(connection.cursor()) as cursor:
        cursor.execute("SELECT enabled FROM performance_schema.setup_consumers WHERE name = 'events_waits_current'")
        row = cursor.fetchone()
    return bool(row) and row[0] == "YES"


def statement_samples(connection, table="events_statements_current"):
    """statement_samples.py EVENTS_STATEMENTS_CURRENT_QUERY: the statements with their text, digest
    and schema, joined to their threads for the user; EXPLAINs left out."""
    query = (
        "SELECT E.current_schema, E.sql_text, E.digest_text, E.timer_end, T.processlist_user "
        f"FROM performance_schema.{table} E "
        "LEFT JOIN performance_schema.threads T ON E.thread_id = T.thread_id "
        "WHERE E.sql_text IS NOT NULL AND E.event_name LIKE 'statement/%' "
        "AND E.digest_text IS NOT NULL AND E.digest_text NOT LIKE 'EXPLAIN %'"
    )
    with closing(connection.cursor(pymysql.cursors.DictCursor)) as cursor:
        cursor.execute(query)
        return [{k.lower(): v for k, v in row.items()} for row in cursor.fetchall()]


def statement_digests(connection):
    """statements.py _query_summary_per_statement: the normalized statements behind query metrics."""
    with closing(connection.cursor(pymysql.cursors.DictCursor)) as cursor:
        cursor.execute(
            "SELECT schema_name, digest, digest_text, count_star, sum_timer_wait "
            "FROM performance_schema.events_statements_summary_by_digest "
            "WHERE digest_text NOT LIKE 'EXPLAIN %' OR digest_text IS NULL ORDER BY count_star DESC LIMIT 10000"
        )
        return [{k.lower(): v for k, v in row.items()} for row in cursor.fetchall()]


def truncated(sql_text):
    """util.py get_truncation_state: the server ends a cut statement text with '...'."""
    return sql_text.endswith("...")


class ExplainFailed(Exception):
    """No strategy gave a plan; args[0] maps each strategy tried to its error."""


def explain(connection, schema, sql_text):
    """statement_samples.py _explain_statement: USE the statement's schema when it had one, then try
    the strategies in the Agent's order, PROCEDURE (`CALL explain_statement(%s)`, resolved in that
    schema; only with a schema), FQ_PROCEDURE (`CALL datadog.explain_statement(%s)`) and STATEMENT
    (`EXPLAIN FORMAT=json ...` as the `datadog` user itself). Returns the first strategy that gives a
    plan and the plan, parsed."""
    if truncated(sql_text):
        raise ExplainFailed({"query_truncated": len(sql_text)})
    errors = {}
    with closing(connection.cursor()) as cursor:
        if schema:
            try:
                cursor.execute(f"USE `{schema}`")
            except pymysql.err.DatabaseError as e:
                raise ExplainFailed({"use_schema": e}) from e
        strategies = [("PROCEDURE", "CALL explain_statement(%s)", (sql_text,))] if schema else []
        strategies += [
            ("FQ_PROCEDURE", "CALL datadog.explain_statement(%s)", (sql_text,)),
            # Sent as is, as the Agent formats it in: no parameters, so no % to escape.
            ("STATEMENT", "EXPLAIN FORMAT=json " + sql_text, None),
        ]
        for strategy, query, args in strategies:
            try:
                cursor.execute(query, args)
                plan = cursor.fetchone()[0]
            except pymysql.err.DatabaseError as e:
                errors[strategy] = e
                continue
            if plan:
                return strategy, json.loads(plan)
    raise ExplainFailed(errors)


def activity(connection):
    """activity.py ACTIVITY_QUERY, shortened: the connections running a statement now (not this one,
    not sleeping), with the statement's text and what the thread waits on."""
    with closing(connection.cursor(pymysql.cursors.DictCursor)) as cursor:
        cursor.execute(
            "SELECT T.processlist_user, T.processlist_db, T.processlist_command, "
            "COALESCE(S.sql_text, T.processlist_info) AS sql_text, W.event_name AS wait_event "
            "FROM performance_schema.threads T "
            "LEFT JOIN performance_schema.events_waits_current W ON W.thread_id = T.thread_id "
            "LEFT JOIN performance_schema.events_statements_current S ON S.thread_id = T.thread_id "
            "WHERE T.processlist_state IS NOT NULL AND T.processlist_command != 'Sleep' "
            "AND T.processlist_id != CONNECTION_ID() AND T.processlist_command != 'Daemon'"
        )
        return [{k.lower(): v for k, v in row.items()} for row in cursor.fetchall()]
