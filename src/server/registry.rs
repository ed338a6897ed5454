//! The open connections: at most `MAX_CONNECTIONS` of them, and among them the ones waiting for a
//! request head, in the order they began waiting, so that a new connection past the limit takes the
//! place of the one that has waited longest instead of waiting behind it (docs/service.md, "Under
//! attack and overload"). The newcomer is served at once; the evicted connection closes when the
//! runtime next runs its task, and a few of those (`EVICTED_CLOSING_AT_MOST` in `server.rs`) may
//! still be closing beside the limit.
//!
//! A connection waits from its accept, and again from the end of each response, until its next
//! request head has arrived ([`Connection::begin_request`], when hyper calls the service): a silent
//! or trickling client and an idle keep-alive connection all wait; a connection with a request in
//! flight never does, so it is never evicted. One mutex guards the table: a request takes it twice,
//! uncontended, for a few list operations; an eviction is O(1) (a slab of entries, the waiting ones
//! linked oldest to newest).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use slab::Slab;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// The table of open connections, shared by the accept loop and every connection.
pub(crate) struct Registry {
    table: Mutex<Table>,
    /// Wakes the accept loop when it waits for room and may find some: a connection closed, or one
    /// began waiting for a head (and so can be evicted).
    room: Notify,
}

/// What the accept loop learns when it asks for room for a new connection.
pub(crate) enum Admission {
    /// The new connection's place (give it the task that serves it: [`Connection::served_by`]).
    /// `evicted`: it took the place of the connection that had waited longest for a head, which
    /// was told to close.
    Admitted {
        connection: Connection,
        evicted: bool,
    },
    /// At the limit with nothing to evict: every connection is busy serving a request, or
    /// as many evicted ones as may be are still closing. Wait for [`Registry::room`].
    Wait,
}

struct Table {
    limit: usize,
    entries: Slab<Entry>,
    /// The waiting list's ends: the connection that has waited longest, and the latest to begin.
    oldest: Option<usize>,
    newest: Option<usize>,
    /// Evicted, not closed yet (open beside the limit), and how many may be.
    closing: usize,
    closing_at_most: usize,
    /// The accept loop waits for room: only then do closes and new waiters wake it.
    acceptor_waits: bool,
}

struct Entry {
    state: State,
    /// Neighbours in the waiting list (meaningful while `Waiting`).
    older: Option<usize>,
    newer: Option<usize>,
    /// The task serving the connection: aborting it drops the connection, which closes it.
    task: Option<AbortHandle>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a request head: in the waiting list, evictable.
    Waiting,
    /// A request in flight, from its head to the end of its response body.
    Busy,
    /// Told to close; it no longer takes requests.
    Evicted,
}

impl Registry {
    /// Room for `limit` connections, and `closing_at_most` evicted ones closing beside them.
    pub(crate) fn new(limit: usize, closing_at_most: usize) -> Arc<Self> {
        Arc::new(Self {
            table: Mutex::new(Table {
                limit,
                entries: Slab::new(),
                oldest: None,
                newest: None,
                closing: 0,
                closing_at_most,
                acceptor_waits: false,
            }),
            room: Notify::new(),
        })
    }

    /// Room for a connection just accepted: its place if there is one; past the limit, the place of
    /// the connection that has waited longest for a head, which is evicted.
    pub(crate) fn admit(self: &Arc<Self>) -> Admission {
        let mut table = self.lock();
        let evicted = if table.entries.len() - table.closing < table.limit {
            false
        } else if table.closing < table.closing_at_most
            && let Some(key) = table.pop_oldest()
        {
            table.evict(key);
            true
        } else {
            table.acceptor_waits = true;
            return Admission::Wait;
        };
        table.acceptor_waits = false;
        let key = table.entries.insert(Entry {
            state: State::Busy,
            older: None,
            newer: None,
            task: None,
        });
        table.push_newest(key);
        Admission::Admitted {
            connection: Connection {
                registry: self.clone(),
                key,
            },
            evicted,
        }
    }

    /// Completes when [`Self::admit`] may find room (call it again: it can still be short of it).
    pub(crate) async fn room(&self) {
        self.room.notified().await;
    }

    /// Evicts every connection waiting for a head (the server is stopping: none of them has a
    /// request to finish). Returns how many.
    pub(crate) fn evict_waiting(&self) -> usize {
        let mut table = self.lock();
        let mut evicted = 0;
        while let Some(key) = table.pop_oldest() {
            table.evict(key);
            evicted += 1;
        }
        evicted
    }

