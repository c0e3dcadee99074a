//! containerd 1.7 (trixie's, unpacked) started by the test in a private namespace with
//! a private config.toml (CRI plugin, `enable_cdi`, `cdi_spec_dirs`), root, state and
//! socket, driven over CRI the kubelet's way by tests/containers/cri.py.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::harness::{self, IMAGE, Namespace, PAUSE_IMAGE, Unavailable, cache_dir, run_ok, secs};
use super::trixie;

pub struct Containerd {
    pub ns: Namespace,
    root: PathBuf,
    stubs: PathBuf,
    pub version: String,
}

/// One container of a CRI batch.
#[derive(Debug, Clone, Default)]
pub struct CriContainer {
    pub name: String,
    pub command: Vec<String>,
    pub cdi_devices: Vec<String>,
    pub annotations: Vec<(String, String)>,
}

/// What the CRI client saw for one container.
#[derive(Debug, Clone)]
pub struct CriResult {
    pub name: String,
    /// CreateContainer succeeded.
    pub created: bool,
    /// The gRPC error's details (CreateContainer's, for a CDI injection failure).
    pub error: String,
    pub exit_code: Option<i64>,
    /// The container's stdout and stderr (the CRI log).
    pub log: String,
}

fn config_toml(dir: &Path, spec_dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/containerd-root"
state = "{d}/containerd-state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{d}/containerd-opt"
  [plugins."io.containerd.grpc.v1.cri"]
    enable_cdi = true
    cdi_spec_dirs = ["{spec}"]
    sandbox_image = "{PAUSE_IMAGE}"
    # The sandbox's oom_score_adj cannot be lowered without CAP_SYS_RESOURCE (this
    # machine kind): runc fails "can't get final child's PID from pipe: EOF" without it.
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".cni]
      conf_dir = "{d}/cni"
      bin_dir = "{d}/cni-bin"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
"#,
        spec = spec_dir.display()
    )
}

/// The CRI v1 proto from Debian's golang-github-kubernetes-cri-api-dev with its gogoproto
/// import and file options dropped (Go code generation options only; protoc would need
/// gogo.proto), compiled with protoc into `target/containers/cri-py/api_pb2.py`.
fn stubs(root: &Path) -> Result<PathBuf, Unavailable> {
    let proto = root.join("usr/share/gocode/src/k8s.io/cri-api/pkg/apis/runtime/v1/api.proto");
    let text = fs_err::read_to_string(&proto).map_err(|e| Unavailable(e.to_string()))?;
    let filtered: String = text
        .lines()
        .filter(|l| !l.contains("gogoproto"))
        .map(|l| format!("{l}\n"))
        .collect();
    let out = cache_dir().join("cri-py");
    fs_err::create_dir_all(&out).map_err(|e| Unavailable(e.to_string()))?;
    let api = out.join("api.proto");
    let stub = out.join("api_pb2.py");
    if stub.is_file() && std::fs::read_to_string(&api).ok().as_deref() == Some(filtered.as_str()) {
        return Ok(out);
    }
    if harness::find_tool("protoc").is_none() {
        return Err(Unavailable("`protoc` not found (protobuf-compiler)".into()));
    }
    fs_err::write(&api, &filtered).map_err(|e| Unavailable(e.to_string()))?;
    run_ok(
        Command::new("protoc")
            .arg("-I")
            .arg(&out)
            .arg(format!("--python_out={}", out.display()))
            .arg(&api),
    )
    .map_err(Unavailable)?;
    Ok(out)
}

/// Debian's python3 (python3-grpcio, python3-protobuf are installed for it, not for a
/// pyenv or venv python earlier in PATH).
const PYTHON: &str = "/usr/bin/python3";

