//! A minimal Debian 12 root (debootstrap) with Debian's kernel, initramfs-tools and
//! dracut-core installed, so that the real initramfs generators run on what
//! `exliar apply --target ROOT` wrote. Cached under `target/realtools/`, keyed by
//! [`ROOT_VERSION`] and the kernel package; each test works on its own copy.
//!
//! Needs root (debootstrap, chroot and mounts in a private mount namespace).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::realkernel::kernel::{Kernel, Unavailable, cached_dir, find_tool, run};

/// Bump when the package set or the preparation changes: the cache key.
pub const ROOT_VERSION: &str = "bookworm-v1";

/// Packages debootstrap adds to `minbase` (the kernel `.deb` is installed after).
const PACKAGES: &str = "initramfs-tools,dracut-core,busybox,kmod,udev,linux-base";

/// Host commands this needs, with their Debian packages (see apt-packages.txt).
const HOST_TOOLS: &[(&str, &str)] = &[
    ("debootstrap", "debootstrap"),
    ("chroot", "coreutils"),
    ("unshare", "util-linux"),
    ("mke2fs", "e2fsprogs"),
    ("cpio", "cpio"),
];

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `target/realtools/`.
pub fn cache_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("realtools")
}

/// The Debian mirror: `EXLIAR_REALTOOLS_MIRROR`, else the first http(s) one apt uses here.
fn mirror() -> String {
    if let Ok(m) = std::env::var("EXLIAR_REALTOOLS_MIRROR") {
        return m;
    }
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut v: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        v.sort();
        files.extend(v);
    }
    for f in files {
        let text = fs::read_to_string(&f).unwrap_or_default();
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let uri = match words.as_slice() {
                ["URIs:", uri, ..] => Some(*uri),
                ["deb", rest @ ..] => rest.iter().find(|w| w.starts_with("http")).copied(),
                _ => None,
            };
            if let Some(u) = uri
                && u.starts_with("http")
                && !u.contains("security")
            {
                return u.to_owned();
            }
        }
    }
    "http://deb.debian.org/debian".to_owned()
}

/// Runs `argv` on the host with `root`'s `/proc`, `/sys` and `/dev` mounted, in a
/// private mount namespace: the mounts vanish with the process, whatever happens.
pub fn with_mounts(root: &Path, argv: &[&std::ffi::OsStr]) -> Result<String> {
    let script = r#"set -e
r=$1; shift
mount -t proc proc "$r/proc"
mount -t sysfs sysfs "$r/sys"
mount --rbind /dev "$r/dev"
mount -t tmpfs tmpfs "$r/run"
exec "$@""#;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        script,
        "sh",
    ])
    .arg(root)
    .args(argv)
    .env("LC_ALL", "C")
    .env("DEBIAN_FRONTEND", "noninteractive")
    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!(
            "{argv:?} in {} failed ({}):\n{text}",
            root.display(),
            out.status
        );
    }
    Ok(text)
}

/// `chroot root argv...` with the mounts of [`with_mounts`].
pub fn chroot(root: &Path, argv: &[&str]) -> Result<String> {
    let mut v: Vec<&std::ffi::OsStr> = vec!["chroot".as_ref(), root.as_os_str()];
    v.extend(argv.iter().map(|s| std::ffi::OsStr::new(*s)));
    with_mounts(root, &v)
}

/// Which initramfs generator a root has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// initramfs-tools (and dracut-core's binary, unused: `/boot/initrd.img-*` names
    /// initramfs-tools as the generator).
    InitramfsTools,
    /// initramfs-tools purged: dracut is the only generator.
    Dracut,
    /// The initramfs-tools root plus libvirt and QEMU ([`LIBVIRT_PACKAGES`]): an L1 in
    /// which exliar defines and starts a nested VM (SeaBIOS, TCG; no OVMF, no swtpm).
    Libvirt,
}

/// Version of the [`Flavour::Libvirt`] layer: bump it when [`LIBVIRT_PACKAGES`] change.
pub const LIBVIRT_VERSION: &str = "v1";

/// What `apt-get install --no-install-recommends` adds for [`Flavour::Libvirt`].
pub const LIBVIRT_PACKAGES: &[&str] = &[
    "libvirt-daemon-system",
    "libvirt-clients",
    "qemu-system-x86",
    "pciutils",
    "procps",
];

/// A prepared, cached root (read-only: copy it with [`BaseRoot::copy_to`]).
#[derive(Debug, Clone)]
pub struct BaseRoot {
    pub dir: PathBuf,
    /// Kernel release installed in it, e.g. `6.1.0-56-amd64`.
    pub kver: String,
    pub flavour: Flavour,
}

impl BaseRoot {
    /// `cp -a` of the root into `dest` (replaced).
    pub fn copy_to(&self, dest: &Path) -> Result<()> {
        if dest.exists() {
            fs::remove_dir_all(dest).with_context(|| format!("removing {}", dest.display()))?;
        }
        if let Some(p) = dest.parent() {
            fs::create_dir_all(p)?;
        }
        run(Command::new("cp")
            .arg("-a")
            .arg("--reflink=auto")
            .arg(&self.dir)
            .arg(dest))?;
        let _ = fs::remove_file(dest.join(".ready"));
        Ok(())
    }
}

