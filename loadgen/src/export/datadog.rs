//! loadgen's client span as Datadog receives it: every field of the span is decided here, and
//! written straight into a v0.4 payload (msgpack: an array of traces, each an array of span maps).
//!
//! The names are those of Datadog's own HTTP client spans, so that the Agent computes the same trace
//! metrics and draws the same service map: operation `http.client.request` and type `http` (dd-trace-rs
//! `datadog-opentelemetry/src/mappings/transform/otel_util.rs`, dd-trace-py's httplib integration),
//! `span.kind=client`, and the peer tags from which the Agent names the called host
//! (`out.host`, `server.address`: `peer.hostname` in DataDog/datadog-agent
//! `pkg/trace/config/peer_tags.ini`; `network.destination.port` as dd-trace-go's net/http client
//! sets it, `contrib/net/http/internal/wrap/roundtrip.go`). A 5xx is an error, a 4xx is not, as in
//! dd-trace-py's `set_http_meta` (`ddtrace/contrib/internal/trace_utils.py`).

use std::borrow::Cow;
use std::fmt::Write as _;

use http::StatusCode;
use rmp::encode;

use super::ClientSpan;
use crate::client::Failure;
use crate::mix::{Part, render};
use crate::plan::{Plan, Tracing};

pub const OPERATION_NAME: &str = "http.client.request";
pub const SPAN_TYPE: &str = "http";
const COMPONENT: &str = "loadgen";

/// Turns [`ClientSpan`]s into Datadog spans; built once per run from the plan.
pub struct Encoder {
    service: String,
    env: String,
    version: String,
    /// One per process, as Datadog's tracers tag their spans (32 hex digits, a UUID's 128 bits).
    runtime_id: String,
    process_id: f64,
    host: String,
    port: String,
    entries: Vec<EntryTags>,
    /// The last `_dd.p.tid` written and the high bits it is: new trace ids share them for a second.
    tid: (u64, String),
    /// Where a numbered path is rendered.
    scratch: String,
}

/// What every span of one mix entry shares.
struct EntryTags {
    method: String,
    /// `METHOD path`, placeholders as `{id}`: one resource for the entry, whatever ids it drew.
    resource: String,
    url: EntryUrl,
}

enum EntryUrl {
    Fixed(String),
    /// The URL up to the entry's path, then its parts, rendered per span.
    Numbered {
        prefix: String,
        parts: Vec<Part>,
    },
}

impl Encoder {
    pub fn new(plan: &Plan, tracing: &Tracing) -> Self {
        let target = &plan.target;
        let base_path = target.path_and_query("");
        let origin = format!("{}://{}", target.base.scheme(), target.authority);
        let entries = plan
            .mix
            .entries()
            .iter()
            .map(|entry| {
                let mut template = String::new();
                for part in entry.parts() {
                    match part {
                        Part::Text(text) => template.push_str(text),
                        Part::Number { .. } => template.push_str("{id}"),
                    }
                }
                EntryTags {
                    method: entry.method.to_string(),
                    resource: format!("{} {base_path}{}", entry.method, without_query(&template)),
                    url: if entry.has_placeholders() {
                        EntryUrl::Numbered {
                            prefix: format!("{origin}{base_path}"),
                            parts: entry.parts().to_vec(),
                        }
                    } else {
                        EntryUrl::Fixed(format!(
                            "{origin}{base_path}{}",
                            without_query(&entry.path)
                        ))
                    },
                }
            })
            .collect();
        Self {
            service: tracing.service.clone(),
            env: tracing.env.clone(),
            version: tracing.version.clone(),
            runtime_id: format!("{:032x}", fastrand::u128(..)),
            process_id: f64::from(std::process::id()),
            // The host as written, an IPv6 address without its URL brackets.
            host: match target.base.host() {
                Some(url::Host::Ipv6(address)) => address.to_string(),
                Some(host) => host.to_string(),
                None => String::new(),
            },
            port: target
                .base
                .port_or_known_default()
                .unwrap_or(80)
                .to_string(),
            entries,
            tid: (0, String::new()),
            scratch: String::new(),
        }
    }

    /// Appends the v0.4 payload of `spans`, one trace each, to `out`.
    pub fn encode(&mut self, spans: &[ClientSpan], out: &mut Vec<u8>) {
        // About 600 bytes a span: grown once, not copied over as it doubles.
        out.reserve(spans.len() * 700);
        let _ = encode::write_array_len(out, spans.len() as u32);
        for span in spans {
            let _ = encode::write_array_len(out, 1);
            self.span(span, out);
        }
    }

    fn span(&mut self, span: &ClientSpan, out: &mut Vec<u8>) {
        let entry = &self.entries[span.entry];
        let url = match &entry.url {
            EntryUrl::Fixed(url) => url.as_str(),
            EntryUrl::Numbered { prefix, parts } => {
                self.scratch.clear();
                self.scratch.push_str(prefix);
                render(parts, span.index, &mut self.scratch);
                without_query(&self.scratch)
            }
        };
        let high = span.context.high();
        if self.tid.0 != high {
            self.tid.1.clear();
            let _ = write!(self.tid.1, "{high:016x}");
            self.tid.0 = high;
        }
        // error.type: the status code of a 5xx (as OpenTelemetry's HTTP conventions have it), else
        // the summary's kind of failure; error.message: the status line, or what happened.
        let error: Option<(&str, Cow<'static, str>)> = match &span.outcome {
            Ok(status) if status.is_server_error() => {
                Some((status.as_str(), status.to_string().into()))
            }
            Ok(_) => None,
            Err(failure) => Some((failure_type(*failure), failure_message(*failure).into())),
        };
        let start = span
            .start
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);

