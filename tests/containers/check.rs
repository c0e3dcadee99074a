//! What a CDI device must put in a container, read from the spec files and the host,
//! a busybox script that reports what arrived, and the comparison of the two.
//!
//! Expected values come from the host, not from the spec: a node must show the host
//! node's major:minor, permission bits and group inside (engines make a node 0666 unless
//! the spec says `fileMode`, so a spec without it fails here for a 0660 host node).

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeExpect {
    pub path: String,
    pub host_path: PathBuf,
    pub major: u32,
    pub minor: u32,
    pub mode: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountExpect {
    pub container_path: String,
    pub host_path: PathBuf,
    /// sha256 of a regular file's content; None for a directory (listing compared).
    pub sha256: Option<String>,
    /// A directory's entries, sorted: `name=sha256` for a regular file (through a
    /// link), `name` for anything else.
    pub listing: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expect {
    pub nodes: Vec<NodeExpect>,
    pub env: Vec<String>,
    pub mounts: Vec<MountExpect>,
}

/// The spec files (`*.json`) in `spec_dir` as (file, JSON).
pub fn specs_in(spec_dir: &Path) -> Result<Vec<(PathBuf, serde_json::Value)>, String> {
    let mut out = Vec::new();
    let rd = fs_err::read_dir(spec_dir).map_err(|e| e.to_string())?;
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let text = fs_err::read_to_string(&p).map_err(|e| e.to_string())?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
        out.push((p, v));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// What requesting the devices `qualified` (`vendor/class=name`) must inject, from the
/// specs in `spec_dir` and the host's nodes and files.
pub fn expect(spec_dir: &Path, qualified: &[&str]) -> Result<Expect, String> {
    expect_rooted(spec_dir, qualified, None)
}

/// [`expect`] for specs written for the real host's paths (`/dev/dri/card0`,
/// `/usr/bin/nvidia-smi`) of a host copied under `root` (`root/dev/dri/card0`, shown to
/// the engines at the real paths by `Namespace::overlay_dev` and
/// `Namespace::overlay_files`): a node's and a mount's host path is looked up under
/// `root` (links followed inside it, [`in_root`]).
pub fn expect_rooted(
    spec_dir: &Path,
    qualified: &[&str],
    root: Option<&Path>,
) -> Result<Expect, String> {
    let specs = specs_in(spec_dir)?;
    let mut out = Expect::default();
    let mut seen_kinds = Vec::new();
    for q in qualified {
        let (kind, name) = q
            .split_once('=')
            .ok_or_else(|| format!("{q}: not a qualified CDI device name"))?;
        let mut found = false;
        for (file, spec) in &specs {
            if spec["kind"].as_str() != Some(kind) {
                continue;
            }
            let Some(dev) = spec["devices"]
                .as_array()
                .and_then(|d| d.iter().find(|d| d["name"].as_str() == Some(name)))
            else {
                continue;
            };
            found = true;
            if !seen_kinds.contains(&file.clone()) {
                add_edits(&mut out, &spec["containerEdits"], root)?;
                seen_kinds.push(file.clone());
            }
            add_edits(&mut out, &dev["containerEdits"], root)?;
        }
        if !found {
            return Err(format!("{q}: no spec in {} defines it", spec_dir.display()));
        }
    }
    Ok(out)
}

fn add_edits(
    out: &mut Expect,
    edits: &serde_json::Value,
    root: Option<&Path>,
) -> Result<(), String> {
    for e in edits["env"].as_array().into_iter().flatten() {
        if let Some(s) = e.as_str() {
            out.env.push(s.to_string());
        }
    }
    for n in edits["deviceNodes"].as_array().into_iter().flatten() {
        let path = n["path"]
            .as_str()
            .ok_or("deviceNode without path")?
            .to_string();
        let host = rooted(root, Path::new(n["hostPath"].as_str().unwrap_or(&path)))?;
        let m = fs_err::metadata(&host).map_err(|e| e.to_string())?;
        if !m.file_type().is_char_device() && !m.file_type().is_block_device() {
            return Err(format!("{}: not a device node", host.display()));
        }
        let rdev = m.rdev();
        let node = NodeExpect {
            path,
            host_path: host,
            major: rustix::fs::major(rdev),
            minor: rustix::fs::minor(rdev),
            mode: m.mode() & 0o7777,
            gid: m.gid(),
        };
        if !out.nodes.contains(&node) {
            out.nodes.push(node);
        }
    }
    for mnt in edits["mounts"].as_array().into_iter().flatten() {
        let host = rooted(
            root,
            Path::new(mnt["hostPath"].as_str().ok_or("mount without hostPath")?),
        )?;
        let container_path = mnt["containerPath"]
            .as_str()
            .ok_or("mount without containerPath")?
            .to_string();
        let m = fs_err::metadata(&host).map_err(|e| e.to_string())?;
        let (sha256, listing) = if m.is_dir() {
            let mut l = Vec::new();
            for e in fs_err::read_dir(&host).map_err(|e| e.to_string())? {
                let e = e.map_err(|e| e.to_string())?;
                let name = e.file_name().to_string_lossy().into_owned();
                if e.path().is_file() {
                    l.push(format!("{name}={}", sha256_file(&e.path())?));
                } else {
                    l.push(name);
                }
            }
            l.sort();
            (None, l)
        } else {
            (Some(sha256_file(&host)?), Vec::new())
        };
        out.mounts.push(MountExpect {
            container_path,
            host_path: host,
            sha256,
            listing,
        });
    }
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String, String> {
    use sha2::Digest as _;
    let bytes = fs_err::read(path).map_err(|e| e.to_string())?;
    Ok(sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// A spec's host path as the test host has it: under `root` when one is given (and
/// the path is not already there), else as is.
fn rooted(root: Option<&Path>, host: &Path) -> Result<PathBuf, String> {
    match root {
        Some(r) if !host.starts_with(r) => in_root(r, host),
        _ => Ok(host.to_path_buf()),
    }
}

/// `path` (absolute, as on the host copied under `root`) resolved inside `root`: every
/// link on the way, the last one included, is followed, an absolute target from
/// `root` again, and `..` never leaves `root`. The result need not exist.
pub fn in_root(root: &Path, path: &Path) -> Result<PathBuf, String> {
    use std::path::Component;
    let mut todo: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut done = PathBuf::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        let here = root.join(&done).join(&c);
        match std::fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(format!("{}: too many links", path.display()));
                }
                let target = fs_err::read_link(&here).map_err(|e| e.to_string())?;
                if target.is_absolute() {
                    done = PathBuf::new();
                }
                for t in target.components().rev() {
                    match t {
                        Component::Normal(n) => todo.push(n.to_os_string()),
                        Component::ParentDir => todo.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => done.push(&c),
        }
    }
    Ok(root.join(done))
}

/// The `hostPath` of every mount in the spec files of `spec_dir` (spec-wide and per
/// device), sorted, without repeats.
pub fn mount_sources(spec_dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for (_, spec) in specs_in(spec_dir)? {
        let devices = spec["devices"].as_array().cloned().unwrap_or_default();
        let edits = std::iter::once(&spec["containerEdits"])
            .chain(devices.iter().map(|d| &d["containerEdits"]));
        for e in edits {
            for m in e["mounts"].as_array().into_iter().flatten() {
                if let Some(h) = m["hostPath"].as_str() {
                    out.push(PathBuf::from(h));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// A busybox `sh` script that prints, one per line, `node|PATH|TYPE|MAJ:MIN|MODE|GID`
/// (hex major/minor, octal mode, as busybox stat prints them), `env|NAME=VALUE` and
/// `mount|PATH|sha256` or, for a directory, `mount|PATH|dir|a=sha256,b,` (a regular
/// file with its sha256, anything else by name).
pub fn probe_script(e: &Expect) -> String {
    let mut s = String::from("env | sed 's/^/env|/'\n");
    for n in &e.nodes {
        s.push_str(&format!(
            "echo \"node|{p}|$(stat -c '%F|%t:%T|%a|%g' {p} 2>&1)\"\n",
            p = n.path
        ));
    }
    for m in &e.mounts {
        let p = &m.container_path;
        if m.sha256.is_some() {
            s.push_str(&format!(
                "echo \"mount|{p}|$(sha256sum < {p} 2>&1 | cut -d' ' -f1)\"\n"
            ));
        } else {
            s.push_str(&format!(
                "echo \"mount|{p}|dir|$(cd {p} 2>&1 && for f in $(ls -1A); do \
                 if [ -f \"$f\" ]; then printf '%s=%s,' \"$f\" \"$(sha256sum < \"$f\" | cut -d' ' -f1)\"; \
                 else printf '%s,' \"$f\"; fi; done)\"\n"
            ));
        }
    }
    s
}

/// Compares what the probe script printed inside the container with `e`.
pub fn verify(e: &Expect, output: &str) -> Result<(), String> {
    let mut problems = Vec::new();
    let mut nodes = BTreeMap::new();
    let mut env = Vec::new();
    let mut mounts = BTreeMap::new();
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix("node|") {
            if let Some((p, v)) = rest.split_once('|') {
                nodes.insert(p.to_string(), v.to_string());
            }
        } else if let Some(rest) = line.strip_prefix("env|") {
            env.push(rest.to_string());
        } else if let Some(rest) = line.strip_prefix("mount|")
            && let Some((p, v)) = rest.split_once('|')
        {
            mounts.insert(p.to_string(), v.to_string());
        }
    }
    for n in &e.nodes {
        let want = format!(
            "character special file|{:x}:{:x}|{:o}|{}",
            n.major, n.minor, n.mode, n.gid
        );
        match nodes.get(&n.path) {
            Some(got) if *got == want => {}
            got => problems.push(format!("node {}: want `{want}`, got {got:?}", n.path)),
        }
    }
    for v in &e.env {
        if !env.contains(v) {
            problems.push(format!("env {v}: missing (container env: {env:?})"));
        }
    }
    for m in &e.mounts {
        let want = match &m.sha256 {
            Some(h) => h.clone(),
            None => format!(
                "dir|{}",
                m.listing
                    .iter()
                    .map(|l| format!("{l},"))
                    .collect::<String>()
            ),
        };
        match mounts.get(&m.container_path) {
            Some(got) if *got == want => {}
            got => problems.push(format!(
                "mount {}: want `{want}`, got {got:?}",
                m.container_path
            )),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\n--- container output\n{output}",
            problems.join("\n")
        ))
    }
}
