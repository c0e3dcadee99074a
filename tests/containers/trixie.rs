//! Docker 26 and containerd 1.7 from Debian 13 (trixie), fetched with a private apt
//! state and only unpacked (`dpkg-deb -x`) under `target/containers/trixie/`: the
//! system's apt sources, lists and packages are not touched. Cached: a second run
//! downloads nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use super::harness::{Unavailable, cache_dir, run_ok, secs};

/// The packages, as `apt-get download` names them. docker-cli and docker.io declare only
/// `libc6 (>= 2.34)`, containerd the same; Debian 12 has 2.36. The CRI API package is
/// what containerd 1.7.24 was built with (its Built-Using), for the proto the CRI client
/// is generated from.
pub const DEBS: &[&str] = &[
    "docker.io/trixie",
    "docker-cli/trixie",
    "containerd/trixie",
    "golang-github-kubernetes-cri-api-dev/trixie",
];

/// The Debian mirror trixie is fetched from (the same the bookworm system uses).
const MIRROR: &str = "http://deb.debian.org/debian";

/// The unpacked tree (`usr/bin/dockerd`, `usr/bin/docker`, `usr/bin/containerd`, …),
/// fetched and unpacked on first use.
pub fn root() -> Result<PathBuf, Unavailable> {
    static ROOT: OnceLock<Mutex<Option<Result<PathBuf, Unavailable>>>> = OnceLock::new();
    let cell = ROOT.get_or_init(|| Mutex::new(None));
    let mut g = cell.lock().unwrap_or_else(|e| e.into_inner());
    if g.is_none() {
        *g = Some(fetch());
    }
    g.clone()
        .unwrap_or_else(|| Err(Unavailable("trixie fetch".into())))
}

fn fetch() -> Result<PathBuf, Unavailable> {
    let base = cache_dir().join("trixie");
    let root = base.join("root");
    let stamp = base.join("unpacked");
    let want: String = DEBS.join("\n");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str())
        && root.join("usr/sbin/dockerd").is_file()
    {
        return Ok(root);
    }
    for tool in ["apt-get", "dpkg-deb"] {
        if super::harness::find_tool(tool).is_none() {
            return Err(Unavailable(format!("`{tool}` not found")));
        }
    }
    let t0 = Instant::now();
    let apt = base.join("apt");
    let debs = base.join("debs");
    let mk = |p: &Path| fs_err::create_dir_all(p).map_err(|e| Unavailable(e.to_string()));
    mk(&apt.join("lists/partial"))?;
    mk(&apt.join("cache/archives/partial"))?;
    mk(&debs)?;
    let sources = apt.join("sources.list");
    fs_err::write(
        &sources,
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {MIRROR} trixie main\n"
        ),
    )
    .map_err(|e| Unavailable(e.to_string()))?;
    let opts = [
        format!("Dir::State::Lists={}", apt.join("lists").display()),
        format!("Dir::Etc::SourceList={}", sources.display()),
        "Dir::Etc::SourceParts=/dev/null".to_string(),
        format!("Dir::Cache={}", apt.join("cache").display()),
        // the download runs as root in a directory _apt cannot write to
        "APT::Sandbox::User=root".to_string(),
    ];
    let apt_get = || {
        let mut c = Command::new("apt-get");
        for o in &opts {
            c.arg("-o").arg(o);
        }
        c.arg("-qq");
        c
    };
    run_ok(apt_get().arg("update"))
        .map_err(|e| Unavailable(format!("trixie package lists (network?): {e}")))?;
    for old in fs_err::read_dir(&debs)
        .map_err(|e| Unavailable(e.to_string()))?
        .flatten()
    {
        let _ = fs_err::remove_file(old.path());
    }
    run_ok(apt_get().current_dir(&debs).arg("download").args(DEBS))
        .map_err(|e| Unavailable(format!("trixie packages: {e}")))?;
    let _ = fs_err::remove_dir_all(&root);
    mk(&root)?;
    for deb in fs_err::read_dir(&debs)
        .map_err(|e| Unavailable(e.to_string()))?
        .flatten()
    {
        run_ok(
            Command::new("dpkg-deb")
                .arg("-x")
                .arg(deb.path())
                .arg(&root),
        )
        .map_err(Unavailable)?;
    }
    fs_err::write(&stamp, want).map_err(|e| Unavailable(e.to_string()))?;
    eprintln!(
        "trixie: {} fetched and unpacked in {}",
        DEBS.join(", "),
        secs(t0)
    );
    Ok(root)
}

/// The .deb file names that were unpacked (name_version_arch.deb).
pub fn debs() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(cache_dir().join("trixie/debs"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `PATH` for the trixie daemons: their binaries first (containerd, its shim, ctr,
/// docker), then the system's (runc from Debian 12).
pub fn path_env(root: &Path) -> String {
    format!(
        "{}:{}:{}",
        root.join("usr/bin").display(),
        root.join("usr/sbin").display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
    )
}