impl Containerd {
    pub fn start() -> Result<Containerd, Unavailable> {
        harness::host_ready()?;
        let root = trixie::root()?;
        let check = Command::new(PYTHON)
            .args(["-c", "import grpc, google.protobuf"])
            .output();
        if !check.as_ref().is_ok_and(|o| o.status.success()) {
            return Err(Unavailable(format!(
                "{PYTHON} cannot import grpc and google.protobuf (python3-grpcio, python3-protobuf): {check:?}"
            )));
        }
        let stubs = stubs(&root)?;
        let t0 = Instant::now();
        let mut ns = Namespace::start("containerd").map_err(Unavailable)?;
        let dir = ns.dir().to_path_buf();
        for d in ["cni", "cni-bin"] {
            fs_err::create_dir_all(dir.join(d)).map_err(|e| Unavailable(e.to_string()))?;
        }
        fs_err::write(dir.join("config.toml"), config_toml(&dir, &ns.spec_dir()))
            .map_err(|e| Unavailable(e.to_string()))?;
        let mut c = ns.command(root.join("usr/bin/containerd"));
        c.env("PATH", trixie::path_env(&root))
            .arg("--config")
            .arg(dir.join("config.toml"));
        ns.spawn_daemon("containerd", c).map_err(Unavailable)?;
        let mut me = Containerd {
            ns,
            root,
            stubs,
            version: String::new(),
        };
        me.ns
            .wait_for(
                "containerd",
                &dir.join("containerd.sock"),
                Duration::from_secs(60),
            )
            .map_err(Unavailable)?;
        let archive = harness::image_archive().map_err(Unavailable)?;
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            match run_ok(me.ctr().args(["images", "import"]).arg(&archive)) {
                Ok(_) => break,
                Err(e) if Instant::now() > until => {
                    return Err(Unavailable(format!(
                        "{e}\n{}",
                        me.ns.log_tail("containerd", 30)
                    )));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        let v = run_ok(me.ctr().arg("version")).map_err(Unavailable)?;
        let v = String::from_utf8_lossy(&v.stdout).into_owned();
        me.version = v
            .lines()
            .skip_while(|l| !l.starts_with("Server:"))
            .find_map(|l| l.trim().strip_prefix("Version:"))
            .unwrap_or("?")
            .trim()
            .to_string();
        eprintln!("containerd {}: ready in {}", me.version, secs(t0));
        Ok(me)
    }

    /// Trixie's `ctr` on this daemon's socket, namespace k8s.io (the CRI plugin's).
    pub fn ctr(&self) -> Command {
        let mut c = Command::new(self.root.join("usr/bin/ctr"));
        c.arg("-a")
            .arg(self.ns.dir().join("containerd.sock"))
            .args(["-n", "k8s.io"]);
        c
    }

    /// Runs `containers` in one pod sandbox over CRI (tests/containers/cri.py).
    pub fn run_batch(&self, containers: &[CriContainer]) -> Vec<CriResult> {
        let log_dir = self.ns.dir().join("logs");
        let job = serde_json::json!({
            "log_dir": log_dir,
            "image": IMAGE,
            "containers": containers.iter().map(|c| serde_json::json!({
                "name": c.name,
                "command": c.command,
                "cdi_devices": c.cdi_devices,
                "annotations": c.annotations.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            })).collect::<Vec<_>>(),
        });
        let script = harness::repo_dir().join("tests/containers/cri.py");
        let mut child = Command::new(PYTHON)
            .arg(&script)
            .arg(self.ns.dir().join("containerd.sock"))
            .arg(&self.stubs)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{PYTHON}: {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(job.to_string().as_bytes())
                .expect("cri.py stdin");
        }
        let o = child.wait_with_output().expect("cri.py");
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "cri.py failed: {}\n{}",
            harness::text(&o),
            self.ns.log_tail("containerd", 30)
        );
        stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.get("name").is_some())
            .map(|v| CriResult {
                name: v["name"].as_str().unwrap_or_default().to_string(),
                created: v["created"].as_bool().unwrap_or(false),
                error: v["error"].as_str().unwrap_or_default().to_string(),
                exit_code: v["exit_code"].as_i64(),
                log: v["log"].as_str().unwrap_or_default().to_string(),
            })
            .collect()
    }

    /// containerd's log (CDI registry errors are only there).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.ns.log_path("containerd")).unwrap_or_default()
    }
}
