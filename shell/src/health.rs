//! Whether a node still runs, and what stopped it: failures that no caller
//! waits for (a panic in the loop, a store thread that died, a recording that
//! could not be written) are kept here, so a server can fail its health check
//! and exit for its supervisor instead of staying half alive. Also whether
//! its store answers (for readiness: a node whose store fails is alive but
//! should not be sent clients).

use std::sync::{Arc, Mutex};

/// Shared by a [`crate::Repo`], its loop, its store thread and its recorder.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<Mutex<State>>);

#[derive(Debug, Default)]
struct State {
    stopped: Option<String>,
    recording: Option<String>,
    /// Why the store's last job failed; `None` once one succeeds.
    store: Option<String>,
}

impl Health {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding it leaves plain data: still readable.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node can no longer run, for this reason (the first one stays).
    pub(crate) fn stop(&self, reason: String) {
        tracing::error!("the node stopped: {reason}");
        let mut s = self.state();
        if s.stopped.is_none() {
            s.stopped = Some(reason);
        }
    }

    /// The recording stopped, for this reason (the node goes on).
    pub(crate) fn recording_failed(&self, reason: String) {
        tracing::error!("the recording stopped: {reason}");
        let mut s = self.state();
        if s.recording.is_none() {
            s.recording = Some(reason);
        }
    }

    /// The store answered a job: `Some(reason)` when it failed.
    pub(crate) fn store_answered(&self, failure: Option<&str>) {
        let mut s = self.state();
        match (failure, &s.store) {
            (None, Some(_)) => {
                tracing::info!("the store answers again");
                s.store = None;
            }
            (Some(why), None) => s.store = Some(why.to_string()),
            _ => {}
        }
    }

    /// Why the store is failing (its last job failed), if it is.
    pub fn store_failing(&self) -> Option<String> {
        self.state().store.clone()
    }

    /// Why the node stopped, if it did.
    pub fn stopped(&self) -> Option<String> {
        self.state().stopped.clone()
    }

    /// Why the recording stopped, if it did.
    pub fn recording_stopped(&self) -> Option<String> {
        self.state().recording.clone()
    }
}

/// The message of a caught panic.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
