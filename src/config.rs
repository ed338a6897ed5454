//! Every setting of the service, read once at start from flags and the environment, and validated.
//!
//! Each flag mirrors an environment variable of the same name (`--dd-service` / `DD_SERVICE`); the
//! Datadog ones are the variables Datadog's own tracers read, so a deployment configured for any
//! Datadog tracer configures this service too. A bad value stops the program before it binds a port,
//! with a message that names the variable (see [`ConfigError`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use url::Url;

/// The service's settings. Field docs are the `--help` text.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "apm-demo",
    version,
    about = "The seed's Flask app in axum, traced into Datadog",
    args_override_self = true
)]
pub struct Config {
    #[command(flatten, next_help_heading = "Server")]
    pub server: ServerConfig,

    #[command(flatten, next_help_heading = "Datadog")]
    pub datadog: DatadogConfig,

    #[command(flatten, next_help_heading = "Logs")]
    pub logs: LogConfig,

    #[command(flatten, next_help_heading = "MySQL")]
    pub mysql: MysqlConfig,

    #[command(flatten, next_help_heading = "Faults")]
    pub faults: FaultConfig,

    /// What to run: the service (no subcommand) or its own health check.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The listener and the request limits.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerConfig {
    /// IP address to listen on (0.0.0.0: every IPv4 interface; 127.0.0.1: this machine only).
    #[arg(long, env = "HOST", value_name = "HOST", default_value = "0.0.0.0", value_parser = listen_address)]
    pub host: IpAddr,

    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", value_name = "PORT", default_value_t = 5050)]
    pub port: u16,

    /// Close a connection whose request head has not fully arrived this long after the server began
    /// waiting for it: a slow or silent client (slowloris), and an idle keep-alive connection.
    #[arg(long, env = "HEADER_READ_TIMEOUT", value_name = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub header_read_timeout: Duration,

    /// Open connections at most; past it a new connection takes the place of the one that has
    /// waited longest for a request head. The default is what fits the Kubernetes container's
    /// 96 MiB with every connection holding a full request head and the span queue full
    /// (docs/service.md, "Under attack and overload").
    #[arg(long, env = "MAX_CONNECTIONS", value_name = "MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Deadline of a request: past it the handler is cancelled and the client gets 504.
    #[arg(long, env = "REQUEST_TIMEOUT", value_name = "REQUEST_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub request_timeout: Duration,

    /// Requests handled at once at most; beyond it a request is refused at once with 503 and
    /// Retry-After (load shedding) instead of waiting in a queue.
    #[arg(long, env = "MAX_IN_FLIGHT", value_name = "MAX_IN_FLIGHT", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: u32,
}

/// What the spans say and where they go: the variables Datadog's tracers read, and the exporter.
#[derive(Debug, Clone, clap::Args)]
pub struct DatadogConfig {
    /// Datadog service name of every span and log line.
    #[arg(long, env = "DD_SERVICE", value_name = "DD_SERVICE", default_value = "apm-demo", value_parser = non_empty)]
    pub dd_service: String,

    /// Datadog environment (unified service tagging).
    #[arg(long, env = "DD_ENV", value_name = "DD_ENV", default_value = "dev", value_parser = non_empty)]
    pub dd_env: String,

    /// Datadog version (unified service tagging).
    #[arg(long, env = "DD_VERSION", value_name = "DD_VERSION", default_value = env!("CARGO_PKG_VERSION"), value_parser = non_empty)]
    pub dd_version: String,

    /// Host of the Datadog trace agent.
    #[arg(long, env = "DD_AGENT_HOST", value_name = "DD_AGENT_HOST", default_value = "localhost", value_parser = agent_host)]
    pub dd_agent_host: String,

