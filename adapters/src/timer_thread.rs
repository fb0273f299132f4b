//! Timers kept by a thread of their own instead of the I/O reactor: the
//! node's loop, links' keepalives and idle limits, and Loro sessions'
//! ticks use them.
//!
//! - **The reactor stays with the executor.** `async-io` lets whichever
//!   thread waits on it keep its reactor, and hands it to a thread of its
//!   own when an event wakes none of the waiting thread's tasks. A timer of
//!   the node's loop (another thread) was such an event: after it, every
//!   ping from every client crossed from that thread to the executor's,
//!   a wake-up and a context switch each. With the timers here, the
//!   reactor sees sockets only (S9, 40 idle seconds with 19,800
//!   connections: 24% fewer context switches, 28% fewer futex calls).
//! - **Moving a timer costs a lock, not a system call.** The node's loop
//!   waited on a new reactor timer for every input, and each new reactor
//!   timer writes to the reactor's wake-up descriptor. Here a timer that is
//!   set again to the same instant costs nothing, and a moved one an entry
//!   in a sorted map; the thread is woken only by an entry earlier than the
//!   instant it sleeps until.
//!
//! The thread sleeps until the earliest entry is due (links and sessions
//! put their periodic deadlines on a shared grid, so thousands come due
//! together) and wakes the tasks of all that are due at once. 3,000 idle
//! loro-websocket clients, 30 s: 1,310 ms of CPU before (each session made
//! a reactor timer for every input and every tick), 593 ms after.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Far enough to be never, near enough for any `Instant` (as `later` says).
const FOREVER: Duration = Duration::from_secs(1 << 30);

/// `t + d`, or as late as can be said when that overflows (a timer of
/// `Duration::MAX` never fires, as `Timer::after` would have it).
pub fn later(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(FOREVER))
        .unwrap_or(t)
}

/// The process's grid of instants (counted from its first use, moved on
/// by `phase`): timers of thousands of connections put on it fire
/// together, one wake-up of this thread and of the executor for all that
/// are due, instead of one each.
fn grid(t: Instant, tick: Duration, phase: Duration) -> (Instant, u128, u128) {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let tick = tick.as_nanos().max(1);
    // Taken modulo the tick: a phase of a whole tick is the same grid. (A
    // remainder fits in a u64 of nanoseconds for any tick under 584 years.)
    let phase = u64::try_from(phase.as_nanos() % tick).unwrap_or(0);
    let epoch = later(
        *EPOCH.get_or_init(Instant::now),
        Duration::from_nanos(phase),
    );
    (epoch, t.saturating_duration_since(epoch).as_nanos(), tick)
}

/// `t`, rounded up to the next multiple of `tick` on the process's grid
/// (the pair of [`round_down`]; a link's timers use [`round_up_in_phase`]).
pub fn round_up(t: Instant, tick: Duration) -> Instant {
    round_up_in_phase(t, tick, Duration::ZERO)
}

/// `t`, rounded up to the next instant of the process's grid of `tick`
/// moved on by `phase`, taken modulo `tick` (see `WsOptions::timer_phase`).
/// An instant before the grid's start (the process's first use of it, plus
/// the phase) gives that start.
pub fn round_up_in_phase(t: Instant, tick: Duration, phase: Duration) -> Instant {
    let (epoch, since, tick) = grid(t, tick, phase);
    let at = u64::try_from(since.div_ceil(tick).saturating_mul(tick)).unwrap_or(u64::MAX);
    later(epoch, Duration::from_nanos(at)).max(t)
}

/// `t`, rounded down to a multiple of `tick` on the process's grid (never
/// after `t`; `t` itself if it comes before the grid's start).
pub fn round_down(t: Instant, tick: Duration) -> Instant {
    let (epoch, since, tick) = grid(t, tick, Duration::ZERO);
    let at = u64::try_from(since / tick * tick).unwrap_or(u64::MAX);
    later(epoch, Duration::from_nanos(at)).min(t)
}

/// The timers of one process (or of one test), and the thread that fires
/// them. Made only with its thread ([`TimerThread::start`]).
#[derive(Debug)]
pub struct TimerThread {
    state: Mutex<Due>,
    /// Told when an entry earlier than every other arrives.
    earlier: Condvar,
}

