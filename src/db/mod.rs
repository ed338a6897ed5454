//! The service's MySQL: a pool, the schema, and the visits the database routes read and write.
//!
//! Every statement runs through [`query::Runner`]: a `mysql.query` client span per statement, child
//! of the request's span, with the Database Monitoring comment of [`comment`]. Nothing waits on the
//! database without a bound: a connection within `MYSQL_TIMEOUT`, a statement within
//! `MYSQL_QUERY_TIMEOUT`, else the route answers 503 and both spans say why. The pool connects
//! lazily and reconnects by itself, so the service starts without its database and recovers when
//! the database comes back, without a restart.

pub mod comment;
pub mod query;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mysql_async::prelude::*;
use mysql_async::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use serde::Serialize;

use self::comment::{Comments, Identity};
use self::query::{Param, Peer, QueryError, Runner};
use crate::config::{DatadogConfig, MysqlConfig};

/// The service's one table, created at start if missing (the database user may CREATE, SELECT and
/// INSERT in its own database, nothing else: agent-config/mysql/apm-demo-user.sh).
pub const CREATE_VISITS: &str = "CREATE TABLE IF NOT EXISTS visits (\
    id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, \
    page VARCHAR(255), \
    user_agent VARCHAR(255), \
    created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))";

const INSERT_VISIT: &str = "INSERT INTO visits (page, user_agent) VALUES (?, ?)";
const PRUNE_VISITS: &str = "DELETE FROM visits WHERE id <= ?";
const SELECT_VISIT: &str = "SELECT id, page, user_agent, created_at FROM visits WHERE id = ?";
const LIST_VISITS: &str =
    "SELECT id, page, user_agent, created_at FROM visits ORDER BY id DESC LIMIT 10";

/// Longest `page` and `user_agent` kept: the columns' width, in characters.
pub const TEXT_LIMIT: usize = 255;

/// A row of `visits`, as the routes answer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Visit {
    pub id: u64,
    pub page: Option<String>,
    pub user_agent: Option<String>,
    /// RFC 3339, UTC, microseconds.
    pub created_at: String,
}

type VisitRow = (u64, Option<String>, Option<String>, time::PrimitiveDateTime);

fn visit((id, page, user_agent, created_at): VisitRow) -> Visit {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    Visit {
        id,
        page,
        user_agent,
        created_at: created_at.format(&format).unwrap_or_default(),
    }
}

/// The database of the routes: configured or not (`MYSQL_HOST` unset: every call fails with
/// `not_configured`, and the routes answer 503).
#[derive(Clone)]
pub struct Database {
    runner: Option<Arc<Runner>>,
    schema_ready: Arc<AtomicBool>,
    /// `MYSQL_KEEP_VISITS`: the newest visits kept ([`Database::insert_visit`] prunes the others).
    keep_visits: u64,
}