    /// Port of the Datadog trace agent.
    #[arg(
        long,
        env = "DD_TRACE_AGENT_PORT",
        value_name = "DD_TRACE_AGENT_PORT",
        default_value_t = 8126
    )]
    pub dd_trace_agent_port: u16,

    /// Full URL of the trace agent; overrides DD_AGENT_HOST and DD_TRACE_AGENT_PORT.
    #[arg(long, env = "DD_TRACE_AGENT_URL", value_name = "DD_TRACE_AGENT_URL", value_parser = agent_url)]
    pub dd_trace_agent_url: Option<Url>,

    /// Export traces at all (false: the same binary with no exporter, for benchmarks).
    #[arg(long, env = "DD_TRACE_ENABLED", value_name = "DD_TRACE_ENABLED", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub dd_trace_enabled: bool,

    /// Share of new traces to keep, 0.0 to 1.0; an incoming sampling decision wins. Unset: every
    /// trace (with datadog-opentelemetry: the Agent's rates, and no rate limiter, as Datadog's tracers
    /// do when it is unset).
    #[arg(long, env = "DD_TRACE_SAMPLE_RATE", value_name = "DD_TRACE_SAMPLE_RATE", value_parser = sample_rate)]
    pub dd_trace_sample_rate: Option<f64>,

    /// Which exporter sends the spans to the agent: opentelemetry-datadog (the crate the project was
    /// specified with, deprecated upstream) or datadog-opentelemetry (Datadog's own Rust tracer,
    /// dd-trace-rs). docs/service.md#which-exporter compares them.
    #[arg(long, env = "TRACE_EXPORTER", value_name = "TRACE_EXPORTER", value_enum, default_value_t = TraceExporter::OpentelemetryDatadog)]
    pub trace_exporter: TraceExporter,

    /// Put dd.trace_id, dd.span_id, dd.service, dd.env and dd.version on log lines.
    #[arg(long, env = "DD_LOGS_INJECTION", value_name = "DD_LOGS_INJECTION", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub dd_logs_injection: bool,

    /// Database Monitoring: comment each statement with the service (`service`) and also the query
    /// span's trace context (`full`), as Datadog's tracers do.
    #[arg(long, env = "DD_DBM_PROPAGATION_MODE", value_name = "DD_DBM_PROPAGATION_MODE", value_enum, default_value_t = PropagationMode::Disabled)]
    pub dd_dbm_propagation_mode: PropagationMode,
}

/// Log lines.
#[derive(Debug, Clone, clap::Args)]
pub struct LogConfig {
    /// Log line format: `text` (the Flask app's) or `json` (for the Datadog Agent).
    #[arg(long, env = "LOG_FORMAT", value_name = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, in tracing's EnvFilter syntax.
    #[arg(long, env = "RUST_LOG", value_name = "RUST_LOG", default_value = "info", value_parser = log_filter)]
    pub rust_log: String,
}

/// The database of the routes beyond the seed (`/api/visits`).
#[derive(Debug, Clone, clap::Args)]
pub struct MysqlConfig {
    /// MySQL server of the database routes (`/api/visits`). Unset or empty: those routes answer 503
    /// and the seed's routes are unaffected.
    #[arg(long, env = "MYSQL_HOST", value_name = "MYSQL_HOST", value_parser = optional_host)]
    pub mysql_host: Option<OptionalHost>,

