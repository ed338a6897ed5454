//! Database Monitoring (DBM) comments: what links a statement the database saw to the service, and
//! in `full` mode to the trace, that sent it.
//!
//! The comment is in the sqlcommenter format Datadog's tracers write (dd-trace-py
//! `ddtrace/propagation/_database_monitoring.py` with its vendored sqlcommenter, dd-trace-go
//! `ddtrace/tracer/sqlcomment.go`): `/*key='value',...*/ ` before the statement, keys sorted as
//! dd-trace-py sorts them, each value percent-encoded. The keys are dd-trace-py's: `dddb` (the
//! database), `dddbs` (the database's service: with peer-service naming, the database's name),
//! `dde`, `ddh` (the database's host), `ddps` (this service), `ddpv`, and in `full` mode
//! `traceparent`. The percent-encoding is also this service's defence: a service name
//! holding `'`, `*/` or a newline becomes `%27`, `%2A%2F`, `%0A`, so no configured value can close the
//! comment and put SQL of its own after it (the property tests below try).

use std::fmt::Write as _;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

pub use crate::config::PropagationMode;

/// Characters left as they are: RFC 3986's unreserved set. Everything else is percent-encoded, which
/// is what sqlcommenter asks of values (and of keys, which here are fixed).
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The part of every comment that is the same for the life of the process, encoded once.
#[derive(Debug, Clone)]
pub struct Comments {
    mode: PropagationMode,
    /// `dddb='..',dddbs='..',dde='..',ddh='..',ddps='..',ddpv='..'`: sorted, encoded, without the
    /// delimiters.
    service: String,
}

/// Who sends the statements, as the comment names them.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// `dddb`: the database (schema) the statements run in.
    pub database: &'a str,
    /// `dddbs`: the database's service name in Datadog.
    pub database_service: &'a str,
    /// `dde`
    pub env: &'a str,
    /// `ddh`: the database server's host.
    pub host: &'a str,
    /// `ddps`: the service sending the statement.
    pub service: &'a str,
    /// `ddpv`
    pub version: &'a str,
}

/// The query span's context, for `full` mode's `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanIds {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
}

impl Comments {
    pub fn new(mode: PropagationMode, identity: Identity<'_>) -> Self {
        let mut service = String::new();
        // Sorted by key, as sqlcommenter requires.
        for (key, value) in [
            ("dddb", identity.database),
            ("dddbs", identity.database_service),
            ("dde", identity.env),
            ("ddh", identity.host),
            ("ddps", identity.service),
            ("ddpv", identity.version),
        ] {
            if value.is_empty() {
                continue;
            }
            if !service.is_empty() {
                service.push(',');
            }
            let _ = write!(service, "{key}='{}'", encode(value));
        }
        Self { mode, service }
    }

    pub fn mode(&self) -> PropagationMode {
        self.mode
    }

    /// `sql` with the comment prepended (a MySQL statement's text is cut at
    /// `performance_schema_max_sql_text_length`, so a comment at the end could be lost), or `sql`
    /// itself when the mode is `disabled`. `ids` is the query span's context; `None` (no span
    /// exported) leaves `traceparent` out.
    pub fn apply(&self, sql: &str, ids: Option<SpanIds>) -> String {
        let traceparent = match (self.mode, ids) {
            (PropagationMode::Disabled, _) => return sql.to_owned(),
            (PropagationMode::Full, Some(ids)) => Some(ids),
            _ => None,
        };
        let mut out = String::with_capacity(self.service.len() + sql.len() + 80);
        out.push_str("/*");
        out.push_str(&self.service);
        if let Some(ids) = traceparent {
            if !self.service.is_empty() {
                out.push(',');
            }
            // W3C traceparent: version 00, 128-bit trace id, the span's id, the sampled flag.
            let _ = write!(
                out,
                "traceparent='00-{:032x}-{:016x}-{:02x}'",
                ids.trace_id,
                ids.span_id,
                u8::from(ids.sampled)
            );
        }
        out.push_str("*/ ");
        out.push_str(sql);
        out
    }
}

