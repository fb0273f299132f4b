//! A recording's files: records (postcard, each after its length as four
//! bytes little-endian) behind a magic header, written by a thread of
//! their own into files that rotate at a size, the oldest removed while
//! all of them pass the cap. One run's files share a name stem (the time
//! it started) and are numbered, so sorted names are in order.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The first bytes of every recording file: `DWREC`, a zero, the format
/// version, a newline. The version changes whenever the encoding of
/// `Msg`, `Cmd` or `Config` does (postcard is not self-describing: a field
/// added anywhere makes older records unreadable), so an older file is
/// refused with a clear error rather than misread.
pub(crate) const MAGIC: &[u8; 8] = b"DWREC\x00\x03\n";

/// The format this build writes and reads (the magic's seventh byte).
pub(crate) const FORMAT: u8 = MAGIC[6];

/// The bytes every version's magic starts with.
const MAGIC_STEM: &[u8; 6] = b"DWREC\x00";

/// The file name extension.
pub(crate) const EXTENSION: &str = "dwrec";

/// Bytes of records waiting for the writer: past this, the node waits for
/// the disk (a record larger than this still goes, alone).
const QUEUED_BYTES: usize = 64 * 1024 * 1024;

/// Where and how much a recording keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOptions {
    /// The directory of the files.
    pub dir: PathBuf,
    /// All files together stay under this many bytes (the oldest go).
    pub max_bytes: u64,
}

impl RecordOptions {
    /// A file is closed for the next once this large: an eighth of the cap
    /// (so the cap removes one file at a time), at least 64 KiB.
    fn file_bytes(&self) -> u64 {
        (self.max_bytes / 8).max(64 * 1024)
    }
}

/// The files being written, on the writer's thread.
struct Files {
    options: RecordOptions,
    stem: String,
    next: u32,
    current: std::io::BufWriter<std::fs::File>,
    current_bytes: u64,
    /// Every file of this run still on disk, oldest first, with its size.
    kept: VecDeque<(PathBuf, u64)>,
}

impl Files {
    fn open(options: RecordOptions) -> std::io::Result<Self> {
        std::fs::create_dir_all(&options.dir)?;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let stem = format!("{started:016}");
        // Earlier runs' files count toward the cap too (a server that
        // restarts often must not fill the disk): oldest first.
        let mut kept = VecDeque::new();
        for f in recording_files(std::slice::from_ref(&options.dir))? {
            kept.push_back((f.clone(), std::fs::metadata(&f)?.len()));
        }
        let (current, path) = new_file(&options.dir, &stem, 1)?;
        kept.push_back((path, MAGIC.len() as u64));
        let mut files = Self {
            stem,
            options,
            next: 1,
            current,
            current_bytes: MAGIC.len() as u64,
            kept,
        };
        files.trim()?;
        Ok(files)
    }

