//! The database path for real: the release binary against a private MariaDB (started with the DBM
//! server options and set up by the scripts the MySQL container runs) and Datadog's test agent.
//!
//! What the issue asks the tests to prove: the query spans' fields as the test agent received them,
//! the DBM comments as the server recorded them (read back by the Agent's `datadog` user), the 503
//! path with the server stopped and the recovery without a restart, and values that never reach a
//! resource. Run by `make test` (`cargo test --release --features conformance --test database`).

mod common;

use std::time::{Duration, Instant};

use common::ddapm::DatadogTestAgent;
use common::mariadb::MariaDb;
use common::service::{Exporter, Service, client};
use serde_json::{Value, json};

const INSERT: &str = "INSERT INTO visits (page, user_agent) VALUES (?, ?)";
const SELECT: &str = "SELECT id, page, user_agent, created_at FROM visits WHERE id = ?";
const LIST: &str = "SELECT id, page, user_agent, created_at FROM visits ORDER BY id DESC LIMIT 10";

/// A page name that would end a quoted SQL string and append a statement, were it pasted.
const HOSTILE_PAGE: &str = "/checkout'; DROP TABLE visits; -- \\' */";

fn start_service(agent: &DatadogTestAgent, db: &MariaDb, mode: &str) -> Service {
    start_service_with(agent, db, &[("DD_DBM_PROPAGATION_MODE", mode)])
}

