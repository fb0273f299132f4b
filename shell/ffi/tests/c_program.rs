//! The C API from C: the header matches the library, and a C program
//! (compiled here with the system `cc`) opens its own TCP connection to
//! `docweave serve --tcp`, applies a Loro update made by another Loro,
//! and syncs both ways.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `target/<profile>`, where cargo put the library and the `docweave` binary.
fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// Where the library is: next to this test (`deps/`, as `cargo test`
/// leaves it) or in `target/<profile>` (after `cargo build`).
fn library_dir() -> PathBuf {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    [deps, build_dir()]
        .into_iter()
        .find(|d| d.join("libdocweave_ffi.so").exists())
        .unwrap_or_else(|| {
            panic!(
                "libdocweave_ffi.so is missing beside {}",
                build_dir().display()
            )
        })
}

fn library() -> PathBuf {
    library_dir().join("libdocweave_ffi.so")
}

fn header_functions() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_root().join("shell/ffi/docweave.h")).unwrap();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('*') && !l.trim_start().starts_with("/*"))
        .filter_map(|l| {
            let at = l.find("dw_")?;
            let rest = &l[at..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            rest[name.len()..].starts_with('(').then_some(name)
        })
        .collect()
}

#[test]
fn the_header_declares_exactly_what_the_library_exports() {
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(library())
        .output()
        .expect("nm is missing: apt-get install binutils (tests/run installs what the tests need)");
    let exported: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|s| s.starts_with("dw_"))
        .map(str::to_string)
        .collect();
    assert!(!exported.is_empty(), "no dw_ symbols in the library");
    assert_eq!(header_functions(), exported);
}

/// Compiles a C program against the header and the library, warnings as errors.
fn compile_c(source: &Path, program: &Path) {
    let compiled = Command::new("cc")
        .args([
            "-std=c11",
            "-D_DEFAULT_SOURCE",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-o",
        ])
        .arg(program)
        .arg(source)
        .arg("-I")
        .arg(repo_root().join("shell/ffi"))
        .arg("-L")
        .arg(library_dir())
        .arg("-ldocweave_ffi")
        .status()
        .expect(
            "a C compiler is missing: apt-get install gcc (tests/run installs what the tests need)",
        );
    assert!(compiled.success(), "{} does not compile", source.display());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn binary() -> PathBuf {
    let bin = build_dir().join("docweave");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo test --workspace does)",
        bin.display()
    );
    bin
}

fn serve(dir: &Path, tcp: u16) -> (Server, String) {
    let (ws, http) = (free_port(), free_port());
    let mut child = Command::new(binary())
        .args(["serve", "--data"])
        .arg(dir)
        .args(["--listen", &format!("127.0.0.1:{ws}")])
        .args(["--http", &format!("127.0.0.1:{http}")])
        .args(["--tcp", &format!("127.0.0.1:{tcp}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("docweave serving"), "{line}");
    (Server(child), format!("ws://127.0.0.1:{ws}"))
}

fn cli(args: &[&str]) -> String {
    let out = Command::new(binary()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_c_program_syncs_a_document_with_docweave_serve_over_its_own_tcp_connection() {
    let dir = std::env::temp_dir().join(format!("docweave-ffi-{}", std::process::id()));
    // A leftover of an earlier run goes; none there is fine.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let program = dir.join("sync_tcp");
    compile_c(&repo_root().join("tests/c/sync_tcp.c"), &program);

    let tcp = free_port();
    let (_server, ws) = serve(&dir.join("server"), tcp);
    cli(&["doc", "put", &ws, "shared", "from-cli", "yes"]);

    // The host's own Loro made this update.
    let theirs = loro::LoroDoc::new();
    theirs.set_peer_id(42).unwrap();
    theirs.get_map("root").insert("from-c", "yes").unwrap();
    theirs.commit();
    let update = theirs.export(loro::ExportMode::all_updates()).unwrap();
    std::fs::write(dir.join("update.bin"), update).unwrap();

    let out = Command::new(&program)
        .arg("127.0.0.1")
        .arg(tcp.to_string())
        .arg(dir.join("c-host.db"))
        .arg(dir.join("update.bin"))
        .arg(dir.join("snapshot.bin"))
        .arg("shared")
        .env("LD_LIBRARY_PATH", library_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The C host holds both changes, and so does the server.
    let snapshot = std::fs::read(dir.join("snapshot.bin")).unwrap();
    let mine = loro::LoroDoc::new();
    mine.import(&snapshot).unwrap();
    let root = mine.get_map("root");
    assert!(
        root.get("from-c").is_some() && root.get("from-cli").is_some(),
        "{:?}",
        mine.get_deep_value()
    );
    let there = cli(&["doc", "get", &ws, "shared"]);
    assert!(there.contains("from-c"), "{there}");
}

#[test]
fn the_readme_c_example_compiles_and_fetches_a_document() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = &readme[readme.find("**C.**").unwrap()..];
    let start = section.find("```c\n").unwrap() + "```c\n".len();
    let code = &section[start..start + section[start..].find("```").unwrap()];
    let dir = std::env::temp_dir().join(format!("docweave-ffi-readme-{}", std::process::id()));
    // A leftover of an earlier run goes; none there is fine.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("example.c"), code).unwrap();
    compile_c(&dir.join("example.c"), &dir.join("example"));
    let tcp = free_port();
    let (_server, ws) = serve(&dir.join("server"), tcp);
    cli(&["doc", "put", &ws, "notes", "title", "Shopping"]);
    let out = Command::new(dir.join("example"))
        .arg(tcp.to_string())
        .env("LD_LIBRARY_PATH", library_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("notes: "),
        "{stdout}"
    );
}

#[test]
fn a_c_host_fed_poison_by_a_server_reports_an_error_and_goes_on() {
    let dir = std::env::temp_dir().join(format!("docweave-ffi-poison-{}", std::process::id()));
    // A leftover of an earlier run goes; none there is fine.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let program = dir.join("poison");
    compile_c(&repo_root().join("tests/c/poison.c"), &program);
    let (listener, port) = docweave_tests::fake_server::bind();
    let server = std::thread::spawn(move || {
        docweave_tests::fake_server::serve_poison(listener, std::time::Duration::from_secs(30))
    });
    let out = Command::new(&program)
        .arg(port.to_string())
        .env("LD_LIBRARY_PATH", library_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("error reported"), "{stdout}");
    let seen = server.join().unwrap();
    assert_eq!(seen.poison_ack, Some(docweave_core::AckStatus::Invalid));
    assert_eq!(seen.good_ack, Some(docweave_core::AckStatus::Ok));
}