    /// Closes the current file and starts the next.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.current.flush()?;
        self.next += 1;
        let (file, path) = new_file(&self.options.dir, &self.stem, self.next)?;
        self.current = file;
        self.current_bytes = MAGIC.len() as u64;
        self.kept.push_back((path, MAGIC.len() as u64));
        Ok(())
    }

    fn write(&mut self, record: &[u8]) -> std::io::Result<()> {
        if self.current_bytes > MAGIC.len() as u64
            && self.current_bytes + record.len() as u64 > self.options.file_bytes()
        {
            self.rotate()?;
            self.trim()?;
        }
        self.current.write_all(record)?;
        self.current_bytes += record.len() as u64;
        if let Some(last) = self.kept.back_mut() {
            last.1 = self.current_bytes;
        }
        Ok(())
    }

    /// Removes the oldest files while all of them pass the cap (never the
    /// one being written).
    fn trim(&mut self) -> std::io::Result<()> {
        while self.kept.len() > 1
            && self.kept.iter().map(|(_, n)| n).sum::<u64>() > self.options.max_bytes
        {
            if let Some((path, _)) = self.kept.pop_front() {
                match std::fs::remove_file(&path) {
                    // Removed by hand already: what the cap wanted.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    other => other?,
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.current.flush()
    }
}

/// Creates file number `n` of a run, its magic written.
fn new_file(
    dir: &Path,
    stem: &str,
    n: u32,
) -> std::io::Result<(std::io::BufWriter<std::fs::File>, PathBuf)> {
    let path = dir.join(format!("{stem}-{n:06}.{EXTENSION}"));
    let mut f = std::io::BufWriter::with_capacity(
        256 * 1024,
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?,
    );
    f.write_all(MAGIC)?;
    Ok((f, path))
}

/// Records on their way to the writer thread.
#[derive(Default)]
struct Queue {
    records: VecDeque<Vec<u8>>,
    bytes: usize,
    /// No more records come (the recorder is gone).
    closed: bool,
    /// The writer stopped (a write failed): records are refused.
    stopped: bool,
}

type Shared = std::sync::Arc<(std::sync::Mutex<Queue>, std::sync::Condvar)>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Queue> {
    shared.0.lock().unwrap_or_else(|p| p.into_inner())
}

/// The sending side of the writer thread; dropping it waits until every
/// record handed over is written.
pub(crate) struct Writer {
    shared: Shared,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Opens the first file (an error here is the caller's) and starts the
    /// thread; `failed` hears why, if writing stops later.
    pub(crate) fn start(
        options: RecordOptions,
        failed: impl FnOnce(String) + Send + 'static,
    ) -> std::io::Result<Self> {
        let mut files = Files::open(options)?;
        let shared: Shared = Default::default();
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("docweave-recording".into())
            .spawn(move || {
                let mut run = || -> std::io::Result<()> {
                    loop {
                        let batch = {
                            let mut q = lock(&theirs);
                            while q.records.is_empty() && !q.closed {
                                q = theirs.1.wait(q).unwrap_or_else(|p| p.into_inner());
                            }
                            if q.records.is_empty() {
                                return Ok(());
                            }
                            q.bytes = 0;
                            theirs.1.notify_all();
                            std::mem::take(&mut q.records)
                        };
                        for record in &batch {
                            files.write(record)?;
                        }
                        // Flushed whenever the node has nothing more for
                        // now, so a crash loses little.
                        files.flush()?;
                    }
                };
                if let Err(e) = run() {
                    lock(&theirs).stopped = true;
                    theirs.1.notify_all();
                    failed(e.to_string());
                }
            })?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Hands one framed record to the thread, waiting while too many bytes
    /// are queued; `false` once it stopped.
    pub(crate) fn send(&self, record: Vec<u8>) -> bool {
        let mut q = lock(&self.shared);
        while !q.stopped && !q.records.is_empty() && q.bytes + record.len() > QUEUED_BYTES {
            q = self.shared.1.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        if q.stopped {
            return false;
        }
        q.bytes += record.len();
        q.records.push_back(record);
        self.shared.1.notify_all();
        true
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        lock(&self.shared).closed = true;
        self.shared.1.notify_all();
        if let Some(t) = self.thread.take() {
            // A writer that panicked has nothing more to write; its
            // failure was the recording's, never the node's.
            if t.join().is_err() {
                tracing::error!("the recording's writer panicked");
            }
        }
    }
}

/// Frames one record: its length, then its bytes.
pub(crate) fn frame(body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
}

/// The files to read for `paths`: files as given, a directory's recording
/// files in name order (a run's files, then the next run's).
pub fn recording_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut in_dir = Vec::new();
            for entry in std::fs::read_dir(p)? {
                let f = entry?.path();
                if f.extension().is_some_and(|x| x == EXTENSION) {
                    in_dir.push(f);
                }
            }
            in_dir.sort();
            out.extend(in_dir);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// The records of one binary file (after its magic); `Err` with the byte
/// offset of a record cut short (a crash mid-write ends a file so: what
/// came before is whole).
pub(crate) fn records(bytes: &[u8]) -> impl Iterator<Item = Result<&[u8], usize>> {
    let mut at = MAGIC.len();
    std::iter::from_fn(move || {
        if at >= bytes.len() {
            return None;
        }
        let Some(len) = bytes.get(at..at + 4) else {
            let cut = at;
            at = bytes.len();
            return Some(Err(cut));
        };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let Some(body) = bytes.get(at + 4..at + 4 + len) else {
            let cut = at;
            at = bytes.len();
            return Some(Err(cut));
        };
        at += 4 + len;
        Some(Ok(body))
    })
}

/// Whether a file is a binary recording (else it may be a JSON-lines log
/// of an older docweave); `Err` with its format version when it is one
/// this build cannot read.
pub(crate) fn is_binary(bytes: &[u8]) -> Result<bool, u8> {
    if !bytes.starts_with(MAGIC_STEM) {
        return Ok(false);
    }
    match bytes.starts_with(MAGIC) {
        true => Ok(true),
        false => Err(bytes.get(MAGIC_STEM.len()).copied().unwrap_or(0)),
    }
}

/// The files of a recording directory, for tests and tools.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    recording_files(&[dir.to_path_buf()]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_rotate_at_their_size_and_the_oldest_go_past_the_cap() {
        let dir = std::env::temp_dir().join(format!("dwrec-rotate-{}", std::process::id()));
        // A leftover of an earlier run goes; none there is fine.
        let _ = std::fs::remove_dir_all(&dir);
        let mut files = Files::open(RecordOptions {
            dir: dir.clone(),
            max_bytes: 4 * 64 * 1024,
        })
        .unwrap();
        let mut record = Vec::new();
        frame(&[7u8; 10_000], &mut record);
        for _ in 0..100 {
            files.write(&record).unwrap();
        }
        files.flush().unwrap();
        let on_disk = files_in(&dir);
        let total: u64 = on_disk
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum();
        assert!(on_disk.len() >= 2, "{on_disk:?}");
        assert!(total <= 4 * 64 * 1024 + 64 * 1024, "{total} bytes kept");
        // The newest are kept, numbered in order.
        let last = on_disk.last().unwrap().to_string_lossy().into_owned();
        assert!(
            last.ends_with(&format!("{:06}.{EXTENSION}", files.next)),
            "{last}"
        );
        let bytes = std::fs::read(on_disk.last().unwrap()).unwrap();
        assert_eq!(is_binary(&bytes), Ok(true));
        assert!(records(&bytes).all(|r| r.is_ok_and(|b| b.len() == 10_000)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_record_cut_short_is_reported_at_its_offset() {
        let mut bytes = MAGIC.to_vec();
        frame(b"whole", &mut bytes);
        bytes.extend_from_slice(&9u32.to_le_bytes());
        bytes.extend_from_slice(b"cut");
        let got: Vec<_> = records(&bytes).collect();
        assert_eq!(got[0], Ok(&b"whole"[..]));
        assert_eq!(got[1], Err(MAGIC.len() + 4 + 5));
        assert_eq!(got.len(), 2);
    }
}
