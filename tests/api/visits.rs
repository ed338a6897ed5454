//! The database routes without a database: what they answer before a statement could run. (With a
//! real MariaDB: tests/database.rs.)

use reqwest::Method;

use crate::agent::{Behaviour, TestAgent};
use crate::helpers::spawn_app;

#[tokio::test]
async fn without_a_database_the_routes_answer_503_the_span_says_why_and_the_seed_is_untouched() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut app = spawn_app(&agent.url, &[]).await;
    let response = app.request(Method::POST, "/api/visits", &[]).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error_type"], "not_configured");
    assert_eq!(body["error"], "no database configured (MYSQL_HOST)");
    assert_eq!(app.get("/api/visits/7").await.status(), 503);
    assert_eq!(app.get("/api/trace").await.status(), 200);
    app.stop_and_flush().await;

    let mut spans = agent.spans();
    spans.sort_by_key(|s| s.start);
    let resources: Vec<&str> = spans.iter().map(|s| s.resource.as_str()).collect();
    assert_eq!(
        resources,
        ["POST /api/visits", "GET /api/visits/{id}", "GET /api/trace"]
    );
    for span in &spans[..2] {
        assert_eq!(span.error, 1);
        assert_eq!(span.meta["error.type"], "not_configured");
        assert_eq!(
            span.meta["error.message"],
            "no database configured (MYSQL_HOST)"
        );
    }
    assert_eq!(spans[2].error, 0);
}

#[tokio::test]
async fn a_bad_body_is_the_clients_error_and_a_big_one_is_refused_unread() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let app = spawn_app(&agent.url, &[]).await;
    let post = |body: Vec<u8>| {
        app.client
            .post(format!("{}/api/visits", app.address))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let response = post(b"{\"page\": 5}".to_vec()).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("body: invalid type"),
        "{body}"
    );
    assert_eq!(
        post(b"{\"pgae\": \"/\"}".to_vec()).await.unwrap().status(),
        400
    );
    let long = format!("{{\"page\": \"{}\"}}", "é".repeat(256));
    let response = post(long.into_bytes()).await.unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["error"],
        "page: at most 255 characters"
    );
    // 255 characters pass validation (and then find no database).
    let fits = format!("{{\"page\": \"{}\"}}", "é".repeat(255));
    assert_eq!(post(fits.into_bytes()).await.unwrap().status(), 503);
    // The limit is 4 KiB (BODY_LIMIT), spelled out: a test on the constant would follow it anywhere.
    let big = vec![b' '; 4 * 1024 + 1];
    assert_eq!(post(big).await.unwrap().status(), 413);
    let whitespace = vec![b' '; 4 * 1024];
    assert_eq!(
        post(whitespace).await.unwrap().status(),
        503,
        "an empty visit"
    );
}

/// A loopback port nothing listens on: connecting to it is refused at once.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port().to_string()
}

/// The flags `--mysql-*` of a database at 127.0.0.1:`port` (the password from a file: it may not
/// be given as a flag).
fn database_at(port: &str) -> Vec<&str> {
    vec![
        "--mysql-host",
        "127.0.0.1",
        "--mysql-port",
        port,
        "--mysql-password-file",
        password_file(),
        "--mysql-timeout",
        "300ms",
    ]
}

/// A file holding a password, written once per test binary (in cargo's directory for tests' files).
fn password_file() -> &'static str {
    static FILE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("mysql-password");
        std::fs::write(&path, "unused\n").unwrap();
        path.to_str().unwrap().to_owned()
    })
}

#[tokio::test]
async fn a_refused_connection_is_a_503_and_a_client_span_with_the_peer_tags() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let port = closed_port();
    let mut app = spawn_app(&agent.url, &database_at(&port)).await;
    let response = app.request(Method::POST, "/api/visits", &[]).await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error_type"], "database_unavailable");
    assert_eq!(body["error"], "MySQL connection failed: connection refused");
    assert_eq!(app.get("/api/visits").await.status(), 503);
    app.stop_and_flush().await;

    let mut spans = agent.spans();
    spans.sort_by_key(|s| s.start);
    let requests: Vec<_> = spans.iter().filter(|s| s.name != "mysql.query").collect();
    let queries: Vec<_> = spans.iter().filter(|s| s.name == "mysql.query").collect();
    assert_eq!(requests.len(), 2, "{spans:#?}");
    assert_eq!(queries.len(), 2, "one statement per request: {spans:#?}");
    for (request, query) in requests.iter().zip(&queries) {
        assert_eq!(request.error, 1);
        assert_eq!(request.meta["error.type"], "database_unavailable");
        assert_eq!(query.parent_id, request.span_id);
        assert_eq!(query.trace_id, request.trace_id);
        // The schema comes first: nothing made it yet.
        assert_eq!(query.resource, apm_demo::db::CREATE_VISITS);
        assert_eq!(query.span_type, "sql");
        assert_eq!(query.error, 1);
        for (key, value) in [
            ("span.kind", "client"),
            ("component", "mysql_async"),
            ("db.system", "mysql"),
            ("db.name", "apm_demo"),
            ("db.instance", "apm_demo"),
            ("db.user", "apm_demo"),
            ("out.host", "127.0.0.1"),
            ("server.address", "127.0.0.1"),
            ("error.type", "database_unavailable"),
            (
                "error.message",
                "MySQL connection failed: connection refused",
            ),
        ] {
            assert_eq!(
                query.meta.get(key).map(String::as_str),
                Some(value),
                "{key}: {query:#?}"
            );
        }
        assert_eq!(query.meta["network.destination.port"], port, "{query:#?}");
        // DBM is disabled (the default), and no flag acts.
        assert!(
            !query.meta.contains_key("_dd.dbm_trace_injected"),
            "{query:#?}"
        );
        assert!(!query.meta.contains_key("fault.injected"), "{query:#?}");
    }
}

