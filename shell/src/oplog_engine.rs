//! An operation-log document (the model of seeds 000/001, made convergent):
//! operations keyed by (actor, counter) with a Lamport timestamp, ordered by
//! (Lamport, actor), folded into a state by an application's reducer.

use crate::engine::{DocEngine, ExportError};
use docweave_adapters::EnginePanic;
use docweave_core::{ImportOutcome, VersionVector};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Folds operations into the application's state.
pub trait Reducer: Send + Sync + 'static {
    /// The folded state.
    type State: Clone + Send;
    /// The state of an empty document.
    fn initial(&self) -> Self::State;
    /// Applies one operation.
    fn apply(&self, state: &mut Self::State, op: &[u8]);
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Op {
    /// Who made it.
    pub actor: u64,
    /// Its number among the actor's operations, from 0.
    pub counter: u64,
    /// Its Lamport timestamp: larger than every operation its author had seen.
    pub lamport: u64,
    /// Application bytes.
    pub data: Vec<u8>,
}

#[derive(Default)]
struct Inner {
    actor: u64,
    ops: BTreeMap<(u64, u64), Op>,
    listeners: Vec<Box<dyn Fn() + Send + Sync>>,
}

impl Inner {
    fn version(&self) -> VersionVector {
        let mut next: BTreeMap<u64, u64> = BTreeMap::new();
        for (actor, counter) in self.ops.keys() {
            let n = next.entry(*actor).or_insert(0);
            if *counter == *n {
                *n += 1;
            }
        }
        VersionVector::from_entries(next)
    }
}

/// A replica of an operation log. Clones share the replica.
pub struct OpLogDoc<R: Reducer> {
    inner: Arc<Mutex<Inner>>,
    reducer: Arc<R>,
}

impl<R: Reducer> Clone for OpLogDoc<R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            reducer: self.reducer.clone(),
        }
    }
}

impl<R: Reducer> OpLogDoc<R> {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a listener panicked; the log itself is intact.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a local operation; it syncs by itself.
    pub fn append(&self, data: impl Into<Vec<u8>>) -> Op {
        let op = {
            let mut inner = self.lock();
            let actor = inner.actor;
            let counter = inner.version().get(actor);
            let lamport = inner.ops.values().map(|o| o.lamport + 1).max().unwrap_or(0);
            let op = Op {
                actor,
                counter,
                lamport,
                data: data.into(),
            };
            inner.ops.insert((actor, counter), op.clone());
            op
        };
        for l in self.lock().listeners.iter() {
            l();
        }
        op
    }

    /// Operations present without a gap, in (Lamport, actor) order.
    pub fn ops(&self) -> Vec<Op> {
        let inner = self.lock();
        let version = inner.version();
        let mut ops: Vec<Op> = inner
            .ops
            .values()
            .filter(|o| version.contains(o.actor, o.counter))
            .cloned()
            .collect();
        ops.sort_by_key(|o| (o.lamport, o.actor, o.counter));
        ops
    }

    /// The state folded from every operation, in (Lamport, actor) order.
    pub fn state(&self) -> R::State {
        let mut state = self.reducer.initial();
        for op in self.ops() {
            self.reducer.apply(&mut state, &op.data);
        }
        state
    }
}

/// The engine for operation logs folded by `R`.
pub struct OpLogEngine<R: Reducer> {
    reducer: Arc<R>,
}

impl<R: Reducer> Clone for OpLogEngine<R> {
    fn clone(&self) -> Self {
        Self {
            reducer: self.reducer.clone(),
        }
    }
}

impl<R: Reducer> OpLogEngine<R> {
    /// An engine folding with `reducer`.
    pub fn new(reducer: R) -> Self {
        Self {
            reducer: Arc::new(reducer),
        }
    }
}

impl<R: Reducer> DocEngine for OpLogEngine<R> {
    type Doc = OpLogDoc<R>;
    type Handle = OpLogDoc<R>;

    fn create(&self, actor: u64) -> OpLogDoc<R> {
        let inner = Inner {
            actor,
            ..Inner::default()
        };
        OpLogDoc {
            inner: Arc::new(Mutex::new(inner)),
            reducer: self.reducer.clone(),
        }
    }

    fn version(&self, doc: &OpLogDoc<R>) -> VersionVector {
        doc.lock().version()
    }

    fn export(
        &self,
        doc: &OpLogDoc<R>,
        since: Option<&VersionVector>,
    ) -> Result<Vec<u8>, ExportError> {
        // A strand: the operations after `since`.
        let inner = doc.lock();
        let ops: Vec<&Op> = inner
            .ops
            .values()
            .filter(|o| !since.is_some_and(|v| v.contains(o.actor, o.counter)))
            .collect();
        postcard::to_stdvec(&ops).map_err(|e| ExportError::Refused(e.to_string()))
    }

    fn import(&self, doc: &mut OpLogDoc<R>, bytes: &[u8]) -> Result<ImportOutcome, EnginePanic> {
        let ops: Vec<Op> = match postcard::from_bytes(bytes) {
            Ok(ops) => ops,
            Err(e) => {
                return Ok(ImportOutcome::Failed {
                    reason: format!("not an operation list: {e}"),
                })
            }
        };
        let mut inner = doc.lock();
        for op in ops {
            inner.ops.entry((op.actor, op.counter)).or_insert(op);
        }
        let version = inner.version();
        // Its own code, which does not panic: nothing to contain.
        Ok(
            if inner.ops.keys().any(|(a, c)| !version.contains(*a, *c)) {
                ImportOutcome::Pending { version }
            } else {
                ImportOutcome::Applied { version }
            },
        )
    }

    fn handle(&self, doc: &OpLogDoc<R>) -> OpLogDoc<R> {
        doc.clone()
    }

    fn watch_local(
        &self,
        doc: &OpLogDoc<R>,
        notify: Box<dyn Fn() + Send + Sync>,
    ) -> Box<dyn std::any::Any + Send> {
        doc.lock().listeners.push(notify);
        Box::new(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Concat;
    impl Reducer for Concat {
        type State = String;
        fn initial(&self) -> String {
            String::new()
        }
        fn apply(&self, state: &mut String, op: &[u8]) {
            state.push_str(&String::from_utf8_lossy(op));
        }
    }

    #[test]
    fn concurrent_appends_fold_in_lamport_then_actor_order() {
        let e = OpLogEngine::new(Concat);
        let a = e.create(1);
        let mut b = e.create(2);
        a.append("a0");
        b.append("b0");
        let from_a = e.export(&a, None).unwrap();
        let from_b = e.export(&b, None).unwrap();
        let mut a2 = a.clone();
        assert!(matches!(
            e.import(&mut a2, &from_b).unwrap(),
            ImportOutcome::Applied { .. }
        ));
        assert!(matches!(
            e.import(&mut b, &from_a).unwrap(),
            ImportOutcome::Applied { .. }
        ));
        assert_eq!(a.state(), "a0b0");
        assert_eq!(b.state(), a.state());
        // After seeing both, a new op sorts after them.
        b.append("b1");
        assert!(b.state().ends_with("b1"));
    }

    #[test]
    fn a_strand_with_a_gap_is_pending() {
        let e = OpLogEngine::new(Concat);
        let a = e.create(1);
        a.append("x");
        let v = e.version(&a);
        a.append("y");
        let mut b = e.create(2);
        let strand = e.export(&a, Some(&v)).unwrap();
        assert!(matches!(
            e.import(&mut b, &strand).unwrap(),
            ImportOutcome::Pending { .. }
        ));
        assert_eq!(b.state(), "", "nothing folded past the gap");
    }
}
