//! The Loro Syncing Protocol's wire format (v1, as `loro-protocol` 0.3.0
//! encodes it): a 4-byte CRDT magic, the room id as var-bytes, a type byte,
//! then the payload. Decoding is bounded and never panics.

use std::fmt;

/// Largest message either side sends; larger updates go as fragments.
pub const MAX_MESSAGE: usize = 256 * 1024;

/// Longest room id.
pub const MAX_ROOM_ID: usize = 128;

/// The CRDT a room holds (its magic bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Crdt {
    /// `%LOR`: a Loro document.
    Loro,
    /// `%EPH`: a Loro ephemeral store (presence).
    Ephemeral,
    /// `%EPS`: a persisted ephemeral store.
    EphemeralPersisted,
    /// `%YJS`, `%YAW`, `%ELO`, `%FLO`: kinds docweave does not serve.
    Other([u8; 4]),
}

impl Crdt {
    fn from_magic(m: [u8; 4]) -> Option<Self> {
        Some(match &m {
            b"%LOR" => Crdt::Loro,
            b"%EPH" => Crdt::Ephemeral,
            b"%EPS" => Crdt::EphemeralPersisted,
            b"%YJS" | b"%YAW" | b"%ELO" | b"%FLO" => Crdt::Other(m),
            _ => return None,
        })
    }

    fn magic(self) -> [u8; 4] {
        match self {
            Crdt::Loro => *b"%LOR",
            Crdt::Ephemeral => *b"%EPH",
            Crdt::EphemeralPersisted => *b"%EPS",
            Crdt::Other(m) => m,
        }
    }
}

impl fmt::Display for Crdt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.magic()))
    }
}

/// An 8-byte batch id, chosen by the sender of an update.
pub type LoroBatchId = [u8; 8];

/// Why a join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinErrorCode {
    /// Anything else.
    Unknown = 0,
    /// The version sent is not one the server understands (the client
    /// retries with an empty version).
    VersionUnknown = 1,
    /// The auth payload was refused.
    AuthFailed = 2,
    /// An application-defined refusal.
    AppError = 0x7f,
}

/// Why a room membership ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomErrorCode {
    /// Join again (with your version) to resync.
    RejoinSuggested = 1,
    /// The membership is over (the document was deleted).
    Evicted = 2,
    /// Anything else.
    Unknown = 0x7f,
}

/// How an update was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateStatus {
    /// Applied (by docweave: applied and durable).
    Ok = 0,
    /// Anything else.
    Unknown = 1,
    /// The sender may not write this room.
    PermissionDenied = 3,
    /// The bytes could not be imported.
    InvalidUpdate = 4,
    /// The update is larger than accepted.
    PayloadTooLarge = 5,
    /// The sender sends too fast.
    RateLimited = 6,
    /// Its fragments did not all arrive in time.
    FragmentTimeout = 7,
    /// An application-defined failure.
    AppError = 0x7f,
}

impl UpdateStatus {
    fn from_byte(b: u8) -> Self {
        match b {
            0 => UpdateStatus::Ok,
            3 => UpdateStatus::PermissionDenied,
            4 => UpdateStatus::InvalidUpdate,
            5 => UpdateStatus::PayloadTooLarge,
            6 => UpdateStatus::RateLimited,
            7 => UpdateStatus::FragmentTimeout,
            0x7f => UpdateStatus::AppError,
            _ => UpdateStatus::Unknown,
        }
    }
}