        let _ = encode::write_map_len(out, 12);
        field_str(out, "service", &self.service);
        field_str(out, "name", OPERATION_NAME);
        field_str(out, "resource", &entry.resource);
        field_uint(out, "trace_id", span.context.low());
        field_uint(out, "span_id", span.context.span_id);
        field_uint(out, "parent_id", 0);
        field_int(out, "start", start);
        field_int(out, "duration", span.duration.as_nanos() as i64);
        field_int(out, "error", i64::from(error.is_some()));
        field_str(out, "type", SPAN_TYPE);

        let status = span.outcome.as_ref().ok().map(StatusCode::as_str);
        let meta_len = 12
            + u32::from(high != 0)
            + u32::from(status.is_some())
            + 2 * u32::from(error.is_some());
        let _ = encode::write_str(out, "meta");
        let _ = encode::write_map_len(out, meta_len);
        field_str(out, "env", &self.env);
        field_str(out, "version", &self.version);
        field_str(out, "language", "rust");
        field_str(out, "runtime-id", &self.runtime_id);
        field_str(out, "span.kind", "client");
        field_str(out, "component", COMPONENT);
        field_str(out, "http.method", &entry.method);
        field_str(out, "http.url", url);
        field_str(out, "out.host", &self.host);
        field_str(out, "server.address", &self.host);
        field_str(out, "network.destination.port", &self.port);
        // The sampling decision was made here, by the default mechanism.
        field_str(out, "_dd.p.dm", "-0");
        if high != 0 {
            // Datadog's tracers carry a 128-bit id's high 64 bits on the first span of a chunk.
            field_str(out, "_dd.p.tid", &self.tid.1);
        }
        if let Some(status) = status {
            field_str(out, "http.status_code", status);
        }
        if let Some((kind, message)) = &error {
            field_str(out, "error.type", kind);
            field_str(out, "error.message", message);
        }

        let _ = encode::write_str(out, "metrics");
        let _ = encode::write_map_len(out, 4);
        field_f64(out, "_sampling_priority_v1", 1.0);
        // A root is a top-level span (as ddtrace marks one), and measured, as dd-trace-py's HTTP
        // client integrations mark their spans (`requests/connection.py`): trace metrics either way.
        field_f64(out, "_dd.top_level", 1.0);
        field_f64(out, "_dd.measured", 1.0);
        field_f64(out, "process_id", self.process_id);
    }
}

/// A URL or path without its query string, which may hold values that are not the span's to keep
/// (the service's `http.url` leaves it out too).
fn without_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(path, _)| path)
}

/// `error.type` of a request with no answer: the error kind of loadgen's summary.
fn failure_type(failure: Failure) -> &'static str {
    match failure {
        Failure::Connect => "connect",
        Failure::Timeout => "timeout",
        Failure::Io => "io",
    }
}

fn failure_message(failure: Failure) -> &'static str {
    match failure {
        Failure::Connect => "the connection could not be opened",
        Failure::Timeout => "no complete answer within --timeout",
        Failure::Io => "the connection broke before the answer was complete",
    }
}

fn field_str(out: &mut Vec<u8>, key: &str, value: &str) {
    let _ = encode::write_str(out, key);
    let _ = encode::write_str(out, value);
}

fn field_uint(out: &mut Vec<u8>, key: &str, value: u64) {
    let _ = encode::write_str(out, key);
    let _ = encode::write_uint(out, value);
}

fn field_int(out: &mut Vec<u8>, key: &str, value: i64) {
    let _ = encode::write_str(out, key);
    let _ = encode::write_sint(out, value);
}

