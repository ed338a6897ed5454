//! Faults on demand: feature flags in flagd's format that make requests slow, failing or panicking,
//! or the process grow, so that APM and the monitors have something to find (docs/faults.md).
//!
//! The flags come from a file (`FLAGD_OFFLINE_FLAG_SOURCE_PATH`, re-read when it changes: [`source`]),
//! in flagd's flag-definition format ([`flags`]); no HTTP endpoint switches them. The layer sits inside
//! the request limits, so an injected delay still ends at `REQUEST_TIMEOUT`. A request a fault touched
//! answers with the flags that acted ([`FaultsApplied`]), which the trace layer puts on the span and the
//! access log (`fault.injected`), and for an injected 500 a [`SpanError`] (`error.type:
//! fault_injected`, an `error.message` naming the flag). An injected panic is a real one: it unwinds
//! to the service's panic handler (`apm_demo::layered`), as a handler's bug would.
//!
//! With every flag off, a request costs one atomic load here: no lock, no allocation.

pub mod database;
pub mod flags;
pub mod source;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use tower::{Layer, Service};

pub use source::{FlagSource, KNOWN_FLAGS, Kind};

use crate::config::FaultConfig;
use crate::telemetry::contract::{FaultsApplied, InjectedPanic, SpanError};

/// The span's `error.type` of an injected 500.
pub const ERROR_TYPE: &str = "fault_injected";

/// The layer: [`Faults`] around each route, with the flags of `FLAGD_OFFLINE_FLAG_SOURCE_PATH`
/// (none when it is unset: the file is never read).
#[derive(Debug, Clone)]
pub struct FaultLayer {
    source: Option<Arc<FlagSource>>,
}

/// The fault layer of the configuration (starts the file's watcher thread when a file is set).
pub fn layer(config: &FaultConfig) -> FaultLayer {
    FaultLayer {
        source: config.flagd_offline_flag_source_path.clone().map(|path| {
            FlagSource::watch(
                path,
                Duration::from_millis(u64::from(config.flagd_offline_poll_ms)),
            )
        }),
    }
}

impl<S> Layer<S> for FaultLayer {
    type Service = Faults<S>;

    fn layer(&self, inner: S) -> Faults<S> {
        Faults {
            inner,
            source: self.source.clone(),
        }
    }
}

/// The service: passes a request through, or acts out the faults its flags resolve to.
#[derive(Debug, Clone)]
pub struct Faults<S> {
    inner: S,
    source: Option<Arc<FlagSource>>,
}

type Boxed = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// The request's future: the route's own when no fault acts (no allocation), else boxed. (The route's
/// future, axum's `RouteFuture`, is `Unpin`: no pin projection needed.)
pub enum FaultFuture<F> {
    Pass(F),
    Faulted(Boxed),
}

impl<F> Future for FaultFuture<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            FaultFuture::Pass(inner) => Pin::new(inner).poll(cx),
            FaultFuture::Faulted(future) => future.as_mut().poll(cx),
        }
    }
}

/// What the flags decided for one request.
#[derive(Debug, Default)]
struct Plan {
    latency: Duration,
    leak_bytes: usize,
    panic: bool,
    failure: bool,
    flags: Vec<String>,
    error_flag: Option<String>,
    /// What the database routes' statements do ([`database`]).
    database: database::DbFaults,
}

impl<S> Service<Request> for Faults<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + Unpin + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = FaultFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let snapshot = match &self.source {
            Some(source) => source.snapshot(),
            None => None,
        };
        let Some(snapshot) = snapshot else {
            return FaultFuture::Pass(self.inner.call(request));
        };
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("", MatchedPath::as_str);
        let context = flags::Context {
            route,
            method: request.method().as_str(),
            targeting_key: fastrand::u64(..),
        };
        let plan = plan(&snapshot, &context);
        if plan.flags.is_empty() {
            return FaultFuture::Pass(self.inner.call(request));
        }
        // The clone that was not polled ready stays here; the ready one serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let source = self.source.clone().expect("a snapshot comes from a source");
        FaultFuture::Faulted(Box::pin(async move {
            if !plan.latency.is_zero() {
                tokio::time::sleep(plan.latency).await;
            }
            if plan.leak_bytes > 0 {
                source.leak(plan.leak_bytes);
            }
            let flags = plan.flags.join(",");
            if plan.panic {
                let flag = plan.error_flag.unwrap_or_default();
                std::panic::panic_any(InjectedPanic {
                    flags: FaultsApplied(flags),
                    message: format!("fault injected by flag {flag}: the handler panicked"),
                });
            }
            if plan.failure {
                let flag = plan.error_flag.unwrap_or_default();
                return Ok(answer_500(
                    flags,
                    format!("fault injected by flag {flag}: answered 500 instead of the handler"),
                ));
            }
            let mut response = if plan.database.is_empty() {
                inner.call(request).await?
            } else {
                database::scope(plan.database, inner.call(request)).await?
            };
            response.extensions_mut().insert(FaultsApplied(flags));
            Ok(response)
        }))
    }
}

fn answer_500(flags: String, message: String) -> Response {
    let mut response = StatusCode::INTERNAL_SERVER_ERROR.into_response();
    let extensions = response.extensions_mut();
    extensions.insert(FaultsApplied(flags));
    extensions.insert(SpanError::new(ERROR_TYPE, message));
    response
}

