//! Webhooks: `serve` tells the app's backend of documents created,
//! changed and deleted, by signed HTTP POSTs that are never lost.
//!
//! - `config`: which hooks, from flags and a JSON file.
//! - `event`: what an event says.
//! - `signature`: how it is signed (HMAC-SHA256 over time and body).
//! - `deliverer`: one hook's loop: its listener in the store is its
//!   outbox; an event is acknowledged there only once the receiver took it.
//!
//! Nothing here decides who may read what: each hook is a client of the
//! node with a credential that reads the documents it names.

mod config;
mod deliverer;
mod event;
pub mod signature;

pub use config::Hook;

use docweave_adapters::transport::Connector;
use docweave_core::{Credential, PeerId};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the peer ids of hooks start: the node lets in as them only this
/// server's own links ([`docweave_core::Config::internal_peers`]).
pub const PEER_PREFIX: &str = "webhook-";

/// The shortest secret taken: HMAC keys shorter than this are guessable.
const SHORTEST_SECRET: usize = 16;

/// Options of `serve` for webhooks.
#[derive(clap::Args)]
pub struct WebhookArgs {
    /// Tells this URL (http:// or https://) of every document created,
    /// changed or deleted, by signed POSTs delivered at least once
    /// (README, "Webhooks"). Repeatable. Needs --webhook-secret-file.
    #[arg(long = "webhook")]
    webhooks: Vec<String>,
    /// A JSON file of hooks with their own document patterns and events:
    /// `{"hooks": [{"url": ..., "name": ..., "docs": ["team-7/*"],
    /// "events": ["created", "changed", "deleted"]}]}`.
    #[arg(long, env = "DOCWEAVE_WEBHOOK_CONFIG")]
    webhook_config: Option<PathBuf>,
    /// A file holding the secret every webhook request is signed with (at
    /// least 16 bytes; a final newline is ignored). Every server on one
    /// PostgreSQL must be given the same.
    #[arg(long, env = "DOCWEAVE_WEBHOOK_SECRET_FILE")]
    webhook_secret_file: Option<PathBuf>,
    /// Changes to one document within this window are told as one event.
    #[arg(long, default_value_t = 1000)]
    webhook_window_ms: u64,
    /// How long a receiver has to answer one request before it counts as
    /// failed (and is tried again).
    #[arg(long, default_value_t = 10_000)]
    webhook_timeout_ms: u64,
    /// The longest wait between two attempts at a failing receiver (the
    /// wait doubles from a second up to it, with jitter).
    #[arg(long, default_value_t = 60)]
    webhook_max_backoff_s: u64,
}

/// What every hook of a server shares.
pub struct Settings {
    /// The signing secret.
    pub secret: Vec<u8>,
    /// The coalescing window.
    pub window: Duration,
    /// A receiver's time to answer.
    pub timeout: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// The node's largest message (a pull's answer).
    pub max_message: usize,
}

/// What one hook has done, for the status page and `/metrics`.
#[derive(Default)]
pub struct HookFigures {
    /// Events the receiver took.
    pub delivered: AtomicU64,
    /// Attempts that failed.
    pub failures: AtomicU64,
    /// Events waiting at the last pull (a full pull's page counts one more).
    pub pending: AtomicU64,
    /// Whether this server delivers the hook now (on a shared store, the
    /// one holding its lease does).
    pub delivering: AtomicBool,
    /// Unix milliseconds of the last event taken.
    pub last_delivered_ms: AtomicU64,
    /// The last failure.
    pub last_error: Mutex<Option<String>>,
}

/// A configured hook, its credential and its figures.
pub struct Configured {
    /// The hook.
    pub hook: Arc<Hook>,
    /// The token its link into the node presents.
    pub token: String,
    /// What the node grants it.
    pub credential: Credential,
    /// What it has done.
    pub figures: Arc<HookFigures>,
}

/// The webhooks of a server, before and after they start.
pub struct Webhooks {
    /// Each hook.
    pub hooks: Vec<Configured>,
    settings: Arc<Settings>,
}

impl WebhookArgs {
    /// The hooks these options name, with a fresh credential each; `None`
    /// when there are none.
    pub fn configure(&self, max_message: usize) -> Result<Option<Webhooks>, String> {
        if self.webhooks.is_empty() && self.webhook_config.is_none() {
            if self.webhook_secret_file.is_some() {
                tracing::warn!("--webhook-secret-file without a webhook: nothing is sent");
            }
            return Ok(None);
        }
        let path = self
            .webhook_secret_file
            .as_ref()
            .ok_or("a webhook needs --webhook-secret-file: every request is signed")?;
        let mut secret =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        while secret.last().is_some_and(|b| b.is_ascii_whitespace()) {
            secret.pop();
        }
        if secret.len() < SHORTEST_SECRET {
            return Err(format!(
                "{}: a webhook secret has at least {SHORTEST_SECRET} bytes",
                path.display()
            ));
        }
        let file = match &self.webhook_config {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))?,
            ),
            None => None,
        };
        let hooks = config::hooks(&self.webhooks, file.as_deref(), &secret)?;
        let mut configured = Vec::new();
        for hook in hooks {
            let peer = PeerId::parse(&hook.peer).map_err(|e| e.to_string())?;
            let credential = Credential {
                peer,
                rights: Some(hook.rights.clone()),
                expires: None,
                id: Some(format!("webhook {}", hook.name)),
            };
            configured.push(Configured {
                token: internal_token()?,
                hook: Arc::new(hook),
                credential,
                figures: Arc::default(),
            });
        }
        Ok(Some(Webhooks {
            hooks: configured,
            settings: Arc::new(Settings {
                secret,
                window: Duration::from_millis(self.webhook_window_ms.max(1)),
                timeout: Duration::from_millis(self.webhook_timeout_ms.max(1)),
                max_backoff: Duration::from_secs(self.webhook_max_backoff_s.max(1)),
                max_message,
            }),
        }))
    }
}

impl Webhooks {
    /// The tokens the hooks' links present, and what each grants.
    pub fn credentials(&self) -> Vec<(String, Credential)> {
        self.hooks
            .iter()
            .map(|c| (c.token.clone(), c.credential.clone()))
            .collect()
    }

    /// Starts each hook's deliverer; `shared_store` is the PostgreSQL URL
    /// when servers share the store (then one of them delivers each hook).
    pub fn start(
        &self,
        repo: &Arc<docweave_shell::Repo>,
        connect: &Connector,
        shared_store: Option<&str>,
    ) {
        for c in &self.hooks {
            let lease = match shared_store {
                Some(url) => deliverer::Lease::Shared {
                    url: url.to_string(),
                    // The listener id is already the hook's secret name.
                    key: c.hook.listener.0 as i64,
                    held: None,
                },
                None => deliverer::Lease::Alone,
            };
            let d = deliverer::Deliverer::new(
                c.hook.clone(),
                self.settings.clone(),
                connect.clone(),
                c.token.clone(),
                c.figures.clone(),
                lease,
                repo.clone(),
            );
            tracing::info!(
                "webhook {} to {}: {}",
                c.hook.name,
                c.hook.shown,
                match shared_store {
                    Some(_) => "delivered by whichever server holds its lease",
                    None => "delivered by this server",
                }
            );
            smol::spawn(d.run()).detach();
        }
    }
}

/// A token nobody outside this process can know.
fn internal_token() -> Result<String, String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| format!("no randomness for a webhook's token: {e}"))?;
    Ok(format!("docweave-internal.{}", signature::hex(&b)))
}
