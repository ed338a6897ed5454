//! One statement, as Datadog's tracers trace it: a client span (`mysql.query`, type `sql`, the peer
//! tags that put the database on the service map), the DBM comment, bounded waits, and an error that
//! says what failed without quoting any value.
//!
//! Peer tags: the Datadog Agent (7.60 and later, `compute_stats_by_span_kind` and
//! `peer_tags_aggregation` on by default) computes stats for client spans by these tags and names the
//! inferred database service from `peer.db.name` (`db.name`/`db.instance`), then `peer.hostname`
//! (`out.host`), then `peer.db.system` (`db.system`) (DataDog/datadog-agent
//! `pkg/trace/config/peer_tags.ini`). The tags themselves are dd-trace-py's for a MySQL query
//! (`ddtrace/contrib/internal/pymysql/patch.py` and `contrib/dbapi`): `db.system`, `db.name`,
//! `db.user`, `out.host`, `server.address`, `network.destination.port`, `span.kind`, `component`.

use std::fmt::Write as _;
use std::time::Duration;

use mysql_async::prelude::Queryable as _;
use mysql_async::{Conn, Pool};
use opentelemetry::trace::TraceContextExt as _;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::comment::{Comments, PropagationMode, SpanIds};
use crate::faults::database;
use crate::telemetry::contract::query::{COMPONENT, SPAN_TARGET, SPAN_TYPE};
use crate::telemetry::ids::{span_id_bits, trace_id_bits};

/// What went wrong with a statement, for the span and the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    /// The span's `error.type`: `database_unavailable` (no connection within MYSQL_TIMEOUT, or the
    /// connection failed), `query_timeout` (past MYSQL_QUERY_TIMEOUT), `database_error` (the server
    /// refused the statement), `not_configured` (no MYSQL_HOST).
    pub kind: &'static str,
    /// The span's `error.message`: what failed, never a bound value (a server's message can quote
    /// one, e.g. a duplicate key: only its code and SQLSTATE are kept).
    pub message: String,
}

impl QueryError {
    pub const NOT_CONFIGURED: &'static str = "not_configured";

    fn unavailable(message: impl Into<String>) -> Self {
        Self {
            kind: "database_unavailable",
            message: message.into(),
        }
    }

    /// Classifies a client error.
    fn from_client(error: &mysql_async::Error) -> Self {
        use mysql_async::Error;
        match error {
            Error::Server(server) => Self {
                kind: "database_error",
                message: format!("MySQL error {} (SQLSTATE {})", server.code, server.state),
            },
            // Connection refused, reset, closed: the server is down or went away.
            Error::Io(io) => Self::unavailable(format!("MySQL connection failed: {}", io_kind(io))),
            Error::Driver(
                mysql_async::DriverError::ConnectionClosed
                | mysql_async::DriverError::PoolDisconnected,
            ) => Self::unavailable("MySQL connection failed: connection closed"),
            // The driver's own messages name no value (`Error converting from mysql value.` and so on).
            Error::Driver(driver) => Self {
                kind: "database_error",
                message: format!("MySQL driver: {driver}"),
            },
            Error::Other(_) | Error::Url(_) => Self::unavailable("MySQL client error"),
        }
    }
}

/// An I/O error's kind, without the OS text that may carry an address.
fn io_kind(error: &mysql_async::IoError) -> String {
    let mysql_async::IoError::Io(io) = error;
    io.kind().to_string()
}

/// A value for a `?` of a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param<'a> {
    Int(u64),
    /// Text, or NULL.
    Text(Option<&'a str>),
}

