//! `docweave._native`: the node for Python, driven by the pure-Python
//! asyncio loop in `python/docweave/__init__.py`.
//!
//! Here: a thin class over [`docweave_ffi::host::Host`] (the node with its
//! store run inline). Not here: sockets and the loop (Python's asyncio
//! does them), or any decision (the core).

use docweave_core::{ChannelId, DocId, RemoteAddr};
use docweave_ffi::host::{Host, HostConfig, HostOutput};
use docweave_shell::Input;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

fn invalid(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn doc_id(doc: &str) -> PyResult<DocId> {
    DocId::parse(doc).map_err(invalid)
}

/// A docweave node: feed it frames and the time, poll what it wants done.
#[pyclass(unsendable)]
struct Node {
    host: Host,
}

#[pymethods]
impl Node {
    /// A node named `peer`, with an SQLite store at `sqlite` (else memory).
    #[new]
    #[pyo3(signature = (peer, now_ms, sqlite=None, token=None))]
    fn new(
        peer: String,
        now_ms: u64,
        sqlite: Option<String>,
        token: Option<String>,
    ) -> PyResult<Self> {
        let host = Host::new(
            HostConfig {
                peer,
                sqlite,
                token,
            },
            now_ms,
        )
        .map_err(invalid)?;
        Ok(Self { host })
    }

    /// Stay connected to the remote called `remote` (dials come out of `poll`).
    fn connect(&mut self, remote: &str, now_ms: u64) -> PyResult<()> {
        let remote = RemoteAddr::parse(remote).map_err(invalid)?;
        self.host.connect(remote, now_ms);
        Ok(())
    }

    /// A connection is open (to `remote`, or accepted when `None`); its channel.
    #[pyo3(signature = (remote, now_ms))]
    fn channel_opened(&mut self, remote: Option<&str>, now_ms: u64) -> PyResult<u64> {
        let remote = remote.map(RemoteAddr::parse).transpose().map_err(invalid)?;
        Ok(self.host.node.channel_opened(now_ms, remote).0)
    }

    /// A dial the node asked for failed (it tries again with backoff).
    fn dial_failed(&mut self, remote: &str, now_ms: u64) -> PyResult<()> {
        let remote = RemoteAddr::parse(remote).map_err(invalid)?;
        self.host.node.handle(now_ms, Input::DialFailed { remote });
        Ok(())
    }

    /// A whole frame arrived on `channel`.
    fn feed(&mut self, channel: u64, frame: Vec<u8>, now_ms: u64) {
        self.host.node.handle(
            now_ms,
            Input::Frame {
                channel: ChannelId(channel),
                bytes: frame,
            },
        );
    }

    /// The connection of `channel` is gone.
    fn channel_closed(&mut self, channel: u64, now_ms: u64) {
        let channel = ChannelId(channel);
        self.host
            .node
            .handle(now_ms, Input::ChannelClosed { channel });
    }

    /// Time passed.
    fn timeout(&mut self, now_ms: u64) {
        self.host.node.handle(now_ms, Input::Timeout);
    }

    /// When `timeout` is next due (milliseconds, the caller's clock), if ever.
    fn next_timeout(&self) -> Option<u64> {
        self.host.node.poll_timeout()
    }

    /// A new token for `remote` (a refresh before the old one expires):
    /// presented at once on a live connection, and in every hello from now on.
    fn set_token(&mut self, remote: &str, token: &str, now_ms: u64) -> PyResult<()> {
        let remote = RemoteAddr::parse(remote).map_err(invalid)?;
        self.host.set_token(remote, token.to_string(), now_ms);
        Ok(())
    }

    /// Open (load or create) a document; a `DocReady` event follows.
    fn open(&mut self, doc: &str, now_ms: u64) -> PyResult<()> {
        let doc = doc_id(doc)?;
        self.host.node.handle(now_ms, Input::Open { doc });
        Ok(())
    }

    /// Apply a Loro update made by the caller's own Loro, as a local change.
    fn apply_update(&mut self, doc: &str, update: Vec<u8>, now_ms: u64) -> PyResult<()> {
        let doc = doc_id(doc)?;
        self.host.apply_update(doc, update, now_ms).map_err(invalid)
    }

    /// The document as a Loro snapshot.
    fn export<'py>(&self, py: Python<'py>, doc: &str) -> PyResult<Bound<'py, PyBytes>> {
        let doc = doc_id(doc)?;
        let bytes = self.host.export(&doc).map_err(invalid)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// The next thing to do, or `None`: `("transmit", channel, frame)`,
    /// `("close", channel, reason)`, `("dial", 0, remote)` or
    /// `("event", 0, json)`. Store jobs run inside.
    fn poll<'py>(&mut self, py: Python<'py>, now_ms: u64) -> Option<(String, u64, PyObject)> {
        let out = self.host.poll(now_ms)?;
        let text = |s: String| s.into_pyobject(py).map(|o| o.into_any().unbind()).ok();
        Some(match out {
            HostOutput::Transmit { channel, frame } => (
                "transmit".into(),
                channel.0,
                PyBytes::new(py, &frame).into_any().unbind(),
            ),
            HostOutput::Close { channel, reason } => ("close".into(), channel.0, text(reason)?),
            HostOutput::Dial { remote } => ("dial".into(), 0, text(remote)?),
            HostOutput::Event(e) => ("event".into(), 0, text(serde_json::to_string(&e).ok()?)?),
        })
    }
}

/// The native half of the `docweave` package.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Node>()
}
