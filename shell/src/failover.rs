//! One remote reached through any of several servers: a client of servers
//! sharing one store keeps working when its server dies.

use crate::driver::Dialer;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A dialer that tries each of `dialers` in turn, starting with the one
/// that answered last, and fails only when none answers. Reconnecting after
/// a server died thus lands on the next one. An empty list never connects.
pub fn failover(dialers: Vec<Dialer>) -> Dialer {
    let dialers = Arc::new(dialers);
    let current = Arc::new(AtomicUsize::new(0));
    Arc::new(move |remote| {
        let (dialers, current) = (dialers.clone(), current.clone());
        Box::pin(async move {
            let n = dialers.len();
            let start = current.load(Ordering::Relaxed);
            let mut errors = Vec::new();
            for k in 0..n {
                let i = (start + k) % n;
                match dialers[i](remote.clone()).await {
                    Ok(link) => {
                        current.store(i, Ordering::Relaxed);
                        return Ok(link);
                    }
                    Err(e) => errors.push(e),
                }
            }
            Err(format!("no server answered: {}", errors.join("; ")))
        })
    })
}
