//! loadgen's entry point: parse, run, report; the exit code tells scripts how it went.
//!
//! Exit codes: 0 done; 1 could not run (target unreachable); 2 bad flags; 3 --max-error-rate exceeded.

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
    let summary = match runtime.block_on(loadgen::execute(plan)) {
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
