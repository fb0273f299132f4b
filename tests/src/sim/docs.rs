//! The document engines the simulator drives, with the one edit a test
//! makes (append a value) and the content it compares.

use docweave_shell::{DocEngine, LoroEngine, OpLogEngine, Reducer};

/// An engine the simulator can edit and read.
pub trait SimEngine: DocEngine {
    /// A fresh engine.
    fn make() -> Self;
    /// A local edit through the application's handle: append `value`, commit.
    fn append(handle: &Self::Handle, value: &str);
    /// The values in the document, in the document's (converged) order.
    fn values(doc: &Self::Doc) -> Vec<String>;
    /// Its documents are Loro documents, which Loro-protocol clients
    /// ([`super::LoroMember`]) can join.
    fn speaks_loro() -> bool {
        false
    }
}

impl SimEngine for LoroEngine {
    fn make() -> Self {
        LoroEngine
    }

    fn append(handle: &loro::LoroDoc, value: &str) {
        let list = handle.get_list("items");
        let _ = list.push(value);
        handle.commit();
    }

    fn speaks_loro() -> bool {
        true
    }

    fn values(doc: &loro::LoroDoc) -> Vec<String> {
        let list = doc.get_list("items");
        (0..list.len())
            .filter_map(|i| list.get(i))
            .filter_map(|v| v.into_value().ok())
            .filter_map(|v| v.into_string().ok())
            .map(|s| s.to_string())
            .collect()
    }
}

/// Folds an operation log into its lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lines;

impl Reducer for Lines {
    type State = Vec<String>;
    fn initial(&self) -> Vec<String> {
        Vec::new()
    }
    fn apply(&self, state: &mut Vec<String>, op: &[u8]) {
        state.push(String::from_utf8_lossy(op).into_owned());
    }
}

impl SimEngine for OpLogEngine<Lines> {
    fn make() -> Self {
        OpLogEngine::new(Lines)
    }

    fn append(handle: &docweave_shell::OpLogDoc<Lines>, value: &str) {
        handle.append(value.as_bytes().to_vec());
    }

    fn values(doc: &docweave_shell::OpLogDoc<Lines>) -> Vec<String> {
        doc.state()
    }
}
