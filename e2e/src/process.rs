//! Child processes of the harness.
//!
//! Every child runs in its own session/process group, with stdout and stderr
//! appended to a log file, optionally inside a network namespace (a pod's,
//! to run a command from inside it), and with `PR_SET_PDEATHSIG=SIGKILL` so
//! the kernel kills it if the harness dies. A [`Proc`] kills its whole process group when dropped,
//! and every live group is listed in a [`ProcTable`] so the cluster can kill
//! them all synchronously from `Drop`.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsFd as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// The process groups of all live children of one cluster.
#[derive(Clone, Default)]
pub struct ProcTable(Arc<Mutex<BTreeSet<i32>>>);

impl ProcTable {
    fn insert(&self, pgid: i32) {
        if let Ok(mut set) = self.0.lock() {
            set.insert(pgid);
        }
    }

    fn remove(&self, pgid: i32) {
        if let Ok(mut set) = self.0.lock() {
            set.remove(&pgid);
        }
    }

    /// Process groups still registered.
    pub fn groups(&self) -> Vec<i32> {
        self.0.lock().map(|s| s.iter().copied().collect()).unwrap_or_default()
    }

    /// SIGKILLs every registered group (synchronous; for teardown).
    pub fn kill_all(&self) {
        for pgid in self.groups() {
            let _ = nix::sys::signal::killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

/// What to run and where.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// Short name for logs and errors.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// `None`: inherit the harness's environment; `Some`: exactly these.
    pub env: Option<Vec<(String, String)>>,
    pub cwd: Option<PathBuf>,
    /// stdout and stderr are appended here.
    pub log: PathBuf,
    /// A network namespace file (`/run/netns/NAME`, `/proc/PID/ns/net`) to join.
    pub netns: Option<PathBuf>,
}

impl Spec {
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>, log: impl Into<PathBuf>) -> Spec {
        Spec { name: name.into(), program: program.into(), log: log.into(), ..Spec::default() }
    }

    pub fn args<I, S>(mut self, args: I) -> Spec
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn netns(mut self, path: impl Into<PathBuf>) -> Spec {
        self.netns = Some(path.into());
        self
    }

    fn command_line(&self) -> String {
        let mut line = self.program.display().to_string();
        for a in &self.args {
            line.push(' ');
            line.push_str(a);
        }
        line
    }

    fn command(&self) -> Result<tokio::process::Command> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args);
        if let Some(env) = &self.env {
            cmd.env_clear();
            cmd.envs(env.iter().map(|(k, v)| (k, v)));
        }
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        cmd.stdin(Stdio::null());
        let netns = match &self.netns {
            Some(p) => Some(File::open(p).with_context(|| format!("opening network namespace {}", p.display()))?),
            None => None,
        };
        // SAFETY: the closure only makes raw syscalls (setsid, prctl, setns)
        // on data prepared before fork; nothing allocates.
        unsafe {
            cmd.pre_exec(move || child_setup(netns.as_ref()));
        }
        Ok(cmd)
    }
}

