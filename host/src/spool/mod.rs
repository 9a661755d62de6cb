//! The durable spool: accepted messages are appended to segment files and
//! fsynced, in groups, before the client gets its 250.
//!
//! Design (measured facts in the project brief): creating and deleting files
//! is what costs on these disks, not fsync. So a message is one record
//! appended to the current segment file; one writer thread collects every
//! record submitted while it was busy and writes and `fdatasync`s them
//! together (group commit). Envelope changes and completions are further
//! records. A segment is deleted once nothing in it is live and every older
//! segment is gone; live messages in the oldest segment are copied forward
//! when a new segment starts, so old segments do not pile up behind a
//! deferred message. The format is documented in `docs/spool.md`.

pub mod envelope;
pub mod format;
mod id;

pub use envelope::{
    Envelope, RcptState, RecipientEntry, TlsDetails, copy_headers, root_of, with_headers,
};
pub use id::new_message_id;

use format::{Kind, Record};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::oneshot;

/// Spool settings.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// Start a new segment beyond this size.
    pub segment_size: u64,
}

struct Entry {
    seg: u64,
    data_off: u64,
    data_len: u64,
    env: Envelope,
}

struct Segment {
    file: Arc<File>,
    path: PathBuf,
    live: usize,
}

struct Index {
    msgs: HashMap<String, Entry>,
    segs: BTreeMap<u64, Segment>,
    current: u64,
}

enum Op {
    Message(Envelope, usize),
    Update(Envelope),
    Done(String),
}

struct Req {
    op: Op,
    bytes: Vec<u8>,
    ack: Option<oneshot::Sender<io::Result<()>>>,
}

/// Handle to the spool; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    index: Mutex<Index>,
    tx: Mutex<Option<mpsc::Sender<Req>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    _lock: Option<File>,
}

fn seg_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:010}.seg"))
}

fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_suffix(".seg")
            .and_then(|s| s.parse::<u64>().ok())
        {
            v.push(n);
        }
    }
    v.sort_unstable();
    Ok(v)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn lock_file(dir: &Path, exclusive: bool) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let f = OpenOptions::new()
        .mode(0o600)
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dir.join("lock"))?;
    let op = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    } | libc::LOCK_NB;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), op) } != 0 {
        return Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "spool {} is in use by another mailgate process",
                dir.display()
            ),
        ));
    }
    Ok(f)
}

/// What recovery found in the segments.
fn scan(dir: &Path, segs: &[u64]) -> io::Result<Index> {
    let mut index = Index {
        msgs: HashMap::new(),
        segs: BTreeMap::new(),
        current: 0,
    };
    for &n in segs {
        let path = seg_path(dir, n);
        let file = File::open(&path)?;
        let buf = std::fs::read(&path)?;
        index.segs.insert(
            n,
            Segment {
                file: Arc::new(file),
                path: path.clone(),
                live: 0,
            },
        );
        if buf.len() < 8 || &buf[..8] != format::SEGMENT_MAGIC {
            tracing::warn!(segment = %path.display(), "not a spool segment header; skipped");
            continue;
        }
        let mut pos = 8;
        loop {
            match format::decode(&buf, pos) {
                Ok(None) => break,
                Ok(Some((rec, next))) => {
                    apply(&mut index, n, rec);
                    pos = next;
                }
                Err(()) => match format::resync(&buf, pos) {
                    Some(p) => {
                        tracing::warn!(segment = %path.display(), offset = pos, "damaged spool record skipped");
                        pos = p;
                    }
                    None => {
                        // A torn tail: a record whose write never completed,
                        // so it was never acknowledged.
                        tracing::info!(segment = %path.display(), offset = pos, bytes = buf.len() - pos, "incomplete record at end of segment ignored");
                        break;
                    }
                },
            }
        }
    }
    Ok(index)
}

fn apply(index: &mut Index, seg: u64, rec: Record<'_>) {
    match rec {
        Record::Message(env, off, data) => {
            let id = env.id.clone();
            if let Some(old) = index.msgs.remove(&id)
                && let Some(s) = index.segs.get_mut(&old.seg)
            {
                s.live -= 1;
            }
            if let Some(s) = index.segs.get_mut(&seg) {
                s.live += 1;
            }
            index.msgs.insert(
                id,
                Entry {
                    seg,
                    data_off: off,
                    data_len: data.len() as u64,
                    env,
                },
            );
        }
        Record::Update(env) => {
            if let Some(e) = index.msgs.get_mut(&env.id) {
                e.env = env;
            }
        }
        Record::Done(id) => {
            if let Some(old) = index.msgs.remove(&id)
                && let Some(s) = index.segs.get_mut(&old.seg)
            {
                s.live -= 1;
            }
        }
    }
}

