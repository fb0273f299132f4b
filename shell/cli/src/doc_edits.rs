//! Edits as JSON, for a backend without a Loro library (`PATCH /docs/ID`):
//! set and remove keys of a map, insert and delete in a text or a list.
//! They are applied to a copy of the document and become one ordinary
//! Loro change, which the node then takes like any client's.
//!
//! ```json
//! {"message": "optional commit message",
//!  "edits": [
//!   {"op": "set", "path": ["settings"], "values": {"title": "Notes", "size": 3}},
//!   {"op": "remove", "path": ["settings"], "keys": ["size"]},
//!   {"op": "insert_text", "path": ["body"], "index": 0, "text": "Hello"},
//!   {"op": "delete_text", "path": ["body"], "index": 0, "len": 2},
//!   {"op": "insert_list", "path": ["items"], "values": [1, "two"]},
//!   {"op": "delete_list", "path": ["items"], "index": 0, "len": 1}]}
//! ```
//! A path starts with a root container's name (made, of the edit's kind,
//! if the document has none of that name; one of another kind there is
//! refused) and goes on through map keys
//! and list positions to a container that must exist. Text positions
//! count Unicode characters; a missing `index` inserts at the end.

use loro::{Container, Index, LoroDoc, LoroList, LoroMap, LoroText, LoroValue, ValueOrContainer};
use serde::Deserialize;

/// The most edits one request makes.
pub const MOST_EDITS: usize = 1_000;

/// A request's edits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edits {
    /// The commit message of the change, if any.
    #[serde(default)]
    pub message: Option<String>,
    /// The edits, in order.
    pub edits: Vec<Edit>,
}

/// One step of a path: a map key or a list position.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Step {
    /// A key of a map (or a root container's name).
    Key(String),
    /// A position in a list.
    Position(usize),
}

/// One edit.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Edit {
    /// Sets keys of the map at `path` to plain values.
    Set {
        /// Where the map is.
        path: Vec<Step>,
        /// The keys and their values.
        values: serde_json::Map<String, serde_json::Value>,
    },
    /// Removes keys of the map at `path`.
    Remove {
        /// Where the map is.
        path: Vec<Step>,
        /// The keys.
        keys: Vec<String>,
    },
    /// Inserts text into the text at `path`.
    InsertText {
        /// Where the text is.
        path: Vec<Step>,
        /// Before which character; the end when absent.
        #[serde(default)]
        index: Option<usize>,
        /// What to insert.
        text: String,
    },
    /// Deletes characters of the text at `path`.
    DeleteText {
        /// Where the text is.
        path: Vec<Step>,
        /// The first character deleted.
        index: usize,
        /// How many.
        len: usize,
    },
    /// Inserts plain values into the list at `path`.
    InsertList {
        /// Where the list is.
        path: Vec<Step>,
        /// Before which item; the end when absent.
        #[serde(default)]
        index: Option<usize>,
        /// What to insert.
        values: Vec<serde_json::Value>,
    },
    /// Deletes items of the list at `path`.
    DeleteList {
        /// Where the list is.
        path: Vec<Step>,
        /// The first item deleted.
        index: usize,
        /// How many.
        len: usize,
    },
}

/// Why edits were not made (nothing of them is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditError {
    /// The body is not edits (with serde's reason).
    Malformed(String),
    /// Edit `n` (from 0) names no container of its kind.
    BadPath(usize, String),
    /// Edit `n` could not be made (a position out of range, say).
    BadEdit(usize, String),
}

impl std::fmt::Display for EditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "not edits: {why}"),
            Self::BadPath(n, why) => write!(f, "edit {n}: {why}"),
            Self::BadEdit(n, why) => write!(f, "edit {n}: {why}"),
        }
    }
}

/// Reads edits from a request's body.
pub fn parse(body: &[u8]) -> Result<Edits, EditError> {
    let edits: Edits =
        serde_json::from_slice(body).map_err(|e| EditError::Malformed(e.to_string()))?;
    if edits.edits.len() > MOST_EDITS {
        let why = format!("at most {MOST_EDITS} edits a request");
        return Err(EditError::Malformed(why));
    }
    Ok(edits)
}

/// The container kind an edit works on.
#[derive(Clone, Copy)]
enum Kind {
    Map,
    Text,
    List,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Map => "map",
            Kind::Text => "text",
            Kind::List => "list",
        }
    }
}