/// Checks the host can build the roots (root user and the tools).
pub fn host_ready() -> Result<(), Unavailable> {
    if !is_root() {
        return Err(Unavailable(
            "not running as root (debootstrap, chroot and mounts need it)".into(),
        ));
    }
    let missing: Vec<String> = HOST_TOOLS
        .iter()
        .filter(|(t, _)| find_tool(t).is_none())
        .map(|(t, p)| format!("{t} (package {p})"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Unavailable(format!(
            "missing host tools: {}",
            missing.join(", ")
        )))
    }
}

/// The cached root of `flavour` with `kernel` installed, built on first use.
pub fn prepare(kernel: &Kernel, flavour: Flavour) -> Result<Result<BaseRoot, Unavailable>> {
    if let Err(u) = host_ready() {
        return Ok(Err(u));
    }
    let cache = cache_dir();
    fs::create_dir_all(&cache)?;
    let stem = kernel
        .deb
        .file_stem()
        .and_then(|s| s.to_str())
        .context("kernel .deb name")?
        // no dots: cached_dir's temporary name replaces the extension
        .replace('.', "_");
    // one preparation at a time (tests of one process share the cache)
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _lock = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let base = cache.join(format!("root-{ROOT_VERSION}-{stem}"));
    let t0 = std::time::Instant::now();
    cached_dir(&base, |tmp| {
        crate::realkernel::harness::say(&format!(
            "realtools: debootstrap into {} (once per ROOT_VERSION and kernel)",
            tmp.display()
        ));
        // cached_dir made it; debootstrap wants to create or fill it
        run(Command::new("debootstrap")
            .args(["--variant=minbase", &format!("--include={PACKAGES}")])
            .args(["bookworm"])
            .arg(tmp)
            .arg(mirror()))?;
        let deb_in_root = tmp.join("tmp/kernel.deb");
        fs::copy(&kernel.deb, &deb_in_root)?;
        chroot(tmp, &["dpkg", "-i", "/tmp/kernel.deb"])?;
        fs::remove_file(&deb_in_root)?;
        chroot(tmp, &["apt-get", "clean"])?;
        for junk in [
            "usr/share/doc",
            "usr/share/man",
            "usr/share/locale",
            "var/lib/apt/lists",
        ] {
            let p = tmp.join(junk);
            if p.exists() {
                fs::remove_dir_all(&p)?;
                fs::create_dir_all(&p)?;
            }
        }
        Ok(())
    })?;
    let elapsed = t0.elapsed();
    if elapsed.as_secs() > 5 {
        crate::realkernel::harness::say(&format!(
            "realtools: base root ready in {:.1}s",
            elapsed.as_secs_f64()
        ));
        crate::realkernel::harness::record_time(&format!(
            "realtools base root (debootstrap + kernel) {:.1}s",
            elapsed.as_secs_f64()
        ));
    }
    let dir = match flavour {
        Flavour::InitramfsTools => base,
        Flavour::Dracut => {
            let d = cache.join(format!("root-{ROOT_VERSION}-{stem}-dracut"));
            let b = BaseRoot {
                dir: base.clone(),
                kver: kernel.version.clone(),
                flavour: Flavour::InitramfsTools,
            };
            cached_dir(&d, |tmp| {
                b.copy_to(tmp)?;
                chroot(
                    tmp,
                    &[
                        "dpkg",
                        "--purge",
                        "--force-depends",
                        "initramfs-tools",
                        "initramfs-tools-core",
                    ],
                )?;
                // the initramfs-tools image would name initramfs-tools as the generator
                let _ = fs::remove_file(tmp.join(format!("boot/initrd.img-{}", kernel.version)));
                chroot(tmp, &["dracut", "-f", "--kver", &kernel.version])?;
                Ok(())
            })?;
            d
        }
        Flavour::Libvirt => {
            let d = cache.join(format!(
                "root-{ROOT_VERSION}-{stem}-libvirt-{LIBVIRT_VERSION}"
            ));
            let b = BaseRoot {
                dir: base.clone(),
                kver: kernel.version.clone(),
                flavour: Flavour::InitramfsTools,
            };
            let t1 = std::time::Instant::now();
            let mut built = false;
            cached_dir(&d, |tmp| {
                built = true;
                crate::realkernel::harness::say(&format!(
                    "realtools: installing libvirt into {} (once per LIBVIRT_VERSION)",
                    tmp.display()
                ));
                b.copy_to(tmp)?;
                // apt in the chroot resolves the mirror's name as the host does
                let _ = fs::copy("/etc/resolv.conf", tmp.join("etc/resolv.conf"));
                chroot(tmp, &["apt-get", "update"])?;
                let mut argv = vec!["apt-get", "install", "-y", "--no-install-recommends"];
                argv.extend_from_slice(LIBVIRT_PACKAGES);
                chroot(tmp, &argv)?;
                chroot(tmp, &["apt-get", "clean"])?;
                for junk in ["usr/share/doc", "usr/share/man", "var/lib/apt/lists"] {
                    let p = tmp.join(junk);
                    if p.exists() {
                        fs::remove_dir_all(&p)?;
                        fs::create_dir_all(&p)?;
                    }
                }
                Ok(())
            })?;
            if built {
                crate::realkernel::harness::record_time(&format!(
                    "realtools libvirt root layer {:.1}s",
                    t1.elapsed().as_secs_f64()
                ));
            }
            d
        }
    };
    Ok(Ok(BaseRoot {
        dir,
        kver: kernel.version.clone(),
        flavour,
    }))
}
