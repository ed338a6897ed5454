//! The live view: one progress line on a terminal (elapsed, requests, current rate, errors).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::run::Progress;

const TICK: Duration = Duration::from_millis(250);

/// Shows the progress line until dropped; nothing at all when stderr is not a terminal.
pub struct Monitor {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: ProgressBar,
}

impl Monitor {
    pub fn start(progress: Arc<Progress>, total: Option<Duration>) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self {
                task: None,
                bar: ProgressBar::hidden(),
            };
        }
        let bar = match total {
            Some(total) => {
                let bar = ProgressBar::with_draw_target(
                    Some(total.as_millis() as u64),
                    ProgressDrawTarget::stderr(),
                );
                bar.set_style(
                    ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {msg}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar
            }
            None => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template("{elapsed_precise} {spinner} {msg}")
                        .expect("valid template"),
                );
                bar
            }
        };
        let view = bar.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut last = (started, 0u64);
            loop {
                tokio::time::sleep(TICK).await;
                let now = Instant::now();
                let requests = progress.requests.load(Ordering::Relaxed);
                let errors = progress.errors.load(Ordering::Relaxed);
                let rate = (requests - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
                last = (now, requests);
                view.set_position(now.duration_since(started).as_millis() as u64);
                view.set_message(format!("{requests} requests  {rate:.0}/s  {errors} errors"));
            }
        });
        Self {
            task: Some(task),
            bar,
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.bar.finish_and_clear();
    }
}
