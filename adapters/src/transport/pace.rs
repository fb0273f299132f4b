//! How fast one connection may be read: a token bucket over the bytes it
//! sends. A client that sends faster is not refused; its connection is
//! simply read more slowly, so TCP's own flow control slows the sender,
//! and the node's time is shared among clients instead of going to
//! whoever writes fastest.

use std::time::{Duration, Instant};

/// Bytes per second one connection may send, and how many it may send at
/// once after a quiet spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundRate {
    /// Sustained bytes per second (0: no limit).
    pub bytes_per_s: u64,
    /// Bytes that may arrive at once before the rate applies.
    pub burst: u64,
}

impl Default for InboundRate {
    /// 32 MiB/s with bursts of 64 MiB: a 200 MB document uploads in a few
    /// seconds, while one client cannot keep the node importing for all.
    fn default() -> Self {
        Self {
            bytes_per_s: 32 * 1024 * 1024,
            burst: 64 * 1024 * 1024,
        }
    }
}

/// The bucket of one connection.
#[derive(Debug)]
pub struct Pacer {
    rate: InboundRate,
    /// Bytes that may still arrive without waiting (negative: owed).
    tokens: f64,
    at: Instant,
}

impl Pacer {
    /// A full bucket.
    pub fn new(rate: InboundRate, now: Instant) -> Self {
        Self {
            rate,
            tokens: rate.burst as f64,
            at: now,
        }
    }

    /// `n` bytes arrived at `now`: how long to wait before reading more.
    pub fn charge(&mut self, n: usize, now: Instant) -> Duration {
        if self.rate.bytes_per_s == 0 {
            return Duration::ZERO;
        }
        let rate = self.rate.bytes_per_s as f64;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * rate).min(self.rate.burst as f64) - n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }

    /// Charges `n` bytes and waits as long as that asks.
    pub async fn pace(&mut self, n: usize) {
        let wait = self.charge(n, Instant::now());
        if !wait.is_zero() {
            smol::Timer::after(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1_000_000;

    #[test]
    fn a_burst_passes_at_once_and_what_follows_waits_for_the_rate() {
        let start = Instant::now();
        let mut p = Pacer::new(
            InboundRate {
                bytes_per_s: MB,
                burst: 2 * MB,
            },
            start,
        );
        assert_eq!(p.charge(2 * MB as usize, start), Duration::ZERO);
        // One more megabyte at once: a second's wait.
        let wait = p.charge(MB as usize, start);
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-6, "{wait:?}");
        // After that second (and one more), half a megabyte passes freely.
        let later = start + Duration::from_secs(2);
        assert_eq!(p.charge((MB / 2) as usize, later), Duration::ZERO);
    }

    #[test]
    fn a_quiet_spell_refills_no_more_than_the_burst() {
        let start = Instant::now();
        let mut p = Pacer::new(
            InboundRate {
                bytes_per_s: MB,
                burst: MB,
            },
            start,
        );
        let much_later = start + Duration::from_secs(3600);
        assert_eq!(p.charge(MB as usize, much_later), Duration::ZERO);
        assert!(p.charge(MB as usize, much_later) >= Duration::from_millis(999));
    }

    #[test]
    fn a_rate_of_zero_never_waits() {
        let start = Instant::now();
        let mut p = Pacer::new(
            InboundRate {
                bytes_per_s: 0,
                burst: 0,
            },
            start,
        );
        assert_eq!(p.charge(usize::MAX / 2, start), Duration::ZERO);
    }
}
