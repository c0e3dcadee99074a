//! Host tools, the Debian kernel and the kernel-module subset the guest gets.
//!
//! Everything here is cached under `target/realkernel/` and keyed by the kernel
//! package's file name (which carries the kernel ABI and package version), so the
//! download, `dpkg-deb -x` and `depmod` happen once per kernel, not once per test.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Kernel modules copied into the guest, with their dependencies. Every PCI device a
/// scenario creates must find its driver here; `missing_drivers` (run after each boot)
/// names any module that is absent.
pub const MODULES: &[&str] = &[
    "bochs",                 // -device VGA, -device bochs-display (1234:1111)
    "virtio_pci",            // virtio-vga's PCI driver
    "virtio-gpu",            // the DRM driver on top of it
    "snd-hda-intel",         // ich9-intel-hda
    "snd-hda-codec-generic", // hda-duplex codec
    "e1000e",                // -device e1000e
    "e1000",                 // -device e1000 (conventional PCI)
    "ahci",                  // q35's built-in 00:1f.2
    "i2c-i801",              // q35's built-in 00:1f.3
    "lpc_ich",               // q35's built-in 00:1f.0
    "vfio-pci",              // for bind/unbind scenarios
    "vfio_iommu_type1",
];

/// Debian package that provides each host tool (for messages; the list to install is
/// `tests/realkernel/apt-packages.txt`).
const TOOLS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("busybox", "busybox-static"),
    ("depmod", "kmod"),
    ("modprobe", "kmod"),
    ("dpkg-deb", "dpkg"),
    ("ldd", "libc-bin"),
    ("tar", "tar"),
    ("gzip", "gzip"),
    ("sha256sum", "coreutils"),
    ("apt-cache", "apt"),
    ("apt-get", "apt"),
];

/// Absolute paths of the host tools the harness runs.
#[derive(Debug, Clone)]
pub struct Tools {
    pub qemu: PathBuf,
    pub busybox: PathBuf,
    pub depmod: PathBuf,
    pub modprobe: PathBuf,
    pub dpkg_deb: PathBuf,
    pub ldd: PathBuf,
    pub tar: PathBuf,
    pub sha256sum: PathBuf,
    pub apt_cache: PathBuf,
    pub apt_get: PathBuf,
}

/// Why the tier cannot run here (a skip outside CI, a failure in CI).
#[derive(Debug)]
pub struct Unavailable(pub String);

pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Tools {
    pub fn find() -> Result<Tools, Unavailable> {
        let missing: Vec<String> = TOOLS
            .iter()
            .filter(|(t, _)| find_tool(t).is_none())
            .map(|(t, p)| format!("{t} (package {p})"))
            .collect();
        if !missing.is_empty() {
            return Err(Unavailable(format!(
                "missing host tools: {}",
                missing.join(", ")
            )));
        }
        let get = |t: &str| find_tool(t).unwrap_or_default();
        Ok(Tools {
            qemu: get("qemu-system-x86_64"),
            busybox: get("busybox"),
            depmod: get("depmod"),
            modprobe: get("modprobe"),
            dpkg_deb: get("dpkg-deb"),
            ldd: get("ldd"),
            tar: get("tar"),
            sha256sum: get("sha256sum"),
            apt_cache: get("apt-cache"),
            apt_get: get("apt-get"),
        })
    }
}

/// Runs `cmd`, failing with its stderr when it exits non-zero; returns stdout.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An extracted, depmod'ed Debian kernel plus the module subset for the guest.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// e.g. `6.1.0-56-amd64`
    pub version: String,
    /// The `.deb` it came from.
    pub deb: PathBuf,
    pub vmlinuz: PathBuf,
    /// The full `dpkg-deb -x` tree (has `lib/modules/<version>`).
    pub root: PathBuf,
    /// A tree with only `MODULES` and their dependencies, depmod'ed.
    pub module_root: PathBuf,
}

