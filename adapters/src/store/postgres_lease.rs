//! A lease among the servers sharing one PostgreSQL: whoever holds it does
//! a job the others must not do at the same time (one server delivers a
//! webhook's events). It is a session advisory lock, so PostgreSQL itself
//! lets it go when its holder's connection ends, a holder killed with
//! `kill -9` included; nothing in the tables has to be cleaned up.

use super::postgres_tls::Target;
use super::StoreError;
use postgres::Client;

/// A held lease; let go when dropped (its connection closes).
pub struct PostgresLease {
    client: Client,
}

impl PostgresLease {
    /// Takes the lease named `key` if nobody holds it: `None` while another
    /// session does.
    pub fn try_take(url: &str, key: i64) -> Result<Option<Self>, StoreError> {
        let mut target = Target::parse(url)?;
        // A holder whose host vanished must not keep the lease for the
        // hours TCP takes by default to notice: both ends probe the
        // connection every few seconds.
        target
            .config
            .keepalives(true)
            .keepalives_idle(std::time::Duration::from_secs(5))
            .keepalives_interval(std::time::Duration::from_secs(2))
            .keepalives_retries(3);
        let mut client = target.connect()?;
        client.batch_execute(
            "SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3",
        )?;
        let row = client.query_one("SELECT pg_try_advisory_lock($1)", &[&key])?;
        let taken: bool = row.try_get(0)?;
        Ok(taken.then_some(Self { client }))
    }

    /// Whether the lease is still held: its session answers (a session
    /// that ended, or a connection lost, let it go).
    pub fn still_held(&mut self) -> bool {
        !self.client.is_closed() && self.client.simple_query("SELECT 1").is_ok()
    }
}
