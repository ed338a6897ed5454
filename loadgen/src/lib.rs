//! loadgen: an HTTP load generator, in the pipeline oha uses: plan ([`cli`], [`plan`], [`mix`],
//! [`schedule`]), send ([`prepared`], [`client`], [`trace_headers`], [`run`]), record ([`record`]),
//! show ([`monitor`]) and report ([`report`]).

pub mod cli;
pub mod client;
pub mod export;
pub mod mix;
pub mod monitor;
pub mod plan;
pub mod prepared;
pub mod record;
pub mod report;
pub mod run;
pub mod schedule;
pub mod trace_headers;
pub mod tracer;

use std::sync::Arc;

pub use cli::Args;
pub use plan::Plan;
pub use report::Summary;

/// Runs `plan` against its target: checks the target answers, drives it (reporting a client span
/// per request when the plan says so), and summarises.
pub async fn execute(plan: Plan) -> anyhow::Result<Summary> {
    run::preflight(&plan).await?;
    let export = plan
        .tracing
        .as_ref()
        .map(|tracing| export::Export::start(&plan, tracing));
    let plan = Arc::new(plan);
    let progress = Arc::new(run::Progress::default());
    let monitor = monitor::Monitor::start(progress.clone(), plan.stop.duration);
    let reporter = export.as_ref().map(export::Export::reporter);
    let outcome = run::run(plan.clone(), progress, reporter).await;
    drop(monitor);
    // The last spans are flushed on the export thread; waiting for it must not hold a runtime thread.
    let spans = match export {
        Some(export) => Some(tokio::task::spawn_blocking(move || export.finish()).await?),
        None => None,
    };
    Ok(Summary::new(&plan, &outcome.record, outcome.elapsed, spans))
}