/// A value as sqlcommenter writes it: percent-encoded. An encoded value holds only `[A-Za-z0-9-_.~%]`,
/// so the escaping of `'` that sqlcommenter adds after encoding never has anything to do.
fn encode(value: &str) -> String {
    utf8_percent_encode(value, VALUE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const IDENTITY: Identity<'static> = Identity {
        database: "apm_demo",
        database_service: "apm_demo",
        env: "demo",
        host: "mysql",
        service: "apm-demo",
        version: "0.1.0",
    };

    const IDS: SpanIds = SpanIds {
        trace_id: 0x6756_6f2e_0000_0000_1234_5678_9abc_def0,
        span_id: 0x0102_0304_0506_0708,
        sampled: true,
    };

    #[test]
    fn each_mode_is_spelled_as_the_variable_takes_it() {
        use clap::ValueEnum;
        for mode in PropagationMode::value_variants() {
            assert_eq!(PropagationMode::from_str(mode.as_str(), false), Ok(*mode));
        }
    }

    #[test]
    fn disabled_leaves_the_statement_alone() {
        let comments = Comments::new(PropagationMode::Disabled, IDENTITY);
        assert_eq!(comments.apply("SELECT 1", Some(IDS)), "SELECT 1");
    }

    #[test]
    fn service_mode_names_the_service_in_sorted_keys() {
        let comments = Comments::new(PropagationMode::Service, IDENTITY);
        assert_eq!(
            comments.apply("SELECT 1", Some(IDS)),
            "/*dddb='apm_demo',dddbs='apm_demo',dde='demo',ddh='mysql',ddps='apm-demo',ddpv='0.1.0'*/ SELECT 1"
        );
    }

    #[test]
    fn full_mode_adds_the_query_spans_traceparent() {
        let comments = Comments::new(PropagationMode::Full, IDENTITY);
        assert_eq!(
            comments.apply("SELECT 1", Some(IDS)),
            "/*dddb='apm_demo',dddbs='apm_demo',dde='demo',ddh='mysql',ddps='apm-demo',ddpv='0.1.0',\
             traceparent='00-67566f2e00000000123456789abcdef0-0102030405060708-01'*/ SELECT 1"
        );
    }

    #[test]
    fn an_unsampled_span_says_so_and_no_span_means_no_traceparent() {
        let comments = Comments::new(PropagationMode::Full, IDENTITY);
        let unsampled = comments.apply(
            "SELECT 1",
            Some(SpanIds {
                sampled: false,
                ..IDS
            }),
        );
        assert!(unsampled.contains("-0102030405060708-00'*/"), "{unsampled}");
        assert_eq!(
            comments.apply("SELECT 1", None),
            Comments::new(PropagationMode::Service, IDENTITY).apply("SELECT 1", None)
        );
    }

    #[test]
    fn hostile_values_are_encoded() {
        let comments = Comments::new(
            PropagationMode::Service,
            Identity {
                service: "a'b*/c\nd e",
                ..IDENTITY
            },
        );
        assert_eq!(
            comments.apply("SELECT 1", None),
            "/*dddb='apm_demo',dddbs='apm_demo',dde='demo',ddh='mysql',ddps='a%27b%2A%2Fc%0Ad%20e',ddpv='0.1.0'*/ SELECT 1"
        );
    }

    /// Splits a comment back into its pairs, failing on anything sqlcommenter would not write.
    fn parse(comment: &str) -> Vec<(String, String)> {
        let body = comment
            .strip_prefix("/*")
            .and_then(|c| c.strip_suffix("*/"))
            .expect("delimited");
        body.split(',')
            .map(|pair| {
                let (key, value) = pair.split_once('=').expect("key=value");
                let value = value
                    .strip_prefix('\'')
                    .and_then(|v| v.strip_suffix('\''))
                    .expect("quoted");
                assert!(!value.contains('\''), "a quote inside {value:?}");
                let decoded = percent_encoding::percent_decode_str(value)
                    .decode_utf8()
                    .expect("utf-8")
                    .into_owned();
                (key.to_owned(), decoded)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Whatever the configured names hold, the comment ends where it should, carries them back
        /// intact, and the statement after it is the one the service wrote.
        #[test]
        fn no_value_breaks_out_of_the_comment(
            service in any::<String>(),
            env in "(.|\n|'|\\*/|/\\*|\\\\)*",
            version in any::<String>(),
            database in any::<String>(),
            host in "[a-z.:'*/]*",
        ) {
            let identity = Identity {
                database: &database, database_service: &database, env: &env, host: &host,
                service: &service, version: &version,
            };
            let comments = Comments::new(PropagationMode::Full, identity);
            let sql = "SELECT id FROM visits WHERE id = ?";
            let out = comments.apply(sql, Some(IDS));
            let (comment, rest) = out.split_at(out.find("*/").expect("closed") + 2);
            prop_assert_eq!(rest, format!(" {sql}"));
            prop_assert!(comment.starts_with("/*"));
            prop_assert!(!comment[2..].contains("/*"), "{}", comment);
            prop_assert!(!comment.contains('\n'));
            let pairs = parse(comment);
            let expected: Vec<(String, String)> = [
                ("dddb", database.as_str()), ("dddbs", database.as_str()), ("dde", env.as_str()),
                ("ddh", host.as_str()), ("ddps", service.as_str()), ("ddpv", version.as_str()),
            ]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
            prop_assert_eq!(&pairs[..expected.len()], &expected[..]);
            prop_assert_eq!(pairs.len(), expected.len() + 1);
            prop_assert_eq!(&pairs[expected.len()].0, "traceparent");
        }
    }
}
