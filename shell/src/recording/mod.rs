//! Recording and replay: every input fed to `update`, with the commands it
//! produced, in a compact binary encoding (postcard) in rotating files of
//! a directory, written by a thread of their own; `replay` feeds the
//! inputs to a fresh model and reports the first command that differs, and
//! `docweave trace` prints them as a readable protocol trace.
//!
//! A recording is made to be shared (to reproduce a problem elsewhere), so
//! it holds no secret: every token is written as a keyed hash (see `redact`).
//! Replaying needs a run's files from its first (which holds the node's
//! configuration); once the size cap removed that one, the rest can be
//! traced, not replayed. JSON-lines logs of earlier versions still replay.

mod files;
mod redact;

pub use files::{files_in, recording_files, RecordOptions};

use crate::health::Health;
use docweave_core::{update, Cmd, Config, Millis, Model, Msg};
use redact::TokenNames;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One record of a recording.
// A run has one configuration line, read once; boxing it would change
// nothing that matters (lines are decoded one at a time).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Line {
    /// The first record of a run: the node's configuration.
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

/// [`Line`] by reference, encoded the same way: a step is written without
/// a copy of what the node already holds.
#[derive(Serialize)]
enum LineRef<'a> {
    #[allow(dead_code)] // Only ever decoded as `Line::Config`; written from `Line`.
    Config(&'a Config),
    Step {
        now: Millis,
        input: &'a Msg,
        output: &'a [Cmd],
    },
}

/// Writes a node's steps. A step that cannot be written ends the recording
/// (told to [`Health`]): what was written stays an exact prefix that
/// `replay` checks, never a log with steps missing.
pub(crate) struct Recorder {
    writer: Option<files::Writer>,
    health: Health,
    tokens: TokenNames,
    /// Reused for each record's encoding.
    buf: Vec<u8>,
}

impl Recorder {
    /// Starts a recording in `options.dir` for a node with `config`.
    pub fn create(
        options: RecordOptions,
        config: &Config,
        health: Health,
    ) -> std::io::Result<Self> {
        let failed = {
            let health = health.clone();
            move |why: String| health.recording_failed(format!("writing stopped: {why}"))
        };
        let writer = files::Writer::start(options, failed)?;
        let mut r = Self {
            writer: Some(writer),
            health,
            tokens: TokenNames::default(),
            buf: Vec::new(),
        };
        let first = Line::Config(r.tokens.config(config));
        let body = postcard::to_stdvec(&first).map_err(std::io::Error::other)?;
        r.send(&body, 0);
        Ok(r)
    }

    fn send(&mut self, body: &[u8], now: Millis) {
        let Some(w) = self.writer.as_ref() else {
            return;
        };
        let mut framed = Vec::with_capacity(body.len() + 4);
        files::frame(body, &mut framed);
        if !w.send(framed) {
            self.writer = None;
            self.health
                .recording_failed(format!("step at {now} ms could not be written"));
        }
    }

