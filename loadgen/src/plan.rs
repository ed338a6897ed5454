//! The plan of a run: where to send, what ([`Mix`]), how (open or closed loop, connections, trace
//! headers) and when to stop. Validated once from the command line; how the summary is printed is
//! not the run's business and stays with the arguments (`cli::Output`), as oha keeps its printer's.

use std::time::Duration;

use http::HeaderMap;
use url::Url;

use crate::mix::Mix;
use crate::trace_headers::TraceHeaders;

/// Everything a run needs, validated.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    pub mix: Mix,
    pub headers: HeaderMap,
    pub trace_headers: TraceHeaders,
    pub mode: Mode,
    pub connections: usize,
    pub stop: Stop,
    pub timeout: Duration,
    /// loadgen's own client spans, when they are reported (`--trace-agent`).
    pub tracing: Option<Tracing>,
}

/// Where loadgen reports a client span per request, and the unified service tags the spans carry.
#[derive(Debug, Clone)]
pub struct Tracing {
    /// The Datadog trace agent (its base URL; spans go to `/v0.4/traces` under it).
    pub agent: Target,
    pub service: String,
    pub env: String,
    pub version: String,
}

/// Open loop (a fixed rate) or closed loop (as fast as the service answers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Open { rate: f64 },
    Closed,
}

/// When the run ends: the first of the two that is set and reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
}

/// An HTTP server (the service, or the trace agent): its address for the socket, its authority for
/// the Host header, its base path.
#[derive(Debug, Clone)]
pub struct Target {
    pub base: Url,
    /// `host:port`, to connect to.
    pub address: String,
    /// The Host header.
    pub authority: String,
}

impl Target {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let base =
            Url::parse(text.trim()).map_err(|e| anyhow::anyhow!("{text:?} is not a URL: {e}"))?;
        anyhow::ensure!(
            base.scheme() == "http",
            "{text:?}: only http:// targets are supported"
        );
        let host = base
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("{text:?} has no host"))?;
        let port = base.port_or_known_default().unwrap_or(80);
        let authority = match base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Ok(Self {
            address: format!("{host}:{port}"),
            authority,
            base,
        })
    }

    /// The request target for a mix path: the base URL's path, then the mix path.
    pub fn path_and_query(&self, path: &str) -> String {
        let base = self.base.path().trim_end_matches('/');
        format!("{base}{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_keeps_the_base_path_and_host_header() {
        let target = Target::parse("http://localhost:5050/prefix/").unwrap();
        assert_eq!(target.address, "localhost:5050");
        assert_eq!(target.authority, "localhost:5050");
        assert_eq!(target.path_and_query("/api/apm"), "/prefix/api/apm");
        let target = Target::parse("http://example").unwrap();
        assert_eq!(
            (target.address.as_str(), target.authority.as_str()),
            ("example:80", "example")
        );
    }
}
