//! The listener: accepts connections within the connection limit, serves each with hyper under a
//! header-read timeout, and shuts down gracefully.
//!
//! What any client can cost the server is bounded here: at most `MAX_CONNECTIONS` open connections
//! (beyond them, new ones wait in the kernel's listen backlog, not in this process's memory), and a
//! connection whose request head has not arrived within `HEADER_READ_TIMEOUT` of the server starting
//! to wait for it is closed (hyper starts that timer on a new connection and again after each
//! answer, so it bounds silent and trickling clients as well as idle keep-alive connections).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Config;

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
        let listener = TcpListener::bind(config.server.listen_addr()).await?;
        Ok(Self {
            listener,
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

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight requests finish,
    /// for at most `grace`. Returns whether every connection finished in time.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
        grace: Duration,
    ) -> std::io::Result<bool> {
        // HTTP/1.1 only: cleartext HTTP/2 (h2c) has no header-read timeout in hyper, so a client
        // that sent its preface and then nothing would hold its slot for good; nothing that calls
        // this service (browsers, loadgen, proxies) speaks h2c to it.
        let mut http = auto::Builder::new(TokioExecutor::new()).http1_only();
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        let open = Arc::new(Semaphore::new(self.max_connections));
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);

        loop {
            // Past the limit, stop accepting: new connections wait in the backlog.
            let slot = tokio::select! {
                slot = open.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                () = &mut shutdown => break,
            };
            let stream = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(error) => {
                        accept_failed(&error).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let service = TowerToHyperService::new(self.router.clone());
            // `serve_connection`: hyper-util 0.1.21's `serve_connection_with_upgrades` ignores
            // `http1_only` and would answer an HTTP/2 preface (tests/api/limits.rs pins it).
            let connection = http
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                // A client that goes away or times out is not the server's error.
                let _ = connection.await;
                drop(slot);
            });
        }

        drop(self.listener);
        tokio::select! {
            () = graceful.shutdown() => Ok(true),
            () = tokio::time::sleep(grace) => Ok(false),
        }
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