/// `statement` with each `?` replaced by the next of `params` as an SQL literal: an integer in
/// digits, text as a hex literal in utf8mb4 (`_utf8mb4 X'2F61'`), which holds only hex digits
/// whatever the text is, so no value can end the literal, and no escaping depends on the session's
/// `sql_mode` (NO_BACKSLASH_ESCAPES changes what a backslash means in a quoted string). The
/// statements are this module's constants, with no `?` but their placeholders.
pub fn inline(statement: &str, params: &[Param<'_>]) -> String {
    let mut out = String::with_capacity(statement.len() + params.len() * 24);
    let mut params = params.iter();
    for (i, part) in statement.split('?').enumerate() {
        if i > 0 {
            match params.next().expect("a value for every placeholder") {
                Param::Int(n) => out.push_str(itoa::Buffer::new().format(*n)),
                Param::Text(None) => out.push_str("NULL"),
                Param::Text(Some(text)) => {
                    out.push_str("_utf8mb4 X'");
                    for byte in text.bytes() {
                        let _ = write!(out, "{byte:02X}");
                    }
                    out.push('\'');
                }
            }
        }
        out.push_str(part);
    }
    assert!(params.next().is_none(), "a placeholder for every value");
    out
}

/// Where the statements go, and the values every query span carries.
#[derive(Debug, Clone)]
pub struct Peer {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
}

/// Runs statements on the pool within the configured waits, each in its query span. (No `Debug`: the
/// pool's options hold the password; `Database`'s `Debug` shows the peer.)
#[derive(Clone)]
pub struct Runner {
    pub pool: Pool,
    pub peer: Peer,
    pub comments: Comments,
    /// Longest wait for a connection (connect, or a free one from the pool).
    pub acquire_timeout: Duration,
    /// Longest run of one statement.
    pub query_timeout: Duration,
    /// Whether spans are exported: only then does a comment carry a `traceparent`.
    pub exporting: bool,
}

impl Runner {
    /// Runs `statement` (its text with `?` placeholders: the span's resource) with `params` in its
    /// place, through `run`, which gets a connection and the text to send: the DBM comment, then the
    /// statement with the values inlined as literals ([`inline`]).
    ///
    /// Sent as a text query, not a server-side prepared statement: MariaDB records a prepared
    /// statement's execution in performance_schema with no SQL text, so Database Monitoring would
    /// never see it, its comment or its trace (agent-config/tests/test_dbm.py pins this); and in
    /// `full` mode every statement's text is new anyway (its own `traceparent`). It is what
    /// dd-trace-py's MySQL clients send (PyMySQL inlines values on the client too).
    pub async fn run<T>(
        &self,
        statement: &'static str,
        params: &[Param<'_>],
        run: impl AsyncFnOnce(&mut Conn, String) -> Result<T, mysql_async::Error>,
    ) -> Result<T, QueryError> {
        let span = self.span(statement);
        let ids = (self.exporting && self.comments.mode() == PropagationMode::Full)
            .then(|| span_ids(&span))
            .flatten();
        if ids.is_some() {
            span.record("_dd.dbm_trace_injected", "true");
        }
        let fault = database::current().unwrap_or_default();
        if !fault.is_empty() {
            span.record("fault.injected", fault.flags().as_str());
        }
        if let Some(flag) = &fault.fail {
            let error = QueryError {
                kind: crate::faults::ERROR_TYPE,
                message: format!("fault injected by flag {flag}: the statement failed"),
            };
            record_error(&span, &error);
            return Err(error);
        }
        let sql = self.comments.apply(&inline(statement, params), ids);
        let result = async {
            let mut conn =
                match tokio::time::timeout(self.acquire_timeout, self.pool.get_conn()).await {
                    Ok(Ok(conn)) => conn,
                    Ok(Err(error)) => return Err(QueryError::from_client(&error)),
                    Err(_) => {
                        return Err(QueryError::unavailable(format!(
                            "no MySQL connection within {:?} (MYSQL_TIMEOUT)",
                            self.acquire_timeout
                        )));
                    }
                };
            let executed = tokio::time::timeout(self.query_timeout, async {
                if let Some((delay, _)) = &fault.slow {
                    // The statement made slow where it runs: the server sleeps first, under the
                    // statement's comment, so DBM sees a slow statement of this trace too.
                    let sleep = format!("DO SLEEP({:.3})", delay.as_secs_f64());
                    conn.query_drop(self.comments.apply(&sleep, ids)).await?;
                }
                run(&mut conn, sql).await
            })
            .await;
            if let Some((hold, _)) = fault.hold {
                // The connection stays taken after the statement, as a leak would keep it.
                tokio::spawn(async move {
                    tokio::time::sleep(hold).await;
                    drop(conn);
                });
            }
            match executed {
                Ok(result) => result.map_err(|error| QueryError::from_client(&error)),
                Err(_) => Err(QueryError {
                    kind: "query_timeout",
                    message: format!(
                        "the statement ran past {:?} (MYSQL_QUERY_TIMEOUT)",
                        self.query_timeout
                    ),
                }),
            }
        };
        let result = tracing::Instrument::instrument(result, span.clone()).await;
        if let Err(error) = &result {
            record_error(&span, error);
        }
        result
    }

    /// A statement's span: a child of the current (request) span.
    fn span(&self, statement: &'static str) -> Span {
        // A string, as dd-trace-py's PyMySQL integration sends it: both exporters keep a string in
        // meta (an integer would become a metric under datadog-opentelemetry).
        let mut port = itoa::Buffer::new();
        tracing::info_span!(
            target: SPAN_TARGET,
            "mysql.query",
            otel.name = statement,
            otel.kind = "client",
            otel.status_code = Empty,
            span.type = SPAN_TYPE,
            component = COMPONENT,
            db.system = "mysql",
            db.name = self.peer.database.as_str(),
            db.instance = self.peer.database.as_str(),
            db.user = self.peer.user.as_str(),
            out.host = self.peer.host.as_str(),
            server.address = self.peer.host.as_str(),
            network.destination.port = port.format(self.peer.port),
            error.type = Empty,
            error.message = Empty,
            fault.injected = Empty,
            _dd.dbm_trace_injected = Empty,
        )
    }
}

/// Marks a span failed with `error`.
pub fn record_error(span: &Span, error: &QueryError) {
    span.record("otel.status_code", "ERROR");
    span.record("error.type", error.kind);
    span.record("error.message", error.message.as_str());
}

/// The span's ids as they will be exported, if it is exported.
fn span_ids(span: &Span) -> Option<SpanIds> {
    let cx = span.context();
    let otel = cx.span();
    let context = otel.span_context();
    context.is_valid().then(|| SpanIds {
        trace_id: trace_id_bits(context.trace_id()),
        span_id: span_id_bits(context.span_id()),
        sampled: context.is_sampled(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_error_keeps_its_code_and_not_its_text() {
        let error = mysql_async::Error::Server(mysql_async::ServerError {
            code: 1062,
            message: "Duplicate entry 'secret@example.com' for key 'email'".into(),
            state: "23000".into(),
        });
        let classified = QueryError::from_client(&error);
        assert_eq!(classified.kind, "database_error");
        assert_eq!(classified.message, "MySQL error 1062 (SQLSTATE 23000)");
    }

    #[test]
    fn values_are_inlined_as_literals_that_hold_only_hex_digits() {
        assert_eq!(
            inline(
                "INSERT INTO t (a, b, c) VALUES (?, ?, ?)",
                &[Param::Int(42), Param::Text(Some("/a'b")), Param::Text(None)]
            ),
            "INSERT INTO t (a, b, c) VALUES (42, _utf8mb4 X'2F612762', NULL)"
        );
        assert_eq!(inline("SELECT 1", &[]), "SELECT 1");
    }

    #[test]
    #[should_panic(expected = "a value for every placeholder")]
    fn a_missing_value_is_a_bug() {
        inline("SELECT ?", &[]);
    }

    #[test]
    #[should_panic(expected = "a placeholder for every value")]
    fn an_extra_value_is_a_bug() {
        inline("SELECT 1", &[Param::Int(1)]);
    }

    #[test]
    fn a_refused_connection_is_unavailable() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let classified = QueryError::from_client(&mysql_async::Error::Io(io.into()));
        assert_eq!(classified.kind, "database_unavailable");
        assert_eq!(
            classified.message,
            "MySQL connection failed: connection refused"
        );
    }
}