/// Makes `edits` on `doc` and commits them as one change.
pub fn apply(doc: &LoroDoc, edits: &Edits) -> Result<(), EditError> {
    for (n, edit) in edits.edits.iter().enumerate() {
        apply_one(doc, edit).map_err(|e| match e {
            Failure::Path(why) => EditError::BadPath(n, why),
            Failure::Edit(why) => EditError::BadEdit(n, why),
        })?;
    }
    if let Some(message) = &edits.message {
        doc.set_next_commit_message(message);
    }
    doc.commit();
    Ok(())
}

enum Failure {
    Path(String),
    Edit(String),
}

fn edit_failed(e: loro::LoroError) -> Failure {
    Failure::Edit(e.to_string())
}

fn apply_one(doc: &LoroDoc, edit: &Edit) -> Result<(), Failure> {
    match edit {
        Edit::Set { path, values } => {
            let map = as_map(find(doc, path, Kind::Map)?)?;
            for (key, value) in values {
                map.insert(key, plain(value)).map_err(edit_failed)?;
            }
        }
        Edit::Remove { path, keys } => {
            let map = as_map(find(doc, path, Kind::Map)?)?;
            for key in keys {
                map.delete(key).map_err(edit_failed)?;
            }
        }
        Edit::InsertText { path, index, text } => {
            let t = as_text(find(doc, path, Kind::Text)?)?;
            let at = index.unwrap_or_else(|| t.len_unicode());
            t.insert(at, text).map_err(edit_failed)?;
        }
        Edit::DeleteText { path, index, len } => {
            let t = as_text(find(doc, path, Kind::Text)?)?;
            t.delete(*index, *len).map_err(edit_failed)?;
        }
        Edit::InsertList {
            path,
            index,
            values,
        } => {
            let list = as_list(find(doc, path, Kind::List)?)?;
            let from = index.unwrap_or_else(|| list.len());
            for (at, value) in (from..).zip(values) {
                list.insert(at, plain(value)).map_err(edit_failed)?;
            }
        }
        Edit::DeleteList { path, index, len } => {
            let list = as_list(find(doc, path, Kind::List)?)?;
            list.delete(*index, *len).map_err(edit_failed)?;
        }
    }
    Ok(())
}

/// The container at `path`: a root one is made of `kind` if missing; a
/// nested one must exist.
fn find(doc: &LoroDoc, path: &[Step], kind: Kind) -> Result<Container, Failure> {
    let Some((Step::Key(root), rest)) = path.split_first() else {
        return Err(Failure::Path(
            "a path starts with a root container's name".into(),
        ));
    };
    if rest.is_empty() {
        // Loro tells roots apart by name and kind: one of another kind
        // under this name would hide, or be hidden by, the new one.
        if let Some(ValueOrContainer::Container(c)) =
            doc.get_by_path(&[Index::Key(root.as_str().into())])
        {
            return Ok(c);
        }
        return Ok(match kind {
            Kind::Map => Container::Map(doc.get_map(root.as_str())),
            Kind::Text => Container::Text(doc.get_text(root.as_str())),
            Kind::List => Container::List(doc.get_list(root.as_str())),
        });
    }
    let steps: Vec<Index> = path
        .iter()
        .map(|s| match s {
            Step::Key(k) => Index::Key(k.as_str().into()),
            Step::Position(p) => Index::Seq(*p),
        })
        .collect();
    match doc.get_by_path(&steps) {
        Some(ValueOrContainer::Container(c)) => Ok(c),
        _ => Err(Failure::Path(format!(
            "no {} at {}",
            kind.name(),
            printed(path)
        ))),
    }
}

