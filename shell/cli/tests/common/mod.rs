//! What the end-to-end and hostile-client tests share: a `docweave serve`
//! child process on free ports, its memory, and the CLI.

#![allow(dead_code)]

pub mod certs;
pub mod http;
pub mod raw;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_docweave");

/// A port nothing listens on now, never one handed out before in this
/// process: tests of one binary run side by side, and the OS may give a
/// port just released by one test to the next (its server then fails to
/// listen, "Address already in use").
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if port == 0 || given.insert(port) {
            return port;
        }
    }
}

pub fn data_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub struct Server {
    pub child: Child,
    pub ws: u16,
    pub http: u16,
    pub data: PathBuf,
    pub name: String,
    pub extra: Vec<String>,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Server {
    pub fn start(name: &str, data: &Path, ws: u16, http: u16, extra: &[&str]) -> Server {
        Self::start_with(name, data, ws, http, extra, None)
    }

    /// Starts the server; with `fds`, under that file-descriptor limit.
    pub fn start_with(
        name: &str,
        data: &Path,
        ws: u16,
        http: u16,
        extra: &[&str],
        fds: Option<u32>,
    ) -> Server {
        Self::start_env(name, data, ws, http, extra, fds, &[])
    }

    /// [`Server::start_with`], with these environment variables set.
    pub fn start_env(
        name: &str,
        data: &Path,
        ws: u16,
        http: u16,
        extra: &[&str],
        fds: Option<u32>,
        env: &[(&str, &str)],
    ) -> Server {
        let mut args: Vec<String> = [
            "serve",
            "--name",
            name,
            "--listen",
            &format!("127.0.0.1:{ws}"),
            "--http",
            &format!("127.0.0.1:{http}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push("--data".into());
        args.push(data.display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut command = match fds {
            Some(n) => {
                let mut c = Command::new("sh");
                let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
                c.arg("-c").arg(format!(
                    "ulimit -n {n} && exec '{BIN}' {}",
                    quoted.join(" ")
                ));
                c
            }
            None => {
                let mut c = Command::new(BIN);
                c.args(&args);
                c
            }
        };
        // DOCWEAVE_TEST_LOG=1 (in the tests' environment, or in `env` for
        // a test that reads the log) keeps the server's log beside its data.
        let logged = std::env::var_os("DOCWEAVE_TEST_LOG").is_some()
            || env.iter().any(|(k, _)| *k == "DOCWEAVE_TEST_LOG");
        // Otherwise its last lines are kept, to say why it did not start.
        let stderr = match logged {
            true => {
                let _ = std::fs::create_dir_all(data);
                std::fs::File::create(data.join("serve.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null())
            }
            false => Stdio::piped(),
        };
        command.envs(env.iter().copied());
        let mut child = command
            .env("DOCWEAVE_LOG", "info,docweave_core=debug")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn: {e}"));
        let last_lines = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::<
            String,
        >::new()));
        if let Some(err) = child.stderr.take() {
            let keep = last_lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let mut k = keep.lock().unwrap_or_else(|p| p.into_inner());
                    if k.len() >= 40 {
                        k.pop_front();
                    }
                    k.push_back(line);
                }
            });
        }
        // Wait for "docweave serving ..." on stdout.
        let out = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
        let mut reader = BufReader::new(out);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        if !line.contains("docweave serving") {
            // Its last words, once it has exited (a wait that fails leaves
            // whatever it said so far, which is still worth showing).
            let _ = child.wait();
            std::thread::sleep(std::time::Duration::from_millis(200));
            let said: Vec<String> = last_lines
                .lock()
                .map(|k| k.iter().cloned().collect())
                .unwrap_or_default();
            panic!(
                "the server did not start: {line:?}; its log ended with:\n{}",
                said.join("\n")
            );
        }
        let extra = extra.iter().map(|s| s.to_string()).collect();
        Server {
            child,
            ws,
            http,
            data: data.to_path_buf(),
            name: name.to_string(),
            extra,
            _stdout: reader,
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// Stops it as an operator would (SIGTERM) and waits for it to exit:
    /// how long that took, and whether it exited cleanly.
    #[allow(dead_code)] // not every test binary that includes this module uses it
    pub fn terminate(&mut self) -> (Duration, bool) {
        let started = std::time::Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "SIGTERM could not be sent to {}", self.name);
        let status = self.child.wait().unwrap();
        (started.elapsed(), status.success())
    }

    /// Starts it again (after it stopped) with the same ports, data and
    /// flags.
    #[allow(dead_code)] // not every test binary that includes this module uses it
    pub fn start_again(&mut self) {
        let extra: Vec<String> = self.extra.clone();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        *self = Server::start(
            &self.name.clone(),
            &self.data.clone(),
            self.ws,
            self.http,
            &extra,
        );
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.start_again();
    }

    /// Resident memory of the server process, in bytes.
    pub fn rss(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    /// The most resident memory the server process has had, in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.status_bytes("VmHWM:")
    }

    fn status_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the CLI; (success, stdout, stderr).
pub fn cli(args: &[&str]) -> (bool, String, String) {
    let (code, out, err) = cli_status(args);
    (code == Some(0), out, err)
}

/// Runs the CLI; (exit code, stdout, stderr).
pub fn cli_status(args: &[&str]) -> (Option<i32>, String, String) {
    // The CLI keeps its writer peers in its config directory: the tests'
    // own, not the user's.
    let config = std::env::var_os("DOCWEAVE_CONFIG_DIR").unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("cli-config-{}", std::process::id()))
            .into_os_string()
    });
    let out = Command::new(BIN)
        .env("DOCWEAVE_CONFIG_DIR", config)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