    /// Port of the MySQL server.
    #[arg(
        long,
        env = "MYSQL_PORT",
        value_name = "MYSQL_PORT",
        default_value_t = 3306
    )]
    pub mysql_port: u16,

    /// The service's own database (created by agent-config/mysql/apm-demo-user.sh; the service
    /// creates its table in it at start).
    #[arg(long, env = "MYSQL_DATABASE", value_name = "MYSQL_DATABASE", default_value = "apm_demo", value_parser = non_empty)]
    pub mysql_database: String,

    /// The service's database user (SELECT, INSERT, DELETE, CREATE on its own database only).
    #[arg(long, env = "MYSQL_USER", value_name = "MYSQL_USER", default_value = "apm_demo", value_parser = non_empty)]
    pub mysql_user: String,

    /// Its password: from the environment only (a flag would show it to every user in
    /// /proc/*/cmdline), required when MYSQL_HOST is set.
    #[arg(
        long,
        env = "MYSQL_PASSWORD",
        value_name = "MYSQL_PASSWORD",
        hide = true,
        hide_env_values = true,
        value_parser = secret
    )]
    pub mysql_password: Option<Secret>,

    /// A file holding the password instead (a Kubernetes or compose secret mounted as a file); its
    /// trailing newline is not part of the password.
    #[arg(long, env = "MYSQL_PASSWORD_FILE", value_name = "MYSQL_PASSWORD_FILE", value_parser = flag_file)]
    pub mysql_password_file: Option<std::path::PathBuf>,

    /// Connections to MySQL at most; a request that finds them all busy for MYSQL_TIMEOUT gets 503.
    #[arg(long, env = "MYSQL_POOL_SIZE", value_name = "MYSQL_POOL_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub mysql_pool_size: u32,

    /// Longest wait for a connection to MySQL (connecting, or a free one from the pool): past it the
    /// database route answers 503 rather than hold the request.
    #[arg(long, env = "MYSQL_TIMEOUT", value_name = "MYSQL_TIMEOUT", default_value = "1s", value_parser = positive_duration)]
    pub mysql_timeout: Duration,

    /// Longest run of one statement: past it the statement is abandoned and the database route
    /// answers 503.
    #[arg(long, env = "MYSQL_QUERY_TIMEOUT", value_name = "MYSQL_QUERY_TIMEOUT", default_value = "5s", value_parser = positive_duration)]
    pub mysql_query_timeout: Duration,

    /// The newest visits kept: past them the oldest are deleted as new ones arrive (an
    /// unauthenticated POST must not fill the database's disk).
    #[arg(long, env = "MYSQL_KEEP_VISITS", value_name = "MYSQL_KEEP_VISITS", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub mysql_keep_visits: u64,
}

/// The fault flags (docs/faults.md).
#[derive(Debug, Clone, clap::Args)]
pub struct FaultConfig {
    /// Fault flags (docs/faults.md): a flag-definition file in flagd's format, re-read when it
    /// changes (the variable flagd's OpenFeature providers read for their file mode). Unset: no faults,

    /// the file is never looked at; set and missing: every flag off until it appears.
    #[arg(long, env = "FLAGD_OFFLINE_FLAG_SOURCE_PATH", value_name = "FLAGD_OFFLINE_FLAG_SOURCE_PATH", value_parser = flag_file)]
    pub flagd_offline_flag_source_path: Option<std::path::PathBuf>,

    /// How often the fault flag file is checked for a change, in milliseconds.
    #[arg(long, env = "FLAGD_OFFLINE_POLL_MS", value_name = "FLAGD_OFFLINE_POLL_MS", default_value_t = 500, value_parser = clap::value_parser!(u32).range(10..=60_000))]
    pub flagd_offline_poll_ms: u32,
}

/// Subcommands of the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Ask the service running with this configuration for `/health`: exit 0 on a 200, 1 otherwise
    /// (the container's health check, so that the image needs no curl).
    Healthcheck,
}

/// The exporter that sends spans to the trace agent (docs/service.md#which-exporter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TraceExporter {
    /// `opentelemetry-datadog` 0.20.1: the crate the project was specified with (deprecated
    /// upstream), with the project's own sampler, propagation and bounded queue.
    #[value(name = "opentelemetry-datadog")]
    OpentelemetryDatadog,

    /// `datadog-opentelemetry` 0.5.4: Datadog's own Rust tracer (dd-trace-rs), with its sampler,

    /// propagator, span processor and client-side stats.
    #[value(name = "datadog-opentelemetry")]
    DatadogOpentelemetry,
}

impl TraceExporter {
    /// The name the setting takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpentelemetryDatadog => "opentelemetry-datadog",
            Self::DatadogOpentelemetry => "datadog-opentelemetry",
        }
    }
}

/// A setting that must never be printed: `Debug` shows `***`, and it is read from the environment
/// only (a flag's value is visible to every user of the machine in /proc/*/cmdline).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

fn secret(value: &str) -> Result<Secret, String> {
    Ok(Secret::new(value))
}

/// `DD_DBM_PROPAGATION_MODE`, as Datadog's tracers read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PropagationMode {
    /// No comment (Datadog's default).
    #[default]
    Disabled,
    /// The service's identity: `dddb`, `dddbs`, `dde`, `ddh`, `ddps`, `ddpv`.
    Service,
    /// The service's identity and the query span's context (`traceparent`), which links each
    /// statement sample in DBM to its trace.
    Full,
}