/// The kernel package `linux-image-amd64` depends on, e.g. `linux-image-6.1.0-56-amd64`.
fn kernel_package(tools: &Tools) -> Result<String, Unavailable> {
    let out = Command::new(&tools.apt_cache)
        .args(["depends", "linux-image-amd64"])
        .output()
        .map_err(|e| Unavailable(format!("apt-cache depends linux-image-amd64: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .map(str::trim)
        .find(|p| {
            p.strip_prefix("linux-image-")
                .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        })
        .map(str::to_owned)
        .ok_or_else(|| {
            Unavailable(format!(
                "apt knows no kernel behind linux-image-amd64 (not Debian, or run apt-get update): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        })
}

/// The kernel `.deb`: `$EXLIAR_REALKERNEL_DEB`, or a cached download, or `apt-get download`.
fn kernel_deb(tools: &Tools, cache: &Path) -> Result<PathBuf, Unavailable> {
    if let Some(p) = std::env::var_os("EXLIAR_REALKERNEL_DEB") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Unavailable(format!(
                "EXLIAR_REALKERNEL_DEB={} is not a file",
                p.display()
            )))
        };
    }
    let pkg = kernel_package(tools)?;
    let debs = cache.join("debs");
    fs::create_dir_all(&debs)
        .map_err(|e| Unavailable(format!("creating {}: {e}", debs.display())))?;
    let cached = |debs: &Path| -> Option<PathBuf> {
        let prefix = format!("{pkg}_");
        let mut found: Vec<PathBuf> = fs::read_dir(debs)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
            })
            .collect();
        found.sort();
        found.pop()
    };
    if let Some(deb) = cached(&debs) {
        return Ok(deb);
    }
    eprintln!("realkernel: apt-get download {pkg} into {}", debs.display());
    let out = Command::new(&tools.apt_get)
        .args(["download", "-q", &pkg])
        .current_dir(&debs)
        .output()
        .map_err(|e| Unavailable(format!("apt-get download {pkg}: {e}")))?;
    match cached(&debs) {
        Some(deb) if out.status.success() => Ok(deb),
        _ => Err(Unavailable(format!(
            "apt-get download {pkg} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// 64-bit FNV-1a, for cache keys.
pub fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Builds `dir` with `build` unless `dir/.ready` exists; builds into a sibling
/// temporary directory first so an interrupted run leaves nothing half-made.
pub fn cached_dir(dir: &Path, build: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if dir.join(".ready").is_file() {
        return Ok(());
    }
    let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    build(&tmp)?;
    fs::write(tmp.join(".ready"), b"")?;
    if dir.exists() {
        // another process finished first, or a stale unfinished directory
        if dir.join(".ready").is_file() {
            fs::remove_dir_all(&tmp)?;
            return Ok(());
        }
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::rename(&tmp, dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))
}

fn only_subdir(dir: &Path) -> Result<String> {
    let names: Vec<String> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    match names.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "expected exactly one kernel in {}, found {names:?}",
            dir.display()
        ),
    }
}

/// Normalised module name of `kernel/.../foo-bar.ko` (or `foo-bar`): `foo_bar`.
pub fn module_name(path_or_name: &str) -> String {
    let base = path_or_name.rsplit('/').next().unwrap_or(path_or_name);
    let base = base.split(".ko").next().unwrap_or(base);
    base.replace('-', "_")
}

impl Kernel {
    /// Obtains, extracts and prepares the kernel (cached under `cache`).
    pub fn prepare(tools: &Tools, cache: &Path) -> Result<Result<Kernel, Unavailable>> {
        let deb = match kernel_deb(tools, cache) {
            Ok(d) => d,
            Err(u) => return Ok(Err(u)),
        };
        let stem = deb
            .file_stem()
            .and_then(|s| s.to_str())
            .context("kernel .deb file name")?
            .to_owned();
        let kdir = cache.join("kernels").join(&stem);
        let root = kdir.join("root");
        cached_dir(&root, |tmp| {
            eprintln!("realkernel: extracting {} (once per kernel)", deb.display());
            run(Command::new(&tools.dpkg_deb).arg("-x").arg(&deb).arg(tmp))?;
            let kver = only_subdir(&tmp.join("lib/modules"))?;
            // the .deb ships no modules.dep; its postinst would make it
            run(Command::new(&tools.depmod).arg("-b").arg(tmp).arg(&kver))?;
            Ok(())
        })?;
        let version = only_subdir(&root.join("lib/modules"))?;
        let vmlinuz = root.join("boot").join(format!("vmlinuz-{version}"));
        if !vmlinuz.is_file() {
            bail!(
                "{} has no kernel image {}",
                deb.display(),
                vmlinuz.display()
            );
        }
        let key = fnv1a(MODULES.join(" ").as_bytes());
        let module_root = kdir.join(format!("modules-{key:016x}"));
        cached_dir(&module_root, |tmp| {
            module_subset(tools, &root, &version, tmp)
        })?;
        // subsets made for earlier module lists are dead weight
        for e in fs::read_dir(&kdir)?.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            // (`.tmp<pid>` ones may be another test process at work)
            let stale = name.starts_with("modules-") && !name.contains(".tmp");
            if stale && p != module_root && p.is_dir() {
                let _ = fs::remove_dir_all(&p);
            }
        }
        Ok(Ok(Kernel {
            version,
            deb,
            vmlinuz,
            root,
            module_root,
        }))
    }

    /// Names (normalised) of the modules in the guest.
    pub fn guest_modules(&self) -> Result<BTreeSet<String>> {
        let dep = self
            .module_root
            .join("lib/modules")
            .join(&self.version)
            .join("modules.dep");
        let text =
            fs::read_to_string(&dep).with_context(|| format!("reading {}", dep.display()))?;
        Ok(text
            .lines()
            .filter_map(|l| l.split(':').next())
            .map(module_name)
            .collect())
    }

    /// Names (normalised) of the modules built into the kernel.
    pub fn builtin_modules(&self) -> Result<BTreeSet<String>> {
        let p = self
            .root
            .join("lib/modules")
            .join(&self.version)
            .join("modules.builtin");
        let text = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        Ok(text.lines().map(module_name).collect())
    }

    /// The modules (normalised names) the full kernel would load for `modalias`.
    pub fn resolve_alias(&self, tools: &Tools, modalias: &str) -> Result<BTreeSet<String>> {
        let out = Command::new(&tools.modprobe)
            .arg("-d")
            .arg(&self.root)
            .arg("-S")
            .arg(&self.version)
            .arg("-R")
            .arg(modalias)
            .output()
            .context("running modprobe -R")?;
        // exit status 1 with "not found" means no module matches the alias
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(module_name)
            .filter(|m| !m.is_empty())
            .collect())
    }
}

/// Copies `MODULES` and their dependencies from `root` into `dest` and depmods it.
fn module_subset(tools: &Tools, root: &Path, kver: &str, dest: &Path) -> Result<()> {
    let mdir = root.join("lib/modules").join(kver);
    let dest_mdir = dest.join("lib/modules").join(kver);
    let mut files = BTreeSet::new();
    for m in MODULES {
        let out = Command::new(&tools.modprobe)
            .arg("-d")
            .arg(root)
            .arg("-S")
            .arg(kver)
            .arg("--show-depends")
            .arg(m)
            .output()
            .context("running modprobe --show-depends")?;
        if !out.status.success() {
            bail!(
                "kernel module `{m}` (listed in tests/realkernel/kernel.rs MODULES) is missing from kernel {kver} ({}): {}",
                root.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "insmod /path/to/x.ko [params]" or "builtin x"
            if let Some(rest) = line.strip_prefix("insmod ") {
                let ko = rest.split_whitespace().next().unwrap_or_default();
                files.insert(PathBuf::from(ko));
            }
        }
    }
    for ko in &files {
        let rel = ko
            .strip_prefix(&mdir)
            .with_context(|| format!("module {} outside {}", ko.display(), mdir.display()))?;
        let to = dest_mdir.join(rel);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(ko, &to).with_context(|| format!("copying {}", ko.display()))?;
    }
    for f in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        let from = mdir.join(f);
        if from.is_file() {
            fs::copy(&from, dest_mdir.join(f))?;
        }
    }
    run(Command::new(&tools.depmod).arg("-b").arg(dest).arg(kver))?;
    Ok(())
}
