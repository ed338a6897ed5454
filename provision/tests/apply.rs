//! The apply flow against a local HTTP server that answers like the Datadog API (dashboards v1,
//! monitors v1, downtimes v2), with faults injected: create, update in place, nothing to do, 403, 429,
//! 5xx, a partial failure and the run that converges after it; three monitors, each found by the
//! managed-by tag and its name, and downtimes that cover them all by that tag.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use provision::api::{Api, Credentials};
use provision::apply::{self, Action, WebApp};
use provision::resources::{self, Settings};
use serde_json::{Value, json};

#[derive(Default)]
struct Store {
    dashboards: Vec<Value>,
    monitors: Vec<Value>,
    downtimes: Vec<Value>,
    next_id: u64,
    /// Every request: (method, path).
    log: Vec<(String, String)>,
    /// Answers to give before the real one, per "METHOD /path" prefix.
    faults: HashMap<String, VecDeque<(StatusCode, Option<&'static str>)>>,
    /// A "METHOD /path" prefix that answers 500, once `broken_after` requests to it have succeeded.
    broken: Option<String>,
    broken_after: usize,
    api_key_seen: Option<String>,
}

type Shared = Arc<Mutex<Store>>;

fn fake_datadog(store: Shared) -> String {
    let app = Router::new()
        .route(
            "/api/v1/dashboard",
            get(list_dashboards).post(create_dashboard),
        )
        .route(
            "/api/v1/dashboard/{id}",
            get(get_dashboard)
                .put(update_dashboard)
                .delete(delete_dashboard),
        )
        .route("/api/v1/monitor", get(list_monitors).post(create_monitor))
        .route(
            "/api/v1/monitor/{id}",
            axum::routing::put(update_monitor).delete(delete_monitor),
        )
        .route(
            "/api/v2/downtime",
            get(list_downtimes).post(create_downtime),
        )
        .route(
            "/api/v2/downtime/{id}",
            axum::routing::patch(update_downtime).delete(cancel_downtime),
        )
        .route("/api/v1/graph/snapshot", get(snapshot))
        .route("/api/v1/events", post(event))
        .layer(axum::middleware::from_fn_with_state(store.clone(), faults))
        .with_state(store);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{}", rx.recv().unwrap())
}

/// Logs each request and answers injected faults before the handlers.
async fn faults(
    State(store): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let key = format!("{method} {}", uri.path());
    {
        let mut store = store.lock().unwrap();
        store.log.push((method.to_string(), uri.path().to_owned()));
        store.api_key_seen = headers
            .get("dd-api-key")
            .map(|v| v.to_str().unwrap().to_owned());
        if store
            .broken
            .as_ref()
            .is_some_and(|b| key.starts_with(b.as_str()))
        {
            if store.broken_after > 0 {
                store.broken_after -= 1;
            } else {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    r#"{"errors":["Internal Server Error"]}"#,
                )
                    .into_response();
            }
        } else if let Some((status, retry_after)) = store
            .faults
            .iter_mut()
            .find(|(prefix, queue)| key.starts_with(prefix.as_str()) && !queue.is_empty())
            .and_then(|(_, queue)| queue.pop_front())
        {
            let mut response = (status, format!(r#"{{"errors":["{status}"]}}"#)).into_response();
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", seconds.parse().unwrap());
            }
            return response;
        }
    }
    next.run(request).await
}

fn new_id(store: &mut Store) -> u64 {
    store.next_id += 1;
    store.next_id
}

async fn list_dashboards(State(s): State<Shared>) -> axum::Json<Value> {
    let s = s.lock().unwrap();
    let summaries: Vec<Value> = s
        .dashboards
        .iter()
        .map(|d| json!({"id": d["id"], "title": d["title"]}))
        .collect();
    axum::Json(json!({ "dashboards": summaries }))
}

async fn create_dashboard(
    State(s): State<Shared>,
    axum::Json(mut body): axum::Json<Value>,
) -> axum::Json<Value> {
    let mut s = s.lock().unwrap();
    let id = format!("abc-def-{}", new_id(&mut s));
    body["id"] = json!(id);
    body["url"] = json!(format!("/dashboard/{id}/apm-demo"));
    body["author_handle"] = json!("provision@example.com");
    s.dashboards.push(body.clone());
    axum::Json(body)
}

async fn get_dashboard(
    State(s): State<Shared>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, StatusCode> {
    let s = s.lock().unwrap();
    s.dashboards
        .iter()
        .find(|d| d["id"] == id)
        .cloned()
        .map(axum::Json)
        .ok_or(StatusCode::NOT_FOUND)
}

async fn update_dashboard(
    State(s): State<Shared>,
    Path(id): Path<String>,
    axum::Json(mut body): axum::Json<Value>,
) -> Result<axum::Json<Value>, StatusCode> {
    let mut s = s.lock().unwrap();
    let stored = s
        .dashboards
        .iter_mut()
        .find(|d| d["id"] == id)
        .ok_or(StatusCode::NOT_FOUND)?;
    body["id"] = json!(id);
    body["url"] = stored["url"].clone();
    *stored = body.clone();
    Ok(axum::Json(body))
}

async fn delete_dashboard(State(s): State<Shared>, Path(id): Path<String>) -> StatusCode {
    s.lock().unwrap().dashboards.retain(|d| d["id"] != id);
    StatusCode::OK
}

async fn list_monitors(State(s): State<Shared>, RawQuery(q): RawQuery) -> axum::Json<Value> {
    let q = query(q);
    let s = s.lock().unwrap();
    let tag = q.get("monitor_tags").cloned().unwrap_or_default();
    let found: Vec<Value> = s
        .monitors
        .iter()
        .filter(|m| m["tags"].as_array().unwrap().iter().any(|t| *t == tag))
        .cloned()
        .collect();
    axum::Json(Value::Array(found))
}

async fn create_monitor(
    State(s): State<Shared>,
    axum::Json(mut body): axum::Json<Value>,
) -> axum::Json<Value> {
    let mut s = s.lock().unwrap();
    body["id"] = json!(new_id(&mut s));
    body["overall_state"] = json!("No Data");
    as_the_api_types_it(&mut body);
    s.monitors.push(body.clone());
    axum::Json(body)
}

async fn update_monitor(
    State(s): State<Shared>,
    Path(id): Path<i64>,
    axum::Json(mut body): axum::Json<Value>,
) -> Result<axum::Json<Value>, StatusCode> {
    let mut s = s.lock().unwrap();
    let stored = s
        .monitors
        .iter_mut()
        .find(|m| m["id"] == id)
        .ok_or(StatusCode::NOT_FOUND)?;
    body["id"] = json!(id);
    as_the_api_types_it(&mut body);
    *stored = body.clone();
    Ok(axum::Json(body))
}

/// The API may save a "metric alert" as a "query alert" (terraform-provider-datadog #242, #1099): so
/// does this one, always, so that apply must take the two for one type.
fn as_the_api_types_it(monitor: &mut Value) {
    if monitor["type"] == "metric alert" {
        monitor["type"] = json!("query alert");
    }
}

async fn delete_monitor(State(s): State<Shared>, Path(id): Path<i64>) -> StatusCode {
    s.lock().unwrap().monitors.retain(|m| m["id"] != id);
    StatusCode::OK
}

async fn list_downtimes(State(s): State<Shared>) -> axum::Json<Value> {
    axum::Json(json!({ "data": s.lock().unwrap().downtimes }))
}

async fn create_downtime(
    State(s): State<Shared>,
    axum::Json(body): axum::Json<Value>,
) -> axum::Json<Value> {
    let mut s = s.lock().unwrap();
    let mut attributes = body["data"]["attributes"].clone();
    attributes["status"] = json!("scheduled");
    let downtime = json!({"type": "downtime", "id": format!("00000000-0000-0000-0000-{:012}", new_id(&mut s)), "attributes": attributes});
    s.downtimes.push(downtime.clone());
    axum::Json(json!({ "data": downtime }))
}

async fn update_downtime(
    State(s): State<Shared>,
    Path(id): Path<String>,
    axum::Json(body): axum::Json<Value>,
) -> Result<axum::Json<Value>, StatusCode> {
    let mut s = s.lock().unwrap();
    let stored = s
        .downtimes
        .iter_mut()
        .find(|d| d["id"] == id)
        .ok_or(StatusCode::NOT_FOUND)?;
    if body["data"]["id"] != id {
        return Err(StatusCode::BAD_REQUEST);
    }
    let mut attributes = body["data"]["attributes"].clone();
    attributes["status"] = json!("scheduled");
    stored["attributes"] = attributes;
    Ok(axum::Json(json!({ "data": stored.clone() })))
}

/// Datadog's v2 DELETE cancels a downtime; it stays listed as canceled.
async fn cancel_downtime(State(s): State<Shared>, Path(id): Path<String>) -> StatusCode {
    let mut s = s.lock().unwrap();
    if let Some(d) = s.downtimes.iter_mut().find(|d| d["id"] == id) {
        d["attributes"]["status"] = json!("canceled");
    }
    StatusCode::NO_CONTENT
}

/// A request's query string, decoded.
fn query(raw: Option<String>) -> HashMap<String, String> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

async fn snapshot(RawQuery(q): RawQuery) -> axum::Json<Value> {
    let q = query(q);
    assert_eq!(q["metric_query"], "avg:my_metric{host:test-host}");
    axum::Json(
        json!({"snapshot_url": "https://p.datadoghq.com/snapshot/view/x.png", "metric_query": q["metric_query"]}),
    )
}

async fn event(axum::Json(body): axum::Json<Value>) -> axum::Json<Value> {
    axum::Json(
        json!({"status": "ok", "event": {"id": 1, "url": "https://app.datadoghq.com/event/event?id=1", "text": body["text"]}}),
    )
}

// ---------------------------------------------------------------- the tests

fn settings() -> Settings {
    Settings {
        host: "test-host".into(),
        notify: "me@example.com".into(),
        env: "demo".into(),
        now: jiff::Timestamp::now()
            .to_zoned(provision::resources::time_zone("Europe/Paris").unwrap()),
    }
}

fn api(base: &str) -> Api {
    Api::new(
        base,
        Credentials {
            api_key: "test-api-key".into(), // pragma: allowlist secret
            app_key: "test-app-key".into(),
        },
    )
    .unwrap()
    .with_backoff(Duration::from_millis(10))
}

fn web() -> WebApp {
    WebApp::for_site("datadoghq.com")
}

fn writes(store: &Shared) -> Vec<(String, String)> {
    store
        .lock()
        .unwrap()
        .log
        .iter()
        .filter(|(m, _)| m != "GET")
        .cloned()
        .collect()
}

fn actions(report: &apply::Report) -> Vec<(&'static str, Action)> {
    report.outcomes.iter().map(|o| (o.kind, o.action)).collect()
}

/// The planned monitors' names, in plan order.
fn planned_monitors() -> Vec<String> {
    resources::monitors::all(&settings())
        .into_iter()
        .map(|m| m.name)
        .collect()
}

fn counts(store: &Shared) -> (usize, usize, usize) {
    let s = store.lock().unwrap();
    let live = s
        .downtimes
        .iter()
        .filter(|d| d["attributes"]["status"] != "canceled")
        .count();
    (s.dashboards.len(), s.monitors.len(), live)
}

#[test]
fn first_apply_creates_everything_and_the_downtimes_cover_every_monitor() {
    let store = Shared::default();
    let base = fake_datadog(store.clone());
    let report = apply::apply(&api(&base), &settings(), &web()).unwrap();
    assert_eq!(
        actions(&report),
        [
            ("dashboard", Action::Created),
            ("dashboard", Action::Created),
            ("monitor", Action::Created),
            ("monitor", Action::Created),
            ("monitor", Action::Created),
            ("downtime", Action::Created),
            ("downtime", Action::Created)
        ]
    );
    let s = store.lock().unwrap();
    assert_eq!(s.api_key_seen.as_deref(), Some("test-api-key"));
    let names: Vec<&str> = s
        .monitors
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, planned_monitors());
    // Each downtime silences the monitors carrying all of its monitor_tags, in every group (`*`):
    // every monitor apply made carries them.
    assert_eq!(s.downtimes.len(), 2);
    for downtime in &s.downtimes {
        let attributes = &downtime["attributes"];
        assert_eq!(attributes["scope"], "*");
        assert_eq!(attributes["schedule"]["timezone"], "Europe/Paris");
        let tags = attributes["monitor_identifier"]["monitor_tags"]
            .as_array()
            .unwrap();
        assert!(!tags.is_empty());
        for monitor in &s.monitors {
            let carried = monitor["tags"].as_array().unwrap();
            assert!(tags.iter().all(|t| carried.contains(t)), "{monitor}");
        }
    }
    let urls: Vec<&str> = report.outcomes.iter().map(|o| o.url.as_str()).collect();
    // Each dashboard at the URL the API gave it, opened live; each downtime by its id.
    for (i, dashboard) in s.dashboards.iter().enumerate() {
        assert_eq!(
            urls[i],
            format!(
                "https://app.datadoghq.com{}?live=true",
                dashboard["url"].as_str().unwrap()
            )
        );
        assert_eq!(
            report.outcomes[i].name,
            dashboard["title"].as_str().unwrap()
        );
    }
    for (i, downtime) in s.downtimes.iter().enumerate() {
        assert_eq!(
            urls[5 + i],
            format!(
                "https://app.datadoghq.com/monitors/downtimes?id={}",
                downtime["id"].as_str().unwrap()
            )
        );
    }
    assert_eq!(
        [&report.outcomes[5].name, &report.outcomes[6].name],
        [
            "weeknights (FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR)",
            "weekend (FREQ=WEEKLY;BYDAY=SA)"
        ]
    );
    for (i, monitor) in s.monitors.iter().enumerate() {
        assert_eq!(
            urls[2 + i],
            format!("https://app.datadoghq.com/monitors/{}", monitor["id"])
        );
        assert_eq!(
            report.outcomes[2 + i].name,
            monitor["name"].as_str().unwrap()
        );
    }
}

#[test]
fn second_apply_changes_nothing_and_says_so() {
    let store = Shared::default();
    let base = fake_datadog(store.clone());
    apply::apply(&api(&base), &settings(), &web()).unwrap();
    let before = writes(&store).len();
    let report = apply::apply(&api(&base), &settings(), &web()).unwrap();
    assert_eq!(report.outcomes.len(), 7);
    assert!(
        report
            .outcomes
            .iter()
            .all(|o| o.action == Action::Unchanged),
        "{report:?}"
    );
    assert_eq!(writes(&store).len(), before, "no write on the second apply");
    assert_eq!(counts(&store), (2, 3, 2));
    // The fake saved the seed's "metric alert" as a "query alert", as the API may: the same type.
    assert_eq!(store.lock().unwrap().monitors[0]["type"], "query alert");
}

#[test]
fn a_changed_object_is_updated_in_place() {
    let store = Shared::default();
    let base = fake_datadog(store.clone());
    apply::apply(&api(&base), &settings(), &web()).unwrap();
    let original_query = store.lock().unwrap().monitors[2]["query"].clone();
    {
        let mut s = store.lock().unwrap();
        s.monitors[0]["options"]["thresholds"]["critical"] = json!(900);
        s.monitors[2]["query"] = json!("percentile(last_5m):p99:trace.x{*} > 9");
        s.dashboards[1]["widgets"].as_array_mut().unwrap().pop();
        s.downtimes[1]["attributes"]["schedule"]["recurrences"][0]["duration"] = json!("48h");
    }
    let report = apply::apply(&api(&base), &settings(), &web()).unwrap();
    let actions: Vec<Action> = report.outcomes.iter().map(|o| o.action).collect();
    assert_eq!(
        actions,
        [
            Action::Unchanged,
            Action::Updated,
            Action::Updated,
            Action::Unchanged,
            Action::Updated,
            Action::Unchanged,
            Action::Updated
        ]
    );
    assert_eq!(counts(&store), (2, 3, 2), "updated, not duplicated");
    let s = store.lock().unwrap();
    assert_eq!(s.monitors[0]["options"]["thresholds"]["critical"], 800.0);
    assert_eq!(s.monitors[2]["query"], original_query);
    let puts: Vec<String> = s
        .log
        .iter()
        .filter(|(m, p)| m == "PUT" && p.starts_with("/api/v1/monitor/"))
        .map(|(_, p)| p.clone())
        .collect();
    assert_eq!(
        puts,
        [
            format!("/api/v1/monitor/{}", s.monitors[0]["id"]),
            format!("/api/v1/monitor/{}", s.monitors[2]["id"])
        ],
        "each changed monitor updated under its own id"
    );
    assert_eq!(
        s.downtimes[1]["attributes"]["schedule"]["recurrences"][0]["duration"],
        "57h"
    );
}

/// A monitor is ours by the tag and its name: one without the tag is not touched even if it has
/// the name, and one with the tag that the plan no longer has (another --host's) is left to destroy.
#[test]
fn monitors_are_found_by_the_tag_and_their_name() {
    let store = Shared::default();
    let base = fake_datadog(store.clone());
    let names = planned_monitors();
    {
        let mut s = store.lock().unwrap();
        s.monitors
            .push(json!({"id": 900, "name": names[1], "type": "query alert",
            "query": "avg(last_5m):avg:someone.elses{*} > 1", "tags": ["team:other"]}));
        s.monitors.push(
            json!({"id": 901, "name": "apm-demo: my_metric is high on old-host",
            "type": "metric alert", "query": "avg(last_5m):avg:my_metric{host:old-host} > 800",
            "tags": ["managed-by:apm-demo"]}),
        );
    }
    let report = apply::apply(&api(&base), &settings(), &web()).unwrap();
    assert_eq!(
        actions(&report)[2..5],
        [
            ("monitor", Action::Created),
            ("monitor", Action::Created),
            ("monitor", Action::Created)
        ]
    );
    {
        let s = store.lock().unwrap();
        assert_eq!(s.monitors.len(), 5);
        assert_eq!(
            s.monitors[0]["query"],
            "avg(last_5m):avg:someone.elses{*} > 1"
        );
        assert_eq!(s.monitors[1]["tags"], json!(["managed-by:apm-demo"]));
    }
    let report = apply::destroy(&api(&base), &settings(), &web()).unwrap();
    let removed: Vec<&str> = report
        .outcomes
        .iter()
        .filter(|o| o.kind == "monitor")
        .map(|o| o.id.as_str())
        .collect();
    assert_eq!(removed.len(), 4, "{removed:?}");
    assert!(removed.contains(&"901") && !removed.contains(&"900"));
    let s = store.lock().unwrap();
    assert_eq!(s.monitors.len(), 1);
    assert_eq!(s.monitors[0]["id"], 900);
}

/// Downtimes made before the service monitors named my_metric's monitor by id and scoped it to the
/// host: apply finds them by their marker and turns them into downtimes of every managed monitor.
#[test]
fn downtimes_of_one_monitor_are_widened_to_all_of_them() {
    let store = Shared::default();
    let base = fake_datadog(store.clone());
    apply::apply(&api(&base), &settings(), &web()).unwrap();
    {
        let mut s = store.lock().unwrap();
        let id = s.monitors[0]["id"].clone();
        for downtime in &mut s.downtimes {
            downtime["attributes"]["monitor_identifier"] = json!({"monitor_id": id});
            downtime["attributes"]["scope"] = json!("host:test-host");
        }
    }
    let report = apply::apply(&api(&base), &settings(), &web()).unwrap();
    assert_eq!(
        actions(&report)[5..],
        [("downtime", Action::Updated), ("downtime", Action::Updated)]
    );
    let s = store.lock().unwrap();
    assert_eq!(s.downtimes.len(), 2, "updated, not duplicated");
    for downtime in &s.downtimes {
        assert_eq!(
            downtime["attributes"]["monitor_identifier"],
            json!({"monitor_tags": ["managed-by:apm-demo"]})
        );
        assert_eq!(downtime["attributes"]["scope"], "*");
    }
}

#[test]
fn refused_keys_fail_at_once_with_a_clear_message() {
    let store = Shared::default();
    let base = fake_datadog(store.clone());
    store.lock().unwrap().faults.insert(
        "GET /api/v1/dashboard".into(),
        VecDeque::from([(StatusCode::FORBIDDEN, None)]),
    );
    let failed = apply::apply(&api(&base), &settings(), &web()).unwrap_err();
    let message = format!("{:#}", failed.error);
    assert!(
        message.contains("403") && message.contains("DD_API_KEY") && message.contains("DD_APP_KEY"),
        "{message}"
    );
    assert!(failed.report.outcomes.is_empty());
    assert_eq!(store.lock().unwrap().log.len(), 1, "a 403 is not retried");
}

#[test]
fn rate_limits_are_waited_out_as_the_api_asks() {
    let store = Shared::default();
    let base = fake_datadog(store.clone());
    store.lock().unwrap().faults.insert(
        "POST /api/v1/monitor".into(),
        VecDeque::from([(StatusCode::TOO_MANY_REQUESTS, Some("1"))]),
    );
    let started = Instant::now();
    let report = apply::apply(&api(&base), &settings(), &web()).unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited the Retry-After second"
    );
    assert_eq!(report.outcomes.len(), 7);
    let s = store.lock().unwrap();
    assert_eq!(s.monitors.len(), 3);
    assert_eq!(
        s.log
            .iter()
            .filter(|(m, p)| m == "POST" && p == "/api/v1/monitor")
            .count(),
        4,
        "three monitors, the first one twice"
    );
}

