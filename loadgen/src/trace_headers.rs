//! A fresh trace context per request, in the format the service is asked to continue.

use clap::ValueEnum;
use http::{HeaderMap, HeaderValue};

/// Which trace context each request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceHeaders {
    /// `x-datadog-trace-id`, `x-datadog-parent-id`, `x-datadog-sampling-priority: 1`.
    Datadog,
    /// W3C `traceparent`, sampled.
    W3c,
    /// No trace headers.
    None,
}

impl std::fmt::Display for TraceHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = self.to_possible_value().expect("no variant is skipped");
        f.write_str(value.get_name())
    }
}

/// Adds the headers of a new, sampled trace to `headers`.
pub fn inject(format: TraceHeaders, headers: &mut HeaderMap) {
    match format {
        TraceHeaders::None => {}
        TraceHeaders::Datadog => {
            // Datadog ids are decimal; keep them below 2^63, as every Datadog tracer accepts.
            let trace_id = fastrand::u64(1..1 << 63);
            let parent_id = fastrand::u64(1..1 << 63);
            headers.insert("x-datadog-trace-id", HeaderValue::from(trace_id));
            headers.insert("x-datadog-parent-id", HeaderValue::from(parent_id));
            headers.insert("x-datadog-sampling-priority", HeaderValue::from_static("1"));
        }
        TraceHeaders::W3c => {
            let trace_id = fastrand::u128(1..);
            let parent_id = fastrand::u64(1..);
            let value = format!("00-{trace_id:032x}-{parent_id:016x}-01");
            headers.insert(
                "traceparent",
                HeaderValue::from_str(&value).expect("hex is a valid header value"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datadog_ids_are_decimal_and_fresh() {
        let (mut a, mut b) = (HeaderMap::new(), HeaderMap::new());
        inject(TraceHeaders::Datadog, &mut a);
        inject(TraceHeaders::Datadog, &mut b);
        let id: u64 = a["x-datadog-trace-id"].to_str().unwrap().parse().unwrap();
        assert!(id > 0 && id < 1 << 63);
        assert_ne!(a["x-datadog-trace-id"], b["x-datadog-trace-id"]);
        assert_eq!(a["x-datadog-sampling-priority"], "1");
    }

    #[test]
    fn traceparent_is_w3c_version_00_sampled() {
        let mut headers = HeaderMap::new();
        inject(TraceHeaders::W3c, &mut headers);
        let value = headers["traceparent"].to_str().unwrap();
        let parts: Vec<&str> = value.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(
            (parts[0], parts[1].len(), parts[2].len(), parts[3]),
            ("00", 32, 16, "01")
        );
    }
}
