//! loadgen's entry point: parse, run, report; the exit code tells scripts how it went.
//!
//! Exit codes: 0 done; 1 could not run (target unreachable); 2 bad flags; 3 --max-error-rate exceeded.
//! SIGTERM or Ctrl-C ends a run early as its end would: the summary of what was sent, exit 0.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use loadgen::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    let (output, plan) = match args
        .output()
        .and_then(|output| Ok((output, args.into_plan()?)))
    {
        Ok(parsed) => parsed,
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let summary = match runtime.block_on(loadgen::execute_until(plan, stop_signal())) {
        Ok(summary) => summary,
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            return ExitCode::from(1);
        }
    };
    // A closed pipe (`loadgen ... | head`) is not worth a panic.
    let printed = if output.json {
        eprint!("{}", summary.table());
        let json = serde_json::to_string_pretty(&summary).expect("the summary serialises");
        writeln!(std::io::stdout(), "{json}")
    } else {
        write!(std::io::stdout(), "{}", summary.table())
    };
    drop(printed);
    match output.max_error_rate {
        Some(limit) if summary.overall.error_rate > limit => {
            eprintln!(
                "loadgen: error rate {:.4} is above --max-error-rate {limit}",
                summary.overall.error_rate
            );
            ExitCode::from(3)
        }
        _ => ExitCode::SUCCESS,
    }
}

/// The first SIGTERM (`docker compose stop`, a deleted Kubernetes Job) or Ctrl-C. Installed by the
/// binary only: the library's callers (the tests) keep their own signal handling.
async fn stop_signal() {
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => drop(terminate.recv().await),
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("loadgen: stopping early: the requests in flight finish, then the summary");
}