#[test]
fn server_errors_are_retried_a_bounded_number_of_times() {
    let store = Shared::default();
    let base = fake_datadog(store.clone());
    store.lock().unwrap().faults.insert(
        "GET /api/v1/dashboard".into(),
        VecDeque::from([
            (StatusCode::BAD_GATEWAY, None),
            (StatusCode::SERVICE_UNAVAILABLE, None),
        ]),
    );
    apply::apply(&api(&base), &settings(), &web()).expect("the third attempt succeeds");

    store.lock().unwrap().broken = Some("GET /api/v1/dashboard".into());
    let before = store.lock().unwrap().log.len();
    let failed = apply::apply(&api(&base), &settings(), &web()).unwrap_err();
    assert!(
        format!("{:#}", failed.error).contains("500"),
        "{:#}",
        failed.error
    );
    assert_eq!(
        store.lock().unwrap().log.len() - before,
        3,
        "three attempts, then it gives up"
    );
}

#[test]
fn a_partial_failure_reports_what_was_done_and_the_next_apply_converges() {
    let store = Shared::default();
    let base = fake_datadog(store.clone());
    {
        // The first monitor is created, the second fails.
        let mut s = store.lock().unwrap();
        s.broken = Some("POST /api/v1/monitor".into());
        s.broken_after = 1;
    }
    let failed = apply::apply(&api(&base), &settings(), &web()).unwrap_err();
    assert_eq!(
        actions(&failed.report),
        [
            ("dashboard", Action::Created),
            ("dashboard", Action::Created),
            ("monitor", Action::Created)
        ]
    );
    assert!(format!("{:#}", failed.error).contains("POST /api/v1/monitor"));

    store.lock().unwrap().broken = None;
    let report = apply::apply(&api(&base), &settings(), &web()).unwrap();
    let actions: Vec<Action> = report.outcomes.iter().map(|o| o.action).collect();
    assert_eq!(
        actions,
        [
            Action::Unchanged,
            Action::Unchanged,
            Action::Unchanged,
            Action::Created,
            Action::Created,
            Action::Created,
            Action::Created
        ]
    );
    assert_eq!(counts(&store), (2, 3, 2), "no duplicates");
}

