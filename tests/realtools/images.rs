//! Applying exliar's plan to a debootstrapped root, letting exliar run the real
//! generator there (`chroot ROOT update-initramfs …` / `dracut …`), and listing what
//! the images hold with the generators' own listers (`lsinitramfs`, `lsinitrd`).

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::realkernel::harness::{EXLIAR, record_time, say};
use crate::realkernel::kernel::run;
use crate::realtools::root::{self, BaseRoot, Flavour};

/// The image of `kver` in `target` (Debian names both generators' images so).
pub fn image_path(kver: &str) -> String {
    format!("/boot/initrd.img-{kver}")
}

/// Unpacks a guest snapshot (`exliar snapshot` tar) into `dest`.
pub fn unpack_snapshot(tar: &Path, dest: &Path) {
    if dest.exists() {
        fs::remove_dir_all(dest).expect("removing old snapshot dir");
    }
    fs::create_dir_all(dest).expect("snapshot dir");
    run(Command::new("tar").arg("-xf").arg(tar).arg("-C").arg(dest)).expect("tar -x");
}

/// `exliar apply --yes --json --root HW --target ROOT --gpu GPU`, with `ROOT`'s `/proc`,
/// `/sys`, `/dev` mounted, so exliar's own runner does `chroot ROOT <generator>`.
/// Returns the journal JSON.
pub fn apply(hw: &Path, target: &Path, gpu: &str, tag: &str) -> serde_json::Value {
    let t0 = Instant::now();
    let out = root::with_mounts(
        target,
        &[
            OsStr::new(EXLIAR),
            "apply".as_ref(),
            "--yes".as_ref(),
            "--json".as_ref(),
            "--root".as_ref(),
            hw.as_os_str(),
            "--target".as_ref(),
            target.as_os_str(),
            "--gpu".as_ref(),
            gpu.as_ref(),
        ],
    )
    .unwrap_or_else(|e| panic!("exliar apply failed: {e:#}"));
    timed(tag, "exliar apply + regeneration", t0);
    parse_json(&out)
}

/// `exliar rollback --json --target ROOT` (exliar runs the generator again).
pub fn rollback(target: &Path, tag: &str) -> serde_json::Value {
    let t0 = Instant::now();
    let out = root::with_mounts(
        target,
        &[
            OsStr::new(EXLIAR),
            "rollback".as_ref(),
            "--json".as_ref(),
            "--target".as_ref(),
            target.as_os_str(),
        ],
    )
    .unwrap_or_else(|e| panic!("exliar rollback failed: {e:#}"));
    timed(tag, "exliar rollback + regeneration", t0);
    parse_json(&out)
}

fn timed(tag: &str, what: &str, t0: Instant) {
    let line = format!("{tag}: {what} {:.1}s", t0.elapsed().as_secs_f64());
    say(&format!("realtools: {line}"));
    record_time(&line);
}

/// The JSON document in `text` (stdout; the generator's chatter on stderr may follow).
fn parse_json(text: &str) -> serde_json::Value {
    let start = text.find('{').unwrap_or(0);
    let mut de = serde_json::Deserializer::from_str(&text[start..]).into_iter();
    match de.next() {
        Some(Ok(v)) => v,
        other => panic!("no JSON from exliar ({other:?}):\n{text}"),
    }
}

/// The commands exliar's journal says it ran.
pub fn commands_ran(journal: &serde_json::Value) -> Vec<String> {
    let j = journal.get("journal").unwrap_or(journal);
    j["commands"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["argv"].as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The paths in the image, as the generator's lister prints them (no leading `/`).
pub fn list_image(base: &BaseRoot, target: &Path) -> Vec<String> {
    let image = image_path(&base.kver);
    let text = match base.flavour {
        Flavour::InitramfsTools | Flavour::Libvirt => {
            root::chroot(target, &["lsinitramfs", &image])
        }
        Flavour::Dracut => root::chroot(target, &["lsinitrd", &image]),
    }
    .unwrap_or_else(|e| panic!("listing {image}: {e:#}"));
    text.lines()
        .map(|l| {
            // lsinitrd prints `ls -l` style lines; the path is the last word (before ` -> `)
            let l = l.split(" -> ").next().unwrap_or(l);
            l.split_whitespace()
                .last()
                .unwrap_or("")
                .trim_start_matches("./")
                .trim_start_matches('/')
                .to_owned()
        })
        .filter(|p| !p.is_empty())
        .collect()
}

/// One file of the image, by the generator's own tool (`lsinitrd -f`), or for
/// initramfs-tools by `unmkinitramfs` into a scratch directory.
pub fn image_file(base: &BaseRoot, target: &Path, path: &str) -> String {
    let image = image_path(&base.kver);
    match base.flavour {
        Flavour::Dracut => root::chroot(target, &["lsinitrd", "-f", path, &image])
            .unwrap_or_else(|e| panic!("lsinitrd -f {path}: {e:#}")),
        Flavour::InitramfsTools | Flavour::Libvirt => {
            let scratch = "/tmp/exliar-unpacked";
            let dir = target.join(scratch.trim_start_matches('/'));
            if !dir.exists() {
                root::chroot(target, &["unmkinitramfs", &image, scratch])
                    .unwrap_or_else(|e| panic!("unmkinitramfs: {e:#}"));
            }
            // early microcode archives go to early*/, the main one to main/ (or the top)
            for sub in ["main", "."] {
                let p = dir.join(sub).join(path);
                if let Ok(t) = fs::read_to_string(&p) {
                    return t;
                }
            }
            panic!("{path} not in the unpacked image {}", dir.display())
        }
    }
}

/// Whether the image listing has a module `name` (`vfio_pci` matches `vfio-pci.ko`,
/// compressed or not).
pub fn has_module(listing: &[String], name: &str) -> bool {
    listing.iter().any(|p| {
        let base = p.rsplit('/').next().unwrap_or(p);
        let stem = base.split(".ko").next().unwrap_or(base);
        base.contains(".ko") && stem.replace('-', "_") == name
    })
}

/// `target/realtools/runs/<tag>`, removed when the test ends: each run holds a
/// copy of a ~600 MB root (and its disk image while it boots), and five of them
/// filled a CI machine's disk. A failed test keeps its directory for a look,
/// except under CI where nobody looks and later tests need the room.
pub struct RunDir(PathBuf);

impl RunDir {
    pub fn new(tag: &str) -> RunDir {
        RunDir(root::cache_dir().join("runs").join(tag))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
        if std::thread::panicking() && !ci {
            say(&format!("realtools: kept {} for a look", self.0.display()));
            return;
        }
        if let Err(e) = fs::remove_dir_all(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            say(&format!("realtools: removing {}: {e}", self.0.display()));
        }
    }
}

/// A fresh copy of the prepared root for one test: `target/realtools/runs/<tag>/root`.
pub fn work_root(base: &BaseRoot, tag: &str) -> PathBuf {
    let dir = root::cache_dir().join("runs").join(tag).join("root");
    let t0 = Instant::now();
    base.copy_to(&dir).expect("copying the prepared root");
    timed(tag, "copying the prepared root", t0);
    dir
}
