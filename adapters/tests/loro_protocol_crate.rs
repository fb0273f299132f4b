//! Our Loro-protocol codec against `loro-protocol`, the Rust crate of the
//! protocol's authors: for random valid messages both encoders write the
//! same bytes, and each decoder reads what the other wrote. The crate is a
//! test-only reference: its decoder is fed only bytes an encoder made, never
//! hostile input (it reserves memory by counts read from the wire).
#![cfg(feature = "loro-endpoint")]

use docweave_adapters::loro_protocol::{
    decode, encode, Body, Crdt, JoinErrorCode, LoroMessage, RoomErrorCode, UpdateStatus,
    MAX_ROOM_ID,
};
use loro_protocol as theirs;
use quickcheck::{Arbitrary, Gen, QuickCheck};

fn pick<T: Copy>(g: &mut Gen, of: &[T]) -> T {
    *g.choose(of).unwrap()
}

fn bytes(g: &mut Gen) -> Vec<u8> {
    Vec::<u8>::arbitrary(g)
}

fn text(g: &mut Gen, most: usize) -> String {
    let letters: Vec<char> = ('a'..='z')
        .chain('0'..='9')
        .chain(['-', '/', 'é'])
        .collect();
    let n = usize::arbitrary(g) % (most + 1);
    let mut s = String::new();
    for _ in 0..n {
        let c = pick(g, &letters);
        if s.len() + c.len_utf8() > most {
            break;
        }
        s.push(c);
    }
    s
}

fn batch(g: &mut Gen) -> [u8; 8] {
    let mut b = [0u8; 8];
    b.iter_mut().for_each(|x| *x = u8::arbitrary(g));
    b
}

/// A valid message (room id within the limit, no empty update).
#[derive(Debug, Clone)]
struct Valid(LoroMessage);

impl Arbitrary for Valid {
    fn arbitrary(g: &mut Gen) -> Self {
        let crdt = pick(
            g,
            &[
                Crdt::Loro,
                Crdt::Ephemeral,
                Crdt::EphemeralPersisted,
                Crdt::Other(*b"%YJS"),
                Crdt::Other(*b"%FLO"),
            ],
        );
        let body = match u8::arbitrary(g) % 9 {
            0 => Body::JoinRequest {
                auth: bytes(g),
                version: bytes(g),
            },
            1 => Body::JoinResponseOk {
                permission: pick(g, &["read", "write"]).to_string(),
                version: bytes(g),
                extra: bytes(g),
            },
            2 => {
                let code = pick(
                    g,
                    &[
                        JoinErrorCode::Unknown,
                        JoinErrorCode::AuthFailed,
                        JoinErrorCode::AppError,
                    ],
                );
                let app_code = (code == JoinErrorCode::AppError).then(|| text(g, 20));
                Body::JoinError {
                    code,
                    message: text(g, 60),
                    app_code,
                }
            }
            3 => Body::DocUpdate {
                updates: (0..usize::arbitrary(g) % 4)
                    .map(|_| {
                        let mut u = bytes(g);
                        u.push(1);
                        u
                    })
                    .collect(),
                batch: batch(g),
            },
            4 => Body::FragmentHeader {
                batch: batch(g),
                count: u32::arbitrary(g),
                total: u32::arbitrary(g),
            },
            5 => Body::Fragment {
                batch: batch(g),
                index: u32::arbitrary(g),
                bytes: bytes(g),
            },
            6 => Body::RoomError {
                code: pick(
                    g,
                    &[
                        RoomErrorCode::RejoinSuggested,
                        RoomErrorCode::Evicted,
                        RoomErrorCode::Unknown,
                    ],
                ),
                message: text(g, 60),
            },
            7 => Body::Leave,
            _ => Body::Ack {
                batch: batch(g),
                status: pick(
                    g,
                    &[
                        UpdateStatus::Ok,
                        UpdateStatus::Unknown,
                        UpdateStatus::PermissionDenied,
                        UpdateStatus::InvalidUpdate,
                        UpdateStatus::PayloadTooLarge,
                        UpdateStatus::RateLimited,
                        UpdateStatus::FragmentTimeout,
                        UpdateStatus::AppError,
                    ],
                ),
            },
        };
        Valid(LoroMessage {
            crdt,
            room: text(g, MAX_ROOM_ID),
            body,
        })
    }
}

fn crdt_of(c: Crdt) -> theirs::CrdtType {
    match c {
        Crdt::Loro => theirs::CrdtType::Loro,
        Crdt::Ephemeral => theirs::CrdtType::LoroEphemeralStore,
        Crdt::EphemeralPersisted => theirs::CrdtType::LoroEphemeralStorePersisted,
        Crdt::Other(m) => theirs::CrdtType::from_magic_bytes(m).unwrap(),
    }
}

/// The same message in the crate's types.
fn theirs_of(m: &LoroMessage) -> theirs::ProtocolMessage {
    use theirs::ProtocolMessage as P;
    let (crdt, room_id) = (crdt_of(m.crdt), m.room.clone());
    match &m.body {
        Body::JoinRequest { auth, version } => P::JoinRequest {
            crdt,
            room_id,
            auth: auth.clone(),
            version: version.clone(),
        },
        Body::JoinResponseOk {
            permission,
            version,
            extra,
        } => P::JoinResponseOk {
            crdt,
            room_id,
            permission: match permission.as_str() {
                "read" => theirs::Permission::Read,
                _ => theirs::Permission::Write,
            },
            version: version.clone(),
            extra: Some(extra.clone()),
        },
        Body::JoinError {
            code,
            message,
            app_code,
        } => P::JoinError {
            crdt,
            room_id,
            code: theirs::JoinErrorCode::from_u8(*code as u8).unwrap(),
            message: message.clone(),
            receiver_version: None,
            app_code: app_code.clone(),
        },
        Body::DocUpdate { updates, batch } => P::DocUpdate {
            crdt,
            room_id,
            updates: updates.clone(),
            batch_id: theirs::BatchId(*batch),
        },
        Body::FragmentHeader {
            batch,
            count,
            total,
        } => P::DocUpdateFragmentHeader {
            crdt,
            room_id,
            batch_id: theirs::BatchId(*batch),
            fragment_count: u64::from(*count),
            total_size_bytes: u64::from(*total),
        },
        Body::Fragment {
            batch,
            index,
            bytes,
        } => P::DocUpdateFragment {
            crdt,
            room_id,
            batch_id: theirs::BatchId(*batch),
            index: u64::from(*index),
            fragment: bytes.clone(),
        },
        Body::RoomError { code, message } => P::RoomError {
            crdt,
            room_id,
            code: theirs::RoomErrorCode::from_u8(*code as u8).unwrap(),
            message: message.clone(),
        },
        Body::Leave => P::Leave { crdt, room_id },
        Body::Ack { batch, status } => P::Ack {
            crdt,
            room_id,
            ref_id: theirs::BatchId(*batch),
            status: theirs::UpdateStatusCode::from_u8(*status as u8).unwrap(),
        },
    }
}

#[test]
fn our_encoder_writes_the_bytes_of_the_protocols_own_crate_and_each_reads_the_other() {
    fn agree(m: Valid) -> bool {
        let ours = encode(&m.0);
        let reference = theirs_of(&m.0);
        let Ok(theirs_bytes) = theirs::encode(&reference) else {
            return false;
        };
        ours == theirs_bytes
            && decode(&theirs_bytes).as_ref() == Ok(&m.0)
            && theirs::decode(&ours).as_ref() == Ok(&reference)
    }
    QuickCheck::new()
        .tests(2_000)
        .quickcheck(agree as fn(Valid) -> bool);
}
