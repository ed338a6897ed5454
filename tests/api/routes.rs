//! The Flask app's behaviour, route by route.

use reqwest::Method;
use reqwest::header::{ALLOW, CONTENT_TYPE};

use crate::agent::{Behaviour, TestAgent};
use crate::helpers::spawn_app;

const FLASK_ROUTES: [(&str, &str); 3] = [
    ("/", "Entrypoint to the Application"),
    ("/api/apm", "Getting APM Started"),
    ("/api/trace", "Posting Traces"),
];

#[tokio::test]
async fn each_flask_route_answers_its_text_as_html() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let app = spawn_app(&agent.url, &[]).await;
    for (path, text) in FLASK_ROUTES {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()[CONTENT_TYPE],
            "text/html; charset=utf-8",
            "{path}"
        );
        assert_eq!(response.text().await.unwrap(), text, "{path}");
    }
}

#[tokio::test]
async fn head_is_answered_without_a_body() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let app = spawn_app(&agent.url, &[]).await;
    for (path, text) in FLASK_ROUTES {
        let response = app.request(Method::HEAD, path, &[]).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()["content-length"],
            text.len().to_string().as_str()
        );
        assert!(response.bytes().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn unknown_path_is_404() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let app = spawn_app(&agent.url, &[]).await;
    assert_eq!(app.get("/api/nope").await.status(), 404);
    assert_eq!(app.get("/api/apm/").await.status(), 404);
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let app = spawn_app(&agent.url, &[]).await;
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let response = app.request(method.clone(), "/api/trace", &[]).await;
        assert_eq!(response.status(), 405, "{method}");
        let allow = response.headers()[ALLOW].to_str().unwrap().to_owned();
        assert!(allow.contains("GET") && allow.contains("HEAD"), "{allow}");
    }
}

#[tokio::test]
async fn health_answers_json_and_is_not_traced() {
    let agent = TestAgent::start(Behaviour::Healthy);
    let mut app = spawn_app(&agent.url, &[]).await;
    let response = app.get("/health").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["service"], "apm-demo-test");
    assert_eq!(body["version"], "1.2.3");
    app.get("/api/apm").await;
    app.stop_and_flush().await;
    let resources: Vec<String> = agent.spans().into_iter().map(|s| s.resource).collect();
    assert_eq!(resources, ["GET /api/apm"]);
}
