//! Request limits: a deadline per request, and a bound on requests in flight past which the service
//! sheds load at once instead of queueing without end.
//!
//! Built from tower's own layers (`Timeout`, `GlobalConcurrencyLimit`, `LoadShed`), inside the trace
//! layer, so that a refused or timed-out request still has its span: the answer carries a [`Limited`]
//! marker, which the trace layer turns into the span's `error.type` and `error.message`.

use std::time::Duration;

use axum::BoxError;
use axum::error_handling::HandleErrorLayer;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::RETRY_AFTER;
use tower::ServiceBuilder;
use tower::layer::util::{Identity, Stack};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::timeout::TimeoutLayer;

/// Why the service answered for the handler: set on the response, read by the trace layer.
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

/// The layers, outermost first: errors to answers, shedding, the in-flight bound, the deadline.
/// The deadline is inside the bound, so a cancelled request gives its place back at once.
pub type LimitsLayer = ServiceBuilder<
    Stack<
        TimeoutLayer,
        Stack<
            GlobalConcurrencyLimitLayer,
            Stack<
                LoadShedLayer,
                Stack<HandleErrorLayer<fn(BoxError) -> std::future::Ready<Response>, ()>, Identity>,
            >,
        >,
    >,
>;

/// The request limits of `max_in_flight` requests at once, each within `deadline`.
pub fn layer(max_in_flight: usize, deadline: Duration) -> LimitsLayer {
    ServiceBuilder::new()
        .layer(HandleErrorLayer::new(
            answer as fn(BoxError) -> std::future::Ready<Response>,
        ))
        .layer(LoadShedLayer::new())
        .layer(GlobalConcurrencyLimitLayer::new(max_in_flight))
        .layer(TimeoutLayer::new(deadline))
}

/// The answer for a request the limits stopped. Nothing else reaches it: the handlers cannot fail.
fn answer(error: BoxError) -> std::future::Ready<Response> {
    let limited = if error.is::<tower::load_shed::error::Overloaded>() {
        Limited::Shed
    } else {
        Limited::DeadlineExceeded
    };
    let mut response = match limited {
        Limited::Shed => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(RETRY_AFTER, RETRY_AFTER_SECONDS)],
        )
            .into_response(),
        Limited::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT.into_response(),
    };
    response.extensions_mut().insert(limited);
    std::future::ready(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_is_503_with_retry_after_and_marked_shed() {
        let response = answer(Box::new(tower::load_shed::error::Overloaded::new())).into_inner();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        assert_eq!(response.extensions().get(), Some(&Limited::Shed));
    }

    #[test]
    fn elapsed_deadline_is_504_and_marked() {
        let response = answer(Box::new(tower::timeout::error::Elapsed::new())).into_inner();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(response.headers().get(RETRY_AFTER).is_none());
        assert_eq!(
            response.extensions().get(),
            Some(&Limited::DeadlineExceeded)
        );
    }
}
