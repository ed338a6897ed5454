"""agent-config/mysql/apm-demo-user.sh against the real MariaDB: the app's database and user, which
can do what the app does (create its table, insert, select, delete its oldest rows) and nothing else."""

import re
from contextlib import closing

import pymysql
import pytest

from conftest import AGENT_CONFIG, mariadb_server, run_app_script, run_script, script_statements

APP_USER_SH = AGENT_CONFIG / "mysql" / "apm-demo-user.sh"
# The app's statements (the database contract: the table it creates at start, then inserts and reads).
CREATE_VISITS = (
    "CREATE TABLE IF NOT EXISTS visits (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, page VARCHAR(255), "
    "user_agent VARCHAR(255), created_at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))"
)
APP_WORK = [
    CREATE_VISITS,
    "INSERT INTO visits (page, user_agent) VALUES ('/a', 'test')",
    "SELECT id, page, user_agent, created_at FROM visits WHERE id = LAST_INSERT_ID()",
    "SELECT id, page, user_agent, created_at FROM visits ORDER BY id DESC LIMIT 10",
    # The table keeps the newest MYSQL_KEEP_VISITS: the oldest rows go (src/db/mod.rs, PRUNE_VISITS).
    "DELETE FROM visits WHERE id <= 0",
]


def do_the_apps_work(server, password):
    """As the app: its user over TCP, `apm_demo` the default schema. Returns the row it read back."""
    read = []
    with closing(server.connect("apm_demo", password, database="apm_demo")) as app, closing(app.cursor()) as cursor:
        for statement in APP_WORK:
            cursor.execute(statement)
            read.extend(cursor.fetchall())
    return read[0]  # the first SELECT's: the row just inserted


@pytest.fixture(scope="module")
def app(mariadb, app_user, app_password):
    assert app_user.returncode == 0, app_user.stderr
    with closing(mariadb.connect("apm_demo", app_password, database="apm_demo")) as connection:
        yield connection


def test_script_runs_cleanly_and_again(mariadb, app_user, app_password):
    assert app_user.returncode == 0 and app_user.stderr == "", app_user.stderr
    again = run_app_script(mariadb, app_password)
    assert again.returncode == 0, again.stderr


def test_script_refuses_to_run_without_a_password(mariadb):
    result = run_app_script(mariadb, "")
    assert result.returncode != 0
    assert "MYSQL_APP_PASSWORD" in result.stderr


def test_the_app_creates_its_table_inserts_and_reads(mariadb, app_user, app_password):
    row = do_the_apps_work(mariadb, app_password)
    assert row[1:3] == ("/a", "test")


def test_wrong_password_is_refused(mariadb, app_user):
    with pytest.raises(pymysql.err.OperationalError):
        mariadb.connect("apm_demo", "not-the-password")


def test_the_apps_grants_are_exactly_select_insert_delete_create_on_its_schema(app):
    with closing(app.cursor()) as cursor:
        cursor.execute("SHOW GRANTS FOR CURRENT_USER()")
        grants = [row[0] for row in cursor.fetchall()]
    privileges = set()
    for what, on in re.findall(r"GRANT (.+?) ON (\S+) TO", " ".join(grants)):
        privileges |= {f"{p.strip()} ON {on.replace('`', '')}" for p in what.split(",")}
    assert privileges == {"USAGE ON *.*", "SELECT ON apm_demo.*", "INSERT ON apm_demo.*",
                          "DELETE ON apm_demo.*", "CREATE ON apm_demo.*"}, grants


@pytest.mark.parametrize("statement", [
    "UPDATE visits SET page = '/b'",
    "DROP TABLE visits",
    "TRUNCATE TABLE visits",
    "ALTER TABLE visits ADD COLUMN extra INT",
    "CREATE INDEX visits_page ON visits (page)",
    "DROP DATABASE apm_demo",
    "CREATE DATABASE apm_demo_other",
    "CREATE TABLE mysql.apm_demo_should_not (id INT)",
    "SELECT user FROM mysql.user",
    "CREATE TABLE datadog.apm_demo_should_not (id INT)",
    "CALL datadog.explain_statement('SELECT 1')",
    "CALL apm_demo.explain_statement('SELECT 1')",
    "SELECT sql_text FROM performance_schema.events_statements_current",
    "GRANT SELECT ON apm_demo.* TO 'datadog'@'%'",
])
def test_anything_else_is_refused(app, datadog_user, statement):
    with closing(app.cursor()) as cursor:
        cursor.execute(CREATE_VISITS)
        with pytest.raises(pymysql.err.MySQLError) as refused:
            cursor.execute(statement)
    # Access denied, in its forms: to the database, the table, the command, the routine.
    assert refused.value.args[0] in (1044, 1142, 1227, 1370), refused.value


# Why each statement of apm-demo-user.sh is there: the app's work fails without it.
SCRIPT_STATEMENTS = [r"^CREATE DATABASE IF NOT EXISTS apm_demo$", r"^CREATE USER IF NOT EXISTS 'apm_demo'@'%'",
                     r"^GRANT SELECT, INSERT, DELETE, CREATE ON apm_demo\.\* TO 'apm_demo'@'%'$"]


def test_every_statement_of_the_script_is_listed():
    statements = [s for s, _ in script_statements(APP_USER_SH.read_text())]
    assert len(statements) == len(SCRIPT_STATEMENTS), statements
    for pattern, statement in zip(SCRIPT_STATEMENTS, statements, strict=True):
        assert re.search(pattern, statement), (pattern, statement)


@pytest.mark.parametrize("index", range(len(SCRIPT_STATEMENTS)), ids=["database", "user", "grant"])
def test_without_each_statement_the_apps_work_fails(datadir_template, tmp_path, index):
    script = APP_USER_SH.read_text()
    statement, delimiter = script_statements(script)[index]
    without = tmp_path / "apm-demo-user.sh"
    without.write_text(script.replace(statement + delimiter, "", 1))
    assert without.read_text() != script
    with mariadb_server(datadir_template) as server:
        result = run_script(server, without, MYSQL_APP_PASSWORD="app-password")
        with pytest.raises((AssertionError, pymysql.err.MySQLError)):
            assert result.returncode == 0, result.stderr
            do_the_apps_work(server, "app-password")