    /// Records one input and the commands it produced.
    pub fn record(&mut self, now: Millis, input: &Msg, output: &[Cmd]) {
        if self.writer.is_none() {
            return;
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let encoded = if TokenNames::holds_token(input, output) {
            let (input, output) = (self.tokens.input(input), self.tokens.output(output));
            postcard::to_io(
                &LineRef::Step {
                    now,
                    input: &input,
                    output: &output,
                },
                &mut buf,
            )
            .map(|_| ())
        } else {
            postcard::to_io(&LineRef::Step { now, input, output }, &mut buf).map(|_| ())
        };
        match encoded {
            Ok(()) => self.send(&buf, now),
            Err(e) => {
                self.writer = None;
                self.health
                    .recording_failed(format!("step at {now} ms could not be encoded: {e}"));
            }
        }
        self.buf = buf;
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
    #[error(
        "the recording does not start with a configuration: its first file is missing \
         (removed by the size cap?); it can be traced, not replayed"
    )]
    NoConfig,
    /// A binary record could not be read.
    #[error("{file}: {why}")]
    Record {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// Reads every record of the files (or directories) in order, handing
/// each to `f` with the file it is in, until `f` returns `false`. A record
/// cut short at the end of a file (a crash mid-write) ends that file.
pub fn read_lines(
    paths: &[PathBuf],
    mut f: impl FnMut(&Path, Line) -> bool,
) -> Result<(), ReplayError> {
    for file in recording_files(paths)? {
        let bytes = std::fs::read(&file)?;
        let binary = files::is_binary(&bytes).map_err(|version| ReplayError::Record {
            file: file.clone(),
            why: format!(
                "a recording of format {version}, made by another docweave version \
                 (this one reads format {})",
                files::FORMAT
            ),
        })?;
        if binary {
            for record in files::records(&bytes) {
                let Ok(body) = record else {
                    break;
                };
                let line: Line = postcard::from_bytes(body).map_err(|e| ReplayError::Record {
                    file: file.clone(),
                    why: e.to_string(),
                })?;
                if !f(&file, line) {
                    return Ok(());
                }
            }
            continue;
        }
        for (i, text) in String::from_utf8_lossy(&bytes).lines().enumerate() {
            if text.trim().is_empty() {
                continue;
            }
            let line: Line = serde_json::from_str(text).map_err(|e| ReplayError::Parse {
                line: i + 1,
                why: e.to_string(),
            })?;
            if !f(&file, line) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// The run a recording file belongs to: its name up to the file number
/// (`1796456585356-000001.dwrec` is of run `1796456585356`).
fn run_of(file: &Path) -> Option<String> {
    let name = file.file_name()?.to_str()?;
    let (run, _) = name.rsplit_once('-')?;
    Some(run.to_string())
}

/// Replays a recording (its files, or its directory, in order) and
/// reports the first difference. Each run starts from its configuration
/// record; a run whose first file is gone cannot be replayed.
pub fn replay_files(paths: &[PathBuf]) -> Result<ReplayOutcome, ReplayError> {
    let mut model: Option<Model> = None;
    let mut run: Option<String> = None;
    let mut steps = 0;
    let mut outcome: Result<Option<ReplayOutcome>, ReplayError> = Ok(None);
    read_lines(paths, |file, line| {
        // Another run's steps never go to this run's model.
        let this_run = run_of(file);
        if this_run != run {
            run = this_run;
            model = None;
        }
        match line {
            Line::Config(c) => {
                model = Some(Model::new(c));
                true
            }
            Line::Step { now, input, output } => {
                let Some(m) = model.take() else {
                    outcome = Err(ReplayError::NoConfig);
                    return false;
                };
                steps += 1;
                let (next, mut replayed) = update(m, now, input);
                if !is_binary(file) {
                    // JSON-lines logs are of versions that did not say
                    // who sent an import: that is not compared.
                    unattributed(&mut replayed);
                }
                if replayed != output {
                    outcome = Ok(Some(ReplayOutcome::Differs {
                        step: steps,
                        recorded: output,
                        replayed,
                    }));
                    return false;
                }
                model = Some(next);
                true
            }
        }
    })?;
    match outcome? {
        Some(differs) => Ok(differs),
        None if model.is_none() && steps == 0 => Err(ReplayError::NoConfig),
        None => Ok(ReplayOutcome::Identical { steps }),
    }
}

/// Whether `file` is a binary recording (else a JSON-lines log).
fn is_binary(file: &Path) -> bool {
    file.extension().is_some_and(|e| e == files::EXTENSION)
}

/// Drops who sent each import, which logs of earlier versions lack.
fn unattributed(cmds: &mut [docweave_core::Cmd]) {
    for cmd in cmds {
        if let docweave_core::Cmd::Import { author, .. } = cmd {
            *author = None;
        }
    }
}

/// Replays one recording file, directory or JSON-lines log.
pub fn replay(path: &Path) -> Result<ReplayOutcome, ReplayError> {
    replay_files(&[path.to_path_buf()])
}
