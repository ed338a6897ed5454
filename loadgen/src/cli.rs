//! The command line: flags (each also an environment variable), validated into a [`Plan`].

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::mix::{self, Mix};
use crate::plan::{Mode, Plan, Stop, Target, Tracing};
use crate::trace_headers::TraceHeaders;

const EXAMPLES: &str = "\
Examples:
  loadgen --rate 50 --duration 1m                    50 requests/s for a minute (open loop)
  loadgen -c 64 -d 30s                               as fast as 64 connections go (closed loop)
  loadgen -n 1000 --mix '/api/apm=1' --json          1000 requests to one path, summary as JSON
  loadgen --mix 'POST /api/visits {\"page\":\"/a\"}=1,/api/visits/{1..100}=3'
                                                     a JSON body; ids drawn from 1 to 100
  loadgen --rate 20 --trace-headers datadog          each request starts a trace the service continues
  loadgen --rate 20 --trace-agent http://localhost:8126
                                                     ... as loadgen's own client span, reported
  loadgen -d 10s --max-error-rate 0.01               exit 3 if more than 1% of requests fail";

/// Drives an HTTP service at a fixed rate or as fast as it answers, and reports latency percentiles.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about, after_help = EXAMPLES)]
pub struct Args {
    /// Base URL of the service (http only); mix paths are appended to it.
    #[arg(env = "LOADGEN_URL", default_value = "http://localhost:5050")]
    pub url: String,

    /// Requests per second, sent on schedule whatever the answers (open loop). Without it, every
    /// connection sends its next request as soon as the last is answered (closed loop).
    #[arg(long, env = "LOADGEN_RATE", allow_negative_numbers = true)]
    pub rate: Option<f64>,

    /// Connections to the service [default: 32].
    #[arg(long, short = 'c', env = "LOADGEN_CONNECTIONS")]
    pub connections: Option<usize>,

    /// How long to run (`30s`, `2m`, `500ms`) [default: 10s when --requests is not given].
    #[arg(long, short = 'd', env = "LOADGEN_DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// How many requests to send at most.
    #[arg(long, short = 'n', env = "LOADGEN_REQUESTS")]
    pub requests: Option<u64>,

    /// Requests and their weights, `[METHOD ]path[ JSON body][=weight],...` (GET and weight 1 when
    /// left out); `{low..high}` in a path is a number drawn per request from that range. A body
    /// (POST, PUT, PATCH) is sent as `application/json`; its commas are its own.
    #[arg(long, env = "LOADGEN_MIX", default_value = mix::DEFAULT)]
    pub mix: String,

    /// Extra request header `Name: value` (repeatable; in the variable, one per line).
    #[arg(
        long = "header",
        short = 'H',
        env = "LOADGEN_HEADERS",
        value_delimiter = '\n'
    )]
    pub headers: Vec<String>,

    /// Start a new trace in each request, in this propagation format [default: none; both with
    /// --trace-agent].
    #[arg(long, env = "LOADGEN_TRACE_HEADERS", value_enum)]
    pub trace_headers: Option<TraceHeaders>,

    /// Report a client span per request to this Datadog trace agent (`http://host:8126`); the trace
    /// headers then carry that span's ids, so the service's span is its child.
    #[arg(long, env = "LOADGEN_TRACE_AGENT", value_name = "URL")]
    pub trace_agent: Option<String>,

    /// The service name of loadgen's spans.
    #[arg(long, env = "DD_SERVICE", default_value = "loadgen")]
    pub dd_service: String,

    /// The environment of loadgen's spans (unified service tagging), as the service's default.
    #[arg(long, env = "DD_ENV", default_value = "dev")]
    pub dd_env: String,

    /// The version of loadgen's spans (unified service tagging).
    #[arg(long, env = "DD_VERSION", default_value = env!("CARGO_PKG_VERSION"))]
    pub dd_version: String,

    /// Give up on a request after this long (counted as a timeout error).
    #[arg(long, env = "LOADGEN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Print the summary as JSON on stdout (progress and the table go to stderr).
    #[arg(long, env = "LOADGEN_JSON")]
    pub json: bool,

    /// Exit with status 3 when more than this share of requests fail (0.0 to 1.0).
    #[arg(long, env = "LOADGEN_MAX_ERROR_RATE", allow_negative_numbers = true)]
    pub max_error_rate: Option<f64>,
}

/// Default connections in either mode.
const DEFAULT_CONNECTIONS: usize = 32;
/// Default run length when neither --duration nor --requests bounds it.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);

