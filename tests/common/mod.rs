//! Test support: start real `shoal` processes on loopback and talk to them over HTTP.
#![allow(dead_code)]

use serde_json::{json, Value};
pub mod cluster;
pub mod dns;
pub mod kube;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running node and what is needed to restart it on the same data.
pub struct Node {
    pub addr: SocketAddr,
    pub peer_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub extra_args: Vec<String>,
    child: Option<Child>,
    pub http: reqwest::blocking::Client,
    /// A memory cgroup directory the process is moved into as soon as it starts (its
    /// `cgroup.procs` is written with the pid).
    pub cgroup: Option<PathBuf>,
}

impl Node {
    /// Starts a node on 127.0.0.1 with a fresh port on `data_dir`.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> Node {
        let ip: IpAddr = [127, 0, 0, 1].into();
        Node::start_at(
            ip,
            free_port("127.0.0.1"),
            free_port("127.0.0.1"),
            data_dir,
            extra_args,
        )
    }

    /// Starts a node with its public API on `ip:port` and its peer API on `ip:peer_port`.
    pub fn start_at(
        ip: IpAddr,
        port: u16,
        peer_port: u16,
        data_dir: &Path,
        extra_args: &[&str],
    ) -> Node {
        let mut node = Node::new(ip, port, peer_port, data_dir, extra_args);
        node.spawn();
        node
    }

    /// A node that is not started yet.
    pub fn new(
        ip: IpAddr,
        port: u16,
        peer_port: u16,
        data_dir: &Path,
        extra_args: &[&str],
    ) -> Node {
        Node {
            addr: SocketAddr::new(ip, port),
            peer_addr: SocketAddr::new(ip, peer_port),
            data_dir: data_dir.to_path_buf(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            child: None,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            cgroup: None,
        }
    }

    /// Starts the process and waits for `/readyz`.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.with_extension("log"))
            .expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_shoal"));
        if let Some(cg) = &self.cgroup {
            join_cgroup_before_exec(&mut command, &cg.join("cgroup.procs"));
        }
        let child = command
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--peer-listen")
            .arg(self.peer_addr.to_string())
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start shoal");
        self.child = Some(child);
        self.wait_ready();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "shoal exited early with {status}; see {}",
                        self.data_dir.with_extension("log").display()
                    );
                }
            }
            if let Ok(r) = self.http.get(self.url("/readyz")).send() {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "node did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still running (false once it exited or was killed).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = wait_exit(&mut c, Duration::from_secs(30));
        }
    }

    /// SIGTERM and wait for a clean exit (status 0) within Kubernetes' 30 s grace period.
    pub fn stop(&mut self) {
        let status = self.terminate(Duration::from_secs(30));
        assert!(
            status.success(),
            "shoal did not exit cleanly: {status}; see {}",
            self.data_dir.with_extension("log").display()
        );
    }

    /// SIGTERM, then the exit status; a node still running after `grace` is killed and the
    /// test fails, as the kubelet would kill it.
    pub fn terminate(&mut self, grace: Duration) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("the node is running");
        signal(&c, libc::SIGTERM);
        match wait_exit(&mut c, grace) {
            Some(status) => status,
            None => {
                let _ = c.kill();
                let _ = wait_exit(&mut c, Duration::from_secs(30));
                panic!("shoal did not exit within {grace:?} of SIGTERM");
            }
        }
    }

    /// Sends a signal to the running node (SIGSTOP, SIGCONT, ...).
    pub fn signal(&self, sig: libc::c_int) {
        signal(self.child.as_ref().expect("the node is running"), sig);
    }

    /// The node's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process has exited (reaping it if so).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten();
        if status.is_some() {
            self.child = None;
        }
        status
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn restart_after_kill9(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Moves a stopped node to another IP (same ports), as a pod rescheduled with a new address.
    pub fn move_to(&mut self, ip: IpAddr) {
        self.addr = SocketAddr::new(ip, self.addr.port());
        self.peer_addr = SocketAddr::new(ip, self.peer_addr.port());
    }

    /// Sends a request; returns (status, parsed JSON body or the raw text as a JSON string).
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(m, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn raw(&self, method: &str, path: &str, body: &'static [u8]) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let resp = self
            .http
            .request(m, self.url(path))
            .body(body)
            .send()
            .expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Calls and insists on a 200, returning `result`.
    pub fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body);
        assert_eq!(status, 200, "{method} {path}: {v}");
        assert_eq!(v["status"], "ok", "{v}");
        v["result"].clone()
    }

    pub fn create_collection(&self, name: &str, dim: usize, distance: &str) {
        self.ok(
            "PUT",
            &format!("/collections/{name}"),
            Some(json!({"vectors": {"size": dim, "distance": distance}})),
        );
    }

    pub fn count(&self, name: &str) -> u64 {
        self.ok(
            "POST",
            &format!("/collections/{name}/points/count"),
            Some(json!({"exact": true})),
        )["count"]
            .as_u64()
            .expect("count")
    }
}

/// Sends `sig` to a child process with `kill(2)`: no `kill` binary needed.
pub fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) with the pid of a child this process spawned and has not reaped yet.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

/// Waits for a child to exit, at most `limit`; `None` if it is still running then.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a command to its end and returns its output, waiting at most `limit`: past it the
/// command is killed and the test fails (a hung command never hangs the suite).
pub fn output_within(command: &mut Command, limit: Duration) -> std::process::Output {
    use std::io::Read;
    use std::process::Stdio;
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    // Read both pipes while waiting, so that a chatty command never blocks on a full pipe.
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let Some(status) = wait_exit(&mut child, limit) else {
        let _ = child.kill();
        let _ = wait_exit(&mut child, Duration::from_secs(10));
        panic!("{what} still running after {limit:?}");
    };
    std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Makes the child write its own pid into `procs` (a cgroup's `cgroup.procs`) between fork and
/// exec, so that everything it ever allocates is charged to that cgroup and it reads that
/// cgroup's limit from its first instruction.
fn join_cgroup_before_exec(command: &mut Command, procs: &Path) {
    use std::os::unix::process::CommandExt;
    let path = std::ffi::CString::new(procs.as_os_str().as_encoded_bytes()).expect("cgroup path");
    // SAFETY: the closure only calls async-signal-safe functions (open, write, close, getpid)
    // on memory prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut buf = [0u8; 20];
            let mut pid = libc::getpid() as u64;
            let mut at = buf.len();
            loop {
                at -= 1;
                buf[at] = b'0' + (pid % 10) as u8;
                pid /= 10;
                if pid == 0 {
                    break;
                }
            }
            let n = libc::write(
                fd,
                buf[at..].as_ptr() as *const libc::c_void,
                buf.len() - at,
            );
            libc::close(fd);
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Polls until `check` holds, failing with its last value after a minute.
pub fn eventually<T: std::fmt::Debug>(what: &str, mut check: impl FnMut() -> (bool, T)) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, seen) = check();
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: still {seen:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Deterministic pseudo-random vectors (xorshift), so tests need no RNG crate.
pub fn vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    (0..n).map(|_| (0..dim).map(|_| next()).collect()).collect()
}

/// `n` vectors of [`vectors`] numbered from `first`: (id, vector) pairs to upsert.
#[allow(dead_code)]
pub fn numbered(first: u64, n: usize, dim: usize, seed: u64) -> Vec<(u64, Vec<f32>)> {
    (vectors(n, dim, seed).into_iter().enumerate())
        .map(|(i, v)| (first + i as u64, v))
        .collect()
}