/// The faults the enabled flags resolve to for one request.
fn plan(snapshot: &source::Snapshot, context: &flags::Context<'_>) -> Plan {
    let mut plan = Plan::default();
    for (kind, flag) in &snapshot.flags {
        let Some(resolution) = flag.resolve(context) else {
            continue;
        };
        let value = resolution.value;
        let acted = match kind {
            Kind::Latency => match value.as_f64() {
                Some(ms) if ms > 0.0 => {
                    plan.latency += Duration::from_secs_f64(ms.min(3_600_000.0) / 1000.0);
                    true
                }
                _ => false,
            },
            Kind::MemoryLeak => match value.as_f64() {
                Some(kb) if kb > 0.0 => {
                    plan.leak_bytes += (kb.min(1_048_576.0) * 1024.0) as usize;
                    true
                }
                _ => false,
            },
            Kind::QueryFailure => {
                let on = value.as_bool() == Some(true);
                if on {
                    plan.database.fail = Some(flag.key.clone());
                }
                on
            }
            Kind::SlowQuery | Kind::PoolHold => match value.as_f64() {
                Some(ms) if ms > 0.0 => {
                    let fault = Some((
                        Duration::from_secs_f64(ms.min(3_600_000.0) / 1000.0),
                        flag.key.clone(),
                    ));
                    match kind {
                        Kind::SlowQuery => plan.database.slow = fault,
                        _ => plan.database.hold = fault,
                    }
                    true
                }
                _ => false,
            },
            // One error per request: the first flag that asks for one.
            Kind::Panic | Kind::Failure => {
                let on = value.as_bool() == Some(true) && plan.error_flag.is_none();
                if on {
                    plan.error_flag = Some(flag.key.clone());
                    match kind {
                        Kind::Panic => plan.panic = true,
                        _ => plan.failure = true,
                    }
                }
                on
            }
        };
        if acted {
            plan.flags.push(flag.key.clone());
        }
    }
    plan
}

/// splitmix64's output function: a well-mixed 64-bit value from another (a flag's targeting key
/// from the request's and the flag's).
pub(crate) fn next_random(counter: u64) -> u64 {
    let mut z = counter.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64 from seed 0 (Vigna's reference sequence): `next_random(n * gamma)` is its n+1-th
    /// output. Any change to the mixing shows here, not only in a rate that drifts.
    #[test]
    fn next_random_is_splitmix64() {
        const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
        assert_eq!(next_random(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(next_random(GAMMA), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(next_random(GAMMA.wrapping_mul(2)), 0x06c4_5d18_8009_454f);
    }

    /// local/flags/flags.json with `key` switched on as `make local FAULT=<key>` does.
    fn local_file_with(key: &str) -> source::Snapshot {
        let mut file: serde_json::Value =
            serde_json::from_str(include_str!("../../local/flags/flags.json")).unwrap();
        file["flags"][key]["state"] = "ENABLED".into();
        source::Snapshot::parse(&file.to_string()).unwrap()
    }

    #[test]
    fn each_flag_of_the_local_file_acts_when_switched_on_on_its_route_only() {
        const EVERY_ROUTE: &[&str] = &[
            "/",
            "/api/apm",
            "/api/trace",
            "/api/visits",
            "/api/visits/{id}",
            "",
        ];
        for (key, method, routes) in [
            ("routeLatencyMs", "*", &["/api/apm"][..]),
            ("routeLatencyTailMs", "*", &["/api/trace"]),
            ("routeFailure", "*", &["/api/trace"]),
            ("routePanic", "*", &["/"]),
            ("memoryLeakKb", "*", EVERY_ROUTE),
            ("dbQueryFailure", "*", &["/api/visits/{id}"]),
            ("dbSlowQueryMs", "GET", &["/api/visits"]),
            ("dbPoolExhaustionMs", "POST", &["/api/visits"]),
        ] {
            let snapshot = local_file_with(key);
            for route in EVERY_ROUTE {
                for asked in ["GET", "POST"] {
                    let acted = (0..1_000u64)
                        .filter(|i| {
                            let context = flags::Context {
                                route,
                                method: asked,
                                targeting_key: next_random(*i),
                            };
                            !plan(&snapshot, &context).flags.is_empty()
                        })
                        .count();
                    let expected = routes.contains(route) && (method == "*" || asked == method);
                    assert_eq!(acted > 0, expected, "{key} on {asked} {route:?}: {acted}");
                }
            }
        }
    }

    #[test]
    fn database_flags_plan_database_faults_only() {
        let context = |route, method| flags::Context {
            route,
            method,
            targeting_key: 1,
        };
        let slow = plan(
            &local_file_with("dbSlowQueryMs"),
            &context("/api/visits", "GET"),
        );
        assert_eq!(
            slow.database.slow,
            Some((Duration::from_millis(300), "dbSlowQueryMs".to_owned()))
        );
        assert!(slow.database.fail.is_none() && slow.database.hold.is_none());
        assert!(slow.latency.is_zero() && !slow.failure);
        let hold = plan(
            &local_file_with("dbPoolExhaustionMs"),
            &context("/api/visits", "POST"),
        );
        assert_eq!(
            hold.database.hold,
            Some((Duration::from_secs(3), "dbPoolExhaustionMs".to_owned()))
        );
        let failing = (0..100u64)
            .map(|i| {
                plan(
                    &local_file_with("dbQueryFailure"),
                    &flags::Context {
                        route: "/api/visits/{id}",
                        method: "GET",
                        targeting_key: next_random(i),
                    },
                )
            })
            .find(|plan| !plan.flags.is_empty())
            .expect("20% of requests");
        assert_eq!(failing.database.fail.as_deref(), Some("dbQueryFailure"));
        assert!(!failing.failure, "the route runs; its statements fail");
    }
}