impl Spool {
    /// Open (creating if needed) the spool in `dir` for a server: takes the
    /// exclusive lock, recovers the index and starts the writer thread.
    pub fn open(dir: &Path, opts: SpoolOptions) -> io::Result<Spool> {
        private_dir(dir)?;
        let lock = lock_file(dir, true)?;
        let segs = list_segments(dir)?;
        let mut index = scan(dir, &segs)?;
        let next = segs.last().map_or(1, |n| n + 1);
        let seg = create_segment(dir, next)?;
        index.segs.insert(next, seg);
        index.current = next;
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            index: Mutex::new(index),
            tx: Mutex::new(None),
            writer: Mutex::new(None),
            _lock: Some(lock),
        });
        delete_dead_segments(&inner)?;
        let (tx, rx) = mpsc::channel::<Req>();
        let w = Arc::clone(&inner);
        let handle = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer_loop(w, rx, opts))?;
        *inner.tx.lock().unwrap() = Some(tx);
        *inner.writer.lock().unwrap() = Some(handle);
        Ok(Spool { inner })
    }

    /// Open the spool of a stopped server to read it (shared lock; fails
    /// while a server holds it).
    pub fn open_readonly(dir: &Path) -> io::Result<Spool> {
        let lock = lock_file(dir, false)?;
        let segs = list_segments(dir)?;
        let index = scan(dir, &segs)?;
        Ok(Spool {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                index: Mutex::new(index),
                tx: Mutex::new(None),
                writer: Mutex::new(None),
                _lock: Some(lock),
            }),
        })
    }

    fn send(&self, req: Req) -> io::Result<()> {
        let guard = self.inner.tx.lock().unwrap();
        match guard.as_ref() {
            Some(tx) => tx
                .send(req)
                .map_err(|_| io::Error::other("spool writer has stopped")),
            None => Err(io::Error::other("spool is open read-only or closed")),
        }
    }

    /// Append a message and wait until it is on disk.
    pub async fn commit_message(&self, env: Envelope, data: &[u8]) -> io::Result<()> {
        let (bytes, data_off) = format::encode(Kind::Message, Some(&env), &env.id, data);
        let (ack, wait) = oneshot::channel();
        self.send(Req {
            op: Op::Message(env, data_off as usize),
            bytes,
            ack: Some(ack),
        })?;
        wait.await
            .unwrap_or_else(|_| Err(io::Error::other("spool writer has stopped")))
    }

    /// Record a new version of an envelope. It is written with the next group
    /// commit; the returned receiver reports when it is durable.
    pub fn update(&self, env: Envelope) -> io::Result<oneshot::Receiver<io::Result<()>>> {
        let (bytes, _) = format::encode(Kind::Update, Some(&env), &env.id, &[]);
        let (ack, wait) = oneshot::channel();
        self.send(Req {
            op: Op::Update(env),
            bytes,
            ack: Some(ack),
        })?;
        Ok(wait)
    }

    /// Mark a message finished; it disappears from the queue at once and its
    /// space is reclaimed with its segment.
    pub fn complete(&self, id: &str) -> io::Result<oneshot::Receiver<io::Result<()>>> {
        let (bytes, _) = format::encode(Kind::Done, None, id, &[]);
        let (ack, wait) = oneshot::channel();
        self.send(Req {
            op: Op::Done(id.to_string()),
            bytes,
            ack: Some(ack),
        })?;
        Ok(wait)
    }

    /// The current envelope of a message.
    pub fn get(&self, id: &str) -> Option<Envelope> {
        self.inner
            .index
            .lock()
            .unwrap()
            .msgs
            .get(id)
            .map(|e| e.env.clone())
    }

    /// Every message in the spool, oldest first.
    pub fn list(&self) -> Vec<Envelope> {
        let idx = self.inner.index.lock().unwrap();
        let mut v: Vec<Envelope> = idx.msgs.values().map(|e| e.env.clone()).collect();
        v.sort_by(|a, b| (a.received_at, &a.id).cmp(&(b.received_at, &b.id)));
        v
    }

    /// Counts for the metrics, read under the index lock without copying
    /// envelopes.
    pub fn state(&self) -> crate::metrics::SpoolState {
        let idx = self.inner.index.lock().unwrap();
        let now = chrono::Utc::now().timestamp();
        let mut st = crate::metrics::SpoolState::default();
        let mut oldest = now;
        for e in idx.msgs.values() {
            st.messages += 1;
            st.bytes += e.env.size;
            oldest = oldest.min(e.env.received_at);
            for r in &e.env.recipients {
                match r.state {
                    RcptState::Pending => st.pending += 1,
                    RcptState::Queued if r.attempts == 0 => st.queued += 1,
                    RcptState::Queued => st.deferred += 1,
                    _ => {}
                }
            }
        }
        st.oldest_age = (now - oldest).max(0) as f64;
        st
    }

    /// Read a message's content.
    pub fn read_data(&self, id: &str) -> io::Result<Vec<u8>> {
        let (file, off, len) = {
            let idx = self.inner.index.lock().unwrap();
            let e = idx.msgs.get(id).ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no message {id}"))
            })?;
            let seg = &idx.segs[&e.seg];
            (Arc::clone(&seg.file), e.data_off, e.data_len)
        };
        let mut buf = vec![0; len as usize];
        file.read_exact_at(&mut buf, off)?;
        Ok(buf)
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.inner.index.lock().unwrap().segs.len()
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Stop the writer after it has written everything submitted so far.
    pub fn close(&self) {
        self.inner.tx.lock().unwrap().take();
        if let Some(h) = self.inner.writer.lock().unwrap().take() {
            let _ = h.join();
        }
    }
}