impl Args {
    /// Checks every value of the run and builds its plan; the error says which flag is wrong and why.
    pub fn into_plan(self) -> anyhow::Result<Plan> {
        let target = Target::parse(&self.url)?;
        let mix = Mix::parse(&self.mix)?;
        let mode = match self.rate {
            Some(rate) if rate.is_finite() && rate > 0.0 => Mode::Open { rate },
            Some(rate) => {
                anyhow::bail!("--rate must be a positive number of requests per second, not {rate}")
            }
            None => Mode::Closed,
        };
        let connections = self.connections.unwrap_or(DEFAULT_CONNECTIONS);
        anyhow::ensure!(connections >= 1, "--connections must be at least 1");
        anyhow::ensure!(
            connections <= 10_000,
            "--connections {connections} is more than 10000"
        );
        if let Some(requests) = self.requests {
            anyhow::ensure!(requests >= 1, "--requests must be at least 1");
        }
        if let Some(duration) = self.duration {
            anyhow::ensure!(!duration.is_zero(), "--duration must be longer than 0");
        }
        anyhow::ensure!(!self.timeout.is_zero(), "--timeout must be longer than 0");
        // An empty value (`LOADGEN_TRACE_AGENT=`) is no agent, as Datadog's tracers read theirs.
        let agent = self
            .trace_agent
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty());
        let tracing = agent.map(|agent| self.tracing(agent)).transpose()?;
        let trace_headers = self.trace_headers.unwrap_or(if tracing.is_some() {
            // What Datadog's tracers inject by default (dd-trace-py: `datadog,tracecontext,baggage`).
            TraceHeaders::Both
        } else {
            TraceHeaders::None
        });
        let stop = Stop {
            duration: match (self.duration, self.requests) {
                (None, None) => Some(DEFAULT_DURATION),
                (duration, _) => duration,
            },
            requests: self.requests,
        };
        Ok(Plan {
            target,
            mix,
            headers: parse_headers(&self.headers)?,
            trace_headers,
            mode,
            connections,
            stop,
            timeout: self.timeout,
            tracing,
        })
    }

    fn tracing(&self, agent: &str) -> anyhow::Result<Tracing> {
        let agent = Target::parse(agent).context("--trace-agent")?;
        for (flag, value) in [
            ("--dd-service (DD_SERVICE)", &self.dd_service),
            ("--dd-env (DD_ENV)", &self.dd_env),
            ("--dd-version (DD_VERSION)", &self.dd_version),
        ] {
            anyhow::ensure!(!value.trim().is_empty(), "{flag} must not be empty");
        }
        Ok(Tracing {
            agent,
            service: self.dd_service.trim().to_owned(),
            env: self.dd_env.trim().to_owned(),
            version: self.dd_version.trim().to_owned(),
        })
    }

    /// How the summary is to be printed and judged, checked.
    pub fn output(&self) -> anyhow::Result<Output> {
        if let Some(rate) = self.max_error_rate {
            anyhow::ensure!(
                (0.0..=1.0).contains(&rate),
                "--max-error-rate must be from 0.0 to 1.0, not {rate}"
            );
        }
        Ok(Output {
            json: self.json,
            max_error_rate: self.max_error_rate,
        })
    }
}

/// The printer's options: what the summary is printed as and the exit status it leads to. They are
/// the command line's, not the run's (oha keeps its printer options with its arguments too).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Output {
    /// JSON on stdout (the table on stderr) instead of the table on stdout.
    pub json: bool,
    /// Exit 3 when more than this share of requests failed.
    pub max_error_rate: Option<f64>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like 30s or 2m: {e}"))
}

fn parse_headers(lines: &[String]) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for line in lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| anyhow::anyhow!("--header {line:?} is not `Name: value`"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            anyhow::anyhow!("--header {line:?}: {:?} is not a header name", name.trim())
        })?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| {
            anyhow::anyhow!("--header {line:?}: the value is not a valid header value")
        })?;
        headers.append(name, value);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("loadgen").chain(args.iter().copied()))
    }

    /// The plan, as main builds it: the printer's options checked first.
    fn plan(args: &[&str]) -> anyhow::Result<Plan> {
        let args = self::args(args)?;
        args.output()?;
        args.into_plan()
    }

    fn refusal(args: &[&str]) -> String {
        format!("{:#}", plan(args).expect_err("refused"))
    }

    #[test]
    fn defaults_are_closed_loop_bounded_by_ten_seconds() {
        let plan = plan(&["http://127.0.0.1:1"]).unwrap();
        assert_eq!(plan.mode, Mode::Closed);
        assert_eq!(plan.stop.duration, Some(DEFAULT_DURATION));
        assert_eq!(plan.connections, DEFAULT_CONNECTIONS);
    }

    #[test]
    fn requests_alone_bound_the_run() {
        let plan = plan(&["http://127.0.0.1:1", "-n", "5"]).unwrap();
        assert_eq!(plan.stop.duration, None);
        assert_eq!(plan.stop.requests, Some(5));
    }

    #[test]
    fn bad_input_is_refused_with_the_flag_named() {
        assert!(refusal(&["--rate", "0"]).contains("--rate"));
        assert!(refusal(&["--rate", "-5"]).contains("--rate"));
        assert!(refusal(&["--rate", "NaN"]).contains("--rate"));
        assert!(refusal(&["-c", "0"]).contains("--connections"));
        assert!(refusal(&["-n", "0"]).contains("--requests"));
        assert!(refusal(&["--max-error-rate", "2"]).contains("--max-error-rate"));
        assert!(refusal(&["--header", "no colon"]).contains("--header"));
        assert!(refusal(&["-d", "soon"]).contains("duration"));
        assert!(refusal(&["--mix", "/a=x"]).contains("/a=x"));
        assert!(refusal(&["ftp://example"]).contains("http"));
        assert!(refusal(&["not a url"]).contains("URL"));
    }

    #[test]
    fn printer_options_stay_with_the_arguments() {
        let parsed = args(&["--json", "--max-error-rate", "0.25"]).unwrap();
        let output = parsed.output().unwrap();
        assert_eq!(
            output,
            Output {
                json: true,
                max_error_rate: Some(0.25)
            }
        );
        let output = args(&[]).unwrap().output().unwrap();
        assert_eq!((output.json, output.max_error_rate), (false, None));
    }

    #[test]
    fn headers_are_parsed() {
        let plan = plan(&["-H", "x-a: 1", "-H", "X-B:two words"]).unwrap();
        assert_eq!(plan.headers["x-a"], "1");
        assert_eq!(plan.headers["x-b"], "two words");
    }
}
