//! Unit tests on `update` directly, one file per concern.

mod changes;
mod connection;
mod credentials;
mod deletion;
mod disconnect;
mod draining;
mod durability;
mod evolution;
mod hostile;
pub(crate) mod kit;
mod listeners;
mod on_demand;
mod permissions;
mod presence;
mod quiet;
mod quotas;
mod requests;
mod shared_store;
mod storage;
mod sync;
mod timers;