/// What a message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A client asks to join the room.
    JoinRequest {
        /// Application-defined credentials (docweave: the token).
        auth: Vec<u8>,
        /// The client's version (Loro: an encoded version vector; may be empty).
        version: Vec<u8>,
    },
    /// The join is accepted.
    JoinResponseOk {
        /// `read` or `write`.
        permission: String,
        /// The server's version.
        version: Vec<u8>,
        /// Application-defined extra bytes.
        extra: Vec<u8>,
    },
    /// The join is refused.
    JoinError {
        /// Why.
        code: JoinErrorCode,
        /// In words.
        message: String,
        /// For `AppError`: the application's code.
        app_code: Option<String>,
    },
    /// Updates, under a batch id the receiver acknowledges.
    DocUpdate {
        /// The updates.
        updates: Vec<Vec<u8>>,
        /// The batch.
        batch: LoroBatchId,
    },
    /// A large update follows in `count` fragments.
    FragmentHeader {
        /// The batch.
        batch: LoroBatchId,
        /// How many fragments.
        count: u32,
        /// Bytes in all.
        total: u32,
    },
    /// One fragment of a large update.
    Fragment {
        /// The batch.
        batch: LoroBatchId,
        /// Its place.
        index: u32,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// The membership ends or should be renewed.
    RoomError {
        /// Why.
        code: RoomErrorCode,
        /// In words.
        message: String,
    },
    /// The client leaves the room.
    Leave,
    /// How a batch was taken.
    Ack {
        /// The batch answered.
        batch: LoroBatchId,
        /// How.
        status: UpdateStatus,
    },
}

/// One message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoroMessage {
    /// The room's CRDT.
    pub crdt: Crdt,
    /// The room id. The protocol allows at most [`MAX_ROOM_ID`] bytes; a
    /// longer one decodes (within the message's size) so that the bridge
    /// can refuse its join with a clear `JoinError`.
    pub room: String,
    /// What it says.
    pub body: Body,
}

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Loro protocol message: {0}")]
pub struct DecodeError(pub String);

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn fail<T>(what: &str) -> Result<T, DecodeError> {
        Err(DecodeError(what.to_string()))
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if n > self.bytes.len() {
            return Self::fail(what);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn byte(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    /// LEB128 of at most 32 bits, as the JS codec reads it.
    fn uleb(&mut self, what: &str) -> Result<u32, DecodeError> {
        let mut value: u64 = 0;
        for shift in (0..=35).step_by(7) {
            let b = self.byte(what)?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return u32::try_from(value).or_else(|_| Self::fail(what));
            }
        }
        Self::fail(what)
    }
    fn var_bytes(&mut self, what: &str) -> Result<Vec<u8>, DecodeError> {
        let n = self.uleb(what)? as usize;
        Ok(self.take(n, what)?.to_vec())
    }
    fn var_string(&mut self, what: &str) -> Result<String, DecodeError> {
        String::from_utf8(self.var_bytes(what)?).or_else(|_| Self::fail(what))
    }
    fn batch(&mut self, what: &str) -> Result<LoroBatchId, DecodeError> {
        let mut id = [0u8; 8];
        id.copy_from_slice(self.take(8, what)?);
        Ok(id)
    }
    fn end(&self, what: &str) -> Result<(), DecodeError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Self::fail(&format!("{what}: trailing bytes"))
        }
    }
}

