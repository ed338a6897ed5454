//! Request limits: a deadline per request, and a bound on requests in flight past which the service
//! sheds load at once instead of queueing without end.
//!
//! Run inside the request's span (`apm_demo::layered`), so that a refused or timed-out request still
//! has its span: the answer carries a [`SpanError`] naming the limit, which the trace layer puts on
//! the span (`error.type`, `error.message`).
//!
//! Written as a semaphore's `try_acquire` and tokio's `timeout` rather than tower's `LoadShed`,
//! `GlobalConcurrencyLimit`, `Timeout` and axum's `HandleError`: the same behaviour, but tower's
//! stack as a router layer (a boxed future and a cloned `PollSemaphore` per request) added 6,100
//! instructions per request where the limits and the connection handling together add 2,600 this
//! way (callgrind, untraced; docs/service.md).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::RETRY_AFTER;
use tokio::sync::Semaphore;

use crate::telemetry::contract::SpanError;

/// Why the service answered for the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// More than `MAX_IN_FLIGHT` requests were in flight: 503 with `Retry-After`, at once.
    Shed,
    /// The handler ran past `REQUEST_TIMEOUT` and was cancelled: 504.
    DeadlineExceeded,
}

impl Limited {
    /// The span's `error.type`, a value to filter on in Datadog (`@error.type:load_shed`).
    pub fn error_type(self) -> &'static str {
        match self {
            Self::Shed => "load_shed",
            Self::DeadlineExceeded => "deadline_exceeded",
        }
    }

    /// The span's `error.message`.
    pub fn message(self) -> &'static str {
        match self {
            Self::Shed => "shed: too many requests in flight (MAX_IN_FLIGHT)",
            Self::DeadlineExceeded => "the request ran past its deadline (REQUEST_TIMEOUT)",
        }
    }
}

/// Seconds a shed client is asked to wait: load that exceeds the bound usually passes in a moment.
const RETRY_AFTER_SECONDS: &str = "1";

/// At most `max_in_flight` requests at once, each within `deadline`.
#[derive(Debug, Clone)]
pub struct Limits {
    in_flight: Arc<Semaphore>,
    deadline: Duration,
}

impl Limits {
    pub fn new(max_in_flight: usize, deadline: Duration) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            deadline,
        }
    }

    /// Runs the rest of the request's path within the limits, or answers for it: 503 at once when
    /// `max_in_flight` requests are already running, 504 when it runs past the deadline (the handler
    /// is dropped, which cancels it, and its place is free again).
    pub async fn run(&self, request: Request, next: Next) -> Response {
        let Ok(_place) = self.in_flight.try_acquire() else {
            return answer(Limited::Shed);
        };
        match tokio::time::timeout(self.deadline, next.run(request)).await {
            Ok(response) => response,
            Err(_elapsed) => answer(Limited::DeadlineExceeded),
        }
    }
}

/// The answer for a request the limits stopped, marked for the trace layer.
fn answer(limited: Limited) -> Response {
    let mut response = match limited {
        Limited::Shed => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(RETRY_AFTER, RETRY_AFTER_SECONDS)],
        )
            .into_response(),
        Limited::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT.into_response(),
    };
    response
        .extensions_mut()
        .insert(SpanError::new(limited.error_type(), limited.message()));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shed_is_503_with_retry_after_and_marked() {
        let response = answer(Limited::Shed);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        assert_eq!(
            response.extensions().get(),
            Some(&SpanError::new(
                "load_shed",
                "shed: too many requests in flight (MAX_IN_FLIGHT)"
            ))
        );
    }

    #[test]
    fn deadline_exceeded_is_504_and_marked() {
        let response = answer(Limited::DeadlineExceeded);
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(response.headers().get(RETRY_AFTER).is_none());
        assert_eq!(
            response.extensions().get(),
            Some(&SpanError::new(
                "deadline_exceeded",
                "the request ran past its deadline (REQUEST_TIMEOUT)"
            ))
        );
    }
}