#[test]
fn destroy_removes_everything_it_manages() {
    let store = Shared::default();
    let base = fake_datadog(store.clone());
    apply::apply(&api(&base), &settings(), &web()).unwrap();
    // Someone else's dashboard, which destroy must leave.
    store
        .lock()
        .unwrap()
        .dashboards
        .push(json!({"id": "xyz-000", "title": "team: checkout"}));
    let report = apply::destroy(&api(&base), &settings(), &web()).unwrap();
    let kinds: Vec<&str> = report.outcomes.iter().map(|o| o.kind).collect();
    assert_eq!(
        kinds,
        [
            "downtime",
            "downtime",
            "monitor",
            "monitor",
            "monitor",
            "dashboard",
            "dashboard"
        ]
    );
    assert!(report.outcomes.iter().all(|o| o.action == Action::Deleted));
    assert_eq!(counts(&store), (1, 0, 0));
    assert_eq!(store.lock().unwrap().dashboards[0]["id"], "xyz-000");
    let s = store.lock().unwrap();
    assert!(
        s.downtimes
            .iter()
            .all(|d| d["attributes"]["status"] == "canceled")
    );
    drop(s);
    // A second destroy finds nothing: canceled downtimes are not canceled again.
    let report = apply::destroy(&api(&base), &settings(), &web()).unwrap();
    assert!(report.outcomes.is_empty(), "{report:?}");
    // And a new apply starts from scratch rather than reviving canceled downtimes.
    let report = apply::apply(&api(&base), &settings(), &web()).unwrap();
    assert!(report.outcomes.iter().all(|o| o.action == Action::Created));
    assert_eq!(counts(&store), (3, 3, 2));
}

#[test]
fn snapshot_is_posted_in_an_event_that_mentions_the_recipient() {
    let store = Shared::default();
    let base = fake_datadog(store.clone());
    let (snapshot, event) =
        provision::snapshot::post(&api(&base), &settings(), 1_800_000_000).unwrap();
    assert!(snapshot.ends_with(".png"));
    assert!(event.contains("event"));
    let log = store.lock().unwrap().log.clone();
    assert_eq!(
        log.iter()
            .map(|(m, p)| format!("{m} {p}"))
            .collect::<Vec<_>>(),
        ["GET /api/v1/graph/snapshot", "POST /api/v1/events"]
    );
}

#[test]
fn a_missing_key_is_an_error_before_any_request() {
    let store = Shared::default();
    let base = fake_datadog(store.clone());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_provision"))
        // A directory without .env (provision reads ./.env).
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .env_clear()
        .env("DD_APP_KEY", "set")
        .args(["apply", "--api-url", &base])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("DD_API_KEY is not set"));
    assert!(store.lock().unwrap().log.is_empty(), "no request was made");
}