/// The service on `db`, once it has made its schema (in the background, at start: waited for, so
/// that no request of the test makes it).
fn start_service_with(agent: &DatadogTestAgent, db: &MariaDb, extra: &[(&str, &str)]) -> Service {
    let mut env = db.service_env();
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let service = Service::start(&agent.url, &env);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !service
        .json_lines()
        .iter()
        .any(|line| line["message"] == "database schema ready")
    {
        assert!(
            Instant::now() < deadline,
            "no schema at start: {:?}",
            service.json_lines()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    service
}

fn meta<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    span["meta"].get(key).and_then(Value::as_str)
}

fn post_visit(service: &Service, agent_name: &str, body: Value) -> reqwest::blocking::Response {
    client()
        .post(format!("{}/api/visits", service.url))
        .header("user-agent", agent_name)
        .json(&body)
        .send()
        .unwrap()
}

/// The statements the server recorded whose text contains `needle`, read as the Agent reads its
/// statement samples: by the `datadog` user, from events_statements_history_long.
fn recorded_statements(db: &MariaDb, needle: &str) -> Vec<String> {
    let sql = format!(
        "SELECT SQL_TEXT FROM performance_schema.events_statements_history_long \
         WHERE SQL_TEXT LIKE '%{needle}%' ORDER BY EVENT_ID"
    );
    db.datadog_query(&sql)
        .expect("the datadog user reads performance_schema")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn each_statement_is_a_client_span_of_its_request_and_its_comment_names_that_span() {
    let db = MariaDb::start();
    let agent = DatadogTestAgent::start();
    let service = start_service(&agent, &db, "full");
    let ua = "database-suite";

    let created = post_visit(&service, ua, json!({ "page": HOSTILE_PAGE }));
    assert_eq!(created.status(), 201);
    let visit: Value = created.json().unwrap();
    let id = visit["id"].as_u64().expect("an id");
    assert_eq!(visit["page"], HOSTILE_PAGE, "the page is stored as sent");
    assert_eq!(visit["user_agent"], ua);
    assert!(
        visit["created_at"].as_str().unwrap().ends_with('Z'),
        "{visit}"
    );
    // The value went in as data: the table is there, and holds it byte for byte.
    assert_eq!(
        db.root_query(&format!("SELECT page FROM apm_demo.visits WHERE id = {id}"))
            .unwrap()
            .trim_end_matches('\n'),
        HOSTILE_PAGE
    );

    // The pool keeps its connections: 20 requests one after another make no new one. (The status
    // query itself is a connection: hence the 1.)
    let connections = || -> u64 {
        let status = db
            .root_query("SHOW GLOBAL STATUS LIKE 'Connections'")
            .unwrap();
        status.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let before = connections();
    for _ in 0..20 {
        assert_eq!(
            service
                .send("GET", &format!("/api/visits/{id}"), &[])
                .status(),
            200
        );
    }
    assert_eq!(connections() - before, 1, "the pool made new connections");

    let get = |path: &str| service.send("GET", path, &[("user-agent", ua)]);
    let shown = get(&format!("/api/visits/{id}"));
    assert_eq!(shown.status(), 200);
    assert_eq!(shown.json::<Value>().unwrap(), visit);
    let listed: Value = get("/api/visits").json().unwrap();
    assert_eq!(listed[0], visit, "the newest first");
    assert_eq!(get("/api/visits/987654321").status(), 404);
    assert_eq!(get("/api/visits/not-a-number").status(), 400);
    let seed = get("/api/apm");
    assert_eq!(seed.text().unwrap(), "Getting APM Started");

    // 6 requests; statements: INSERT + SELECT, SELECT, LIST, SELECT (404) = 5.
    // 6 requests of this user agent, and the 20 above; statements of the 6: INSERT + SELECT,
    // SELECT, LIST, SELECT (404) = 5; of the 20: one each; the schema's at start: 1.
    let spans = agent.wait_for(6 + 20 + 5 + 20 + 1, |_| true);
    let requests: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "http.server.request" && meta(s, "http.useragent") == Some(ua))
        .collect();
    let parents: Vec<&Value> = requests.iter().map(|r| &r["span_id"]).collect();
    // The schema made at start is a trace of its own: one query span, at the root.
    let (schema, queries): (Vec<&Value>, Vec<&Value>) = spans
        .iter()
        .filter(|s| s["name"] == "mysql.query")
        .filter(|s| s["parent_id"] == 0 || parents.contains(&&s["parent_id"]))
        .partition(|s| {
            s["resource"]
                .as_str()
                .unwrap()
                .starts_with("CREATE TABLE IF NOT EXISTS visits")
        });
    assert_eq!(requests.len(), 6, "{spans:#?}");
    assert_eq!(queries.len(), 5, "{spans:#?}");
    assert_eq!(schema.len(), 1, "{spans:#?}");
    assert_eq!(schema[0]["parent_id"], 0);
    assert_eq!(
        meta(schema[0], "_dd.p.dm"),
        Some("-0"),
        "the first span of its trace chunk"
    );

    let children = |resource: &str| -> Vec<String> {
        let request = requests
            .iter()
            .find(|r| r["resource"] == resource)
            .unwrap_or_else(|| panic!("no request span {resource}"));
        let mut children: Vec<&&Value> = queries
            .iter()
            .filter(|q| q["parent_id"] == request["span_id"])
            .inspect(|q| assert_eq!(q["trace_id"], request["trace_id"]))
            .collect();
        // In the order they ran (an exporter may send a trace's spans in any order).
        children.sort_by_key(|q| q["start"].as_i64());
        children
            .iter()
            .map(|q| q["resource"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(children("POST /api/visits"), [INSERT, SELECT]);
    assert_eq!(children("GET /api/visits"), [LIST]);
    assert_eq!(children("GET /api/apm"), Vec::<String>::new());
    let by_id: Vec<&&Value> = requests
        .iter()
        .filter(|r| r["resource"] == "GET /api/visits/{id}")
        .collect();
    assert_eq!(by_id.len(), 3, "one resource for every id");

    for query in &queries {
        let case = query["resource"].as_str().unwrap();
        assert_eq!(query["service"], "apm-demo-conformance", "{case}");
        assert_eq!(query["type"], "sql", "{case}");
        assert_eq!(query["error"], 0, "{case}");
        for (key, value) in [
            ("span.kind", "client"),
            ("component", "mysql_async"),
            ("db.system", "mysql"),
            ("db.instance", "apm_demo"),
            ("db.name", "apm_demo"),
            ("db.user", "apm_demo"),
            ("out.host", "127.0.0.1"),
            ("_dd.dbm_trace_injected", "true"),
            ("env", "ci"),
            ("version", "9.9.9"),
        ] {
            assert_eq!(meta(query, key), Some(value), "{case}: {key}");
        }
        // `server.address` is a peer tag too; datadog-opentelemetry 0.5.4 renames it on every span
        // by an HTTP mapping of OpenTelemetry's conventions (`http.server_name`): the database's host
        // still names it, from `out.host`.
        let server_address = match Exporter::from_env() {
            Exporter::OpentelemetryDatadog => "server.address",
            Exporter::DatadogOpentelemetry => "http.server_name",
        };
        assert_eq!(meta(query, server_address), Some("127.0.0.1"), "{case}");
        // Asks the Agent for the span's trace metrics: a client span is not top-level, and Agents
        // before 7.60 compute none for it otherwise.
        assert_eq!(
            query["metrics"]["_dd.measured"], 1.0,
            "{case}: _dd.measured"
        );
        // A string in meta, as dd-trace-py's PyMySQL integration sends it.
        assert_eq!(
            meta(query, "network.destination.port"),
            Some(db.port.to_string().as_str()),
            "{case}"
        );
        assert!(
            [INSERT, SELECT, LIST].contains(&case),
            "a resource is a statement with placeholders: {case}"
        );
    }

    // The INSERT reached the server with its comment first, naming its own span.
    let insert_span = queries.iter().find(|q| q["resource"] == INSERT).unwrap();
    let recorded = recorded_statements(&db, "INSERT INTO visits");
    assert_eq!(recorded.len(), 1, "{recorded:#?}");
    let statement = &recorded[0];
    let root = requests
        .iter()
        .find(|r| r["resource"] == "POST /api/visits")
        .unwrap();
    let traceparent = format!(
        "traceparent='00-{}{:016x}-{:016x}-01'",
        Exporter::from_env()
            .trace_id_high(root)
            .expect("the high 64 bits of the trace id"),
        insert_span["trace_id"].as_u64().unwrap(),
        insert_span["span_id"].as_u64().unwrap(),
    );
    let comment = format!(
        "/*dddb='apm_demo',dddbs='apm_demo',dde='ci',ddh='127.0.0.1',ddps='apm-demo-conformance',\
         ddpv='9.9.9',{traceparent}*/ INSERT INTO visits (page, user_agent) VALUES (_utf8mb4 X'"
    );
    assert!(statement.starts_with(&comment), "{statement}\n{comment}");
    assert!(
        !statement.contains("checkout"),
        "values travel hex-encoded: {statement}"
    );

    let (status, body) = agent.check_failures();
    assert_eq!(status, 200, "the test agent's checks failed: {body}");
}

#[test]
fn a_database_that_goes_away_costs_a_503_at_once_and_comes_back_without_a_restart() {
    let mut db = MariaDb::start();
    let agent = DatadogTestAgent::start();
    let service = start_service(&agent, &db, "service");
    let ua = "database-outage";
    assert_eq!(post_visit(&service, ua, json!({})).status(), 201);

    db.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let response = post_visit(&service, ua, json!({ "page": "/down" }));
        let elapsed = started.elapsed();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(
            response.json::<Value>().unwrap()["error_type"],
            "database_unavailable"
        );
        assert!(
            elapsed < Duration::from_secs(2),
            "answered after {elapsed:?}"
        );
        let seed = service.send("GET", "/", &[("user-agent", ua)]);
        assert_eq!(
            seed.status(),
            200,
            "the seed's routes never wait on the database"
        );
    }

    db.resume();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut failed_after_resume = 0;
    loop {
        let status = post_visit(&service, ua, json!({ "page": "/back" })).status();
        if status == 201 {
            break;
        }
        failed_after_resume += 1;
        assert!(
            Instant::now() < deadline,
            "still {status} 10 s after the database came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("503s after the database came back, before the first 201: {failed_after_resume}");

    let spans = agent.wait_for(8 + failed_after_resume, |s| {
        meta(s, "http.useragent") == Some(ua) && s["resource"] == "POST /api/visits"
    });
    let failed: Vec<&Value> = spans.iter().filter(|s| s["error"] == 1).collect();
    assert!(failed.len() >= 3, "{spans:#?}");
    let all = agent.spans();
    for request in failed {
        assert_eq!(meta(request, "http.status_code"), Some("503"));
        assert_eq!(meta(request, "error.type"), Some("database_unavailable"));
        let child = all
            .iter()
            .find(|q| q["parent_id"] == request["span_id"] && q["name"] == "mysql.query")
            .expect("the failed statement has its span");
        assert_eq!(child["error"], 1);
        assert_eq!(meta(child, "error.type"), Some("database_unavailable"));
        let message = meta(child, "error.message").unwrap();
        assert!(message.starts_with("MySQL connection failed"), "{message}");
        assert_eq!(meta(child, "error.message"), meta(request, "error.message"));
    }

    // `service` mode: the comment names the service and no trace.
    let recorded = recorded_statements(&db, "INSERT INTO visits");
    let statement = recorded.last().expect("the INSERT after the restart");
    assert!(
        statement.starts_with(
            "/*dddb='apm_demo',dddbs='apm_demo',dde='ci',ddh='127.0.0.1',\
             ddps='apm-demo-conformance',ddpv='9.9.9'*/ INSERT INTO visits"
        ),
        "{statement}"
    );
    let insert_spans: Vec<Value> = agent
        .spans()
        .into_iter()
        .filter(|s| s["resource"] == INSERT && s["error"] == 0)
        .collect();
    assert!(!insert_spans.is_empty());
    assert!(
        insert_spans
            .iter()
            .all(|s| meta(s, "_dd.dbm_trace_injected").is_none())
    );
}

#[test]
fn with_dbm_disabled_statements_reach_the_server_as_written() {
    let db = MariaDb::start();
    let agent = DatadogTestAgent::start();
    let service = start_service(&agent, &db, "disabled");
    assert_eq!(
        post_visit(&service, "database-plain", json!({})).status(),
        201
    );
    let recorded = recorded_statements(&db, "INSERT INTO visits");
    assert_eq!(
        recorded,
        // The user agent `database-plain`, hex-encoded.
        [format!(
            "INSERT INTO visits (page, user_agent) VALUES (NULL, _utf8mb4 X'{}')",
            "database-plain"
                .bytes()
                .map(|b| format!("{b:02X}"))
                .collect::<String>()
        )]
    );
}

/// A flag file with the database faults on: every GET by id fails, every GET of the list is 200 ms
/// slower at the server, every POST keeps its connections 2 s.
const DATABASE_FAULTS: &str = r#"{"flags": {
  "dbQueryFailure": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
    "targeting": {"if": [{"==": [{"var": "route"}, "/api/visits/{id}"]}, "on", "off"]}},
  "dbSlowQueryMs": {"state": "ENABLED", "variants": {"on": 200, "off": 0}, "defaultVariant": "off",
    "targeting": {"if": [{"and": [{"==": [{"var": "route"}, "/api/visits"]}, {"==": [{"var": "method"}, "GET"]}]}, "on", "off"]}},
  "dbPoolExhaustionMs": {"state": "ENABLED", "variants": {"on": 2000, "off": 0}, "defaultVariant": "off",
    "targeting": {"if": [{"and": [{"==": [{"var": "route"}, "/api/visits"]}, {"==": [{"var": "method"}, "POST"]}]}, "on", "off"]}}
}}"#;

#[test]
fn database_faults_fail_a_statement_slow_one_at_the_server_and_run_the_pool_dry() {
    let db = MariaDb::start();
    let agent = DatadogTestAgent::start();
    let dir = std::env::temp_dir().join(format!("apm-demo-db-faults-{}", db.port));
    std::fs::create_dir_all(&dir).unwrap();
    let flags = dir.join("flags.json");
    std::fs::write(&flags, DATABASE_FAULTS).unwrap();
    let flags = flags.display().to_string();
    let service = start_service_with(
        &agent,
        &db,
        &[
            ("DD_DBM_PROPAGATION_MODE", "full"),
            ("FLAGD_OFFLINE_FLAG_SOURCE_PATH", &flags),
            ("MYSQL_POOL_SIZE", "4"),
            ("MYSQL_TIMEOUT", "300ms"),
        ],
    );
    let ua = "database-faults";

    // dbQueryFailure: the statement fails, the route answers 503, both spans name the flag.
    let failed = service.send("GET", "/api/visits/1", &[("user-agent", ua)]);
    assert_eq!(failed.status(), 503);
    assert_eq!(
        failed.json::<Value>().unwrap()["error_type"],
        "fault_injected"
    );

    // dbSlowQueryMs: the list takes 200 ms longer, at the server.
    let started = Instant::now();
    let listed = service.send("GET", "/api/visits", &[("user-agent", ua)]);
    assert_eq!(listed.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(200));

    // dbPoolExhaustionMs: two POSTs (an INSERT and its read-back each) take the 4 connections for
    // 2 s; the third waits MYSQL_TIMEOUT.
    for _ in 0..2 {
        assert_eq!(post_visit(&service, ua, json!({})).status(), 201);
    }
    let started = Instant::now();
    let starved = post_visit(&service, ua, json!({}));
    let waited = started.elapsed();
    assert_eq!(starved.status(), 503);
    let body: Value = starved.json().unwrap();
    assert_eq!(body["error_type"], "database_unavailable");
    assert_eq!(
        body["error"],
        "no MySQL connection within 300ms (MYSQL_TIMEOUT)"
    );
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
    assert_eq!(
        service.send("GET", "/api/apm", &[]).status(),
        200,
        "the seed's routes never wait"
    );
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(
        post_visit(&service, ua, json!({})).status(),
        201,
        "the held connections came back"
    );

    let spans = agent.wait_for(6, |s| meta(s, "http.useragent") == Some(ua));
    let all = agent.spans();
    let children = |request: &Value| -> Vec<Value> {
        all.iter()
            .filter(|q| q["parent_id"] == request["span_id"] && q["name"] == "mysql.query")
            .cloned()
            .collect()
    };
    let by_id = spans
        .iter()
        .find(|s| s["resource"] == "GET /api/visits/{id}")
        .unwrap();
    assert_eq!(meta(by_id, "error.type"), Some("fault_injected"));
    assert_eq!(meta(by_id, "fault.injected"), Some("dbQueryFailure"));
    let statement = &children(by_id)[0];
    assert_eq!(statement["error"], 1);
    assert_eq!(meta(statement, "fault.injected"), Some("dbQueryFailure"));
    assert_eq!(
        meta(statement, "error.message"),
        Some("fault injected by flag dbQueryFailure: the statement failed")
    );

    let list = spans
        .iter()
        .find(|s| s["resource"] == "GET /api/visits")
        .unwrap();
    assert_eq!(meta(list, "fault.injected"), Some("dbSlowQueryMs"));
    let slow = &children(list)[0];
    assert_eq!(slow["resource"], LIST);
    assert!(slow["duration"].as_i64().unwrap() >= 200_000_000, "{slow}");
    // The server slept under the statement's own comment: DBM sees the slow statement of this trace.
    let sleeps = recorded_statements(&db, "DO SLEEP(0.200)");
    assert_eq!(sleeps.len(), 1, "{sleeps:?}");
    assert!(
        sleeps[0].contains(&format!(
            "-{:016x}-01'*/ DO SLEEP(0.200)",
            slow["span_id"].as_u64().unwrap()
        )),
        "{}",
        sleeps[0]
    );

    let starved_span = spans
        .iter()
        .filter(|s| s["resource"] == "POST /api/visits" && s["error"] == 1)
        .collect::<Vec<_>>();
    assert_eq!(starved_span.len(), 1, "{spans:#?}");
    assert_eq!(
        meta(starved_span[0], "error.type"),
        Some("database_unavailable")
    );
    assert_eq!(
        meta(starved_span[0], "fault.injected"),
        Some("dbPoolExhaustionMs")
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Unauthenticated POSTs cannot fill the database's disk: the table keeps the newest
/// `MYSQL_KEEP_VISITS` rows, the oldest deleted by an insert's own `DELETE` statement (a span of its
/// request), and the visits past the bound stay readable.
#[test]
fn the_table_keeps_the_newest_visits_only() {
    const KEEP: u64 = 5;
    let agent = DatadogTestAgent::start();
    let db = MariaDb::start();
    let service = start_service_with(&agent, &db, &[("MYSQL_KEEP_VISITS", "5")]);
    let ids: Vec<u64> = (0..12)
        .map(|_| {
            let response = post_visit(&service, "pruned", json!({"page": "/p"}));
            assert_eq!(response.status(), 201);
            response.json::<Value>().unwrap()["id"].as_u64().unwrap()
        })
        .collect();
    let count = db
        .root_query("SELECT COUNT(*), MIN(id) FROM apm_demo.visits")
        .unwrap();
    let newest = ids.iter().max().unwrap();
    assert_eq!(
        count.trim(),
        format!("{KEEP}\t{}", newest - KEEP + 1),
        "the newest {KEEP} of {ids:?}"
    );
    let oldest = client()
        .get(format!("{}/api/visits/{}", service.url, ids[0]))
        .send()
        .unwrap();
    assert_eq!(oldest.status(), 404);
    let newest = client()
        .get(format!("{}/api/visits/{newest}", service.url))
        .send()
        .unwrap();
    assert_eq!(newest.status(), 200);
    let deletes = agent.wait_for(1, |s| s["resource"] == "DELETE FROM visits WHERE id <= ?");
    assert!(!deletes.is_empty(), "the pruning has its span");
    assert!(
        deletes
            .iter()
            .all(|d| d["parent_id"] != 0 && d["error"] == 0)
    );
}
