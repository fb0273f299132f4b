//! `serve --revoked-file PATH`: tokens (by `jti`) and identities (`sub:NAME`)
//! the operator cut off, one per line (`#` starts a comment). Read at start
//! and kept current by `file_watch`; each new list goes to the node, which
//! closes every connection it revokes at once.

use docweave_core::{PeerId, Revocations};
use std::path::Path;

/// The list a file's text gives, or the first line that is not one.
pub fn parse(text: &str) -> Result<Revocations, String> {
    let mut r = Revocations::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match line.strip_prefix("sub:") {
            Some(peer) => {
                let peer = PeerId::parse(peer.trim())
                    .map_err(|e| format!("line {}: not a peer id: {e}", n + 1))?;
                r.peers.insert(peer);
            }
            None => {
                r.tokens.insert(line.to_string());
            }
        }
    }
    Ok(r)
}

/// The list as text [`parse`] reads back: one entry per line, in order.
pub fn render(list: &Revocations) -> String {
    let mut text = String::new();
    for token in &list.tokens {
        text.push_str(token);
        text.push('\n');
    }
    for peer in &list.peers {
        text.push_str(&format!("sub:{peer}\n"));
    }
    text
}

/// What any of `lists` revokes.
pub fn union<'a>(lists: impl IntoIterator<Item = &'a Revocations>) -> Revocations {
    let mut all = Revocations::default();
    for l in lists {
        all.tokens.extend(l.tokens.iter().cloned());
        all.peers.extend(l.peers.iter().cloned());
    }
    all
}

/// Reads and parses the file.
pub fn read(path: &Path) -> Result<(String, Revocations), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let list = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((text, list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_tokens_or_identities_and_comments_are_skipped() {
        let r = parse("# cut off\ntok-1\n  sub:mallory  # left the team\n\ntok-2\n").unwrap();
        assert_eq!(
            r.tokens.iter().map(String::as_str).collect::<Vec<_>>(),
            ["tok-1", "tok-2"]
        );
        assert!(r.peers.contains(&PeerId::new("mallory")));
        assert!(parse("sub:").is_err(), "an empty identity was taken");
    }

    #[test]
    fn a_rendered_list_reads_back_the_same_and_unions_add_up() {
        let a = parse("tok-1\nsub:mallory\n").unwrap();
        assert_eq!(parse(&render(&a)).unwrap(), a);
        let b = parse("tok-2\nsub:eve\n").unwrap();
        let both = union([&a, &b]);
        assert_eq!(both.tokens.len(), 2);
        assert_eq!(both.peers.len(), 2);
    }
}
