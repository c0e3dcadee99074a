//! Shared by the tests: a loopback HTTP server standing in for Discord
//! (webhook and the interaction follow-up), a root with a config file,
//! and the plugin run as exliar runs it.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A request the fake server got.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub body: String,
}

/// An answer: status, extra headers, body.
pub type Answer = (u16, Vec<(String, String)>, String);

pub struct FakeDiscord {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeDiscord {
    /// Answers each request with the next of `script`, then 204.
    pub fn start(script: Vec<Answer>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rec = seen.clone();
        std::thread::spawn(move || {
            let mut script = script.into_iter();
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let Some(req) = read_request(&mut conn) else {
                    continue;
                };
                rec.lock().unwrap().push(req);
                let (status, headers, body) = script.next().unwrap_or((204, vec![], String::new()));
                let mut head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\ncontent-type: application/json\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(body.as_bytes());
            }
        });
        Self { port, seen }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn read_request(conn: &mut TcpStream) -> Option<Seen> {
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let at = Instant::now();
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Seen {
        at,
        method,
        path,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A root with `etc/exliar/discord.toml` holding `toml`, mode 0600.
pub fn root_with_config(dir: &Path, toml: &str) -> PathBuf {
    let etc = dir.join("etc/exliar");
    std::fs::create_dir_all(&etc).unwrap();
    let f = etc.join("discord.toml");
    std::fs::write(&f, toml).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    dir.to_path_buf()
}

/// The plugin run as exliar runs it: no arguments, a cleared
/// environment, one request on stdin.
pub fn plugin(root: &Path, request: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_exliar-discord"))
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8")
        .env("EXLIAR_PLUGIN", "1")
        .env("EXLIAR_ROOT", root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// stdout as JSON.
pub fn answer(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The tests run as root (the config file must be root's).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The workspace's exliar binary (`EXLIAR_BIN` overrides; built if absent).
pub fn exliar() -> PathBuf {
    if let Some(p) = std::env::var_os("EXLIAR_BIN") {
        return PathBuf::from(p);
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = ws.join("target/debug/exliar");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "--bin", "exliar"])
            .current_dir(&ws)
            .status()
            .unwrap();
        assert!(st.success(), "cargo build --bin exliar failed");
    }
    bin
}
