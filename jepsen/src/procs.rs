//! The `goim` processes under test, one per host: started inside the host's network
//! namespace with its own data dir and log file, then killed (`SIGKILL`), paused
//! (`SIGSTOP`/`SIGCONT`), stopped and restarted by the nemeses. Every signal goes to the
//! real process id: `ip netns exec` execs `goim` in place.
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

/// How a process was left by the last nemesis that touched it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    Paused,
    /// Killed or exited: `restart` brings it back.
    Down,
}

/// What a started process did within the wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// `GET /health` answered 200.
    Healthy,
    /// The process exited: its exit code and the last lines of its log.
    Exited { code: Option<i32>, tail: String },
    /// Neither within the wait (still running).
    Pending,
}

struct Proc {
    argv: Vec<String>,
    data_dir: PathBuf,
    log: PathBuf,
    http: String,
    child: Option<Child>,
    state: State,
}

/// Every process of the test, by host name.
pub struct Procs {
    procs: Mutex<BTreeMap<String, Proc>>,
    http: reqwest::Client,
}

/// One process to run: the full argv (namespace prefix included), its data dir (wiped by
/// `wipe`), its log file and its HTTP address for health checks.
pub struct Spec {
    pub name: String,
    pub argv: Vec<String>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub http: String,
}

impl Procs {
    pub fn new() -> anyhow::Result<Procs> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        Ok(Procs { procs: Mutex::new(BTreeMap::new()), http })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Proc>> {
        match self.procs.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Registers `spec` (replacing an earlier process of that name, which must be down)
    /// and starts it.
    pub fn add(&self, spec: Spec) -> anyhow::Result<()> {
        std::fs::create_dir_all(&spec.data_dir)
            .with_context(|| format!("creating {}", spec.data_dir.display()))?;
        let mut procs = self.lock();
        if let Some(old) = procs.get(&spec.name) {
            if old.state != State::Down {
                bail!("{} is still running", spec.name);
            }
        }
        let mut p = Proc {
            argv: spec.argv,
            data_dir: spec.data_dir,
            log: spec.log,
            http: spec.http,
            child: None,
            state: State::Down,
        };
        spawn(&mut p)?;
        procs.insert(spec.name, p);
        Ok(())
    }

    pub fn names(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    pub fn state(&self, name: &str) -> Option<State> {
        let mut procs = self.lock();
        let p = procs.get_mut(name)?;
        reap(p);
        Some(p.state)
    }

    pub fn data_dir(&self, name: &str) -> Option<PathBuf> {
        self.lock().get(name).map(|p| p.data_dir.clone())
    }

    /// `kill -9`. A paused process is killed too.
    pub async fn kill(&self, name: &str) -> anyhow::Result<()> {
        let child = {
            let mut procs = self.lock();
            let p = procs.get_mut(name).with_context(|| format!("no process {name}"))?;
            p.state = State::Down;
            p.child.take()
        };
        if let Some(mut child) = child {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
        Ok(())
    }

    pub fn pause(&self, name: &str) -> anyhow::Result<()> {
        let mut procs = self.lock();
        let p = procs.get_mut(name).with_context(|| format!("no process {name}"))?;
        reap(p);
        if p.state == State::Running && signal(p, libc::SIGSTOP) {
            p.state = State::Paused;
        }
        Ok(())
    }

    pub fn resume(&self, name: &str) -> anyhow::Result<()> {
        let mut procs = self.lock();
        let p = procs.get_mut(name).with_context(|| format!("no process {name}"))?;
        if p.state == State::Paused {
            signal(p, libc::SIGCONT);
            p.state = State::Running;
        }
        Ok(())
    }

    /// Starts a process that is down again, with the same argv.
    pub fn restart(&self, name: &str) -> anyhow::Result<()> {
        let mut procs = self.lock();
        let p = procs.get_mut(name).with_context(|| format!("no process {name}"))?;
        reap(p);
        if p.state == State::Down {
            spawn(p)?;
        }
        Ok(())
    }

    /// Replaces the argv a later `restart` uses (a node rebuilt under a new id).
    pub fn set_argv(&self, name: &str, argv: Vec<String>) {
        if let Some(p) = self.lock().get_mut(name) {
            p.argv = argv;
        }
    }

    /// Deletes the data dir of a process that is down.
    pub fn wipe(&self, name: &str) -> anyhow::Result<()> {
        let dir = {
            let procs = self.lock();
            let p = procs.get(name).with_context(|| format!("no process {name}"))?;
            if p.state != State::Down {
                bail!("{name} must be down to be wiped");
            }
            p.data_dir.clone()
        };
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("wiping {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(())
    }

    /// Waits up to `wait` for the process to answer `/health` with 200 or to exit.
    pub async fn wait_started(&self, name: &str, wait: Duration) -> Started {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let (http, exited) = {
                let mut procs = self.lock();
                let Some(p) = procs.get_mut(name) else {
                    return Started::Exited { code: None, tail: "no such process".into() };
                };
                let exited = match p.child.as_mut().map(|c| c.try_wait()) {
                    Some(Ok(Some(status))) => {
                        p.child = None;
                        p.state = State::Down;
                        Some(status.code())
                    }
                    None => Some(None),
                    _ => None,
                };
                (p.http.clone(), exited.map(|code| (code, p.log.clone())))
            };
            if let Some((code, log)) = exited {
                return Started::Exited { code, tail: log_tail(&log, 5) };
            }
            if self.healthy(&http).await {
                return Started::Healthy;
            }
            if tokio::time::Instant::now() >= deadline {
                return Started::Pending;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn healthy(&self, http: &str) -> bool {
        matches!(self.http.get(format!("http://{http}/health")).send().await, Ok(r) if r.status().is_success())
    }

    /// Kills everything (SIGCONT first so paused processes die promptly).
    pub async fn kill_all(&self) {
        for name in self.names() {
            let _ = self.resume(&name);
            let _ = self.kill(&name).await;
        }
    }
}

fn spawn(p: &mut Proc) -> anyhow::Result<()> {
    let log = OpenOptions::new().create(true).append(true).open(&p.log)?;
    let (program, args) = p.argv.split_first().context("empty argv")?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", p.argv.join(" ")))?;
    p.child = Some(child);
    p.state = State::Running;
    Ok(())
}

/// Notices a process that exited on its own.
fn reap(p: &mut Proc) {
    if let Some(Ok(Some(_))) = p.child.as_mut().map(|c| c.try_wait()) {
        p.child = None;
        p.state = State::Down;
    }
}

fn signal(p: &Proc, sig: libc::c_int) -> bool {
    match p.child.as_ref().and_then(|c| c.id()) {
        // SAFETY: kill(2) on a pid we spawned and have not reaped; no memory is touched.
        Some(pid) => unsafe { libc::kill(pid as libc::pid_t, sig) == 0 },
        None => false,
    }
}

/// The last `n` lines of a log file (for error reports).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
