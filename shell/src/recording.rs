//! Recording and replay: every input fed to `update` as one JSON line, with
//! the commands it produced; `replay` feeds the inputs to a fresh model and
//! reports the first command that differs.
//!
//! A recording is made to be shared (to reproduce a problem elsewhere), so
//! it holds no secret: every token (in the configuration, in `hello`s, in
//! connections) is written as `token-N`, the same name for the same token
//! throughout. The core only ever compares tokens for equality, so the
//! replay decides exactly as the node did.

use crate::health::Health;
use docweave_core::{update, Cmd, Config, Millis, Model, Msg};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::Path;

/// One line of a log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Line {
    /// The first line: the node's configuration.
    Config(Config),
    /// One step: when, what went in and what came out.
    Step {
        /// The time the input arrived with.
        now: Millis,
        /// The input.
        input: Msg,
        /// The commands.
        output: Vec<Cmd>,
    },
}

/// Appends a node's steps to a JSON-lines file. A step that cannot be
/// written ends the recording (told to [`Health`]): what was written stays
/// an exact prefix that `replay` checks, never a log with steps missing.
pub(crate) struct Recorder {
    out: Option<std::io::BufWriter<std::fs::File>>,
    health: Health,
    tokens: TokenNames,
}

/// The name each token seen so far is written under.
#[derive(Default)]
struct TokenNames(std::collections::BTreeMap<String, String>);

impl TokenNames {
    fn name(&mut self, token: &str) -> String {
        let next = self.0.len() + 1;
        self.0
            .entry(token.to_string())
            .or_insert_with(|| format!("token-{next}"))
            .clone()
    }

    /// Replaces every token in `v`: the strings under a `token` key, and
    /// those in a `tokens` list.
    fn redact(&mut self, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for (key, value) in map.iter_mut() {
                    match (key.as_str(), value) {
                        ("token", serde_json::Value::String(t)) => *t = self.name(t),
                        ("tokens", serde_json::Value::Array(list)) => {
                            for t in list.iter_mut() {
                                if let serde_json::Value::String(s) = t {
                                    *s = self.name(s);
                                }
                            }
                        }
                        (_, other) => self.redact(other),
                    }
                }
            }
            serde_json::Value::Array(list) => list.iter_mut().for_each(|x| self.redact(x)),
            _ => {}
        }
    }

    /// `line` as JSON text, its tokens named.
    fn text(&mut self, line: &Line) -> Result<String, serde_json::Error> {
        let mut v = serde_json::to_value(line)?;
        self.redact(&mut v);
        serde_json::to_string(&v)
    }
}

impl Recorder {
    /// Starts a log at `path` for a node with `config`.
    pub fn create(path: &Path, config: &Config, health: Health) -> std::io::Result<Self> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        let mut tokens = TokenNames::default();
        let first = tokens
            .text(&Line::Config(config.clone()))
            .map_err(std::io::Error::other)?;
        writeln!(out, "{first}")?;
        out.flush()?;
        Ok(Self {
            out: Some(out),
            health,
            tokens,
        })
    }

    /// Records one input and the commands it produced.
    pub fn record(&mut self, now: Millis, input: &Msg, output: &[Cmd]) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        let line = Line::Step {
            now,
            input: input.clone(),
            output: output.to_vec(),
        };
        let written = self
            .tokens
            .text(&line)
            .map_err(std::io::Error::other)
            .and_then(|text| writeln!(out, "{text}"))
            .and_then(|()| out.flush());
        if let Err(e) = written {
            self.out = None;
            self.health
                .recording_failed(format!("step at {now} ms could not be written: {e}"));
        }
    }
}

/// How a replay went.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplayOutcome {
    /// Every step produced the recorded commands.
    Identical {
        /// Steps replayed.
        steps: usize,
    },
    /// The first step whose commands differ.
    Differs {
        /// Its number (1-based, after the config line).
        step: usize,
        /// What the log says.
        recorded: Vec<Cmd>,
        /// What `update` produced now.
        replayed: Vec<Cmd>,
    },
}

/// Why a log could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file could not be read.
    #[error("cannot read the log: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not a log line.
    #[error("line {line} is not a log line: {why}")]
    Parse {
        /// The line number.
        line: usize,
        /// The parser's error.
        why: String,
    },
    /// The log does not start with the node's configuration.
    #[error("the log does not start with a configuration line")]
    NoConfig,
}

/// Replays a log and reports the first difference.
pub fn replay(path: &Path) -> Result<ReplayOutcome, ReplayError> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut model: Option<Model> = None;
    let mut steps = 0;
    for (i, line) in file.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&line).map_err(|e| ReplayError::Parse {
            line: i + 1,
            why: e.to_string(),
        })?;
        match (parsed, model.take()) {
            (Line::Config(c), None) => model = Some(Model::new(c)),
            (Line::Step { now, input, output }, Some(m)) => {
                steps += 1;
                let (next, replayed) = update(m, now, input);
                if replayed != output {
                    return Ok(ReplayOutcome::Differs {
                        step: steps,
                        recorded: output,
                        replayed,
                    });
                }
                model = Some(next);
            }
            _ => return Err(ReplayError::NoConfig),
        }
    }
    Ok(ReplayOutcome::Identical { steps })
}