fn field_f64(out: &mut Vec<u8>, key: &str, value: f64) {
    let _ = encode::write_str(out, key);
    let _ = encode::write_f64(out, value);
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use clap::Parser;
    use rmpv::Value;

    use super::*;
    use crate::cli::Args;
    use crate::trace_headers::TraceContext;

    fn encoder(url: &str, mix: &str) -> Encoder {
        let args = [
            "loadgen",
            url,
            "--mix",
            mix,
            "--trace-agent",
            "http://127.0.0.1:8126",
        ];
        let plan = Args::try_parse_from(args).unwrap().into_plan().unwrap();
        Encoder::new(&plan, plan.tracing.as_ref().unwrap())
    }

    fn span(trace_id: u128, entry: usize, outcome: Result<StatusCode, Failure>) -> ClientSpan {
        ClientSpan {
            context: TraceContext {
                trace_id,
                span_id: 7,
            },
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(2),
            duration: Duration::from_micros(1500),
            entry,
            index: 3,
            outcome,
        }
    }

    /// The payload's spans, each a map of field names to values.
    fn decode(payload: &[u8]) -> Vec<Vec<(String, Value)>> {
        let value = rmpv::decode::read_value(&mut &payload[..]).unwrap();
        let mut spans = Vec::new();
        for trace in value.as_array().unwrap() {
            for span in trace.as_array().unwrap() {
                let fields = span.as_map().unwrap();
                spans.push(
                    fields
                        .iter()
                        .map(|(k, v)| (k.as_str().unwrap().to_owned(), v.clone()))
                        .collect(),
                );
            }
        }
        spans
    }

    fn field<'a>(span: &'a [(String, Value)], name: &str) -> &'a Value {
        &span.iter().find(|(k, _)| k == name).unwrap().1
    }

    fn meta(span: &[(String, Value)]) -> Vec<(String, String)> {
        field(span, "meta")
            .as_map()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().unwrap().to_owned(),
                    v.as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn every_span_map_holds_what_its_length_says() {
        let mut encoder = encoder("http://h:1", "/a");
        let spans = [
            span(1 << 64 | 5, 0, Ok(StatusCode::OK)),
            span(5, 0, Ok(StatusCode::INTERNAL_SERVER_ERROR)),
            span(1 << 64 | 5, 0, Err(Failure::Io)),
        ];
        let mut payload = Vec::new();
        encoder.encode(&spans, &mut payload);
        // Decoding the whole payload and finding nothing after it: every length was right.
        let mut rest = &payload[..];
        rmpv::decode::read_value(&mut rest).unwrap();
        assert!(rest.is_empty(), "{} bytes left over", rest.len());
        let decoded = decode(&payload);
        assert_eq!(decoded.len(), 3);
        let keys = |span: &[(String, Value)]| -> Vec<String> {
            meta(span).into_iter().map(|(k, _)| k).collect()
        };
        let ok = keys(&decoded[0]);
        assert!(
            ok.contains(&"_dd.p.tid".to_owned()) && ok.contains(&"http.status_code".to_owned())
        );
        assert!(!ok.contains(&"error.type".to_owned()));
        let five_hundred = keys(&decoded[1]);
        assert!(
            !five_hundred.contains(&"_dd.p.tid".to_owned()),
            "a 64-bit id has no high bits"
        );
        assert!(five_hundred.contains(&"error.message".to_owned()));
        let io = keys(&decoded[2]);
        assert!(
            !io.contains(&"http.status_code".to_owned()) && io.contains(&"error.type".to_owned())
        );
        assert_eq!(field(&decoded[0], "error").as_i64(), Some(0));
        assert_eq!(field(&decoded[1], "error").as_i64(), Some(1));
        assert_eq!(field(&decoded[2], "start").as_i64(), Some(2_000_000_000));
        assert_eq!(field(&decoded[2], "duration").as_i64(), Some(1_500_000));
        assert_eq!(
            field(&decoded[0], "trace_id").as_u64(),
            Some(5),
            "the low 64 bits"
        );
        assert_eq!(field(&decoded[0], "span_id").as_u64(), Some(7));
    }

    #[test]
    fn resource_and_url_follow_the_base_path_and_leave_the_query_out() {
        let mut encoder = encoder("http://h:1/prefix/", "/a?x=1=1,GET /v/{1..3}/w?q={1..2}=1");
        let mut payload = Vec::new();
        encoder.encode(
            &[
                span(1, 0, Ok(StatusCode::OK)),
                span(1, 1, Ok(StatusCode::OK)),
            ],
            &mut payload,
        );
        let decoded = decode(&payload);
        assert_eq!(
            field(&decoded[0], "resource").as_str(),
            Some("GET /prefix/a")
        );
        assert_eq!(
            field(&decoded[1], "resource").as_str(),
            Some("GET /prefix/v/{id}/w")
        );
        let url = |span: &[(String, Value)]| {
            meta(span)
                .into_iter()
                .find(|(k, _)| k == "http.url")
                .unwrap()
                .1
        };
        assert_eq!(url(&decoded[0]), "http://h:1/prefix/a");
        let numbered = url(&decoded[1]);
        let id = numbered
            .strip_prefix("http://h:1/prefix/v/")
            .and_then(|rest| rest.strip_suffix("/w"))
            .unwrap_or_else(|| panic!("{numbered}"));
        assert!(
            ["1", "2", "3"].contains(&id),
            "request 3's own id: {numbered}"
        );
    }

    #[test]
    fn an_ipv6_target_is_its_address_in_the_peer_tags() {
        let mut encoder = encoder("http://[::1]:8080", "/a");
        let mut payload = Vec::new();
        encoder.encode(&[span(1, 0, Ok(StatusCode::OK))], &mut payload);
        let meta = meta(&decode(&payload)[0]);
        let tag = |key: &str| meta.iter().find(|(k, _)| k == key).unwrap().1.clone();
        assert_eq!(tag("out.host"), "::1");
        assert_eq!(tag("server.address"), "::1");
        assert_eq!(tag("network.destination.port"), "8080");
        assert_eq!(tag("http.url"), "http://[::1]:8080/a");
    }
}
