//! A failure that repeats (a store that is down, its feed read up to five times a second)
//! is logged once, then at most once per window with how often it came
//! meanwhile, instead of burying every other line. Keyed by the exact text;
//! time is the node's, so a replay logs the same.

use docweave_core::Millis;
use std::collections::BTreeMap;

/// How long the same line stays quiet after it was logged.
const WINDOW_MS: Millis = 30_000;
/// Lines remembered at once (the oldest goes first).
const MOST: usize = 64;

/// When each line was last logged, and how often it came since.
#[derive(Default)]
pub(super) struct RepeatedLogs {
    lines: BTreeMap<String, (Millis, u64)>,
}

impl RepeatedLogs {
    /// The line to log now for `text` at `now`, if any.
    pub(super) fn admit(&mut self, text: &str, now: Millis) -> Option<String> {
        if let Some((at, quiet)) = self.lines.get_mut(text) {
            if now.saturating_sub(*at) < WINDOW_MS {
                *quiet += 1;
                return None;
            }
            let line = match *quiet {
                0 => text.to_string(),
                n => format!("{text} ({n} more times in the last {} s)", WINDOW_MS / 1000),
            };
            *at = now;
            *quiet = 0;
            return Some(line);
        }
        if self.lines.len() >= MOST {
            let oldest = self
                .lines
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.lines.remove(&k);
            }
        }
        self.lines.insert(text.to_string(), (now, 0));
        Some(text.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_line_is_logged_once_per_window_with_its_count() {
        let mut r = RepeatedLogs::default();
        assert_eq!(r.admit("down", 0).as_deref(), Some("down"));
        for t in 1..=10 {
            assert_eq!(r.admit("down", t * 200), None);
        }
        assert_eq!(r.admit("other", 2_000).as_deref(), Some("other"));
        assert_eq!(
            r.admit("down", 30_000).as_deref(),
            Some("down (10 more times in the last 30 s)")
        );
        assert_eq!(r.admit("down", 60_001).as_deref(), Some("down"));
    }

    #[test]
    fn it_remembers_a_bounded_number_of_lines() {
        let mut r = RepeatedLogs::default();
        for i in 0..(MOST as u64 * 2) {
            assert!(r.admit(&format!("line {i}"), i).is_some());
        }
        assert!(r.lines.len() <= MOST);
    }
}
