//! `docweave trace`: a recording (`serve --record DIR`) as a readable
//! protocol trace, one line per message, input and command, in the words
//! of the protocol snapshot tests; narrowed to a document, a peer or a
//! span of time.

use docweave_core::{ChannelId, Cmd, Message, Msg, PeerId};
use docweave_shell::{trace, Line};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Options of `docweave trace`.
#[derive(clap::Args)]
pub struct TraceArgs {
    /// A recording's directory or files, in order.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Only lines about this document.
    #[arg(long)]
    doc: Option<String>,
    /// Only lines on this peer's connections, or naming it.
    #[arg(long)]
    peer: Option<String>,
    /// From this time on (the node's clock, ms, as printed).
    #[arg(long)]
    from: Option<u64>,
    /// Up to this time.
    #[arg(long)]
    to: Option<u64>,
}

/// Whether `line` names `id` as a whole word.
fn mentions(line: &str, id: &str) -> bool {
    line.split(|c: char| c.is_whitespace() || "=,[](){}:\"".contains(c))
        .any(|w| w == id)
}

/// What the trace knows of the connections so far: who is on each (as
/// they said in their hello, or our dial's welcome), and the store's.
#[derive(Default)]
struct Channels(BTreeMap<ChannelId, PeerId>);

impl Channels {
    fn learn(&mut self, channel: ChannelId, m: &Message) {
        match m {
            Message::Hello(h) => {
                self.0.insert(channel, h.peer.clone());
            }
            Message::Welcome(w) => {
                self.0.insert(channel, w.peer.clone());
            }
            _ => {}
        }
    }

    fn who(&self, channel: ChannelId) -> String {
        match self.0.get(&channel) {
            Some(p) => format!("{channel} {p}"),
            None => format!("{channel}"),
        }
    }
}

/// The lines of one step, each with the peer of its channel if any.
fn step_lines(
    channels: &mut Channels,
    input: &Msg,
    output: &[Cmd],
) -> Vec<(Option<PeerId>, String)> {
    let mut lines = Vec::new();
    let peer_of = |c: &Channels, ch: ChannelId| c.0.get(&ch).cloned();
    match input {
        Msg::Restored { store, .. } => {
            // The store speaks on a channel of its own.
            channels.0.insert(*store, PeerId::new("store"));
            if let Some(text) = trace::input(input) {
                lines.push((None, text));
            }
        }
        Msg::ChannelAdded {
            channel, remote, ..
        } => lines.push((
            None,
            match remote {
                Some(r) => format!("{channel} opened (dialed {r})"),
                None => format!("{channel} opened"),
            },
        )),
        Msg::ChannelRemoved { channel } => {
            lines.push((
                peer_of(channels, *channel),
                format!("{} closed", channels.who(*channel)),
            ));
            channels.0.remove(channel);
        }
        Msg::Received { channel, message } => {
            channels.learn(*channel, message);
            lines.push((
                peer_of(channels, *channel),
                format!("{} -> {}", channels.who(*channel), trace::message(message)),
            ));
        }
        Msg::Authenticated {
            channel, message, ..
        } => {
            channels.learn(*channel, message);
            let text = trace::input(input).unwrap_or_else(|| trace::message(message));
            lines.push((
                peer_of(channels, *channel),
                format!("{} -> {text}", channels.who(*channel)),
            ));
        }
        other => {
            if let Some(text) = trace::input(other) {
                lines.push((None, text));
            }
        }
    }
    for c in output {
        match c {
            Cmd::Send { channel, items } => {
                for item in items {
                    lines.push((
                        peer_of(channels, *channel),
                        format!("{} <- {}", channels.who(*channel), trace::outgoing(item)),
                    ));
                }
            }
            other => {
                if let Some(text) = trace::command(other) {
                    lines.push((None, format!("  {text}")));
                }
            }
        }
    }
    lines
}

pub fn run(a: &TraceArgs) -> Result<(), String> {
    let mut channels = Channels::default();
    let mut printed = 0usize;
    let peer = a.peer.as_deref();
    docweave_shell::read_lines(&a.files, |_, line| {
        match line {
            Line::Config(c) => {
                channels = Channels::default();
                out!(
                    "{:>10}  node {} ({:?}), protocol {}",
                    "config",
                    c.peer,
                    c.kind,
                    c.protocol
                );
            }
            Line::Step { now, input, output } => {
                let lines = step_lines(&mut channels, &input, &output);
                if a.from.is_some_and(|f| now < f) || a.to.is_some_and(|t| now > t) {
                    return true;
                }
                for (on, text) in lines {
                    let by_doc = a.doc.as_deref().is_none_or(|d| mentions(&text, d));
                    let by_peer = peer.is_none_or(|p| {
                        on.as_ref().is_some_and(|o| o.as_str() == p) || mentions(&text, p)
                    });
                    if by_doc && by_peer {
                        out!("{now:>10}  {text}");
                        printed += 1;
                    }
                }
            }
        }
        true
    })
    .map_err(|e| e.to_string())?;
    if printed == 0 {
        eprintln!("docweave: nothing in the recording matched");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_is_found_whole_and_not_inside_another() {
        assert!(mentions("update doc=notes/a batch=3", "notes/a"));
        assert!(mentions("ch 3 alice -> hello peer=alice", "alice"));
        assert!(!mentions("update doc=notes/ab", "notes/a"));
        assert!(!mentions("alicea", "alice"));
    }
}
