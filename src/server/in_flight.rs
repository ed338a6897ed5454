//! The service hyper calls for each request of one connection: the router, plus telling the
//! registry that the connection has a request in flight from the moment its head has arrived
//! (hyper calls the service) until its response body has been sent (hyper drops it), so that only
//! a connection waiting for a head can be evicted.
//!
//! hyper's HTTP/1 connection says nothing about whether it waits for a head; these two moments are
//! the ones it exposes, and they bracket every request exactly (one at a time on a connection).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use http::header::{CONNECTION, RETRY_AFTER};
use http::{HeaderValue, Request, StatusCode};
use hyper::body::{Bytes, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::Service;

use super::registry::Connection;

/// The router, serving one connection.
pub(crate) struct Tracked {
    router: Router,
    connection: Arc<Connection>,
}

impl Tracked {
    pub(crate) fn new(router: Router, connection: Arc<Connection>) -> Self {
        Self { router, connection }
    }
}

/// Generic over the request body: hyper's `Incoming` in the server, any body in tests.
impl<B> hyper::service::Service<Request<B>> for Tracked
where
    Router: Service<Request<B>, Response = Response, Error = Infallible>,
{
    type Response = Response<InFlightBody>;
    type Error = Infallible;
    type Future = InFlightFuture<<Router as Service<Request<B>>>::Future>;

    fn call(&self, request: Request<B>) -> Self::Future {
        if !self.connection.begin_request() {
            return InFlightFuture::Evicted;
        }
        let in_flight = InFlight(self.connection.clone());
        // axum's Router is always ready (its poll_ready is Ready(Ok)), so it is called at once.
        let future = self.router.clone().call(request);
        InFlightFuture::Serving {
            future,
            in_flight: Some(in_flight),
        }
    }
}

/// A request in flight on its connection; dropped with the response body (or with the request's
/// future, if the connection closes first).
struct InFlight(Arc<Connection>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

pin_project! {
    /// The router's response, its body carrying the request's [`InFlight`].
    #[project = InFlightProjection]
    pub(crate) enum InFlightFuture<F> {
        Serving { #[pin] future: F, in_flight: Option<InFlight> },
        /// The connection was evicted just before its request head arrived.
        Evicted,
    }
}

impl<F> Future for InFlightFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response<InFlightBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            InFlightProjection::Serving { future, in_flight } => {
                let Ok(response) = ready!(future.poll(cx));
                let in_flight = in_flight.take();
                Poll::Ready(Ok(response.map(|body| InFlightBody {
                    body,
                    _in_flight: in_flight,
                })))
            }
            InFlightProjection::Evicted => Poll::Ready(Ok(evicted())),
        }
    }
}

/// The answer to a request whose head arrived just after its connection was evicted (the
/// connection is closing; in the rarer case that the answer gets out first): not handled, so the
/// client may safely send it again.
fn evicted() -> Response<InFlightBody> {
    let mut response = Response::new(InFlightBody {
        body: Body::empty(),
        _in_flight: None,
    });
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// A response body that ends its request's time in flight when hyper drops it, after its last frame.
pub(crate) struct InFlightBody {
    body: Body,
    /// Held, not read: dropping it ends the request's time in flight.
    _in_flight: Option<InFlight>,
}

impl hyper::body::Body for InFlightBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::routing::get;
    use hyper::body::Body as _;
    use hyper::service::Service as _;

    use super::super::registry::{Admission, Registry};
    use super::*;

    /// Requests `/counted` has handled (only one test asks it).
    static COUNTED: AtomicUsize = AtomicUsize::new(0);

    fn router() -> Router {
        Router::new()
            .route("/", get(|| async { "hello" }))
            .route(
                "/counted",
                get(|| async {
                    COUNTED.fetch_add(1, Ordering::SeqCst);
                }),
            )
            .route("/pending", get(std::future::pending::<()>))
    }

    /// A registry with room for one connection, and that connection served by `router()`.
    fn served() -> (Arc<Registry>, Tracked) {
        let registry = Registry::new(1, 1);
        let Admission::Admitted { connection, .. } = registry.admit() else {
            panic!("no room");
        };
        (registry, Tracked::new(router(), Arc::new(connection)))
    }

    fn get_request(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).unwrap()
    }

    /// Whether a newcomer evicts the connection (it waits for a head), rather than wait (it has a
    /// request in flight).
    fn evictable(registry: &Arc<Registry>) -> bool {
        match registry.admit() {
            Admission::Admitted { evicted, .. } => {
                assert!(evicted, "admitted past the limit");
                true
            }
            Admission::Wait => false,
        }
    }

    #[tokio::test]
    async fn a_request_is_in_flight_from_its_call_until_its_response_body_is_dropped() {
        let (registry, tracked) = served();
        let future = tracked.call(get_request("/"));
        assert!(!evictable(&registry), "called: in flight");
        let response = future.await.unwrap();
        assert!(!evictable(&registry), "answered, body not yet sent");
        assert_eq!(response.status(), StatusCode::OK);
        drop(response);
        assert!(evictable(&registry), "sent: waiting for the next head");
    }

    #[tokio::test]
    async fn the_answer_is_the_routers_length_included() {
        let (_registry, tracked) = served();
        let response = tracked.call(get_request("/")).await.unwrap();
        let body = response.into_body();
        // hyper writes Content-Length from the size hint.
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
        let bytes = axum::body::to_bytes(Body::new(body), 64).await.unwrap();
        assert_eq!(bytes, "hello");
    }

    #[tokio::test]
    async fn a_request_cancelled_before_its_answer_leaves_the_connection_waiting() {
        let (registry, tracked) = served();
        let mut future = Box::pin(tracked.call(get_request("/pending")));
        assert!(poll_once(future.as_mut()).is_pending());
        assert!(!evictable(&registry));
        drop(future);
        assert!(evictable(&registry));
    }

    fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(std::task::Waker::noop()))
    }

    #[tokio::test]
    async fn a_request_arriving_just_after_its_connection_was_evicted_is_refused_unhandled() {
        let (registry, tracked) = served();
        assert!(evictable(&registry));
        let response = tracked.call(get_request("/counted")).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[CONNECTION], "close");
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let body = response.into_body();
        assert_eq!(body.size_hint().exact(), Some(0));
        assert!(body.is_end_stream());
        assert_eq!(COUNTED.load(Ordering::SeqCst), 0, "the handler never ran");
        // The same request on a connection that was not evicted runs it.
        let (_registry, tracked) = served();
        let response = tracked.call(get_request("/counted")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(COUNTED.load(Ordering::SeqCst), 1);
    }
}
