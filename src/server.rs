//! The listener: accepts connections within the connection limit, serves each with hyper under a
//! header-read timeout and a bound on the request head, and shuts down gracefully.
//!
//! What any client can cost the server is bounded here (docs/service.md, "Under attack and
//! overload"):
//! - at most `MAX_CONNECTIONS` open connections (and a few evicted ones closing). Past the limit a
//!   new connection takes the place of the one that has waited longest for a request head (silent,
//!   trickling, or idle between requests; [`registry`]), which is closed with no answer; a
//!   connection with a request in flight is never closed for a newcomer, and only when every
//!   connection has one does a newcomer wait (in the kernel's listen backlog). A flood of
//!   connections that send nothing thus cannot lock real clients out: every new connection gets in,
//!   and the attacker's connections take turns;
//! - a connection whose request head has not arrived within `HEADER_READ_TIMEOUT` of the server
//!   starting to wait for it is closed (hyper starts that timer on a new connection and again after
//!   each answer);
//! - a request head is at most [`MAX_HEAD_BYTES`] (hyper answers 431 past it), which bounds what a
//!   connection's read buffer can hold, so memory is at most the limit times a known amount per
//!   connection (docs/benchmarks.md).

mod evictions;
mod in_flight;
#[cfg(unix)]
mod open_files;
mod registry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpSocket};
use tokio::time::Instant;

use crate::config::Config;
use evictions::Evictions;
use in_flight::Tracked;
use registry::{Admission, Registry};

/// The largest request head served: hyper's read buffer stops there and answers 431 Request Header
/// Fields Too Large. Node.js's default (16 KiB), twice the per-line limit of nginx, Apache and
/// Tomcat, and room for W3C baggage at its 8 KiB maximum beside the trace headers and cookies.
/// hyper's default, about 400 KiB, let 1,000 unfinished heads take 400 MB.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Connections accepted by the kernel and not yet by the server: Linux caps it at
/// `net.core.somaxconn` (4,096 by default since 5.4). Past the connection limit, attackers the
/// limit does not hold wait here for their turn; when it overflows, new connections' SYNs are
/// dropped and a client retries only after a second, so it is as deep as the kernel allows
/// (tokio's `TcpListener::bind` asks for 1,024).
const BACKLOG: u32 = 4096;

/// Evicted connections still closing, at most: past the limit, a newcomer is served as soon as it
/// has evicted one, without waiting for that one's task to run and close it. Waiting for each
/// close, a round trip through the scheduler per newcomer, let a flood's connections pile up in
/// the listen backlog, and a normal client's new connection waited behind them: its p99 under the
/// 3,000-connection floods fell from 108-137 ms to 7-87 ms in 15 floods of 16 with this
/// (docs/service.md). So up to this many connections more than the limit are open for a moment
/// (1.4 MiB at their worst).
pub const EVICTED_CLOSING_AT_MOST: usize = 32;

/// File descriptors the process needs besides its connections: the listener, the runtime's, stdio,
/// the trace exporter's connections, the flag file (MySQL's pool is counted on top).
const OTHER_FILES: u64 = 64;

/// The service bound to its port, ready to serve.
pub struct Application {
    listener: TcpListener,
    router: Router,
    max_connections: usize,
    header_read_timeout: Duration,
}

impl Application {
    /// Binds the configured address (port 0 picks a free port, which [`Self::local_addr`] tells), to
    /// serve `router` (`apm_demo::app`).
    pub async fn bind(config: &Config, router: Router) -> std::io::Result<Self> {
        let server = &config.server;
        // Evicted connections may still be closing beside the limit, and one more accepted may wait
        // for room.
        let files = u64::from(server.max_connections)
            + EVICTED_CLOSING_AT_MOST as u64
            + 1
            + u64::from(config.mysql.mysql_pool_size);
        #[cfg(unix)]
        open_files::raise(files + OTHER_FILES, server.max_connections);
        let address = server.listen_addr();
        let socket = if address.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // As tokio's TcpListener::bind: a restarted service rebinds its port at once.
        socket.set_reuseaddr(true)?;
        socket.bind(address)?;
        Ok(Self {
            listener: socket.listen(BACKLOG)?,
            router,
            max_connections: config.server.max_connections as usize,
            header_read_timeout: config.server.header_read_timeout,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then stops accepting, closes the connections waiting for
    /// a request head, and lets in-flight requests finish, for at most `grace`. Returns whether
    /// every connection finished in time.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
        grace: Duration,
    ) -> std::io::Result<bool> {
        // HTTP/1.1 only: cleartext HTTP/2 (h2c) has no header-read timeout in hyper, so a client
        // that sent its preface and then nothing would hold its slot for good; nothing that calls
        // this service (browsers, loadgen, proxies) speaks h2c to it.
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_buf_size(MAX_HEAD_BYTES);
        let registry = Registry::new(self.max_connections, EVICTED_CLOSING_AT_MOST);
        let mut evictions = Evictions::new(self.max_connections);
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);

        'serve: loop {
            let due = evictions.due();
            let stream = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(error) => {
                        accept_failed(&error).await;
                        continue;
                    }
                },
                () = sleep_until(due), if due.is_some() => {
                    evictions.report(Instant::now());
                    continue;
                }
                () = &mut shutdown => break,
            };
            // Room for it: at the limit, the connection that has waited longest for a head is told
            // to close, and the new one is served at once; if every connection is serving a
            // request, the new one waits for one to finish (and the next ones in the backlog).
            let connection = loop {
                if let Admission::Admitted {
                    connection,
                    evicted,
                } = registry.admit()
                {
                    if evicted {
                        evictions.record(Instant::now());
                    }
                    break Arc::new(connection);
                }
                tokio::select! {
                    () = registry.room() => {}
                    () = &mut shutdown => break 'serve,
                }
            };
            let service = Tracked::new(self.router.clone(), connection.clone());
            let served = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            // Evicting aborts the task, which drops the connection: closed, with no answer. (A
            // client that goes away or times out is not the server's error.)
            let task = tokio::spawn(async move {
                let _ = served.await;
            });
            connection.served_by(task.abort_handle());
        }

        drop(self.listener);
        registry.evict_waiting();
        evictions.report(Instant::now());
        tokio::select! {
            () = graceful.shutdown() => Ok(true),
            () = tokio::time::sleep(grace) => Ok(false),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline).await;
    }
}

/// A failed accept: a connection reset before it was accepted is the client's affair; anything else
/// (out of file descriptors) is logged and retried after a pause rather than spinning.
async fn accept_failed(error: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept failed: {error}; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