fn printed(path: &[Step]) -> String {
    path.iter()
        .map(|s| match s {
            Step::Key(k) => format!("{k:?}"),
            Step::Position(p) => p.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn as_map(c: Container) -> Result<LoroMap, Failure> {
    match c {
        Container::Map(m) => Ok(m),
        _ => Err(Failure::Path("the container there is not a map".into())),
    }
}

fn as_text(c: Container) -> Result<LoroText, Failure> {
    match c {
        Container::Text(t) => Ok(t),
        _ => Err(Failure::Path("the container there is not a text".into())),
    }
}

fn as_list(c: Container) -> Result<LoroList, Failure> {
    match c {
        Container::List(l) => Ok(l),
        _ => Err(Failure::Path("the container there is not a list".into())),
    }
}

/// A JSON value as a plain Loro value (numbers that are whole and fit
/// stay integers). serde_json bounds how deep it nests.
fn plain(v: &serde_json::Value) -> LoroValue {
    use serde_json::Value;
    match v {
        Value::Null => LoroValue::Null,
        Value::Bool(b) => LoroValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => LoroValue::I64(i),
            None => LoroValue::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => LoroValue::from(s.as_str()),
        Value::Array(items) => LoroValue::from(items.iter().map(plain).collect::<Vec<_>>()),
        Value::Object(entries) => LoroValue::from(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), plain(v)))
                .collect::<std::collections::HashMap<_, _>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn edited(doc: &LoroDoc, body: serde_json::Value) -> Result<(), EditError> {
        apply(doc, &parse(body.to_string().as_bytes())?)
    }

    #[test]
    fn edits_set_and_remove_keys_and_insert_and_delete_in_texts_and_lists() {
        let doc = LoroDoc::new();
        let body = json!({"message": "first", "edits": [
            {"op": "set", "path": ["settings"], "values": {"title": "Notes", "size": 3, "tags": ["a"]}},
            {"op": "remove", "path": ["settings"], "keys": ["size"]},
            {"op": "insert_text", "path": ["body"], "text": "world"},
            {"op": "insert_text", "path": ["body"], "index": 0, "text": "hello "},
            {"op": "delete_text", "path": ["body"], "index": 0, "len": 1},
            {"op": "insert_list", "path": ["items"], "values": [1, 2.5, "three"]},
            {"op": "delete_list", "path": ["items"], "index": 0, "len": 1},
        ]});
        edited(&doc, body).unwrap();
        assert_eq!(
            serde_json::to_value(doc.get_deep_value()).unwrap(),
            json!({"settings": {"title": "Notes", "tags": ["a"]}, "body": "ello world", "items": [2.5, "three"]})
        );
    }

    #[test]
    fn a_nested_path_reaches_an_existing_container_and_a_missing_one_is_refused() {
        let doc = LoroDoc::new();
        let inner = doc
            .get_map("root")
            .insert_container("inner", LoroText::new())
            .unwrap();
        inner.insert(0, "x").unwrap();
        doc.commit();
        let ok = json!({"edits": [{"op": "insert_text", "path": ["root", "inner"], "text": "y"}]});
        edited(&doc, ok).unwrap();
        assert_eq!(doc.get_map("root").get_deep_value(), {
            let v: LoroValue =
                std::collections::HashMap::from([("inner".to_string(), LoroValue::from("xy"))])
                    .into();
            v
        });
        let missing =
            json!({"edits": [{"op": "set", "path": ["root", "nope"], "values": {"a": 1}}]});
        assert!(matches!(
            edited(&doc, missing),
            Err(EditError::BadPath(0, _))
        ));
        let wrong_kind =
            json!({"edits": [{"op": "set", "path": ["root", "inner"], "values": {"a": 1}}]});
        assert!(matches!(
            edited(&doc, wrong_kind),
            Err(EditError::BadPath(0, _))
        ));
    }

    #[test]
    fn malformed_edits_and_positions_out_of_range_are_refused() {
        let doc = LoroDoc::new();
        for body in [
            json!({"edits": [{"op": "explode", "path": ["a"]}]}),
            json!({"edits": [{"op": "set", "path": ["a"], "values": {}, "extra": 1}]}),
            json!({"nothing": []}),
            json!({"edits": [{"op": "set", "path": [], "values": {}}]}),
        ] {
            let r = parse(body.to_string().as_bytes()).and_then(|e| apply(&doc, &e));
            assert!(
                matches!(r, Err(EditError::Malformed(_) | EditError::BadPath(..))),
                "{body}"
            );
        }
        let far =
            json!({"edits": [{"op": "insert_text", "path": ["t"], "index": 99, "text": "x"}]});
        assert!(matches!(edited(&doc, far), Err(EditError::BadEdit(0, _))));
        let many = json!({"edits": vec![json!({"op": "remove", "path": ["m"], "keys": []}); MOST_EDITS + 1]});
        assert!(matches!(edited(&doc, many), Err(EditError::Malformed(_))));
    }
}