/// Decodes one WebSocket binary message.
pub fn decode(bytes: &[u8]) -> Result<LoroMessage, DecodeError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(DecodeError(format!(
            "{} bytes, at most {MAX_MESSAGE}",
            bytes.len()
        )));
    }
    let mut r = Reader { bytes };
    let mut magic = [0u8; 4];
    magic.copy_from_slice(r.take(4, "magic")?);
    let crdt = Crdt::from_magic(magic)
        .ok_or_else(|| DecodeError(format!("unknown CRDT magic {magic:?}")))?;
    let room = r.var_bytes("room id")?;
    let room = String::from_utf8(room).or_else(|_| Reader::fail("room id is not UTF-8"))?;
    let body = match r.byte("message type")? {
        0 => {
            let auth = r.var_bytes("auth")?;
            let version = r.var_bytes("version")?;
            Body::JoinRequest { auth, version }
        }
        1 => {
            let permission = r.var_string("permission")?;
            let version = r.var_bytes("version")?;
            let extra = r.var_bytes("extra")?;
            Body::JoinResponseOk {
                permission,
                version,
                extra,
            }
        }
        2 => {
            let code = match r.byte("join error code")? {
                1 => JoinErrorCode::VersionUnknown,
                2 => JoinErrorCode::AuthFailed,
                0x7f => JoinErrorCode::AppError,
                _ => JoinErrorCode::Unknown,
            };
            let message = r.var_string("join error")?;
            let mut app_code = None;
            if code == JoinErrorCode::VersionUnknown && !r.bytes.is_empty() {
                r.var_bytes("receiver version")?;
            }
            if code == JoinErrorCode::AppError && !r.bytes.is_empty() {
                app_code = Some(r.var_string("app code")?);
            }
            Body::JoinError {
                code,
                message,
                app_code,
            }
        }
        3 => {
            let n = r.uleb("update count")?;
            let mut updates = Vec::new();
            for _ in 0..n {
                // An empty update says nothing and would cost 24 bytes of
                // memory for one on the wire: not kept.
                let update = r.var_bytes("update")?;
                if !update.is_empty() {
                    updates.push(update);
                }
            }
            let batch = r.batch("batch id")?;
            r.end("DocUpdate")?;
            Body::DocUpdate { updates, batch }
        }
        4 => {
            let batch = r.batch("batch id")?;
            let count = r.uleb("fragment count")?;
            let total = r.uleb("total size")?;
            r.end("DocUpdateFragmentHeader")?;
            Body::FragmentHeader {
                batch,
                count,
                total,
            }
        }
        5 => {
            let batch = r.batch("batch id")?;
            let index = r.uleb("fragment index")?;
            let bytes = r.var_bytes("fragment")?;
            r.end("DocUpdateFragment")?;
            Body::Fragment {
                batch,
                index,
                bytes,
            }
        }
        6 => {
            let code = match r.byte("room error code")? {
                1 => RoomErrorCode::RejoinSuggested,
                2 => RoomErrorCode::Evicted,
                _ => RoomErrorCode::Unknown,
            };
            let message = r.var_string("room error")?;
            Body::RoomError { code, message }
        }
        7 => Body::Leave,
        8 => {
            let batch = r.batch("ref id")?;
            let status = UpdateStatus::from_byte(r.byte("ack status")?);
            r.end("Ack")?;
            Body::Ack { batch, status }
        }
        t => return Reader::fail(&format!("unknown message type {t}")),
    };
    Ok(LoroMessage { crdt, room, body })
}