/// Create `dir` (and its parents) 0700, or make an existing one 0700: the
/// spool is the gateway's alone, as Postfix's queue.
fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

fn create_segment(dir: &Path, n: u64) -> io::Result<Segment> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = seg_path(dir, n);
    let mut f = OpenOptions::new()
        .mode(0o600)
        .create_new(true)
        .read(true)
        .append(true)
        .open(&path)?;
    f.write_all(format::SEGMENT_MAGIC)?;
    f.sync_all()?;
    sync_dir(dir)?;
    Ok(Segment {
        file: Arc::new(f),
        path,
        live: 0,
    })
}

/// Delete segments from the oldest on while they hold nothing live.
fn delete_dead_segments(inner: &Inner) -> io::Result<()> {
    let mut removed = false;
    {
        let mut idx = inner.index.lock().unwrap();
        while let Some((&n, seg)) = idx.segs.iter().next() {
            if n == idx.current || seg.live > 0 {
                break;
            }
            let path = seg.path.clone();
            idx.segs.remove(&n);
            std::fs::remove_file(&path)?;
            removed = true;
        }
    }
    if removed {
        sync_dir(&inner.dir)?;
    }
    Ok(())
}

fn writer_loop(inner: Arc<Inner>, rx: mpsc::Receiver<Req>, opts: SpoolOptions) {
    const MAX_BATCH: usize = 8 << 20;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        let mut bytes = batch[0].bytes.len();
        while bytes < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => {
                    bytes += r.bytes.len();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        let result = write_batch(&inner, &mut batch, &opts);
        for r in batch {
            if let Some(ack) = r.ack {
                let _ = ack.send(match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                });
            }
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, "spool write failed");
        }
    }
}

