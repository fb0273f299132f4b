//! Recording and replay: every input fed to `update` as one JSON line, with
//! the commands it produced; `replay` feeds the inputs to a fresh model and
//! reports the first command that differs.

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
}

impl Recorder {
    /// Starts a log at `path` for a node with `config`.
    pub fn create(path: &Path, config: &Config, health: Health) -> std::io::Result<Self> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(
            out,
            "{}",
            serde_json::to_string(&Line::Config(config.clone())).map_err(std::io::Error::other)?
        )?;
        out.flush()?;
        Ok(Self {
            out: Some(out),
            health,
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
        let written = serde_json::to_string(&line)
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
