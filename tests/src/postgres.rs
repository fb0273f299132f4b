//! A PostgreSQL server for tests: the one `DOCWEAVE_TEST_POSTGRES` names
//! (an admin URL), or else a throwaway cluster started here from Debian's
//! binaries (`initdb`, `pg_ctl`), once per test process, listening on a
//! free loopback port. Each test gets a database of its own.
//!
//! Without PostgreSQL a test fails with one line naming the package to
//! install (`tests/run` installs it): it never passes silently.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The server tests use: an admin URL without a database name.
struct Server {
    /// `postgres://postgres@127.0.0.1:PORT`
    base: String,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// A fresh, empty database for one test, as a URL. Fails the test when no
/// PostgreSQL can be had, saying which package to install.
pub fn fresh_database(test: &str) -> String {
    try_fresh_database(test).unwrap_or_else(|why| panic!("{why}"))
}

/// [`fresh_database`], or why there is none (for benchmarks, which go on
/// without PostgreSQL).
pub fn try_fresh_database(test: &str) -> Result<String, String> {
    let server = SERVER.get_or_init(|| match std::env::var("DOCWEAVE_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Ok(Server {
            base: url.trim_end_matches('/').to_string(),
        }),
        _ => start_cluster(),
    });
    let server = server.as_ref().map_err(Clone::clone)?;
    let name = format!(
        "t_{}_{}_{}",
        test.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(30)
            .collect::<String>()
            .to_lowercase(),
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin =
        postgres::Client::connect(&format!("{}/postgres", server.base), postgres::NoTls)
            .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {}: {e}", server.base));
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    Ok(format!("{}/{name}", server.base))
}

/// Where Debian keeps the server's binaries (they are not on `PATH`).
fn bin_dir() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
                return Some(dir);
            }
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program args…`, as the `postgres` user when we are root (the server
/// refuses to run as root).
fn as_owner(program: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn start_cluster() -> Result<Server, String> {
    let port = start_cluster_with("", "", |_, _| Ok(()))?;
    Ok(Server {
        base: format!("postgres://postgres@127.0.0.1:{port}"),
    })
}

/// A throwaway cluster of its own that takes only TLS connections, with
/// this certificate (for `localhost`) and key: its admin URL, without a
/// database name or TLS options. Fails the test without PostgreSQL.
pub fn tls_only_cluster(cert: &Path, key: &Path) -> String {
    let setup = |data: &Path, root: bool| -> Result<(), String> {
        let copy = |from: &Path, to: &str| {
            std::fs::copy(from, data.join(to))
                .map(|_| ())
                .map_err(|e| format!("cannot copy {}: {e}", from.display()))
        };
        copy(cert, "server.crt")?;
        copy(key, "server.key")?;
        let hba = "local all all trust\n\
                   hostssl all all 127.0.0.1/32 trust\n\
                   hostnossl all all 127.0.0.1/32 reject\n";
        std::fs::write(data.join("pg_hba.conf"), hba).map_err(|e| e.to_string())?;
        // The server reads its key only if no one else may.
        let mut chmod = Command::new("chmod");
        chmod.arg("600").arg(data.join("server.key"));
        let mut steps = vec![chmod];
        if root {
            let mut chown = Command::new("chown");
            chown
                .arg("postgres:")
                .arg(data.join("server.crt"))
                .arg(data.join("server.key"))
                .arg(data.join("pg_hba.conf"));
            steps.push(chown);
        }
        for mut step in steps {
            if !step.status().is_ok_and(|s| s.success()) {
                return Err(format!("{step:?} failed"));
            }
        }
        Ok(())
    };
    let port = start_cluster_with("-tls", "-c ssl=on", setup).unwrap_or_else(|why| panic!("{why}"));
    format!("postgres://postgres@localhost:{port}")
}

/// Starts a cluster in a fresh directory (named by `suffix`), with more
/// server options, after `setup` saw its data directory; its port.
fn start_cluster_with(
    suffix: &str,
    options: &str,
    setup: impl FnOnce(&Path, bool) -> Result<(), String>,
) -> Result<u16, String> {
    let bin = bin_dir().ok_or(
        "PostgreSQL's server binaries (initdb, pg_ctl) are missing: \
         apt-get install postgresql (tests/run installs what the tests need)",
    )?;
    let root = is_root();
    let dir = std::env::temp_dir().join(format!("docweave-pg-{}{suffix}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if root {
        let ok = Command::new("chown")
            .args(["postgres:", &dir.display().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err("cannot hand the cluster's directory to the postgres user".into());
        }
    }
    let data = dir.join("data");
    let run = |mut c: Command, what: &str| -> Result<(), String> {
        let out = c
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{what}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    let mut init = as_owner(&bin.join("initdb"), root);
    init.arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
    run(init, "initdb")?;
    setup(&data, root)?;
    let port = free_port()?;
    let mut start = as_owner(&bin.join("pg_ctl"), root);
    start
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("log"))
        .arg("-o")
        .arg(format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c max_connections=400 {options}",
            dir.display()
        ))
        .args(["-w", "start"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    run(start, "pg_ctl start")?;
    watchdog(&bin, &data, &dir, root);
    Ok(port)
}

/// Tests have no teardown: a small shell loop stops the cluster and
/// removes it once this process has ended.
fn watchdog(bin: &Path, data: &Path, dir: &Path, root: bool) {
    let stop = format!(
        "{}{} -D {} -m immediate stop",
        if root { "runuser -u postgres -- " } else { "" },
        bin.join("pg_ctl").display(),
        data.display()
    );
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop}; rm -rf {dir}",
        pid = std::process::id(),
        dir = dir.display()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
