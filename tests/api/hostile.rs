//! Hostile input, property-tested: random and oversized trace headers, overflowing ids, repeated
//! headers; long and odd paths, invented methods, invalid UTF-8 in the query. No panic, the right
//! status, and a fresh trace whenever the headers are not a valid context.

use axum::body::Body;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use opentelemetry::trace::TraceContextExt;
use proptest::prelude::*;
use tower::ServiceExt;

use apm_demo::config::Config;
use apm_demo::db::Database;
use apm_demo::routes;
use apm_demo::telemetry::ids::{span_id_bits, trace_id_bits};
use apm_demo::telemetry::trace_layer::TraceLayer;
use apm_demo::telemetry::{Telemetry, propagation};

const TRACE_HEADERS: [&str; 6] = [
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "x-datadog-origin",
    "traceparent",
    "tracestate",
];

/// Bytes a client can put in a header value: anything but control characters; short ones, and
/// ones past the 512-byte limit the extraction applies.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![32u8..127, 128u8..=255, Just(b'\t')];
    prop_oneof![
        prop::collection::vec(byte.clone(), 0..80),
        prop::collection::vec(byte, 500..1200)
    ]
}

/// Numbers in the shapes that break parsers: empty, zero, huge, signed, with spaces.
fn id_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{0,40}",
        "-[0-9]{1,20}",
        " [0-9]{1,5} ",
        Just("18446744073709551616".to_owned()),
        Just("0".to_owned()),
        "[0-9a-fx+]{1,20}",
    ]
}

fn headers(pairs: &[(&'static str, Vec<u8>)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(HeaderName::from_static(name), value);
        }
    }
    headers
}

/// The project's reader of trace headers (the default exporter's).
fn extract(pairs: &[(&'static str, Vec<u8>)]) -> propagation::Incoming {
    propagation::extract(&headers(pairs))
}

/// The trace layer of the service with Datadog's own exporter: its propagator behind the service's
/// header guard. (Built once; its spans go nowhere: the subscriber is not installed.)
fn datadog_opentelemetry_layer() -> &'static TraceLayer {
    static LAYER: std::sync::OnceLock<(Telemetry, TraceLayer)> = std::sync::OnceLock::new();
    &LAYER
        .get_or_init(|| {
            let config = Config::parse_from_args([
                "apm-demo",
                "--trace-exporter",
                "datadog-opentelemetry",
                "--dd-trace-agent-url",
                "http://127.0.0.1:9",
            ])
            .unwrap();
            let telemetry = Telemetry::build(&config, std::io::sink).unwrap();
            let layer = telemetry.trace_layer();
            (telemetry, layer)
        })
        .1
}

/// What a valid Datadog id is: decimal, non-zero, 64 bits; surrounding spaces are HTTP's, not the id's.
fn is_valid_datadog_id(text: &str) -> bool {
    let text = text.trim();
    !text.is_empty()
        && text.len() <= 20
        && text.bytes().all(|b| b.is_ascii_digit())
        && text.parse::<u64>().is_ok_and(|id| id != 0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_trace_headers_never_panic_and_give_only_valid_parents(
        values in prop::collection::vec((0..TRACE_HEADERS.len(), header_bytes()), 0..8)
    ) {
        let pairs: Vec<(&'static str, Vec<u8>)> = values.into_iter().map(|(i, v)| (TRACE_HEADERS[i], v)).collect();
        // The project's reader, and Datadog's own exporter's propagator behind the same guard.
        let readers = [extract(&pairs), datadog_opentelemetry_layer().incoming(&headers(&pairs))];
        for incoming in readers.into_iter() {
            if let Some(parent) = incoming.parent {
                let span = parent.span();
                let context = span.span_context();
                prop_assert!(context.is_valid() && context.is_remote());
            }
        }
    }

    #[test]
    fn datadog_ids_continue_only_when_both_are_valid(trace in id_text(), parent in id_text()) {
        let incoming = extract(&[
            ("x-datadog-trace-id", trace.clone().into_bytes()),
            ("x-datadog-parent-id", parent.clone().into_bytes()),
        ]);
        let continued = incoming.parent.map(|p| {
            let span = p.span();
            (trace_id_bits(span.span_context().trace_id()) as u64,
             span_id_bits(span.span_context().span_id()))
        });
        if is_valid_datadog_id(&trace) && is_valid_datadog_id(&parent) {
            prop_assert_eq!(continued, Some((trace.trim().parse().unwrap(), parent.trim().parse().unwrap())));
        } else {
            prop_assert_eq!(continued, None, "a fresh trace");
        }
    }

    #[test]
    fn repeated_datadog_ids_start_a_fresh_trace(ids in prop::collection::vec(1u64.., 2..5)) {
        let mut pairs: Vec<(&'static str, Vec<u8>)> = ids.iter().map(|id| ("x-datadog-trace-id", id.to_string().into_bytes())).collect();
        pairs.push(("x-datadog-parent-id", b"7".to_vec()));
        prop_assert!(extract(&pairs).parent.is_none());
    }
}

/// The service's router with a trace layer that reads trace headers, as when it exports (the
/// subscriber is not installed: no span leaves the test).
fn router() -> axum::Router {
    let config = Config::parse_from_args(["apm-demo", "--port", "0"]).unwrap();
    let telemetry = Telemetry::build(&config, std::io::sink).unwrap();
    let db = Database::new(&config.mysql, &config.datadog);
    apm_demo::app(&config, telemetry.trace_layer(), routes::service(db))
}

fn expected_status(method: &Method, path: &str) -> StatusCode {
    let known = matches!(path, "/" | "/api/apm" | "/api/trace" | "/health");
    match (known, method) {
        (false, _) => StatusCode::NOT_FOUND,
        (true, &Method::GET | &Method::HEAD) => StatusCode::OK,
        (true, _) => StatusCode::METHOD_NOT_ALLOWED,
    }
}

fn path_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("api".to_owned()),
        Just("apm".to_owned()),
        Just("trace".to_owned()),
        Just("".to_owned()),
        "[a-zA-Z0-9._~-]{1,12}",
        "(%[0-9A-F]{2}){1,6}",
        "[a-z]{200,2000}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn odd_requests_get_the_right_status_and_never_panic(
        segments in prop::collection::vec(path_segment(), 0..4),
        method in prop_oneof![
            Just(Method::GET), Just(Method::HEAD), Just(Method::POST), Just(Method::DELETE),
            Just(Method::OPTIONS), "[A-Z]{1,20}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
        ],
        query in prop_oneof![Just(String::new()), "(%[89A-F][0-9A-F]){1,8}", "[a-z=&]{0,50}"],
        trace_header in header_bytes(),
    ) {
        let path = format!("/{}", segments.join("/"));
        let uri = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
        let mut request = Request::builder().method(method.clone()).uri(&uri).body(Body::empty()).unwrap();
        if let Ok(value) = HeaderValue::from_bytes(&trace_header) {
            request.headers_mut().insert("traceparent", value.clone());
            request.headers_mut().insert("x-datadog-trace-id", value);
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let response = runtime.block_on(router().oneshot(request)).unwrap();
        prop_assert_eq!(response.status(), expected_status(&method, &path), "{} {}", method, uri);
    }
}
