//! Tokens out of a recording: each secret is written as `token-` and a
//! keyed hash of it (SipHash with keys drawn for the run), the same name
//! for the same token throughout, so a replay decides as the node did (the
//! core only compares tokens for equality); nothing is kept per token, so a
//! client presenting ever new tokens costs no memory. Token ids (`jti`)
//! and identities are not secrets and stay as they are.
//!
//! Where a token can be: the configuration (`tokens`, `grants`), a hello
//! or reauth received or sent, a connect and a token refresh asked by the
//! application. A test of the real binary reads a whole recording's bytes
//! for the secrets it was given.

use docweave_core::{Cmd, Config, Message, Msg, Outgoing};
use std::hash::{BuildHasher, Hasher};

/// Names tokens for one run.
#[derive(Default)]
pub(super) struct TokenNames(std::collections::hash_map::RandomState);

impl TokenNames {
    fn name(&self, token: &mut String) {
        let mut h = self.0.build_hasher();
        h.write(token.as_bytes());
        *token = format!("token-{:016x}", h.finish());
    }

    /// The configuration with its tokens named.
    pub(super) fn config(&mut self, config: &Config) -> Config {
        let mut c = config.clone();
        c.tokens.iter_mut().for_each(|t| self.name(t));
        c.grants.iter_mut().for_each(|g| self.name(&mut g.token));
        c
    }

    fn message(&mut self, m: &mut Message) {
        match m {
            Message::Hello(h) => {
                if let Some(t) = h.token.as_mut() {
                    self.name(t);
                }
            }
            Message::Reauth { token } => self.name(token),
            _ => {}
        }
    }

    /// Whether a step holds a token (most do not: they are written as
    /// they are, without a copy).
    pub(super) fn holds_token(input: &Msg, output: &[Cmd]) -> bool {
        let secret = |m: &Message| match m {
            Message::Hello(h) => h.token.is_some(),
            Message::Reauth { .. } => true,
            _ => false,
        };
        let in_input = match input {
            Msg::Received { message, .. } | Msg::Authenticated { message, .. } => secret(message),
            Msg::Connect { token, .. } => token.is_some(),
            Msg::SetToken { .. } | Msg::Tokens { .. } => true,
            _ => false,
        };
        in_input
            || output.iter().any(|c| match c {
                Cmd::Send { items, .. } => items
                    .iter()
                    .any(|i| matches!(i, Outgoing::Message(m) if secret(m))),
                _ => false,
            })
    }

    /// The input with its tokens named.
    pub(super) fn input(&mut self, input: &Msg) -> Msg {
        let mut m = input.clone();
        match &mut m {
            Msg::Received { message, .. } | Msg::Authenticated { message, .. } => {
                self.message(message)
            }
            Msg::Connect { token: Some(t), .. } => self.name(t),
            Msg::SetToken { token, .. } => self.name(token),
            Msg::Tokens { tokens, grants } => {
                tokens.iter_mut().for_each(|t| self.name(t));
                grants.iter_mut().for_each(|g| self.name(&mut g.token));
            }
            _ => {}
        }
        m
    }

    /// The commands with the tokens they send named.
    pub(super) fn output(&mut self, output: &[Cmd]) -> Vec<Cmd> {
        let mut out = output.to_vec();
        for c in &mut out {
            if let Cmd::Send { items, .. } = c {
                for i in items.iter_mut() {
                    if let Outgoing::Message(m) = i {
                        self.message(m);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use docweave_core::{ChannelId, Clock, Hello, PeerId, PeerKind};

    fn hello(token: &str) -> Message {
        Message::Hello(Hello {
            peer: PeerId::new("alice"),
            name: "alice".into(),
            kind: PeerKind::User,
            protocol: 4,
            token: Some(token.into()),
            clock: Clock(0),
        })
    }

    #[test]
    fn the_same_token_gets_the_same_name_everywhere_and_no_secret_is_left() {
        let mut names = TokenNames::default();
        let mut config = Config::new("hub");
        config.tokens = vec!["s3cret".into()];
        let config = names.config(&config);
        let input = Msg::Received {
            channel: ChannelId(1),
            message: hello("s3cret"),
        };
        let output = vec![Cmd::Send {
            channel: ChannelId(2),
            items: vec![Outgoing::Message(hello("other"))],
        }];
        assert!(TokenNames::holds_token(&input, &output));
        let (input, output) = (names.input(&input), names.output(&output));
        let text = format!("{config:?} {input:?} {output:?}");
        assert!(
            !text.contains("s3cret") && !text.contains("other"),
            "{text}"
        );
        // The same token, the same name; another, another name.
        let named = &config.tokens[0];
        assert!(named.starts_with("token-"), "{named}");
        assert_eq!(text.matches(named.as_str()).count(), 2, "{text}");
        assert_eq!(text.matches("token-").count(), 3, "{text}");
        assert!(!TokenNames::holds_token(&Msg::Tick, &[]));
    }
}
