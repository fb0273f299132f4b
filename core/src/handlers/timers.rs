//! Time: every input brings `now`; `Tick` says a timer is due, `WakeAt(t)`
//! asks for the next one; and the scheduler's decisions.
//!
//! - Pulls from a remote we dialed: every `pull_min` while it has changes,
//!   doubling up to `pull_max` while idle, skipped when it pushed to us within
//!   the interval (its data is arriving anyway).
//! - Reconnects: `base * 2^attempt`, capped, with jitter in [delay/2, delay]
//!   drawn from the seeded generator kept in the model.

use crate::effects::Effects;
use crate::ids::{PeerId, RemoteAddr};
use crate::io::{Cmd, Millis};
use crate::model::{Model, Timer};

/// SplitMix64: small, good enough for jitter, and its state lives in the model.
pub(crate) fn next_random(model: &mut Model) -> u64 {
    model.rng = model.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = model.rng;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The reconnect delay before attempt number `attempt` (1-based), with jitter.
pub(crate) fn backoff(model: &mut Model, attempt: u32) -> Millis {
    let t = &model.config.timing;
    let exp = attempt.saturating_sub(1).min(32);
    let delay = t
        .backoff_base_ms
        .saturating_mul(1u64 << exp)
        .min(t.backoff_max_ms)
        .max(1);
    let half = delay / 2;
    half + next_random(model) % (delay - half + 1)
}

/// The next pull interval: short after changes, doubling while idle.
pub(crate) fn next_interval(
    current: Millis,
    found_changes: bool,
    min: Millis,
    max: Millis,
) -> Millis {
    if found_changes || current == 0 {
        min
    } else {
        current.saturating_mul(2).clamp(min, max.max(min))
    }
}

pub(crate) fn set(model: &mut Model, timer: Timer, at: Millis) {
    if let Some(old) = model.timer_at.insert(timer.clone(), at) {
        model.timers.remove(&(old, timer.clone()));
    }
    model.timers.insert((at, timer));
}

pub(crate) fn cancel(model: &mut Model, timer: &Timer) {
    if let Some(at) = model.timer_at.remove(timer) {
        model.timers.remove(&(at, timer.clone()));
    }
}

pub(crate) fn schedule_reconnect(model: &mut Model, addr: &RemoteAddr) {
    let (attempt, asked) = match model.remotes.get_mut(addr) {
        Some(r) => {
            r.attempt = r.attempt.saturating_add(1);
            (r.attempt, r.retry_after.take())
        }
        None => return,
    };
    // A server that went away said when to come back: no backoff then.
    let delay = match asked {
        Some(ms) => ms,
        None => backoff(model, attempt),
    };
    let at = model.now.saturating_add(delay);
    set(model, Timer::Reconnect(addr.clone()), at);
}

/// A `changes` answer arrived from a peer: adapt its pull interval.
pub(crate) fn pulled(model: &mut Model, peer: &PeerId, found: bool) {
    let (min, max) = (
        model.config.timing.pull_min_ms,
        model.config.timing.pull_max_ms,
    );
    if let Some(p) = model.peers.get_mut(peer) {
        p.pull_interval = next_interval(p.pull_interval, found, min, max);
    }
}

/// Makes sure a sweep is scheduled while anything may time out.
pub(crate) fn ensure_sweep(model: &mut Model) {
    if !model.timer_at.contains_key(&Timer::Sweep) {
        let t = &model.config.timing;
        let every = t
            .ack_timeout_ms
            .min(t.handshake_timeout_ms)
            .min(t.request_timeout_ms)
            .max(2)
            / 2;
        let at = model.now.saturating_add(every);
        set(model, Timer::Sweep, at);
    }
}

/// Emits `WakeAt` when the earliest timer changed.
pub(crate) fn refresh_wake(model: &mut Model, out: &mut Effects) {
    let next = model.timers.get_min().map(|(at, _)| *at);
    if next != model.wake_at {
        model.wake_at = next;
        if let Some(at) = next {
            out.cmd(Cmd::WakeAt(at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Config;

    #[test]
    fn backoff_grows_is_capped_and_jittered_deterministically() {
        let mut a = Model::new(Config::new("a"));
        let mut b = Model::new(Config::new("a"));
        let da: Vec<Millis> = (1..=12).map(|n| backoff(&mut a, n)).collect();
        let db: Vec<Millis> = (1..=12).map(|n| backoff(&mut b, n)).collect();
        assert_eq!(da, db, "same seed, same delays");
        for (i, d) in da.iter().enumerate() {
            let full = (500u64 << i).min(60_000);
            assert!(
                *d >= full / 2 && *d <= full,
                "attempt {}: {d} not in [{}, {full}]",
                i + 1,
                full / 2
            );
        }
    }

    #[test]
    fn pull_interval_shortens_when_active_and_doubles_when_idle() {
        assert_eq!(next_interval(0, false, 1000, 60_000), 1000);
        assert_eq!(next_interval(1000, false, 1000, 60_000), 2000);
        assert_eq!(next_interval(32_000, false, 1000, 60_000), 60_000);
        assert_eq!(next_interval(60_000, true, 1000, 60_000), 1000);
    }
}
