//! Tokens checked elsewhere (`Authenticator::ask`): a connection whose
//! hello (or reauth) waits for the answer has what it sends after it held,
//! in order and within bounds, and handed on once the verdict is in; other
//! connections go on meanwhile.

use super::{Node, Output};
use crate::DocEngine;
use docweave_core::{ChannelId, Message, Msg};

/// Most messages (or frames) a connection may send while its token is
/// being checked elsewhere, and most bytes; more close it.
const WAITING_ON_CHECK: usize = 64;
const WAITING_BYTES: usize = 1 << 20;

/// A connection whose hello (or reauth) waits for its token's check, and
/// what it sent after it, in order.
pub(super) struct Checking {
    message: Message,
    later: Vec<Later>,
    /// Bytes of the frames held.
    bytes: usize,
    /// It sent too much while waiting: dropped, and closed by the core.
    refused: bool,
}

/// Something a connection sent while its token was checked.
pub(super) enum Later {
    /// A message of the frame that carried the hello.
    Message(Message),
    /// A frame that came after it (a chunk, or whole).
    Frame(Vec<u8>),
}

impl<E: DocEngine> Node<E> {
    /// A message a connection sent: for the core now, or held while its
    /// token is checked elsewhere (with what the connection sends after it).
    pub(super) fn message_in(&mut self, channel: ChannelId, message: Message) {
        if self.checking.contains_key(&channel) {
            return self.hold(channel, Later::Message(message));
        }
        match self.received(channel, message) {
            Ok(msg) => self.internal.push_back(msg),
            Err(held) => {
                let (message, check) = *held;
                self.checking.insert(
                    channel,
                    Checking {
                        message,
                        later: Vec::new(),
                        bytes: 0,
                        refused: false,
                    },
                );
                self.outputs
                    .push_back(Output::Authenticate { channel, check });
            }
        }
    }

    /// The answer of a check elsewhere: the held message goes to the core
    /// with its verdict, then what came after it, in order.
    pub(super) fn checked(&mut self, channel: ChannelId, checked: crate::Checked) {
        let Some(waiting) = self.checking.remove(&channel) else {
            // The connection closed meanwhile.
            return;
        };
        if waiting.refused {
            // It sent too much while waiting and is being closed.
            return;
        }
        let verdict = self.verdict(checked);
        // At once, so that what it sent after (chunks too) finds the
        // connection established.
        self.step(Msg::Authenticated {
            channel,
            message: waiting.message,
            verdict,
        });
        for later in waiting.later {
            match later {
                Later::Message(message) => self.message_in(channel, message),
                Later::Frame(bytes) => self.frame_in(channel, bytes),
            }
        }
    }

    /// Keeps what a connection sent while its token is checked, within
    /// bounds: past them it is refused and what it sent dropped.
    pub(super) fn hold(&mut self, channel: ChannelId, later: Later) {
        let Some(waiting) = self.checking.get_mut(&channel) else {
            return;
        };
        if waiting.refused {
            return;
        }
        waiting.bytes += match &later {
            Later::Frame(bytes) => bytes.len(),
            Later::Message(_) => 0,
        };
        if waiting.later.len() < WAITING_ON_CHECK && waiting.bytes <= WAITING_BYTES {
            waiting.later.push(later);
            return;
        }
        waiting.refused = true;
        waiting.later.clear();
        self.internal.push_back(Msg::FrameRejected {
            channel,
            reason: format!(
                "more than {WAITING_ON_CHECK} messages or {WAITING_BYTES} bytes while its token was being checked"
            ),
        });
    }

    /// A received message for the core: a hello or reauth whose token the
    /// checker knows goes with its verdict; one it must ask elsewhere about
    /// comes back with the question.
    fn received(
        &self,
        channel: ChannelId,
        message: Message,
    ) -> Result<Msg, Box<(Message, crate::RemoteCheck)>> {
        let Some(checker) = &self.authenticator else {
            return Ok(Msg::Received { channel, message });
        };
        let token = match &message {
            Message::Hello(hello) => hello.token.as_deref(),
            Message::Reauth { token } => Some(token.as_str()),
            _ => None,
        };
        let Some(token) = token else {
            return Ok(Msg::Received { channel, message });
        };
        let Some(checked) = checker.check(token) else {
            return match checker.ask(token) {
                Some(check) => Err(Box::new((message, check))),
                None => Ok(Msg::Received { channel, message }),
            };
        };
        Ok(Msg::Authenticated {
            channel,
            message,
            verdict: self.verdict(checked),
        })
    }

    /// The core's verdict from a checker's, its expiry on the node's clock.
    pub(super) fn verdict(&self, checked: crate::Checked) -> docweave_core::Verdict {
        match checked {
            crate::Checked::Valid {
                mut credential,
                lifetime_ms,
            } => {
                credential.expires = lifetime_ms.map(|l| self.now.saturating_add(l));
                docweave_core::Verdict::Valid(credential)
            }
            crate::Checked::Refused(why) => docweave_core::Verdict::Refused(why),
        }
    }
}
