//! The database faults of one request: set by the fault layer around the route, read by each
//! statement the route runs (`db::query::Runner`), through a task-local, so that the database code
//! needs no request to find them and the seed's routes never pay for them.

use std::time::Duration;

/// What the flags ask of this request's statements; each names its flag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbFaults {
    /// The statements fail.
    pub fail: Option<String>,
    /// The statements take this much longer, at the server.
    pub slow: Option<(Duration, String)>,
    /// The statements' connections stay taken this long after they ran.
    pub hold: Option<(Duration, String)>,
}

impl DbFaults {
    pub fn is_empty(&self) -> bool {
        self.fail.is_none() && self.slow.is_none() && self.hold.is_none()
    }

    /// The flags that act, comma-separated: the query span's `fault.injected`.
    pub fn flags(&self) -> String {
        let slow = self.slow.as_ref().map(|(_, flag)| flag);
        let hold = self.hold.as_ref().map(|(_, flag)| flag);
        [self.fail.as_ref(), slow, hold]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(",")
    }
}

tokio::task_local! {
    static DB_FAULTS: DbFaults;
}

/// Runs `future` with `faults` for its statements.
pub async fn scope<F: Future>(faults: DbFaults, future: F) -> F::Output {
    DB_FAULTS.scope(faults, future).await
}

/// The faults of the request being served, if any.
pub fn current() -> Option<DbFaults> {
    DB_FAULTS.try_with(Clone::clone).ok()
}