impl PropagationMode {
    /// The value as `DD_DBM_PROPAGATION_MODE` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Service => "service",
            Self::Full => "full",
        }
    }
}

/// How log lines are written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `time - target - LEVEL - message`, as the Flask app's logging.Formatter.
    Text,

    /// One JSON object per line, with Datadog's correlation attributes.
    Json,
}

/// How long in-flight requests may take to finish after SIGTERM, before the server stops anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long queued spans may take to reach the agent at shutdown.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

impl Config {
    /// Reads the process's flags and environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::parse_from_args(std::env::args_os())
    }

    /// Reads the given flags and the process's environment.
    pub fn parse_from_args<I, T>(args: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut command = Self::command();
        let matches = command
            .try_get_matches_from_mut(args)
            .map_err(|error| ConfigError::from_clap(error, &command))?;
        let mut config = Self::from_arg_matches(&matches)
            .map_err(|error| ConfigError::from_clap(error, &command))?;
        if matches.value_source("mysql_password") == Some(clap::parser::ValueSource::CommandLine) {
            return Err(ConfigError::Invalid(
                "invalid configuration: MYSQL_PASSWORD: set it in the environment, not with \
                 --mysql-password (a command line is visible to every user in /proc/*/cmdline)"
                    .to_owned(),
            ));
        }
        config.mysql.read_password_file()?;
        config.check_combinations()?;
        Ok(config)
    }

    /// What no single value can say wrong: settings that need each other.
    fn check_combinations(&self) -> Result<(), ConfigError> {
        if self.datadog.trace_exporter == TraceExporter::DatadogOpentelemetry
            && !cfg!(feature = "datadog-opentelemetry")
        {
            return Err(ConfigError::Invalid(
                "invalid configuration: TRACE_EXPORTER: datadog-opentelemetry is not in this \
                 build (built without the Cargo feature `datadog-opentelemetry`)"
                    .to_owned(),
            ));
        }
        if self.mysql.host().is_some() && self.mysql.mysql_password.is_none() {
            return Err(ConfigError::Invalid(
                "invalid configuration: MYSQL_PASSWORD: must be set when MYSQL_HOST is \
                 (the service's database user's password, from the environment or \
                 MYSQL_PASSWORD_FILE)"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

impl ServerConfig {
    /// The address to bind.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }
}

impl DatadogConfig {
    /// The trace agent's base URL: DD_TRACE_AGENT_URL, else http://DD_AGENT_HOST:DD_TRACE_AGENT_PORT.
    pub fn agent_url(&self) -> Url {
        match &self.dd_trace_agent_url {
            Some(url) => url.clone(),
            None => host_url(&self.dd_agent_host, self.dd_trace_agent_port)
                .expect("DD_AGENT_HOST was validated at parse time"),
        }
    }
}

impl MysqlConfig {
    /// The MySQL server's host, when the database routes are configured.
    pub fn host(&self) -> Option<&str> {
        self.mysql_host.as_ref().and_then(|host| host.0.as_deref())
    }

    /// MYSQL_PASSWORD_FILE's content as the password.
    fn read_password_file(&mut self) -> Result<(), ConfigError> {
        let Some(path) = &self.mysql_password_file else {
            return Ok(());
        };
        if self.mysql_password.is_some() {
            return Err(ConfigError::Invalid(
                "invalid configuration: MYSQL_PASSWORD_FILE: MYSQL_PASSWORD is set too; set one"
                    .to_owned(),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::Invalid(format!(
                "invalid configuration: MYSQL_PASSWORD_FILE: cannot read {}: {error}",
                path.display()
            ))
        })?;
        let password = text.strip_suffix('\n').unwrap_or(&text);
        let password = password.strip_suffix('\r').unwrap_or(password);
        self.mysql_password = Some(Secret::new(password));
        Ok(())
    }
}

/// Why the configuration was refused, or a request for help/version text (clap's own output).
#[derive(Debug)]
pub enum ConfigError {
    /// `--help` or `--version`: print and exit 0.
    Display(clap::Error),

    /// A bad value: the message names the environment variable.
    Invalid(String),
}

impl ConfigError {
    fn from_clap(error: clap::Error, command: &clap::Command) -> Self {
        match error.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Self::Display(error),
            _ => {
                let variable = error
                    .get(ContextKind::InvalidArg)
                    .and_then(|arg| match arg {
                        ContextValue::String(flag) => env_name_of(command, flag),
                        _ => None,
                    });
                let detail = error.render().to_string();
                let detail = detail.trim().trim_start_matches("error: ");
                let mut detail = detail.lines().next().unwrap_or(detail).to_owned();
                // clap puts the allowed values on a line of their own, which the first line leaves out.
                if let Some(ContextValue::Strings(values)) = error.get(ContextKind::ValidValue) {
                    detail.push_str(&format!(" (allowed: {})", values.join(", ")));
                }
                Self::Invalid(match variable {
                    Some(variable) => format!("invalid configuration: {variable}: {detail}"),
                    None => format!("invalid configuration: {detail}"),
                })
            }
        }
    }

    /// The exit code: 0 for help and version, 2 (usage error) otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Display(_) => 0,
            Self::Invalid(_) => 2,
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Display(error) => write!(f, "{}", error.render()),
            Self::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The environment variable behind a flag as clap renders it in errors (`--port <PORT>`).
fn env_name_of(command: &clap::Command, rendered: &str) -> Option<String> {
    let long = rendered.trim_start_matches("--").split([' ', '=']).next()?;
    command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
        .and_then(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
}

/// A host that may be given empty, meaning "none": `MYSQL_HOST=` turns the database off (compose
/// and shells make an empty variable easier to write than an unset one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionalHost(pub Option<String>);

fn optional_host(value: &str) -> Result<OptionalHost, String> {
    if value.trim().is_empty() {
        return Ok(OptionalHost(None));
    }
    agent_host(value).map(|host| OptionalHost(Some(host)))
}

fn non_empty(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(value.to_owned())
    }
}

/// A path to a flag file; empty means unset would be ambiguous, so it is refused.
fn flag_file(value: &str) -> Result<std::path::PathBuf, String> {
    non_empty(value).map(std::path::PathBuf::from)
}

/// `http://host:port`; an IPv6 literal gets its brackets.
fn host_url(host: &str, port: u16) -> Result<Url, url::ParseError> {
    if host.contains(':') && !host.starts_with('[') {
        Url::parse(&format!("http://[{host}]:{port}"))
    } else {
        Url::parse(&format!("http://{host}:{port}"))
    }
}

fn agent_host(value: &str) -> Result<String, String> {
    let host = non_empty(value)?;
    match host_url(&host, 8126) {
        Ok(url) if url.path() == "/" && url.host_str().is_some() => Ok(host),
        _ => Err(format!("{host:?} is not a host name or IP address")),
    }
}

/// HOST is an IP address, not a name: the service binds one address, and a name can stand for
/// several (`localhost` is 127.0.0.1 and ::1), so which one it listened on would depend on the
/// resolver, and the service could be unreachable at the other.
fn listen_address(value: &str) -> Result<IpAddr, String> {
    value.trim().parse().map_err(|_| {
        format!(
            "{value:?} is not an IP address; the service listens on an address, e.g. 127.0.0.1 \
             (this machine only), 0.0.0.0 (every IPv4 interface) or :: (every interface)"
        )
    })
}

/// A duration such as `10s`, `500ms` or `2m` (humantime's syntax), longer than zero.
fn positive_duration(value: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(value)
        .map_err(|e| format!("{e} (a duration such as 10s, 500ms or 2m)"))?;
    if duration.is_zero() {
        return Err("must be longer than 0".to_owned());
    }
    Ok(duration)
}

fn sample_rate(value: &str) -> Result<f64, String> {
    let rate: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{rate} is outside 0.0..=1.0"))
    }
}

fn agent_url(value: &str) -> Result<Url, String> {
    let url = Url::parse(value.trim()).map_err(|e| format!("{value:?} is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err(format!("{value:?} has no host")),
        "unix" => {
            Err("unix sockets are not supported by this exporter; use http://host:port".into())
        }
        other => Err(format!(
            "scheme {other:?} is not supported; use http://host:port"
        )),
    }
}

fn log_filter(value: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(value)
        .map(|_| value.to_owned())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
