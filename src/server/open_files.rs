//! The process's limit on open files, raised at start to what `MAX_CONNECTIONS` needs.
//!
//! Below it, accepting fails before the connection limit is reached, so nothing is evicted and new
//! clients wait in the backlog behind silent connections: the lockout the limit prevents. A
//! container's soft limit can be as low as 1,024 under a far higher hard limit, up to which any
//! process may raise its own (Go's runtime does so for every program).

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Raises the soft limit on open files to `needed` (at most to the hard limit) if it is lower, and
/// warns, naming `MAX_CONNECTIONS`, if the hard limit is lower too. Returns the soft limit now
/// (`None`: unlimited).
pub(crate) fn raise(needed: u64, max_connections: u32) -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    // `None` is unlimited.
    if limit.current.is_none_or(|current| current >= needed) {
        return limit.current;
    }
    let raised = limit.maximum.map_or(needed, |maximum| maximum.min(needed));
    let new = Rlimit {
        current: Some(raised),
        maximum: limit.maximum,
    };
    if let Err(error) = setrlimit(Resource::Nofile, new) {
        tracing::warn!("cannot raise the open-file limit to {raised}: {error}");
        return limit.current;
    }
    if raised < needed {
        tracing::warn!(
            "MAX_CONNECTIONS={max_connections} needs {needed} open files, but this process may open \
             {raised} (ulimit -Hn): past that, accepting fails and new clients wait in the backlog \
             instead of evicting idle connections; lower MAX_CONNECTIONS or raise the limit"
        );
    } else {
        tracing::info!(
            "raised the open-file limit from {} to {raised} for MAX_CONNECTIONS={max_connections}",
            limit.current.unwrap_or_default()
        );
    }
    Some(raised)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Changes this test process's own limit, and puts it back.
    #[test]
    fn the_soft_limit_is_raised_to_what_is_needed_and_no_further_than_the_hard_one() {
        let before = getrlimit(Resource::Nofile);
        let (Some(current), Some(maximum)) = (before.current, before.maximum) else {
            panic!("this test needs finite limits, found {before:?}");
        };
        assert!(current > 64, "{before:?}");
        let lower = current - 16;
        let set = |current| {
            setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(current),
                    maximum: Some(maximum),
                },
            )
            .unwrap();
        };
        set(lower);
        // Enough already: unchanged.
        assert_eq!(raise(lower - 1, 1), Some(lower));
        assert_eq!(raise(lower, 1), Some(lower));
        assert_eq!(getrlimit(Resource::Nofile).current, Some(lower));
        // Short: raised to exactly what is needed.
        assert_eq!(raise(lower + 8, 1), Some(lower + 8));
        assert_eq!(getrlimit(Resource::Nofile).current, Some(lower + 8));
        // More than the hard limit allows: raised to it.
        assert_eq!(raise(maximum + 1, 1), Some(maximum));
        assert_eq!(getrlimit(Resource::Nofile).current, Some(maximum));
        set(current);
    }
}