/// The timers waiting, by when they are due.
#[derive(Debug)]
struct Due {
    entries: BTreeMap<(Instant, u64), Waker>,
    /// Tells apart timers due at the same instant.
    next_id: u64,
    /// When the thread wakes by itself, while it sleeps (`FOREVER` with
    /// nothing waiting); `None` while it is awake, and once told to wake:
    /// it looks at the map again before it sleeps.
    asleep_until: Option<Instant>,
}

impl TimerThread {
    /// The process's timers, their thread started on first use; `None` if the
    /// thread cannot be started (timers then use the reactor, as before).
    pub fn global() -> Option<&'static TimerThread> {
        static GLOBAL: OnceLock<Option<&'static TimerThread>> = OnceLock::new();
        *GLOBAL.get_or_init(|| match TimerThread::start() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!("timers: no thread of their own ({e}); the reactor keeps them");
                None
            }
        })
    }

    /// A new set of timers with its thread (kept for the process's life).
    pub fn start() -> std::io::Result<&'static TimerThread> {
        let timers: &'static TimerThread = Box::leak(Box::new(TimerThread {
            state: Mutex::new(Due {
                entries: BTreeMap::new(),
                next_id: 0,
                asleep_until: None,
            }),
            earlier: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("docweave-timers".into())
            .spawn(move || timers.run())?;
        Ok(timers)
    }

    /// The lock. Nothing that can panic runs under it (map operations and
    /// clones of wakers; wakers are woken and dropped outside it), so a
    /// poisoned lock still holds a whole map.
    fn lock(&self) -> MutexGuard<'_, Due> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes what is due, then sleeps until the next is due or an earlier
    /// one arrives; forever.
    fn run(&self) {
        let mut due = self.lock();
        loop {
            let now = Instant::now();
            let mut woken = Vec::new();
            while let Some(entry) = due.entries.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                woken.push(entry.remove());
            }
            if !woken.is_empty() {
                // Wakers run outside the lock: a task woken may move its
                // timer at once.
                drop(due);
                for waker in woken {
                    // A waker that panics (a bug in an executor) must not
                    // take every other timer of the process with it.
                    let wake = std::panic::AssertUnwindSafe(|| waker.wake());
                    if std::panic::catch_unwind(wake).is_err() {
                        tracing::error!("timers: a task's waker panicked; its timer is lost");
                    }
                }
                due = self.lock();
                continue;
            }
            let next = due.entries.first_key_value().map(|(k, _)| k.0);
            due.asleep_until = Some(next.unwrap_or_else(|| later(now, FOREVER)));
            due = match next {
                Some(at) => {
                    let wait = at.saturating_duration_since(now);
                    self.earlier
                        .wait_timeout(due, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .earlier
                    .wait(due)
                    .unwrap_or_else(PoisonError::into_inner),
            };
            due.asleep_until = None;
        }
    }

    /// Enters a timer due `at`, woken with `waker`, in place of the one
    /// entered as `old` (if it has not fired); says its key. The thread is
    /// woken only if it sleeps until later than `at`.
    fn enter(&self, old: Option<(Instant, u64)>, at: Instant, waker: &Waker) -> (Instant, u64) {
        let mut due = self.lock();
        let replaced = old.and_then(|key| due.entries.remove(&key));
        let id = due.next_id;
        due.next_id = due.next_id.wrapping_add(1);
        due.entries.insert((at, id), waker.clone());
        let wake = due.asleep_until.is_some_and(|until| at < until);
        if wake {
            // Told once: it looks at the whole map before it sleeps again.
            due.asleep_until = None;
        }
        drop(due);
        drop(replaced);
        if wake {
            self.earlier.notify_one();
        }
        (at, id)
    }

    /// Takes out the timer entered as `key` (nothing if it fired).
    fn leave(&self, key: (Instant, u64)) {
        let removed = self.lock().entries.remove(&key);
        // Dropped outside the lock, as every waker is.
        drop(removed);
    }

    /// How many timers wait (for tests).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().entries.len()
    }
}

/// A timer on a [`TimerThread`] (or on the reactor, where the process's
/// thread could not be started). Like `smol::Timer::at`, it is ready once when due, then
/// pending until it is set again.
#[derive(Debug)]
pub struct ThreadTimer {
    kept: Kept,
    /// When it is due; `None` once it fired.
    at: Option<Instant>,
}