fn put_uleb(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn put_var_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uleb(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Encodes a message. The caller keeps it within [`MAX_MESSAGE`] (updates
/// larger than a fragment are sent as fragments).
pub fn encode(m: &LoroMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(&m.crdt.magic());
    put_var_bytes(&mut out, m.room.as_bytes());
    match &m.body {
        Body::JoinRequest { auth, version } => {
            out.push(0);
            put_var_bytes(&mut out, auth);
            put_var_bytes(&mut out, version);
        }
        Body::JoinResponseOk {
            permission,
            version,
            extra,
        } => {
            out.push(1);
            put_var_bytes(&mut out, permission.as_bytes());
            put_var_bytes(&mut out, version);
            put_var_bytes(&mut out, extra);
        }
        Body::JoinError {
            code,
            message,
            app_code,
        } => {
            out.push(2);
            out.push(*code as u8);
            put_var_bytes(&mut out, message.as_bytes());
            if let (JoinErrorCode::AppError, Some(c)) = (code, app_code) {
                put_var_bytes(&mut out, c.as_bytes());
            }
        }
        Body::DocUpdate { updates, batch } => {
            out.push(3);
            put_uleb(&mut out, updates.len() as u64);
            for u in updates {
                put_var_bytes(&mut out, u);
            }
            out.extend_from_slice(batch);
        }
        Body::FragmentHeader {
            batch,
            count,
            total,
        } => {
            out.push(4);
            out.extend_from_slice(batch);
            put_uleb(&mut out, u64::from(*count));
            put_uleb(&mut out, u64::from(*total));
        }
        Body::Fragment {
            batch,
            index,
            bytes,
        } => {
            out.push(5);
            out.extend_from_slice(batch);
            put_uleb(&mut out, u64::from(*index));
            put_var_bytes(&mut out, bytes);
        }
        Body::RoomError { code, message } => {
            out.push(6);
            out.push(*code as u8);
            put_var_bytes(&mut out, message.as_bytes());
        }
        Body::Leave => out.push(7),
        Body::Ack { batch, status } => {
            out.push(8);
            out.extend_from_slice(batch);
            out.push(*status as u8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn a_join_request_has_the_bytes_loro_protocol_writes() {
        // encode({type: JoinRequest, crdt: "%LOR", roomId: "doc", auth: [1,2], version: []})
        let m = LoroMessage {
            crdt: Crdt::Loro,
            room: "doc".into(),
            body: Body::JoinRequest {
                auth: vec![1, 2],
                version: vec![],
            },
        };
        let bytes = encode(&m);
        assert_eq!(hex(&bytes), "254c4f5203646f630002010200");
        assert_eq!(decode(&bytes), Ok(m));
    }

    #[test]
    fn every_body_round_trips() {
        let bodies = vec![
            Body::JoinResponseOk {
                permission: "write".into(),
                version: vec![1, 2, 3],
                extra: vec![],
            },
            Body::JoinError {
                code: JoinErrorCode::AppError,
                message: "no".into(),
                app_code: Some("denied".into()),
            },
            Body::DocUpdate {
                updates: vec![vec![1; 300], vec![2]],
                batch: [9; 8],
            },
            Body::FragmentHeader {
                batch: [1; 8],
                count: 3,
                total: 700_000,
            },
            Body::Fragment {
                batch: [1; 8],
                index: 2,
                bytes: vec![5; 10],
            },
            Body::RoomError {
                code: RoomErrorCode::Evicted,
                message: "deleted".into(),
            },
            Body::Leave,
            Body::Ack {
                batch: [7; 8],
                status: UpdateStatus::PermissionDenied,
            },
        ];
        for body in bodies {
            let m = LoroMessage {
                crdt: Crdt::Ephemeral,
                room: "r".into(),
                body,
            };
            assert_eq!(decode(&encode(&m)), Ok(m));
        }
        // Empty updates are dropped as they are read.
        let m = LoroMessage {
            crdt: Crdt::Loro,
            room: "r".into(),
            body: Body::DocUpdate {
                updates: vec![vec![]; 1000],
                batch: [3; 8],
            },
        };
        assert!(
            matches!(decode(&encode(&m)), Ok(LoroMessage { body: Body::DocUpdate { updates, .. }, .. }) if updates.is_empty())
        );
    }

    #[test]
    fn truncated_and_oversized_input_fails_cleanly() {
        let m = LoroMessage {
            crdt: Crdt::Loro,
            room: "doc".into(),
            body: Body::DocUpdate {
                updates: vec![vec![1, 2, 3]],
                batch: [1; 8],
            },
        };
        let bytes = encode(&m);
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "{n}");
        }
        assert!(decode(&[0u8; MAX_MESSAGE + 1]).is_err());
        // A room id past the protocol's 128 bytes decodes (the bridge
        // refuses its join with a reason).
        let mut long_room = b"%LOR".to_vec();
        put_var_bytes(&mut long_room, &[b'a'; 129]);
        long_room.push(7);
        assert!(matches!(decode(&long_room), Ok(m) if m.room.len() == 129));
        // A length that claims more than is there.
        assert!(decode(b"%LOR\x03doc\x03\x05\xff\xff\xff\xff\x0f").is_err());
    }
}