fn write_batch(inner: &Inner, batch: &mut [Req], opts: &SpoolOptions) -> io::Result<()> {
    let total: usize = batch.iter().map(|r| r.bytes.len()).sum();
    let (file, start, seg_no) = {
        let idx = inner.index.lock().unwrap();
        let seg = &idx.segs[&idx.current];
        (
            Arc::clone(&seg.file),
            seg.file.metadata()?.len(),
            idx.current,
        )
    };
    let (file, start, seg_no) = if start > 8 && start + total as u64 > opts.segment_size {
        rotate(inner, seg_no, opts.segment_size)?
    } else {
        (file, start, seg_no)
    };
    let mut buf = Vec::with_capacity(total);
    for r in batch.iter() {
        buf.extend_from_slice(&r.bytes);
    }
    (&*file).write_all(&buf)?;
    file.sync_data()?;
    let mut idx = inner.index.lock().unwrap();
    let mut off = start;
    let mut any_done = false;
    for r in batch.iter_mut() {
        let len = r.bytes.len() as u64;
        let op = std::mem::replace(&mut r.op, Op::Done(String::new()));
        match op {
            Op::Message(env, data_off) => {
                let data_len = len - data_off as u64;
                apply_entry(&mut idx, seg_no, env, off + data_off as u64, data_len);
            }
            Op::Update(env) => {
                if let Some(e) = idx.msgs.get_mut(&env.id) {
                    e.env = env;
                }
            }
            Op::Done(id) => {
                if let Some(old) = idx.msgs.remove(&id) {
                    if let Some(s) = idx.segs.get_mut(&old.seg) {
                        s.live -= 1;
                    }
                    any_done = true;
                }
            }
        }
        off += len;
    }
    drop(idx);
    if any_done {
        delete_dead_segments(inner)?;
    }
    Ok(())
}

fn apply_entry(idx: &mut Index, seg: u64, env: Envelope, data_off: u64, data_len: u64) {
    if let Some(old) = idx.msgs.remove(&env.id)
        && let Some(s) = idx.segs.get_mut(&old.seg)
    {
        s.live -= 1;
    }
    if let Some(s) = idx.segs.get_mut(&seg) {
        s.live += 1;
    }
    idx.msgs.insert(
        env.id.clone(),
        Entry {
            seg,
            data_off,
            data_len,
            env,
        },
    );
}

/// A live message to copy forward: envelope, its segment file, offset, length.
type LiveCopy = (Envelope, Arc<File>, u64, u64);

/// Start a new segment; copy the live messages of the oldest segment
/// forward into it so that the oldest can go, but only when they are few:
/// at most a quarter of a segment. Copying a mostly live segment (a long
/// queue, queue-only mode) would fill the new segment at once and make
/// every following write rotate and copy again.
fn rotate(inner: &Inner, old: u64, segment_size: u64) -> io::Result<(Arc<File>, u64, u64)> {
    let next = old + 1;
    let seg = create_segment(&inner.dir, next)?;
    let file = Arc::clone(&seg.file);
    let (oldest, live): (u64, Vec<LiveCopy>) = {
        let mut idx = inner.index.lock().unwrap();
        idx.segs.insert(next, seg);
        idx.current = next;
        let oldest = *idx.segs.keys().next().unwrap();
        let live_bytes: u64 = idx
            .msgs
            .values()
            .filter(|e| e.seg == oldest)
            .map(|e| e.data_len + 512)
            .sum();
        let live = if oldest != old && oldest != next && live_bytes <= segment_size / 4 {
            let f = Arc::clone(&idx.segs[&oldest].file);
            idx.msgs
                .values()
                .filter(|e| e.seg == oldest)
                .map(|e| (e.env.clone(), Arc::clone(&f), e.data_off, e.data_len))
                .collect()
        } else {
            Vec::new()
        };
        (oldest, live)
    };
    let mut pos = format::SEGMENT_MAGIC.len() as u64;
    if !live.is_empty() {
        let mut buf = Vec::new();
        let mut placed = Vec::new();
        for (env, f, off, len) in live {
            let mut data = vec![0; len as usize];
            f.read_exact_at(&mut data, off)?;
            let (bytes, data_off) = format::encode(Kind::Message, Some(&env), &env.id, &data);
            placed.push((env, pos + buf.len() as u64 + data_off, len));
            buf.extend_from_slice(&bytes);
        }
        (&*file).write_all(&buf)?;
        file.sync_data()?;
        pos += buf.len() as u64;
        let mut idx = inner.index.lock().unwrap();
        for (env, off, len) in placed {
            // Only if nothing newer happened to it meanwhile (the writer is
            // this thread, so nothing can have).
            apply_entry(&mut idx, next, env, off, len);
        }
        tracing::debug!(segment = oldest, "live messages copied forward");
    }
    delete_dead_segments(inner)?;
    Ok((file, pos, next))
}

impl crate::metrics::SpoolSummary for Spool {
    fn summary(&self) -> crate::metrics::SpoolState {
        self.state()
    }
}

#[cfg(test)]
mod tests;