    /// The table, also after a panic elsewhere while it was held (no code here panics with it held,
    /// and every update leaves it whole).
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Table {
    /// Appends `key` to the waiting list as its newest.
    fn push_newest(&mut self, key: usize) {
        let newest = self.newest.replace(key);
        let entry = &mut self.entries[key];
        entry.state = State::Waiting;
        entry.older = newest;
        entry.newer = None;
        match newest {
            Some(previous) => self.entries[previous].newer = Some(key),
            None => self.oldest = Some(key),
        }
    }

    /// Takes `key` (waiting) out of the waiting list.
    fn unlink(&mut self, key: usize) {
        let Entry { older, newer, .. } = self.entries[key];
        match older {
            Some(older) => self.entries[older].newer = newer,
            None => self.oldest = newer,
        }
        match newer {
            Some(newer) => self.entries[newer].older = older,
            None => self.newest = older,
        }
    }

    /// Takes the connection that has waited longest out of the waiting list.
    fn pop_oldest(&mut self) -> Option<usize> {
        let key = self.oldest?;
        self.unlink(key);
        Some(key)
    }

    /// Closes `key`'s connection (already out of the waiting list): its task is aborted, which
    /// drops the connection, with no answer.
    fn evict(&mut self, key: usize) {
        let entry = &mut self.entries[key];
        entry.state = State::Evicted;
        if let Some(task) = &entry.task {
            task.abort();
        }
        self.closing += 1;
    }
}

/// One open connection's place in the registry; dropping it (when the connection has closed) frees
/// the place.
pub(crate) struct Connection {
    registry: Arc<Registry>,
    key: usize,
}

impl Connection {
    /// The task that serves this connection, aborted if it is evicted (at once if it already was).
    pub(crate) fn served_by(&self, task: AbortHandle) {
        let mut table = self.registry.lock();
        let entry = &mut table.entries[self.key];
        if entry.state == State::Evicted {
            task.abort();
        }
        entry.task = Some(task);
    }

    /// A request head has arrived: the connection is busy until [`Self::end_request`]. False if it
    /// was evicted first (it is closing: the request is not to be served).
    pub(crate) fn begin_request(&self) -> bool {
        let mut table = self.registry.lock();
        let entry = &mut table.entries[self.key];
        if entry.state == State::Evicted {
            return false;
        }
        // Waiting: hyper serves a connection's requests one at a time.
        debug_assert_eq!(entry.state, State::Waiting);
        entry.state = State::Busy;
        table.unlink(self.key);
        true
    }

