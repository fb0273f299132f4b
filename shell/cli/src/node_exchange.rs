//! One HTTP request's conversation with the node: a fresh link, a hello
//! with the request's credentials, then native messages and their
//! answers. The node judges the request as it judges any client (token,
//! rights, quotas, durability before an acknowledgement); nothing here
//! decides who may do what.

use docweave_adapters::transport::{ApiAnswer, Connector, Outbound, PolledLink};
use docweave_core::{ErrorCode, Hello, Limits, Message, PeerId, PeerKind, PROTOCOL_VERSION};
use std::time::Duration;

/// How long the node has to answer one message of a request.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// A request's link into the node, closed when dropped.
pub struct Exchange {
    link: PolledLink,
}

impl Exchange {
    /// Opens a link and says hello as `peer` with `token`, followed by
    /// `first` in the same frame (the node takes the hello first).
    pub fn open(
        connect: &Connector,
        peer: &str,
        token: Option<String>,
        first: Vec<Message>,
    ) -> Result<Self, ApiAnswer> {
        let peer = PeerId::parse(peer).map_err(|e| {
            ApiAnswer::error(
                400,
                "BadPeer",
                format!("{peer:?} is not a valid peer id: {e}"),
            )
        })?;
        let hello = Message::Hello(Hello {
            peer,
            name: String::new(),
            // Bots' connections stand side by side: requests of one
            // identity never replace each other or its live clients.
            kind: PeerKind::Bot,
            protocol: PROTOCOL_VERSION,
            token,
            clock: Default::default(),
        });
        let exchange = Self { link: connect() };
        exchange.send(std::iter::once(hello).chain(first).collect())?;
        Ok(exchange)
    }

    /// Sends messages in one frame.
    pub fn send(&self, messages: Vec<Message>) -> Result<(), ApiAnswer> {
        let frame = docweave_core::encode(&messages)
            .map_err(|e| ApiAnswer::error(413, "TooLarge", e.to_string()))?;
        self.link
            .tx
            .send(frame)
            .map_err(|_| ApiAnswer::error(503, "Stopped", "the node is not taking requests"))
    }

    /// The first message the node sends that `wanted` picks, or the error
    /// it answers with (as an HTTP answer), or a timeout.
    pub async fn answer(&self, wanted: impl Fn(&Message) -> bool) -> Result<Message, ApiAnswer> {
        let found = futures_lite::future::or(
            async {
                while let Some(Outbound::Frame(f)) = self.link.rx.recv().await {
                    self.link.rx.written(&f);
                    // The node's own frames: one that does not decode is a
                    // bug of ours, and the request then times out.
                    for m in docweave_core::decode(&f, &Limits::default()).unwrap_or_default() {
                        if wanted(&m) || matches!(m, Message::Error { .. }) {
                            return Some(m);
                        }
                    }
                }
                None
            },
            async {
                smol::Timer::after(ANSWER_WITHIN).await;
                None
            },
        )
        .await;
        match found {
            Some(Message::Error { code, message }) => Err(refusal(code, message)),
            Some(m) => Ok(m),
            None => Err(ApiAnswer::error(
                504,
                "Timeout",
                "the node did not answer in time",
            )),
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.link.close("request answered");
    }
}

/// The HTTP answer to a node's error.
pub fn refusal(code: ErrorCode, message: String) -> ApiAnswer {
    let status = match code {
        ErrorCode::BadToken => 401,
        ErrorCode::PermissionDenied => 403,
        ErrorCode::UnknownListener => 404,
        ErrorCode::TooLarge => 413,
        ErrorCode::RateLimited => 429,
        _ => 400,
    };
    ApiAnswer::error(status, &format!("{code:?}"), message)
}
