//! One remote reached through any of several servers: a client of servers
//! sharing one store keeps working when its server dies.

use crate::driver::Dialer;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A link that ends this soon after its dial counts as its server failing:
/// some dials (HTTP polling) succeed without reaching the server at all.
const SHORT_LIVED: Duration = Duration::from_secs(5);

/// Which server answered last, and when.
#[derive(Default)]
struct Last {
    index: usize,
    at: Option<Instant>,
}

/// A dialer that tries each of `dialers` in turn, starting with the one
/// that answered last, and fails only when none answers. Reconnecting after
/// a server died thus lands on the next one; so does reconnecting soon
/// after a dial whose link ended at once. An empty list never connects.
pub fn failover(dialers: Vec<Dialer>) -> Dialer {
    let dialers = Arc::new(dialers);
    let last = Arc::new(Mutex::new(Last::default()));
    Arc::new(move |remote| {
        let (dialers, last) = (dialers.clone(), last.clone());
        Box::pin(async move {
            let n = dialers.len();
            let start = match last.lock() {
                Ok(l) if l.at.is_some_and(|at| at.elapsed() < SHORT_LIVED) => l.index + 1,
                Ok(l) => l.index,
                Err(_) => 0,
            };
            let mut errors = Vec::new();
            for k in 0..n {
                let i = (start + k) % n;
                match dialers[i](remote.clone()).await {
                    Ok(link) => {
                        if let Ok(mut l) = last.lock() {
                            *l = Last {
                                index: i,
                                at: Some(Instant::now()),
                            };
                        }
                        return Ok(link);
                    }
                    Err(e) => errors.push(e),
                }
            }
            Err(format!("no server answered: {}", errors.join("; ")))
        })
    })
}