#[derive(Debug)]
enum Kept {
    Thread {
        thread: &'static TimerThread,
        /// Where it waits on the thread's map, and with which waker.
        entered: Option<((Instant, u64), Waker)>,
    },
    Reactor(smol::Timer),
}

impl ThreadTimer {
    /// A timer due `at` on the process's [`TimerThread`].
    pub fn at(at: Instant) -> Self {
        match TimerThread::global() {
            Some(thread) => ThreadTimer::on(thread, at),
            None => ThreadTimer {
                kept: Kept::Reactor(smol::Timer::at(at)),
                at: Some(at),
            },
        }
    }

    /// A timer due `at` on `thread`.
    pub fn on(thread: &'static TimerThread, at: Instant) -> Self {
        ThreadTimer {
            kept: Kept::Thread {
                thread,
                entered: None,
            },
            at: Some(at),
        }
    }

    /// Due `at` from now on (and pending until then, even if it fired).
    /// Unlike `smol::Timer::set_at`, the move takes effect at the timer's
    /// next poll: a timer moved earlier must be polled again.
    pub fn set_at(&mut self, at: Instant) {
        self.at = Some(at);
        if let Kept::Reactor(t) = &mut self.kept {
            t.set_at(at);
        }
    }
}

impl Future for ThreadTimer {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(at) = this.at else {
            return Poll::Pending;
        };
        let (thread, entered) = match &mut this.kept {
            Kept::Reactor(t) => {
                return match Pin::new(t).poll(cx) {
                    Poll::Ready(_) => {
                        this.at = None;
                        Poll::Ready(())
                    }
                    Poll::Pending => Poll::Pending,
                };
            }
            Kept::Thread { thread, entered } => (*thread, entered),
        };
        if Instant::now() >= at {
            if let Some((key, _)) = entered.take() {
                thread.leave(key);
            }
            this.at = None;
            return Poll::Ready(());
        }
        match entered {
            Some((key, waker)) if key.0 == at && waker.will_wake(cx.waker()) => {}
            _ => {
                let old = entered.take().map(|(key, _)| key);
                *entered = Some((thread.enter(old, at, cx.waker()), cx.waker().clone()));
            }
        }
        Poll::Pending
    }
}