/// Where the statements go, never the password: the pool's options hold it, and mysql_async's own
/// `Debug` would print them.
impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("peer", &self.runner.as_ref().map(|runner| &runner.peer))
            .field("schema_ready", &self.schema_ready.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Database {
    /// The pool of `mysql`, its statements' comments and spans saying what `datadog` says (no
    /// connection is made until a statement needs one).
    pub fn new(mysql: &MysqlConfig, datadog: &DatadogConfig) -> Self {
        let runner = mysql.host().map(|host| {
            let peer = Peer {
                host: host.to_owned(),
                port: mysql.mysql_port,
                database: mysql.mysql_database.clone(),
                user: mysql.mysql_user.clone(),
            };
            let comments = Comments::new(
                datadog.dd_dbm_propagation_mode,
                Identity {
                    database: &peer.database,
                    // With peer-service naming, Datadog's tracers name the database's service
                    // after the database (dd-trace-py `_database_monitoring.py`).
                    database_service: &peer.database,
                    env: &datadog.dd_env,
                    host: &peer.host,
                    service: &datadog.dd_service,
                    version: &datadog.dd_version,
                },
            );
            Arc::new(Runner {
                pool: Pool::new(pool_opts(mysql, &peer)),
                peer,
                comments,
                acquire_timeout: mysql.mysql_timeout,
                query_timeout: mysql.mysql_query_timeout,
                exporting: datadog.dd_trace_enabled,
            })
        });
        Self {
            runner,
            schema_ready: Arc::new(AtomicBool::new(false)),
            keep_visits: mysql.mysql_keep_visits,
        }
    }

    /// Whether `MYSQL_HOST` is set.
    pub fn is_configured(&self) -> bool {
        self.runner.is_some()
    }

    fn runner(&self) -> Result<&Runner, QueryError> {
        self.runner.as_deref().ok_or_else(|| QueryError {
            kind: QueryError::NOT_CONFIGURED,
            message: "no database configured (MYSQL_HOST)".to_owned(),
        })
    }

    /// Creates the table if it is missing; once done, does nothing. Run at start, and again by the
    /// first request that finds it not done (the database may have been down at start).
    pub async fn ensure_schema(&self) -> Result<(), QueryError> {
        if self.schema_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        self.runner()?
            .run(CREATE_VISITS, &[], async |conn, sql| {
                conn.query_drop(sql).await
            })
            .await?;
        self.schema_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Records a visit; its id. The table keeps the newest `MYSQL_KEEP_VISITS`: the visit whose id is
    /// a multiple of [`Database::prune_every`] also deletes those older than that (its own
    /// `mysql.query` span; a failure is logged, the visit stands).
    pub async fn insert_visit(
        &self,
        page: Option<&str>,
        user_agent: Option<&str>,
    ) -> Result<u64, QueryError> {
        self.ensure_schema().await?;
        let runner = self.runner()?;
        let id = runner
            .run(
                INSERT_VISIT,
                &[Param::Text(page), Param::Text(user_agent)],
                async |conn, sql| {
                    conn.query_drop(sql).await?;
                    Ok(conn.last_insert_id().unwrap_or_default())
                },
            )
            .await?;
        if id % self.prune_every() == 0 && id > self.keep_visits {
            let oldest_kept = id - self.keep_visits;
            let pruned = runner
                .run(
                    PRUNE_VISITS,
                    &[Param::Int(oldest_kept)],
                    async |conn, sql| conn.query_drop(sql).await,
                )
                .await;
            if let Err(error) = pruned {
                tracing::warn!(
                    error.type = error.kind,
                    "old visits not deleted ({}); the next pruning will try again",
                    error.message
                );
            }
        }
        Ok(id)
    }

    /// One insert in this many prunes: a hundredth of what is kept (at most a thousand), so that the
    /// table holds at most 1% more than `MYSQL_KEEP_VISITS` and a DELETE runs rarely.
    fn prune_every(&self) -> u64 {
        (self.keep_visits / 100).clamp(1, 1000)
    }

    /// The visit `id`, if it exists.
    pub async fn visit(&self, id: u64) -> Result<Option<Visit>, QueryError> {
        self.ensure_schema().await?;
        let row = self
            .runner()?
            .run(SELECT_VISIT, &[Param::Int(id)], async |conn, sql| {
                conn.query_first::<VisitRow, _>(sql).await
            })
            .await?;
        Ok(row.map(visit))
    }

    /// The latest visits, newest first.
    pub async fn latest_visits(&self) -> Result<Vec<Visit>, QueryError> {
        self.ensure_schema().await?;
        let rows = self
            .runner()?
            .run(LIST_VISITS, &[], async |conn, sql| {
                conn.query::<VisitRow, _>(sql).await
            })
            .await?;
        Ok(rows.into_iter().map(visit).collect())
    }

    /// Closes the pool's connections (at shutdown).
    pub async fn close(&self) {
        if let Some(runner) = &self.runner {
            let _ = runner.pool.clone().disconnect().await;
        }
    }
}

/// How long an idle connection stays in the pool. The driver's default, 0, keeps no idle connection
/// above the pool's minimum (0 here): every statement connected, logged in and set its time zone
/// anew, 43% of a database request's instructions (bench/bench_database.py, 2.5 connections per
/// request).
const IDLE_CONNECTION_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// The pool's options. Connections are not reset when they return to the pool (the driver's default
/// is a COM_RESET_CONNECTION at every checkout, a round trip per request); nothing here changes a
/// session's state, so there is nothing to reset. Idle connections are kept for a minute
/// ([`IDLE_CONNECTION_TTL`]). Sessions run in UTC, so that TIMESTAMP columns read back as UTC.
fn pool_opts(mysql: &MysqlConfig, peer: &Peer) -> Opts {
    let constraints = PoolConstraints::new(0, mysql.mysql_pool_size as usize)
        .expect("MYSQL_POOL_SIZE is at least 1");
    OptsBuilder::default()
        .ip_or_hostname(peer.host.clone())
        .tcp_port(peer.port)
        .user(Some(peer.user.clone()))
        .pass(mysql.mysql_password.as_ref().map(|p| p.expose()))
        .db_name(Some(peer.database.clone()))
        .init(vec!["SET time_zone = '+00:00'"])
        .pool_opts(
            PoolOpts::default()
                .with_constraints(constraints)
                .with_reset_connection(false)
                .with_inactive_connection_ttl(IDLE_CONNECTION_TTL),
        )
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, OptionalHost, Secret};

    #[test]
    fn debug_output_names_the_peer_and_never_the_password() {
        let mut config = Config::parse_from_args(["apm-demo", "--mysql-host", ""]).unwrap();
        config.mysql.mysql_host = Some(OptionalHost(Some("db.internal".to_owned())));
        config.mysql.mysql_password = Some(Secret::new("hunter2"));
        let printed = format!("{:?}", Database::new(&config.mysql, &config.datadog));
        assert!(printed.contains("db.internal"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}
