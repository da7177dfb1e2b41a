//! One test run's identity and bookkeeping.
//!
//! A run has a short random id (in every netns/bridge/veth name), a directory
//! (`$TMPDIR/otlp-lb-e2e-<id>`: certificates, etcd data, every component's
//! log, pod files), and an owner record `/run/otlp-lb-e2e/<id>.owner` (pid and
//! process start time) so a later run can tell a dead run's leftovers from a
//! live run's resources. [`Run::begin`] takes a host-wide lock (one cluster at
//! a time on this machine; bounded wait) and sweeps the leftovers of dead
//! runs: processes still running from their directories, their network
//! namespaces and interfaces, and mount-point directories they created.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use rand::Rng as _;

use crate::netns;

/// Host-wide state of the harness (tmpfs: gone with a reboot, like netns).
pub const STATE_DIR: &str = "/run/otlp-lb-e2e";
/// How long to wait for another run to release the host-wide lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);

/// The current run.
pub struct Run {
    pub id: String,
    pub dir: PathBuf,
    record: PathBuf,
    paths_file: PathBuf,
    created_paths: Mutex<Vec<PathBuf>>,
    _lock: Flock<File>,
}

impl Run {
    /// Checks prerequisites, takes the lock, sweeps stale runs, and creates
    /// this run's id, directory and owner record.
    pub async fn begin() -> Result<Run> {
        netns::check_prerequisites()?;
        std::fs::create_dir_all(STATE_DIR).with_context(|| format!("creating {STATE_DIR}"))?;
        let lock = take_lock().await?;
        sweep_stale();
        let id = new_id();
        let base = std::env::var_os("OTLP_LB_E2E_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!("otlp-lb-e2e-{id}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating run directory {}", dir.display()))?;
        let record = Path::new(STATE_DIR).join(format!("{id}.owner"));
        let me = std::process::id() as i32;
        let start = process_start_time(me).unwrap_or_default();
        std::fs::write(&record, format!("{me} {start}\n{}\n", dir.display()))
            .with_context(|| format!("writing {}", record.display()))?;
        let paths_file = Path::new(STATE_DIR).join(format!("{id}.paths"));
        Ok(Run { id, dir, record, paths_file, created_paths: Mutex::new(Vec::new()), _lock: lock })
    }

    /// Creates the missing directories of `path` (and `path` itself: a
    /// directory, or an empty file if `file`), remembering each one made so
    /// teardown (or a later sweep) can remove them.
    pub fn ensure_host_path(&self, path: &Path, file: bool) -> Result<()> {
        if path.exists() {
            return Ok(());
        }
        let mut missing = Vec::new();
        let mut cur = Some(path);
        while let Some(p) = cur {
            if p.exists() {
                break;
            }
            missing.push(p.to_path_buf());
            cur = p.parent();
        }
        missing.reverse();
        let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&self.paths_file).ok();
        for (i, p) in missing.iter().enumerate() {
            if let Some(f) = log.as_mut() {
                let _ = writeln!(f, "{}", p.display());
            }
            let last = i + 1 == missing.len();
            if last && file {
                File::create(p).with_context(|| format!("creating mount point {}", p.display()))?;
            } else {
                std::fs::create_dir(p).with_context(|| format!("creating mount point {}", p.display()))?;
            }
            if let Ok(mut v) = self.created_paths.lock() {
                v.push(p.clone());
            }
        }
        Ok(())
    }

    /// Removes what this run created on the host outside its directory and
    /// its owner record. The run directory itself is removed only if
    /// `remove_dir` (kept on failure for the logs).
    pub fn finish(&self, remove_dir: bool) {
        let paths = self.created_paths.lock().map(|v| v.clone()).unwrap_or_default();
        remove_created(&paths);
        let _ = std::fs::remove_file(&self.paths_file);
        let _ = std::fs::remove_file(&self.record);
        if remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            // Keep the logs, not etcd's ~100 MB of preallocated WAL.
            let _ = std::fs::remove_dir_all(self.dir.join("etcd"));
        }
    }
}

/// Removes created paths deepest first, only while empty.
fn remove_created(paths: &[PathBuf]) {
    let mut paths = paths.to_vec();
    paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    paths.dedup();
    for p in paths {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir(&p);
            }
            Ok(m) if m.is_file() && m.len() == 0 => {
                let _ = std::fs::remove_file(&p);
            }
            _ => {}
        }
    }
}

fn new_id() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    loop {
        let id: String = (0..netns::ID_LEN).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect();
        // A leading letter keeps names readable; avoid ids present on the host.
        if id.as_bytes()[0].is_ascii_lowercase() && !netns::owner_ids().contains(&id) {
            return id;
        }
    }
}

async fn take_lock() -> Result<Flock<File>> {
    let path = Path::new(STATE_DIR).join("lock");
    let deadline = Instant::now() + LOCK_WAIT;
    let mut announced = false;
    loop {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                if Instant::now() > deadline {
                    bail!("another e2e run held {} for more than {LOCK_WAIT:?}", path.display());
                }
                if !announced {
                    tracing::info!("another e2e cluster runs on this host; waiting for {}", path.display());
                    announced = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err((_, e)) => bail!("locking {}: {e}", path.display()),
        }
    }
}

/// Field 22 of /proc/PID/stat (start time in clock ticks since boot).
fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: skip past its ')'.
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the owner `pid` with `start` time still runs.
fn owner_alive(pid: i32, start: u64) -> bool {
    process_start_time(pid).is_some_and(|s| s == start)
}

/// Sweeps every run whose owner is dead, and any of our netns/interfaces
/// that no owner record claims.
pub fn sweep_stale() {
    let mut live = std::collections::BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(STATE_DIR) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".owner") else {
            continue;
        };
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let mut lines = text.lines();
        let mut first = lines.next().unwrap_or("").split_whitespace();
        let pid = first.next().and_then(|p| p.parse::<i32>().ok()).unwrap_or(0);
        let start = first.next().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let dir = lines.next().unwrap_or("").to_string();
        if pid > 0 && owner_alive(pid, start) {
            live.insert(id.to_string());
            continue;
        }
        tracing::warn!("sweeping leftovers of dead e2e run {id} (owner pid {pid}, dir {dir})");
        if !dir.is_empty() {
            kill_processes_mentioning(&format!("{dir}/"));
            crate::node::cleanup::sweep(id, &Path::new(&dir).join(crate::node::DIR));
            if dir.ends_with(&format!("otlp-lb-e2e-{id}")) {
                let _ = std::fs::remove_dir_all(Path::new(&dir).join("etcd"));
            }
        }
        netns::sweep(id);
        let paths_file = Path::new(STATE_DIR).join(format!("{id}.paths"));
        let paths: Vec<PathBuf> =
            std::fs::read_to_string(&paths_file).unwrap_or_default().lines().map(PathBuf::from).collect();
        remove_created(&paths);
        let _ = std::fs::remove_file(paths_file);
        let _ = std::fs::remove_file(entry.path());
    }
    for id in netns::owner_ids() {
        if !live.contains(&id) {
            tracing::warn!("sweeping unclaimed e2e network resources of run {id}");
            netns::sweep(&id);
        }
    }
}

/// SIGKILLs every process whose command line mentions `needle`.
pub fn kill_processes_mentioning(needle: &str) {
    let me = std::process::id() as i32;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in procs.filter_map(|e| e.ok()) {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_readable() {
        let me = std::process::id() as i32;
        let t = process_start_time(me).expect("start time");
        assert!(owner_alive(me, t));
        assert!(!owner_alive(me, t + 1));
    }
}
