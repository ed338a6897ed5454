//! loadgen's entry point: parse, run, report; the exit code tells scripts how it went.
//!
//! Exit codes: 0 done; 1 could not run (target unreachable); 2 bad flags; 3 --max-error-rate exceeded.
//! SIGTERM or Ctrl-C ends a run early as its end would: the summary of what was sent, then exit 0
//! after SIGTERM, and after Ctrl-C (SIGINT) an end by SIGINT, as a program that handles Ctrl-C
//! should (<https://www.cons.org/cracauer/sigint.html>): a shell script running loadgen learns it
//! was interrupted and stops too, where an exit 0 would let bash carry on with the script.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

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
    if INTERRUPTED.load(Ordering::SeqCst) {
        drop(runtime);
        end_by_sigint();
    }
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

/// Whether the run was stopped by Ctrl-C (SIGINT).
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

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
        _ = tokio::signal::ctrl_c() => INTERRUPTED.store(true, Ordering::SeqCst),
    }
    eprintln!("loadgen: stopping early: the requests in flight finish, then the summary");
}

/// Ends the process by SIGINT, its default action restored (the runtime's handler caught it).
#[cfg(unix)]
fn end_by_sigint() -> ! {
    // SAFETY: signal(2) and raise(3) with a valid signal number and the default action, from the
    // main thread on the way out; no handler of ours runs.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::raise(libc::SIGINT);
    }
    // Not reached: SIGINT's default action ends the process. 130 is how a shell reports it.
    std::process::exit(130)
}

#[cfg(not(unix))]
fn end_by_sigint() -> ! {
    std::process::exit(130)
}