impl Drop for ThreadTimer {
    fn drop(&mut self) {
        // A closed link's task must not stay reachable from the thread
        // until its timer would have fired.
        if let Kept::Thread {
            thread,
            entered: Some((key, _)),
        } = &self.kept
        {
            thread.leave(*key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timers() -> &'static TimerThread {
        TimerThread::start().unwrap()
    }

    /// Waits for `f`, for at most 10 s: a timer that never fires fails the
    /// test instead of hanging it. (The limit is polled first: a woken
    /// `ThreadTimer` is ready whenever its time has passed, woken or not.)
    fn wait<T>(f: impl Future<Output = T>) -> T {
        smol::block_on(futures_lite::future::or(
            async {
                smol::Timer::after(Duration::from_secs(10)).await;
                panic!("not done in 10 s");
            },
            f,
        ))
    }

    #[test]
    fn instants_within_one_tick_round_to_the_same_instant_on_either_side() {
        let tick = Duration::from_millis(1000);
        let t = Instant::now() + Duration::from_millis(2500);
        let (down, up) = (round_down(t, tick), round_up(t, tick));
        assert!(down <= t && t <= up);
        assert!(t - down < tick && up - t < tick);
        assert_eq!(up - down, tick, "{t:?} lies on the grid");
        // Every instant in [down, up) shares both roundings.
        for ms in [0u64, 1, 400, 999] {
            let u = down + Duration::from_millis(ms);
            assert_eq!(round_down(u, tick), down);
            if ms > 0 {
                assert_eq!(round_up(u, tick), up);
            }
        }
        assert_eq!(round_up(down, tick), down, "an instant on the grid stays");
    }

    #[test]
    fn a_phase_moves_the_grid_by_that_much_and_no_more_than_a_tick() {
        let tick = Duration::from_millis(1000);
        let t = Instant::now() + Duration::from_millis(2500);
        let on_grid = round_up(t, tick);
        let phase = Duration::from_millis(300);
        let moved = round_up_in_phase(on_grid, tick, phase);
        assert_eq!(moved - on_grid, phase, "the next instant of the moved grid");
        assert_eq!(
            round_up_in_phase(moved, tick, phase),
            moved,
            "it is on that grid"
        );
        // Between two instants of the moved grid: the later one.
        let between = on_grid + Duration::from_millis(500);
        assert_eq!(
            round_up_in_phase(between, tick, phase),
            on_grid + tick + phase
        );
        // A phase counts modulo the tick: 1,000.3 s is the grid 0.3 s is
        // (taken whole, it would put every instant a quarter hour away).
        let far = tick * 1000 + phase;
        assert_eq!(
            round_up_in_phase(t, tick, far),
            round_up_in_phase(t, tick, phase)
        );
        assert_eq!(
            round_up_in_phase(t, tick, tick),
            on_grid,
            "a whole tick is no phase"
        );
        // On a finer grid too (tests' links tick in milliseconds).
        let fine = Duration::from_millis(8);
        let u = round_up(t, fine);
        let moved = round_up_in_phase(u, fine, Duration::from_millis(3));
        assert_eq!(moved - u, Duration::from_millis(3));
    }

    #[test]
    fn a_timer_fires_once_when_due_and_not_before() {
        let w = timers();
        let start = Instant::now();
        let mut t = ThreadTimer::on(w, start + Duration::from_millis(50));
        wait(&mut t);
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert_eq!(w.waiting(), 0);
        // Fired: pending until set again.
        let again = smol::block_on(futures_lite::future::or(
            async {
                (&mut t).await;
                true
            },
            async {
                smol::Timer::after(Duration::from_millis(80)).await;
                false
            },
        ));
        assert!(!again, "a fired timer fired again without being set");
        let before = Instant::now();
        t.set_at(before + Duration::from_millis(30));
        wait(&mut t);
        assert!(before.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn timers_fire_in_the_order_they_are_due_whenever_they_were_set() {
        let w = timers();
        let start = Instant::now();
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        // Set latest first (an earlier one waking the sleeping thread is
        // the next test's). 200 ms ahead, so that a busy executor has
        // polled them all before the first is due.
        let tasks: Vec<_> = [320u64, 280, 240, 210]
            .into_iter()
            .map(|ms| {
                let order = order.clone();
                smol::spawn(async move {
                    let due = start + Duration::from_millis(ms);
                    ThreadTimer::on(w, due).await;
                    assert!(Instant::now() >= due, "fired before it was due");
                    order.lock().unwrap().push(ms);
                })
            })
            .collect();
        wait(async {
            for t in tasks {
                t.await;
            }
        });
        assert_eq!(*order.lock().unwrap(), vec![210, 240, 280, 320]);
        assert_eq!(w.waiting(), 0);
    }

    #[test]
    fn an_earlier_timer_wakes_a_thread_asleep_until_a_later_one() {
        let w = timers();
        let mut late = ThreadTimer::on(w, Instant::now() + Duration::from_secs(3600));
        assert!(smol::block_on(futures_lite::future::poll_once(&mut late)).is_none());
        // Let the thread go to sleep until the late one.
        std::thread::sleep(Duration::from_millis(20));
        // `wait` fails the test if it has not fired after 10 s.
        wait(ThreadTimer::on(
            w,
            Instant::now() + Duration::from_millis(10),
        ));
    }

    #[test]
    fn a_dropped_or_moved_timer_leaves_nothing_behind() {
        let w = timers();
        let far = Instant::now() + Duration::from_secs(3600);
        let mut t = ThreadTimer::on(w, far);
        // Polled once: entered.
        let polled = smol::block_on(futures_lite::future::poll_once(&mut t));
        assert!(polled.is_none());
        assert_eq!(w.waiting(), 1);
        // Moved: the old entry goes when it is entered anew.
        t.set_at(far + Duration::from_secs(1));
        assert!(smol::block_on(futures_lite::future::poll_once(&mut t)).is_none());
        assert_eq!(w.waiting(), 1);
        drop(t);
        assert_eq!(w.waiting(), 0);
    }
}
