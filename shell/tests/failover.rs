//! The failover dialer: the next server when one does not answer, and when
//! a link ended right after its dial.

use docweave_adapters::transport::memory_pair;
use docweave_core::RemoteAddr;
use docweave_shell::{failover, Dialer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A dialer that counts its dials and answers when `up`.
fn server(up: bool, dials: Arc<AtomicUsize>) -> Dialer {
    Arc::new(move |_| {
        dials.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if up {
                Ok(memory_pair().0)
            } else {
                Err("connection refused".to_string())
            }
        })
    })
}

#[test]
fn a_dead_server_is_passed_over_and_a_link_that_ended_at_once_moves_on() {
    let counts: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let dial = failover(vec![
        server(false, counts[0].clone()),
        server(true, counts[1].clone()),
        server(true, counts[2].clone()),
    ]);
    let remote = RemoteAddr::parse("cluster").unwrap();
    smol::block_on(async {
        assert!(dial(remote.clone()).await.is_ok());
        assert_eq!(
            counts[0].load(Ordering::SeqCst),
            1,
            "the dead one was tried"
        );
        assert_eq!(counts[1].load(Ordering::SeqCst), 1, "and the next answered");
        // Dialing again at once: the link from the second ended right
        // away (as an HTTP session to a dead server does), so the third.
        assert!(dial(remote.clone()).await.is_ok());
        assert_eq!(counts[2].load(Ordering::SeqCst), 1);
    });
    let none = failover(vec![server(false, Arc::new(AtomicUsize::new(0)))]);
    let err = smol::block_on(none(remote)).err().unwrap();
    assert!(err.contains("no server answered"), "{err}");
}
