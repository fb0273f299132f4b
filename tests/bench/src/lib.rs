//! docweave's benchmark scenarios, measured the same way every time: cold
//! sync (S1), warm reconnect (S2), fan-out (S3), the core alone (S4), memory
//! per idle document (S5), start-up and memory of a server holding many documents, few in use (S8), durable appends by batch size on SQLite and
//! PostgreSQL (S6), cross-server propagation on one PostgreSQL (S7), bursts of
//! small updates from many writers against the same one by one (S10), a large
//! append with a good client working meanwhile (S11), many WebSocket connections
//! on the real server, idle and then fanning out edits (S9), what one loaded small
//! document costs resident, awake, asleep and against Loro alone (S12). Each prints one JSON line per run; `main.rs`
//! prints the summary table. Not a test suite: speed goals live here.
#![warn(missing_docs)]

pub mod appends;
pub mod bursts;
pub mod cluster;
pub mod connections;
pub mod doc_api;
pub mod heap;
pub mod history;
pub mod hooked;
pub mod hub;
pub mod loaded;
pub mod metadata;
pub mod scenarios;
pub mod webhooks;
pub mod wire;

/// Resident and peak memory of this process, in bytes (Linux `/proc`).
pub fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One run of one scenario.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Scenario name ("S1", ...).
    pub scenario: String,
    /// Transport ("memory", "websocket", "none").
    pub transport: String,
    /// Size parameter (documents, clients, ...).
    pub size: u64,
    /// The measured figure's name ("seconds", "edits_per_s", ...).
    pub metric: String,
    /// The measured figure.
    pub value: f64,
    /// Frames on the measured link.
    pub messages: u64,
    /// Bytes on the measured link.
    pub bytes: u64,
    /// Peak resident memory of the process.
    pub peak_rss: u64,
    /// Further figures (floor, ratio, p50, p99, ...).
    pub extra: Vec<(String, f64)>,
}

impl Run {
    /// The further figure called `name` (see `extra`), if the run has it.
    pub fn figure(&self, name: &str) -> Option<f64> {
        self.extra.iter().find(|(n, _)| n == name).map(|(_, x)| *x)
    }

    /// Reads a run back from its JSON line.
    pub fn from_json(line: &str) -> Option<Run> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let known = [
            "scenario",
            "transport",
            "size",
            "metric",
            "value",
            "messages",
            "bytes",
            "peak_rss",
        ];
        let extra = v
            .as_object()?
            .iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .filter_map(|(k, x)| Some((k.clone(), x.as_f64()?)))
            .collect();
        Some(Run {
            scenario: v["scenario"].as_str()?.to_string(),
            transport: v["transport"].as_str()?.to_string(),
            size: v["size"].as_u64()?,
            metric: v["metric"].as_str()?.to_string(),
            value: v["value"].as_f64()?,
            messages: v["messages"].as_u64().unwrap_or(0),
            bytes: v["bytes"].as_u64().unwrap_or(0),
            peak_rss: v["peak_rss"].as_u64().unwrap_or(0),
            extra,
        })
    }

    /// The run as one JSON line.
    pub fn json(&self) -> String {
        let mut v = serde_json::json!({
            "scenario": self.scenario, "transport": self.transport, "size": self.size,
            "metric": self.metric, "value": self.value, "messages": self.messages,
            "bytes": self.bytes, "peak_rss": self.peak_rss,
        });
        for (k, x) in &self.extra {
            v[k.as_str()] = serde_json::json!(x);
        }
        v.to_string()
    }
}
