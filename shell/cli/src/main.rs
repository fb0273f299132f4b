//! `docweave`: run a sync server, a headless replica, or poke at documents.

#[macro_use]
mod output;
mod admin;
mod auth_url;
mod client;
mod compact;
mod doc_api;
mod doc_edits;
mod doc_history;
mod doc_past;
mod figures;
mod file_watch;
mod inspect;
mod jwt;
mod limits;
mod loro_identity;
mod node_exchange;
mod revocations;
mod serve;
mod serve_auth;
mod shared_revocations;
mod status;
mod token_command;
mod trace;
mod webhooks;
mod writer_lease;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// docweave: keeps documents in sync between processes, devices and servers.
#[derive(Parser)]
#[command(name = "docweave", version, about)]
struct Cli {
    /// Log filter (`info`, `docweave=debug`, ...). Without it, `serve` and
    /// `sync` log their work (info) and the one-shot commands only warnings
    /// and errors; `-v` says more, `-vv` everything docweave logs.
    #[arg(long, global = true, env = "DOCWEAVE_LOG")]
    log_level: Option<String>,
    /// More log lines (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Log format: `text` or `json`.
    #[arg(
        long,
        global = true,
        env = "DOCWEAVE_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: String,
    /// A PEM file of CA certificates to trust for `wss://` servers (and
    /// `--peer` links), besides the web's usual roots.
    #[arg(long, global = true, env = "DOCWEAVE_CA_FILE")]
    ca_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a sync server: WebSocket and HTTP endpoints, SQLite store.
    Serve(Box<serve::ServeArgs>),
    /// Keep a local replica (SQLite) in sync with a server.
    Sync(client::SyncArgs),
    /// Read, change or watch one document.
    #[command(subcommand, after_help = EXIT_CODES)]
    Doc(client::DocCommand),
    /// Show what a data directory holds, or what a running server holds
    /// (`http://host:port`, through its admin API).
    Inspect {
        /// The data directory (as given to `serve --data`), or a server's
        /// HTTP address.
        target: String,
        /// The server's admin token (`serve --admin-token`).
        #[arg(long, env = "DOCWEAVE_ADMIN_TOKEN")]
        admin_token: Option<String>,
    },
    /// Fold each document's changes into one snapshot (the change feed stays intact).
    Compact {
        /// The data directory.
        dir: PathBuf,
        /// Also trim each document's history before this date
        /// (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ or Unix ms): a Loro shallow
        /// snapshot from the last version the server took before it. The
        /// state stays whole; older versions, their differences and their
        /// history entries are gone.
        #[arg(long)]
        history_before: Option<String>,
    },
    /// Replay a recorded log; exits non-zero at the first difference.
    Replay {
        /// A recording's directory or files, in order (or a JSON-lines log
        /// of an older docweave).
        #[arg(required = true)]
        logs: Vec<PathBuf>,
    },
    /// Print a recording as a readable protocol trace.
    Trace(trace::TraceArgs),
}

fn init_logs(level: &str, format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Exit status of `doc get` for a document its target does not have.
const EXIT_NO_SUCH_DOC: u8 = 3;

/// What the exit statuses of `doc` commands mean (in their `--help`).
const EXIT_CODES: &str = "Exit status: 0 done; 1 failed (the reason is on stderr); \
3 `doc get` of a document the server or data directory does not have (said on stderr).";

/// What is logged without `--log-level`: a server or a `sync` reports its
/// work; a one-shot command is quiet unless something goes wrong.
fn default_log_level(command: &Command, verbose: u8) -> &'static str {
    let long_running = matches!(command, Command::Serve(_) | Command::Sync(_));
    match (verbose, long_running) {
        (0, false) => "warn",
        (0, true) | (1, _) => "warn,docweave_shell=info,docweave_adapters=info,docweave_cli=info",
        _ => "info,docweave_core=debug,docweave_shell=debug,docweave_adapters=debug,docweave_cli=debug",
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = cli
        .log_level
        .clone()
        .unwrap_or_else(|| default_log_level(&cli.command, cli.verbose).to_string());
    init_logs(&level, &cli.log_format);
    if let Err(e) = client::trust(cli.ca_file.as_deref()) {
        eprintln!("docweave: {e}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Sync(args) => client::sync(args),
        Command::Doc(cmd) => match client::doc(cmd) {
            Ok(client::Done::Ok) => Ok(()),
            Ok(client::Done::Missing(why)) => {
                eprintln!("docweave: {why}");
                return ExitCode::from(EXIT_NO_SUCH_DOC);
            }
            Err(e) => Err(e),
        },
        Command::Inspect {
            target,
            admin_token,
        } => match client::http_target(&target) {
            Ok(Some(server)) => inspect::server(&server, admin_token.as_deref()),
            Ok(None) => inspect::run(std::path::Path::new(&target)),
            Err(e) => Err(e),
        },
        Command::Compact {
            dir,
            history_before,
        } => compact::run(&dir, history_before.as_deref()),
        Command::Replay { logs } => replay(&logs),
        Command::Trace(args) => trace::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("docweave: {e}");
            ExitCode::FAILURE
        }
    }
}

fn replay(logs: &[PathBuf]) -> Result<(), String> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(format!("replaying {}", logs[0].display()));
    let outcome = docweave_shell::replay_files(logs).map_err(|e| e.to_string());
    bar.finish_and_clear();
    match outcome? {
        docweave_shell::ReplayOutcome::Identical { steps } => {
            out!("{steps} steps replayed; every command identical");
            Ok(())
        }
        docweave_shell::ReplayOutcome::Differs {
            step,
            recorded,
            replayed,
        } => Err(format!(
            "step {step} differs\n  recorded: {}\n  replayed: {}",
            serde_json::to_string(&recorded).unwrap_or_default(),
            serde_json::to_string(&replayed).unwrap_or_default()
        )),
    }
}
