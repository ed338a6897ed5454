//! The database routes without a database: what they answer before a statement could run. (With a
//! real MariaDB: tests/database.rs.)

use crate::agent::{Behaviour, TestAgent};
use crate::helpers::spawn_app;

#[tokio::test]
async fn without_a_database_the_routes_answer_503_the_span_says_why_and_the_seed_is_untouched() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut app = spawn_app(&agent.url, &[]).await;
    let response = app
        .client
        .post(format!("{}/api/visits", app.address))
        .send()
        .await
        .unwrap();
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
    let big = vec![b' '; apm_demo::routes::visits::BODY_LIMIT + 1];
    assert_eq!(post(big).await.unwrap().status(), 413);
    let whitespace = vec![b' '; apm_demo::routes::visits::BODY_LIMIT];
    assert_eq!(
        post(whitespace).await.unwrap().status(),
        503,
        "an empty visit"
    );
}
