//! The core's files depend on each other without a circle, and its
//! handlers in layers: a handler (`sync`, `storage`, `changes`, ...) uses
//! only the leaves every handler needs (`common`, `timers`, `quotas`,
//! `presence`, `propagation`, `store_requests`), never another handler;
//! what one handler's work means for another is a recorded follow-up that
//! `update` runs (`follow_ups.rs`); only the top layer (`update`,
//! `follow_ups`, `tick`) calls handlers.
//!
//! The graph is read from the sources: a file depends on a module it names
//! as `crate::m`, `crate::handlers::m`, `handlers::{m, ..}` or (in a
//! handler) `super::m`. Unit tests at the end of a file are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The leaves every handler may use: they call no handler.
const LEAVES: &[&str] = &[
    "handlers::common",
    "handlers::on_demand",
    "handlers::presence",
    "handlers::propagation",
    "handlers::quotas",
    "handlers::store_requests",
    "handlers::timers",
];

/// The files that may call handlers: the entry point and its dispatchers.
const TOP: &[&str] = &["update", "follow_ups", "tick", "lib"];

fn strip(src: &str) -> String {
    let body = match src.find("#[cfg(test)]") {
        Some(at) => &src[..at],
        None => src,
    };
    body.lines()
        .map(|l| match l.find("//") {
            Some(at) => &l[..at],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn word_after(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The core's modules (`update`, `handlers::sync`, ...) and the modules
/// each one names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            files.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    for entry in std::fs::read_dir(src.join("handlers")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        if name != "mod" {
            files.insert(
                format!("handlers::{name}"),
                std::fs::read_to_string(&path).unwrap(),
            );
        }
    }
    let known: BTreeSet<String> = files.keys().cloned().collect();
    let mut edges = BTreeMap::new();
    for (name, text) in &files {
        let text = strip(text);
        let mut named = BTreeSet::new();
        let mut note = |m: String| {
            if known.contains(&m) && m != *name {
                named.insert(m);
            }
        };
        for (at, _) in text.match_indices("crate::") {
            let after = &text[at + "crate::".len()..];
            if let Some(rest) = after.strip_prefix("handlers::") {
                if let Some(group) = rest.strip_prefix('{') {
                    for m in group.split('}').next().unwrap_or("").split(',') {
                        note(format!("handlers::{}", m.trim()));
                    }
                } else {
                    note(format!("handlers::{}", word_after(rest)));
                }
            } else {
                note(word_after(after));
            }
        }
        if name.starts_with("handlers::") {
            for (at, _) in text.match_indices("super::") {
                note(format!("handlers::{}", word_after(&text[at + 7..])));
            }
        }
        edges.insert(name.clone(), named);
    }
    edges
}

/// A circle in the graph, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(c) = visit(node, edges, &mut done, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_core_files_depend_on_each_other_without_a_circle() {
    let edges = graph();
    assert!(edges.contains_key("handlers::sync") && edges.contains_key("update"));
    if let Some(cycle) = find_cycle(&edges) {
        panic!(
            "the core's files depend on each other in a circle: {}",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn a_handler_uses_only_the_leaves_and_only_the_top_layer_calls_handlers() {
    let edges = graph();
    let mut wrong = Vec::new();
    for (file, named) in &edges {
        if TOP.contains(&file.as_str()) {
            continue;
        }
        for m in named {
            if m.starts_with("handlers::") && !LEAVES.contains(&m.as_str()) {
                wrong.push(format!("{file} -> {m}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "outside the top layer, files call handlers (record a FollowUp instead): {wrong:?}"
    );
}

#[test]
fn the_checker_sees_a_circle_when_there_is_one() {
    let mut edges = graph();
    edges
        .get_mut("handlers::common")
        .unwrap()
        .insert("handlers::sync".into());
    assert!(find_cycle(&edges).is_some());
}
