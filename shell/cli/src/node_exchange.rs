//! One HTTP request's conversation with the node: a fresh link, a hello
//! with the request's credentials, then native messages and their
//! answers. The node judges the request as it judges any client (token,
//! rights, quotas, durability before an acknowledgement); nothing here
//! decides who may do what.

use docweave_adapters::reassembly::{Reassembly, ReassemblyLimits, Refused};
use docweave_adapters::transport::{request_hello, ApiAnswer, Connector, Outbound, PolledLink};
use docweave_core::{ErrorCode, Limits, Message, PeerId};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the node has to answer one message of a request.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// Room in an answer's frame beyond its document data.
const FRAME_HEADROOM: usize = 1 << 20;

/// A request's link into the node, closed when dropped.
pub struct Exchange {
    link: PolledLink,
    /// The node's frames larger than its chunk size come as chunk frames,
    /// put back together here.
    chunks: Mutex<Reassembly<u32>>,
    /// The largest answer taken.
    limits: Limits,
    opened: Instant,
}

impl Exchange {
    /// Opens a link and says hello as `peer` with `token`; the node's
    /// answers may be as large as `max_answer` bytes.
    pub fn open(
        connect: &Connector,
        peer: &str,
        token: Option<String>,
        max_answer: usize,
    ) -> Result<Self, ApiAnswer> {
        let peer = PeerId::parse(peer).map_err(|e| {
            ApiAnswer::error(
                400,
                "BadPeer",
                format!("{peer:?} is not a valid peer id: {e}"),
            )
        })?;
        let hello = request_hello(peer, token);
        // The node bounds the data it exports by its largest message; the
        // frame around it (header, id, version, other messages) is more.
        let max_answer = max_answer.saturating_add(FRAME_HEADROOM);
        let limits = Limits {
            max_frame: max_answer,
            ..Limits::default()
        };
        let chunks = Reassembly::new(ReassemblyLimits {
            max_message: max_answer,
            max_pending: 2,
            max_held: max_answer,
            deadline_ms: ANSWER_WITHIN.as_millis() as u64,
        });
        let exchange = Self {
            link: connect(),
            chunks: Mutex::new(chunks),
            limits,
            opened: Instant::now(),
        };
        exchange.send(vec![hello])?;
        Ok(exchange)
    }

    /// Sends messages in one frame.
    pub fn send(&self, messages: Vec<Message>) -> Result<(), ApiAnswer> {
        let frame = docweave_core::encode(&messages)
            .map_err(|e| ApiAnswer::error(413, "TooLarge", e.to_string()))?;
        self.link.tx.send(frame).map_err(|_| going_away())
    }

    /// The node's messages in one frame it sent, once the frame is whole.
    fn messages_in(&self, frame: &[u8]) -> Result<Vec<Message>, ApiAnswer> {
        let whole = match docweave_core::parse_chunk(frame) {
            None => frame.to_vec(),
            Some(c) => {
                let now = self.opened.elapsed().as_millis() as u64;
                let mut chunks = self.chunks.lock().unwrap_or_else(|p| p.into_inner());
                if c.index == 0 {
                    chunks
                        .begin(c.id, c.count, Some(c.total), now)
                        .map_err(too_large_answer)?;
                }
                match chunks.piece(c.id, c.index, c.bytes, now) {
                    Ok(Some(whole)) => whole,
                    Ok(None) => return Ok(Vec::new()),
                    Err(e) => return Err(too_large_answer(e)),
                }
            }
        };
        docweave_core::decode(&whole, &self.limits).map_err(|e| {
            ApiAnswer::error(
                502,
                "BadAnswer",
                format!("the node's answer did not decode: {e}"),
            )
        })
    }

    /// The first message the node sends that `wanted` picks, or the error
    /// it answers with (as an HTTP answer), or a timeout.
    pub async fn answer(&self, wanted: impl Fn(&Message) -> bool) -> Result<Message, ApiAnswer> {
        let found = futures_lite::future::or(
            async {
                loop {
                    let Some(Outbound::Frame(f)) = self.link.rx.recv().await else {
                        // The node closed the link (it is stopping).
                        return Err(going_away());
                    };
                    self.link.rx.written(&f);
                    for m in self.messages_in(&f)? {
                        match m {
                            Message::Error { code, message } => return Err(refusal(code, message)),
                            Message::GoingAway { .. } => return Err(going_away()),
                            m if wanted(&m) => return Ok(m),
                            _ => {}
                        }
                    }
                }
            },
            async {
                smol::Timer::after(ANSWER_WITHIN).await;
                Err(ApiAnswer::error(
                    504,
                    "Timeout",
                    "the node did not answer in time",
                ))
            },
        )
        .await;
        found
    }
}

/// The answer while the node stops or turns new requests away.
fn going_away() -> ApiAnswer {
    ApiAnswer::error(
        503,
        "GoingAway",
        "the server is stopping; use another, or try again later",
    )
    .with_header("retry-after", "1".into())
}

fn too_large_answer(e: Refused) -> ApiAnswer {
    ApiAnswer::error(
        502,
        "BadAnswer",
        format!("the node's answer was refused: {e}"),
    )
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.link.close("request answered");
    }
}

/// The HTTP answer to a node's error: what the client did wrong is a
/// 4xx, what the server could not do (or got wrong) a 5xx.
pub fn refusal(code: ErrorCode, message: String) -> ApiAnswer {
    let status = match code {
        ErrorCode::BadToken => 401,
        ErrorCode::PermissionDenied => 403,
        ErrorCode::UnknownListener => 404,
        ErrorCode::BadDocId => 400,
        ErrorCode::TooLarge => 413,
        ErrorCode::RateLimited => 429,
        // The node refused what this process sent it: ours to fix.
        _ => 502,
    };
    ApiAnswer::error(status, &format!("{code:?}"), message)
}
