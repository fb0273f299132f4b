//! TLS to PostgreSQL, as the store URL asks (managed services require it).
//!
//! `sslmode` takes libpq's values. `disable`, or no `sslmode`, connects in
//! clear text (as this store always did). `prefer` tries TLS first;
//! `require`, `verify-ca` and `verify-full` insist on it. Whenever TLS is
//! used the server's certificate is checked, chain and host name, against
//! the web's roots plus `sslrootcert=PATH` (a PEM file of CA certificates):
//! stricter than libpq's `require`, which checks nothing, because a token
//! store reached over an unchecked channel is not private. A service with
//! a private CA is reached by naming its CA in `sslrootcert`.

use super::StoreError;
use postgres::config::SslMode;
use postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Where the store connects, and how.
#[derive(Clone)]
pub(crate) struct Target {
    pub config: Config,
    tls: Option<MakeRustlsConnect>,
}

impl Target {
    /// Reads a store URL (`postgres://…?sslmode=…&sslrootcert=…`, or
    /// key=value pairs).
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let (rest, options) = split_tls_options(url);
        let mut config: Config = rest.parse().map_err(|e| {
            StoreError::Unavailable(format!("the store URL is not a PostgreSQL URL: {e}"))
        })?;
        let mode = options.mode.as_deref().unwrap_or("disable");
        let ssl = match mode {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" | "verify-ca" | "verify-full" => SslMode::Require,
            other => {
                return Err(StoreError::Unavailable(format!(
                    "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                )))
            }
        };
        config.ssl_mode(ssl);
        let tls = match ssl {
            SslMode::Disable => None,
            _ => {
                let root = options.root_cert.as_deref().map(std::path::Path::new);
                let trust = crate::transport::client_config(root)
                    .map_err(|e| StoreError::Unavailable(format!("sslrootcert: {e}")))?;
                Some(MakeRustlsConnect::new(trust))
            }
        };
        Ok(Self { config, tls })
    }

    /// A new connection; a failure says why down to its root cause (the
    /// driver's own message stops at "error performing TLS handshake").
    pub fn connect(&self) -> Result<Client, StoreError> {
        let connected = match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        };
        connected.map_err(|e| {
            let mut why = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                let said = c.to_string();
                if !why.contains(&said) {
                    why = format!("{why}: {said}");
                }
                cause = c.source();
            }
            StoreError::Unavailable(format!("cannot connect to PostgreSQL: {why}"))
        })
    }
}

/// The TLS options of a store URL, which the PostgreSQL driver reads only
/// in part (it knows no `verify-*` modes and no `sslrootcert`).
#[derive(Debug, Default, PartialEq)]
struct TlsOptions {
    mode: Option<String>,
    root_cert: Option<String>,
}

/// The URL without its TLS options, and those options.
fn split_tls_options(url: &str) -> (String, TlsOptions) {
    let mut options = TlsOptions::default();
    let mut take = |key: &str, value: &str| match key {
        "sslmode" => {
            options.mode = Some(value.to_string());
            true
        }
        "sslrootcert" => {
            options.root_cert = Some(value.to_string());
            true
        }
        _ => false,
    };
    if url.contains("://") {
        let Some((base, query)) = url.split_once('?') else {
            return (url.to_string(), options);
        };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                !take(k, &percent_decoded(v))
            })
            .collect();
        let rest = match kept.is_empty() {
            true => base.to_string(),
            false => format!("{base}?{}", kept.join("&")),
        };
        return (rest, options);
    }
    let kept: Vec<&str> = url
        .split_whitespace()
        .filter(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            !take(k.trim(), v.trim().trim_matches('\''))
        })
        .collect();
    (kept.join(" "), options)
}

fn percent_decoded(v: &str) -> String {
    percent_encoding::percent_decode_str(v)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_are_taken_out_of_urls_and_key_value_strings() {
        let (rest, o) = split_tls_options(
            "postgres://u:p@db.example:5432/app?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        );
        assert_eq!(
            rest,
            "postgres://u:p@db.example:5432/app?application_name=x"
        );
        assert_eq!(o.mode.as_deref(), Some("verify-full"));
        assert_eq!(o.root_cert.as_deref(), Some("/etc/ca.pem"));
        let (rest, o) = split_tls_options("host=db user=u sslmode=require sslrootcert='/ca.pem'");
        assert_eq!(rest, "host=db user=u");
        assert_eq!(o.mode.as_deref(), Some("require"));
        assert_eq!(o.root_cert.as_deref(), Some("/ca.pem"));
        let (rest, o) = split_tls_options("postgres://u@h/db");
        assert_eq!(
            (rest.as_str(), o),
            ("postgres://u@h/db", TlsOptions::default())
        );
    }

    #[test]
    fn an_unknown_sslmode_or_a_missing_root_file_is_a_clear_error() {
        let err = |url: &str| match Target::parse(url) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{url} was taken"),
        };
        assert!(err("postgres://u@h/db?sslmode=sometimes").contains("sslmode=sometimes"));
        assert!(
            err("postgres://u@h/db?sslmode=require&sslrootcert=/nonexistent.pem")
                .contains("/nonexistent.pem")
        );
        assert!(Target::parse("postgres://u@h/db?sslmode=verify-full").is_ok());
    }
}