fn errno(e: nix::errno::Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

/// Runs in the child between fork and exec.
fn child_setup(netns: Option<&File>) -> std::io::Result<()> {
    nix::unistd::setsid().map_err(errno)?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(errno)?;
    if let Some(ns) = netns {
        nix::sched::setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(errno)?;
    }
    Ok(())
}

fn open_log(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening log {}", path.display()))
}

/// A running (or exited, not yet dropped) child.
pub struct Proc {
    name: String,
    pid: i32,
    child: tokio::process::Child,
    table: ProcTable,
    log: PathBuf,
    status: Option<ExitStatus>,
    started: Instant,
}

impl Proc {
    /// Starts `spec`, registering its process group in `table`.
    pub fn spawn(spec: &Spec, table: &ProcTable) -> Result<Proc> {
        let mut log = open_log(&spec.log)?;
        let _ = writeln!(
            log,
            "=== otlp-lb e2e: starting {} at {}: {}",
            spec.name,
            k8s_openapi::jiff::Timestamp::now(),
            spec.command_line()
        );
        let mut cmd = spec.command()?;
        cmd.stdout(Stdio::from(log.try_clone().context("cloning log fd")?));
        cmd.stderr(Stdio::from(log));
        let child = cmd.spawn().with_context(|| format!("starting {}: {}", spec.name, spec.command_line()))?;
        let pid = match child.id() {
            Some(pid) => pid as i32,
            None => bail!("{} exited before its pid was known", spec.name),
        };
        table.insert(pid);
        Ok(Proc {
            name: spec.name.clone(),
            pid,
            child,
            table: table.clone(),
            log: spec.log.clone(),
            status: None,
            started: Instant::now(),
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// How long ago it was started.
    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// The exit status if it has exited (non-blocking).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Ok(Some(st)) = self.child.try_wait()
        {
            self.status = Some(st);
        }
        self.status
    }

    /// Waits up to `timeout` for it to exit.
    pub async fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Ok(Ok(st)) = tokio::time::timeout(timeout, self.child.wait()).await
        {
            self.status = Some(st);
        }
        self.status
    }

    /// Sends `sig` to its process group.
    pub fn signal(&self, sig: Signal) {
        let _ = nix::sys::signal::killpg(Pid::from_raw(self.pid), sig);
    }

    /// SIGTERM, then SIGKILL after `grace`; returns the exit status.
    pub async fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.try_status().is_none() {
            self.signal(Signal::SIGTERM);
            if self.wait_timeout(grace).await.is_none() {
                self.signal(Signal::SIGKILL);
                self.wait_timeout(Duration::from_secs(10)).await;
            }
        }
        // Stragglers of the group (the leader may have left children).
        self.signal(Signal::SIGKILL);
        self.status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
        self.table.remove(self.pid);
    }
}

/// Output of a command run to completion.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code, or 128+signal.
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or_else(|| 128 + self.status.signal().unwrap_or(0))
    }

    /// Fails with the command's output if it did not exit 0.
    pub fn check(self, what: &str) -> Result<Output> {
        if !self.success() {
            bail!(
                "{what} failed with exit code {}\nstdout:\n{}\nstderr:\n{}",
                self.code(),
                tail(&self.stdout, 40),
                tail(&self.stderr, 40)
            );
        }
        Ok(self)
    }
}

/// Runs `spec` to completion with captured output (its `log` is ignored),
/// killing its process group if it runs longer than `timeout`.
pub async fn run_captured(spec: &Spec, table: &ProcTable, timeout: Duration) -> Result<Output> {
    let mut cmd = spec.command()?;
    cmd.stdout(Stdio::piped());
    cmd.stderr(Stdio::piped());
    cmd.kill_on_drop(true);
    let child = cmd.spawn().with_context(|| format!("starting {}: {}", spec.name, spec.command_line()))?;
    let pid = child.id().map(|p| p as i32);
    if let Some(pid) = pid {
        table.insert(pid);
    }
    let res = tokio::time::timeout(timeout, child.wait_with_output()).await;
    if let Some(pid) = pid {
        let _ = nix::sys::signal::killpg(Pid::from_raw(pid), Signal::SIGKILL);
        table.remove(pid);
    }
    match res {
        Ok(Ok(out)) => Ok(Output {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }),
        Ok(Err(e)) => Err(e).with_context(|| format!("waiting for {}", spec.name)),
        Err(_) => bail!("{} did not finish within {timeout:?}: {}", spec.name, spec.command_line()),
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last `n` lines of a file ("" if unreadable).
pub fn tail_file(path: &Path, n: usize) -> String {
    std::fs::read(path).map(|b| tail(&String::from_utf8_lossy(&b), n)).unwrap_or_default()
}

/// Runs a short host command synchronously (for `ip`, teardown, ...).
pub fn run_sync(program: &str, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("`{program} {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
