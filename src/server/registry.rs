//! The open connections: at most `MAX_CONNECTIONS` of them, and among them the ones waiting for a
//! request head, in the order they began waiting, so that a new connection past the limit takes the
//! place of the one that has waited longest instead of waiting behind it (docs/service.md, "Under
//! attack and overload").
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
    /// Under the limit: the new connection's place (give it the task that serves it:
    /// [`Connection::served_by`]).
    Admitted(Connection),
    /// At the limit: wait for [`Registry::room`]. `evicted`: the connection that had waited longest
    /// for a head was told to close to make that room; otherwise every connection is busy serving
    /// a request, or one evicted earlier is still closing.
    Wait { evicted: bool },
}

struct Table {
    limit: usize,
    entries: Slab<Entry>,
    /// The waiting list's ends: the connection that has waited longest, and the latest to begin.
    oldest: Option<usize>,
    newest: Option<usize>,
    /// Evicted, not closed yet: room already on its way, so no second eviction for it.
    closing: usize,
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
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            table: Mutex::new(Table {
                limit,
                entries: Slab::new(),
                oldest: None,
                newest: None,
                closing: 0,
                acceptor_waits: false,
            }),
            room: Notify::new(),
        })
    }

    /// Room for a connection just accepted: its place if there is one; past the limit, evicts the
    /// connection that has waited longest for a head (unless one evicted before is still closing).
    pub(crate) fn admit(self: &Arc<Self>) -> Admission {
        let mut table = self.lock();
        if table.entries.len() < table.limit {
            table.acceptor_waits = false;
            let key = table.entries.insert(Entry {
                state: State::Busy,
                older: None,
                newer: None,
                task: None,
            });
            table.push_newest(key);
            return Admission::Admitted(Connection {
                registry: self.clone(),
                key,
            });
        }
        table.acceptor_waits = true;
        if table.closing > 0 {
            return Admission::Wait { evicted: false };
        }
        let evicted = table.pop_oldest().map(|key| table.evict(key)).is_some();
        Admission::Wait { evicted }
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

    /// A connection admitted, and a task standing in for the one that serves it.
    fn admitted(registry: &Arc<Registry>) -> (Connection, JoinHandle<()>) {
        match registry.admit() {
            Admission::Admitted(connection) => {
                let task = tokio::spawn(std::future::pending());
                connection.served_by(task.abort_handle());
                (connection, task)
            }
            Admission::Wait { evicted } => panic!("no room (evicted: {evicted})"),
        }
    }

    fn wait(registry: &Arc<Registry>) -> bool {
        match registry.admit() {
            Admission::Admitted(..) => panic!("admitted past the limit"),
            Admission::Wait { evicted } => evicted,
        }
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
    async fn past_the_limit_the_connection_that_waited_longest_is_evicted() {
        let registry = Registry::new(2);
        let (_a, a) = admitted(&registry);
        let (_b, b) = admitted(&registry);
        assert!(wait(&registry), "the newcomer evicts one");
        assert!(evicted(&a).await, "the first to wait");
        assert!(!evicted(&b).await);
    }

    #[tokio::test]
    async fn a_connection_with_a_request_in_flight_is_never_evicted() {
        let registry = Registry::new(3);
        let (a, a_task) = admitted(&registry);
        let (b, b_task) = admitted(&registry);
        let (c, c_task) = admitted(&registry);
        assert!(a.begin_request());
        // b waited longest of those waiting.
        assert!(wait(&registry));
        assert!(!evicted(&a_task).await && evicted(&b_task).await);
        drop(b);
        let (d, d_task) = admitted(&registry);
        // c waits again from the end of its response: now after d.
        assert!(c.begin_request());
        c.end_request();
        assert!(wait(&registry));
        assert!(evicted(&d_task).await && !evicted(&c_task).await);
        drop(d);
        let (_e, e_task) = admitted(&registry);
        assert!(wait(&registry));
        assert!(evicted(&c_task).await && !evicted(&e_task).await);
        assert!(!evicted(&a_task).await, "a's request is still in flight");
    }

    #[tokio::test]
    async fn an_evicted_connection_serves_no_more_requests() {
        let registry = Registry::new(1);
        let (a, _a_task) = admitted(&registry);
        assert!(wait(&registry));
        assert!(!a.begin_request());
    }

    #[tokio::test]
    async fn a_connection_evicted_before_its_task_is_known_has_it_aborted_at_once() {
        let registry = Registry::new(1);
        let Admission::Admitted(a) = registry.admit() else {
            panic!("no room");
        };
        assert!(wait(&registry));
        let task = tokio::spawn(std::future::pending::<()>());
        a.served_by(task.abort_handle());
        assert!(evicted(&task).await);
    }

    #[tokio::test]
    async fn one_eviction_per_newcomer_until_the_evicted_connection_has_closed() {
        let registry = Registry::new(2);
        let (a, _a_task) = admitted(&registry);
        let (_b, b_task) = admitted(&registry);
        assert!(wait(&registry));
        // The newcomer asks again before `a` has closed: room is on its way, b stays.
        assert!(!wait(&registry));
        assert!(!evicted(&b_task).await);
        drop(a);
        let _c = admitted(&registry);
        // Closing is done: the next newcomer evicts again.
        assert!(wait(&registry));
        assert!(evicted(&b_task).await);
    }

    #[tokio::test]
    async fn when_every_connection_is_busy_a_newcomer_waits_until_one_finishes() {
        let registry = Registry::new(1);
        let (a, a_task) = admitted(&registry);
        assert!(a.begin_request());
        assert!(!wait(&registry), "nothing to evict");
        let room = registry.room();
        let mut room = std::pin::pin!(room);
        assert!(!ready(room.as_mut()));
        a.end_request();
        assert!(ready(room), "the accept loop is woken");
        assert!(wait(&registry), "and evicts the connection now waiting");
        assert!(evicted(&a_task).await);
    }

    #[tokio::test]
    async fn a_close_wakes_the_accept_loop_only_when_it_waits_for_room() {
        let registry = Registry::new(1);
        let (a, _) = admitted(&registry);
        drop(a);
        assert!(!ready(registry.room()), "nobody waited: no wake-up");
        let (a, _a_task) = admitted(&registry);
        assert!(a.begin_request());
        a.end_request();
        assert!(!ready(registry.room()), "nobody waited: no wake-up");
        assert!(wait(&registry));
        drop(a);
        assert!(ready(registry.room()));
        let _b = admitted(&registry);
    }

    #[tokio::test]
    async fn stopping_evicts_every_waiting_connection_and_no_busy_one() {
        let registry = Registry::new(3);
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
    /// connections in a plain list: the same one is evicted each time, the limit always holds.
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

        async fn run(limit: usize, steps: Vec<Step>) -> Result<(), TestCaseError> {
            let registry = Registry::new(limit);
            let mut open: Vec<Open> = Vec::new();
            // Ids of the waiting connections, longest waiting first.
            let mut waiting: Vec<usize> = Vec::new();
            let mut next_id = 0;
            for step in steps {
                match step {
                    Step::Accept if open.len() < limit => {
                        let (connection, task) = admitted(&registry);
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
                    Step::Accept => {
                        let closing = open.iter().any(|o| o.evicted);
                        let evicts = !closing && !waiting.is_empty();
                        prop_assert_eq!(wait(&registry), evicts);
                        if evicts {
                            let id = waiting.remove(0);
                            open.iter_mut().find(|o| o.id == id).unwrap().evicted = true;
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
                steps in proptest::collection::vec(step(), 1..60),
            ) {
                tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap()
                    .block_on(run(limit, steps))?;
            }
        }
    }
}