    /// The response has been sent: the connection waits for its next request head, as the newest.
    pub(crate) fn end_request(&self) {
        let mut table = self.registry.lock();
        debug_assert_eq!(table.entries[self.key].state, State::Busy);
        table.push_newest(self.key);
        if table.acceptor_waits {
            self.registry.room.notify_one();
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let mut table = self.registry.lock();
        match table.entries[self.key].state {
            State::Waiting => table.unlink(self.key),
            State::Evicted => table.closing -= 1,
            State::Busy => {}
        }
        table.entries.remove(self.key);
        if table.acceptor_waits {
            self.registry.room.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Waker};

    use tokio::task::JoinHandle;

    use super::*;

    /// A task standing in for the one that serves `connection`.
    fn serve(connection: &Connection) -> JoinHandle<()> {
        let task = tokio::spawn(std::future::pending());
        connection.served_by(task.abort_handle());
        task
    }

    /// A newcomer: its connection and task, and whether it evicted one; None if it must wait.
    fn arrive(registry: &Arc<Registry>) -> Option<(Connection, JoinHandle<()>, bool)> {
        match registry.admit() {
            Admission::Admitted {
                connection,
                evicted,
            } => {
                let task = serve(&connection);
                Some((connection, task, evicted))
            }
            Admission::Wait => None,
        }
    }

    /// A newcomer under the limit.
    fn admitted(registry: &Arc<Registry>) -> (Connection, JoinHandle<()>) {
        match arrive(registry) {
            Some((connection, task, false)) => (connection, task),
            Some((.., true)) => panic!("evicted one under the limit"),
            None => panic!("no room"),
        }
    }

    /// A newcomer past the limit, which evicts one.
    fn evicting(registry: &Arc<Registry>) -> (Connection, JoinHandle<()>) {
        match arrive(registry) {
            Some((connection, task, true)) => (connection, task),
            Some((.., false)) => panic!("admitted past the limit"),
            None => panic!("waits: nothing evicted"),
        }
    }

    fn waits(registry: &Arc<Registry>) -> bool {
        matches!(registry.admit(), Admission::Wait)
    }

    /// Whether the connection's task was aborted (once the runtime has had a turn to end it).
    async fn evicted(task: &JoinHandle<()>) -> bool {
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        task.is_finished()
    }

    fn ready(future: impl Future) -> bool {
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        future.as_mut().poll(&mut cx).is_ready()
    }

    #[tokio::test]
    async fn past_the_limit_a_newcomer_takes_the_place_of_the_connection_that_waited_longest() {
        let registry = Registry::new(2, 1);
        let (_a, a) = admitted(&registry);
        let (_b, b) = admitted(&registry);
        let (_c, c) = evicting(&registry);
        assert!(evicted(&a).await, "the first to wait");
        assert!(!evicted(&b).await && !evicted(&c).await);
    }

    #[tokio::test]
    async fn a_connection_with_a_request_in_flight_is_never_evicted() {
        let registry = Registry::new(3, 3);
        let (a, a_task) = admitted(&registry);
        let (_b, b_task) = admitted(&registry);
        let (c, c_task) = admitted(&registry);
        assert!(a.begin_request());
        // b waited longest of those waiting.
        let (_d, d_task) = evicting(&registry);
        assert!(!evicted(&a_task).await && evicted(&b_task).await);
        // c waits again from the end of its response: now after d.
        assert!(c.begin_request());
        c.end_request();
        let (_e, e_task) = evicting(&registry);
        assert!(evicted(&d_task).await && !evicted(&c_task).await);
        let (_f, f_task) = evicting(&registry);
        assert!(evicted(&c_task).await && !evicted(&e_task).await && !evicted(&f_task).await);
        assert!(!evicted(&a_task).await, "a's request is still in flight");
    }

    #[tokio::test]
    async fn an_evicted_connection_serves_no_more_requests() {
        let registry = Registry::new(1, 1);
        let (a, _a_task) = admitted(&registry);
        let _b = evicting(&registry);
        assert!(!a.begin_request());
    }

    #[tokio::test]
    async fn a_connection_evicted_before_its_task_is_known_has_it_aborted_at_once() {
        let registry = Registry::new(1, 1);
        let Admission::Admitted { connection: a, .. } = registry.admit() else {
            panic!("no room");
        };
        let _b = evicting(&registry);
        let task = serve(&a);
        assert!(evicted(&task).await);
    }

    #[tokio::test]
    async fn evicted_connections_still_closing_are_bounded_and_then_a_newcomer_waits() {
        let registry = Registry::new(2, 2);
        let (a, _) = admitted(&registry);
        let (b, _) = admitted(&registry);
        let (_c, c_task) = evicting(&registry);
        let (_d, d_task) = evicting(&registry);
        // a and b are still closing: 4 open, the limit plus two closing; the next one waits,
        // though c and d are waiting for a head.
        assert!(waits(&registry));
        assert!(!evicted(&c_task).await && !evicted(&d_task).await);
        drop(a);
        let (_e, _) = evicting(&registry);
        assert!(evicted(&c_task).await && !evicted(&d_task).await);
        drop(b);
        let (_f, _) = evicting(&registry);
        assert!(evicted(&d_task).await);
    }

    #[tokio::test]
    async fn under_the_limit_while_evicted_ones_close_a_newcomer_evicts_no_one() {
        let registry = Registry::new(2, 1);
        let (_a, _) = admitted(&registry);
        let (b, _) = admitted(&registry);
        let (_c, c_task) = evicting(&registry);
        // b closed on its own while a still closes: room under the limit, no eviction.
        drop(b);
        let _d = admitted(&registry);
        assert!(!evicted(&c_task).await);
    }

    #[tokio::test]
    async fn when_every_connection_is_busy_a_newcomer_waits_until_one_finishes() {
        let registry = Registry::new(1, 1);
        let (a, a_task) = admitted(&registry);
        assert!(a.begin_request());
        assert!(waits(&registry), "nothing to evict");
        let room = registry.room();
        let mut room = std::pin::pin!(room);
        assert!(!ready(room.as_mut()));
        a.end_request();
        assert!(ready(room), "the accept loop is woken");
        let _b = evicting(&registry);
        assert!(
            evicted(&a_task).await,
            "the connection now waiting is evicted"
        );
    }

    #[tokio::test]
    async fn a_close_wakes_the_accept_loop_only_when_it_waits_for_room() {
        let registry = Registry::new(1, 1);
        let (a, _) = admitted(&registry);
        drop(a);
        assert!(!ready(registry.room()), "nobody waited: no wake-up");
        let (a, _a_task) = admitted(&registry);
        assert!(a.begin_request());
        a.end_request();
        assert!(!ready(registry.room()), "nobody waited: no wake-up");
        let (b, _) = evicting(&registry);
        assert!(b.begin_request());
        assert!(waits(&registry), "a is closing, b busy");
        drop(a);
        assert!(ready(registry.room()));
        assert!(waits(&registry), "b is still busy");
        b.end_request();
        assert!(ready(registry.room()));
        let _c = evicting(&registry);
    }

    #[tokio::test]
    async fn stopping_evicts_every_waiting_connection_and_no_busy_one() {
        let registry = Registry::new(3, 1);
        let (_a, a_task) = admitted(&registry);
        let (b, b_task) = admitted(&registry);
        let (_c, c_task) = admitted(&registry);
        assert!(b.begin_request());
        assert_eq!(registry.evict_waiting(), 2);
        assert!(evicted(&a_task).await && evicted(&c_task).await);
        assert!(!evicted(&b_task).await);
        assert_eq!(registry.evict_waiting(), 0);
    }

    /// Any sequence of accepts, requests and closes, against a model that keeps the waiting
    /// connections in a plain list: the same one is evicted each time, and the open connections
    /// never pass the limit plus those closing, nor those closing their bound.
    mod model {
        use proptest::prelude::*;

        use super::*;

        #[derive(Debug, Clone)]
        enum Step {
            Accept,
            Begin(usize),
            End(usize),
            Close(usize),
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                Just(Step::Accept),
                any::<usize>().prop_map(Step::Begin),
                any::<usize>().prop_map(Step::End),
                any::<usize>().prop_map(Step::Close),
            ]
        }

        struct Open {
            id: usize,
            connection: Connection,
            task: JoinHandle<()>,
            busy: bool,
            evicted: bool,
        }

        async fn run(
            limit: usize,
            closing_at_most: usize,
            steps: Vec<Step>,
        ) -> Result<(), TestCaseError> {
            let registry = Registry::new(limit, closing_at_most);
            let mut open: Vec<Open> = Vec::new();
            // Ids of the waiting connections, longest waiting first.
            let mut waiting: Vec<usize> = Vec::new();
            let mut next_id = 0;
            for step in steps {
                match step {
                    Step::Accept => {
                        let closing = open.iter().filter(|o| o.evicted).count();
                        let room = open.len() - closing < limit;
                        let evicts = !room && closing < closing_at_most && !waiting.is_empty();
                        match arrive(&registry) {
                            None => prop_assert!(!room && !evicts),
                            Some((connection, task, evicted)) => {
                                prop_assert!(room || evicts);
                                prop_assert_eq!(evicted, evicts);
                                if evicts {
                                    let id = waiting.remove(0);
                                    open.iter_mut().find(|o| o.id == id).unwrap().evicted = true;
                                }
                                open.push(Open {
                                    id: next_id,
                                    connection,
                                    task,
                                    busy: false,
                                    evicted: false,
                                });
                                waiting.push(next_id);
                                next_id += 1;
                            }
                        }
                    }
                    Step::Begin(i) if !open.is_empty() => {
                        let count = open.len();
                        let o = &mut open[i % count];
                        if !o.busy {
                            prop_assert_eq!(o.connection.begin_request(), !o.evicted);
                            if !o.evicted {
                                o.busy = true;
                                waiting.retain(|&id| id != o.id);
                            }
                        }
                    }
                    Step::End(i) if !open.is_empty() => {
                        let count = open.len();
                        let o = &mut open[i % count];
                        if o.busy {
                            o.connection.end_request();
                            o.busy = false;
                            waiting.push(o.id);
                        }
                    }
                    Step::Close(i) if !open.is_empty() => {
                        let count = open.len();
                        let o = open.remove(i % count);
                        waiting.retain(|&id| id != o.id);
                    }
                    _ => {}
                }
                let closing = open.iter().filter(|o| o.evicted).count();
                prop_assert!(closing <= closing_at_most && open.len() <= limit + closing);
                for o in &open {
                    prop_assert_eq!(evicted(&o.task).await, o.evicted);
                }
            }
            Ok(())
        }

        proptest! {
            #[test]
            fn evicts_as_a_list_of_waiting_connections_would(
                limit in 1usize..5,
                closing_at_most in 1usize..4,
                steps in proptest::collection::vec(step(), 1..60),
            ) {
                tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap()
                    .block_on(run(limit, closing_at_most, steps))?;
            }
        }
    }
}
