//! apm-demo: parse the configuration, start telemetry, serve until SIGTERM or Ctrl-C, flush, exit.

use std::process::ExitCode;

use apm_demo::config::{Command, Config, ConfigError, FLUSH_TIMEOUT, SHUTDOWN_GRACE};
use apm_demo::db::Database;
use apm_demo::telemetry::Telemetry;
use apm_demo::telemetry::contract::InjectedPanic;
use apm_demo::telemetry::trace_layer::panic_message;
use apm_demo::{Application, healthcheck, routes};

fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(ConfigError::Display(help)) => {
            // --help and --version: to stdout, exit 0.
            let _ = help.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(error.exit_code() as u8);
        }
    };
    if config.command == Some(Command::Healthcheck) {
        return match healthcheck::check(&config, healthcheck::TIMEOUT) {
            Ok(()) => ExitCode::SUCCESS,
            Err(reason) => {
                eprintln!("apm-demo healthcheck: {reason}");
                ExitCode::from(1)
            }
        };
    }
    print_injected_panics_as_text();
    // Logs leave through a background writer, so that a slow stdout never stalls a request.
    let (writer, _flush_logs_on_exit) =
        tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(false)
            .finish(std::io::stdout());
    let telemetry = match Telemetry::build(&config, writer) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("apm-demo: cannot start telemetry: {error:#}");
            return ExitCode::from(1);
        }
    };
    tracing::dispatcher::set_global_default(telemetry.dispatch.clone()).expect("no subscriber yet");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let served = runtime.block_on(async {
        let db = Database::new(&config.mysql, &config.datadog);
        if db.is_configured() {
            // In the background: the service starts whether or not its database is up, and a
            // database route that comes before the schema makes it first.
            tokio::spawn(make_schema(db.clone()));
        }
        let app = apm_demo::app(
            &config,
            telemetry.trace_layer(),
            routes::service(db.clone()),
        );
        let app = Application::bind(&config, app).await?;
        tracing::info!(
            address = %app.local_addr(),
            service = %config.datadog.dd_service,
            env = %config.datadog.dd_env,
            version = %config.datadog.dd_version,
            tracing = config.datadog.dd_trace_enabled,
            exporter = config.datadog.trace_exporter.as_str(),
            agent = %config.datadog.agent_url(),
            database = config.mysql.host().unwrap_or("none"),
            dbm = config.datadog.dd_dbm_propagation_mode.as_str(),
            "listening on http://{}",
            app.local_addr()
        );
        let finished = app
            .run_until_stopped(shutdown_signal(), SHUTDOWN_GRACE)
            .await?;
        if !finished {
            tracing::warn!("requests still in flight after {SHUTDOWN_GRACE:?}; stopping anyway");
        }
        // Closing says goodbye to MySQL; a database that does not answer must not hold the exit.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), db.close()).await;
        std::io::Result::Ok(())
    });
    drop(runtime);

    let flushed = telemetry.shutdown(FLUSH_TIMEOUT);
    match (&served, &flushed) {
        (Ok(()), Ok(())) => {
            match telemetry.export_counts() {
                Some(counts) => tracing::info!(
                    spans_exported = counts.exported,
                    spans_dropped = counts.dropped,
                    spans_failed = counts.failed,
                    "stopped"
                ),
                None => tracing::info!("stopped"),
            }
            ExitCode::SUCCESS
        }
        (Err(error), _) => {
            tracing::error!("server error: {error}");
            eprintln!("apm-demo: {error}");
            ExitCode::from(1)
        }
        (Ok(()), Err(error)) => {
            tracing::warn!("{error:#}");
            ExitCode::SUCCESS
        }
    }
}

/// The standard panic hook, except that a fault flag's panic (whose payload is not text, so the
/// standard hook would print `Box<dyn Any>`) is printed with its message.
fn print_injected_panics_as_text() {
    let standard = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().is::<InjectedPanic>() {
            let location = info.location().map(ToString::to_string);
            eprintln!(
                "thread '{}' panicked at {}:\n{}",
                std::thread::current().name().unwrap_or("<unnamed>"),
                location.as_deref().unwrap_or("an unknown place"),
                panic_message(info.payload())
            );
        } else {
            standard(info);
        }
    }));
}

/// Makes the database's schema, or says why not yet.
async fn make_schema(db: Database) {
    match db.ensure_schema().await {
        Ok(()) => tracing::info!("database schema ready"),
        Err(error) => tracing::warn!(
            error.type = error.kind,
            "database not ready at start ({}); the first database request will try again",
            error.message
        ),
    }
}

/// Completes on SIGTERM (container stop) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C: shutting down"),
        () = terminate => tracing::info!("SIGTERM: shutting down"),
    }
}
