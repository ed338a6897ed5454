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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_fault_makes_the_plan_non_empty_and_names_its_flag_in_order() {
        let ms = Duration::from_millis;
        assert!(DbFaults::default().is_empty());
        assert_eq!(DbFaults::default().flags(), "");
        let fail = DbFaults {
            fail: Some("a".into()),
            ..DbFaults::default()
        };
        let slow = DbFaults {
            slow: Some((ms(1), "b".into())),
            ..DbFaults::default()
        };
        let hold = DbFaults {
            hold: Some((ms(2), "c".into())),
            ..DbFaults::default()
        };
        for (faults, flags) in [(&fail, "a"), (&slow, "b"), (&hold, "c")] {
            assert!(!faults.is_empty(), "{faults:?}");
            assert_eq!(faults.flags(), flags);
        }
        let all = DbFaults {
            fail: fail.fail.clone(),
            slow: slow.slow.clone(),
            hold: hold.hold.clone(),
        };
        assert_eq!(all.flags(), "a,b,c");
    }

    #[tokio::test]
    async fn the_faults_are_those_of_the_scope_and_none_outside_it() {
        assert_eq!(current(), None);
        let faults = DbFaults {
            fail: Some("dbQueryFailure".into()),
            ..DbFaults::default()
        };
        let inside = scope(faults.clone(), async { current() }).await;
        assert_eq!(inside, Some(faults));
        assert_eq!(current(), None);
    }
}
