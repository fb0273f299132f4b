//! The host behind the C and Python APIs, in Rust: a store that cannot be
//! read fails the host's creation with the reason, instead of giving a node
//! that goes on as if the store were empty; a token set on a running host
//! is the one its hellos present.

use docweave_ffi::host::{Host, HostConfig};

#[test]
fn a_store_that_cannot_be_read_fails_the_host_with_the_reason() {
    let dir = std::env::temp_dir().join(format!("docweave-ffi-restore-{}", std::process::id()));
    // A leftover of an earlier run goes; none there is fine.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("host.db");
    let config = || HostConfig {
        peer: "host".into(),
        sqlite: Some(db.display().to_string()),
        token: None,
    };
    // A store with a record, then that record damaged on disk.
    {
        let mut store = docweave_adapters::SqliteStore::open(&db).unwrap();
        docweave_adapters::Store::save(
            &mut store,
            &docweave_core::StateRecord::Tombstone(docweave_core::DocId::new("gone")),
        )
        .unwrap();
    }
    assert!(Host::new(config(), 0).is_ok(), "a healthy store");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE records SET value = 'not json'", [])
        .unwrap();
    drop(conn);
    let err = Host::new(config(), 0)
        .err()
        .expect("a host on an unreadable store");
    assert!(err.contains("could not be read"), "{err}");
}

/// The token of the hello the host sends on a new connection to `server`.
fn hello_token(host: &mut Host, now: u64) -> Option<String> {
    let remote = docweave_core::RemoteAddr::parse("server").unwrap();
    let channel = host.node.channel_opened(now, Some(remote));
    let mut token = None;
    while let Some(out) = host.node.poll_output() {
        if let docweave_shell::Output::Transmit { channel: c, frame } = out {
            if c != channel {
                continue;
            }
            let limits = docweave_core::Limits::default();
            for m in docweave_core::decode(&frame, &limits).unwrap() {
                if let docweave_core::Message::Hello(h) = m {
                    token = h.token;
                }
            }
        }
    }
    host.node
        .handle(now, docweave_shell::Input::ChannelClosed { channel });
    token
}

#[test]
fn a_token_set_on_a_running_host_is_presented_from_then_on() {
    let mut host = Host::new(
        HostConfig {
            peer: "host".into(),
            sqlite: None,
            token: Some("old".into()),
        },
        0,
    )
    .unwrap();
    host.connect(docweave_core::RemoteAddr::parse("server").unwrap(), 0);
    assert_eq!(hello_token(&mut host, 1).as_deref(), Some("old"));
    host.set_token(
        docweave_core::RemoteAddr::parse("server").unwrap(),
        "new".into(),
        2,
    );
    assert_eq!(hello_token(&mut host, 3).as_deref(), Some("new"));
}
