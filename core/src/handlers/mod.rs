//! One handler per protocol concern, named after what it handles.

pub(crate) mod changes;
pub(crate) mod common;
pub(crate) mod connection;
pub(crate) mod deletion;
pub(crate) mod ephemeral;
pub(crate) mod listeners;
pub(crate) mod listing;
pub(crate) mod on_demand;
pub(crate) mod presence;
pub(crate) mod propagation;
pub(crate) mod quotas;
pub(crate) mod restore;
pub(crate) mod storage;
pub(crate) mod store_requests;
pub(crate) mod sync;
pub(crate) mod timers;