#[tokio::test]
async fn a_server_that_never_answers_costs_mysql_timeout_then_a_503() {
    // Accepts connections and says nothing: a server that hangs before its handshake.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut app = spawn_app(&agent.url, &database_at(&port)).await;
    let started = std::time::Instant::now();
    let response = app.get("/api/visits").await;
    let waited = started.elapsed();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error_type"], "database_unavailable");
    assert_eq!(
        body["error"],
        "no MySQL connection within 300ms (MYSQL_TIMEOUT)"
    );
    assert!(
        waited >= std::time::Duration::from_millis(300)
            && waited < std::time::Duration::from_secs(2),
        "{waited:?}"
    );
    app.stop_and_flush().await;
    silent.abort();
}

#[tokio::test]
async fn a_failure_flag_fails_the_statement_before_it_connects_and_names_itself() {
    let dir = std::env::temp_dir().join(format!("apm-demo-visits-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let flags = dir.join("flags.json");
    std::fs::write(
        &flags,
        r#"{"flags": {"dbQueryFailure": {"state": "ENABLED", "variants": {"on": true, "off": false},
            "defaultVariant": "off",
            "targeting": {"if": [{"==": [{"var": "route"}, "/api/visits/{id}"]}, "on", "off"]}}}}"#,
    )
    .unwrap();
    let agent = TestAgent::start(Behaviour::Healthy);
    let port = closed_port();
    let mut args = database_at(&port);
    let flags = flags.display().to_string();
    args.extend([
        "--flagd-offline-flag-source-path",
        &flags,
        "--dd-dbm-propagation-mode",
        "full",
    ]);
    let mut app = spawn_app(&agent.url, &args).await;
    let response = app.get("/api/visits/1").await;
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error_type"], "fault_injected");
    assert_eq!(
        body["error"],
        "fault injected by flag dbQueryFailure: the statement failed"
    );
    // The flag is on this route only: the list meets the refused connection.
    let listed = app.get("/api/visits").await;
    assert_eq!(
        listed.json::<serde_json::Value>().await.unwrap()["error_type"],
        "database_unavailable"
    );
    app.stop_and_flush().await;
    let _ = std::fs::remove_dir_all(&dir);

    let mut queries: Vec<_> = agent
        .spans()
        .into_iter()
        .filter(|s| s.name == "mysql.query")
        .collect();
    queries.sort_by_key(|s| s.start);
    assert_eq!(queries.len(), 2, "{queries:#?}");
    let failed = &queries[0];
    assert_eq!(failed.error, 1);
    assert_eq!(failed.meta["fault.injected"], "dbQueryFailure");
    assert_eq!(failed.meta["error.type"], "fault_injected");
    // In `full` mode, with spans exported, each statement's comment carries its span's context.
    for query in &queries {
        assert_eq!(query.meta["_dd.dbm_trace_injected"], "true", "{query:#?}");
    }
    assert!(!queries[1].meta.contains_key("fault.injected"));
}

#[tokio::test]
async fn the_database_is_configured_by_mysql_host_and_closed_for_good() {
    use apm_demo::config::Config;
    use apm_demo::db::Database;
    let parse = |extra: &[&str]| {
        let mut args = vec!["apm-demo"];
        args.extend_from_slice(extra);
        Config::parse_from_args(args).unwrap()
    };
    let off = parse(&[]);
    assert!(!Database::new(&off.mysql, &off.datadog).is_configured());
    let port = closed_port();
    let on = parse(&database_at(&port));
    let db = Database::new(&on.mysql, &on.datadog);
    assert!(db.is_configured());
    let refused = db.latest_visits().await.unwrap_err();
    assert_eq!(
        refused.message,
        "MySQL connection failed: connection refused"
    );
    // Closed (at shutdown), the pool hands out no connection, rather than trying again.
    db.close().await;
    let closed = db.latest_visits().await.unwrap_err();
    assert_eq!(closed.kind, "database_unavailable");
    assert_eq!(closed.message, "MySQL connection failed: connection closed");
}
