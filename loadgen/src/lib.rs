//! loadgen: an HTTP load generator, in the pipeline oha uses: plan ([`cli`], [`plan`], [`mix`],
//! [`schedule`]), send ([`prepared`], [`client`], [`trace_headers`], [`run`]), record ([`record`]),
//! show ([`monitor`]) and report ([`report`]).

pub mod cli;
pub mod client;
pub mod mix;
pub mod monitor;
pub mod plan;
pub mod prepared;
pub mod record;
pub mod report;
pub mod run;
pub mod schedule;
pub mod trace_headers;

use std::sync::Arc;

pub use cli::Args;
pub use plan::Plan;
pub use report::Summary;

/// Runs `plan` against its target: checks the target answers, drives it, and summarises.
pub async fn execute(plan: Plan) -> anyhow::Result<Summary> {
    run::preflight(&plan).await?;
    let plan = Arc::new(plan);
    let progress = Arc::new(run::Progress::default());
    let monitor = monitor::Monitor::start(progress.clone(), plan.stop.duration);
    let outcome = run::run(plan.clone(), progress).await;
    drop(monitor);
    Ok(Summary::new(&plan, &outcome.record, outcome.elapsed))
}
