//! `exliar cdi generate` on the fixture hosts (real captured sysfs/proc
//! facts): every spec it would write is accepted by crates.io's
//! `container-device-interface` (file by file, `read_spec`) and declares
//! that crate's minimum version, and the upstream JSON schema agrees; golden
//! specs for an NVIDIA and an AMD host; apply, `--check`, rollback; the
//! refusals (engines that would reject a spec, a spec directory that leads
//! out of the root, two cards claiming one node, unreadable driver files,
//! a device another file defines) that touch nothing.

#![allow(clippy::unwrap_used)] // a failed setup step is a failed test

mod common;

use std::path::Path;

use common::cdi::{oracle_check, upstream_schema};
use common::*;

const PODMAN: &str =
    "Package: podman\nStatus: install ok installed\nVersion: 4.3.1+ds1-8+deb12u1+b3\n";
const DOCKER26: &str =
    "Package: docker.io\nStatus: install ok installed\nVersion: 26.1.5+dfsg1-9+deb13u1+b1\n";

const NVIDIA: &str = "drv-nvidia-open-rtx3060";
const AMD: &str = "hw17-alderlake-asus-rx6700xt-rx550-vfio";

fn run(root: &Path, args: &[&str]) -> std::process::Output {
    exliar()
        .arg("--root")
        .arg(root)
        .args(["cdi", "generate"])
        .args(args)
        .output()
        .expect("exliar")
}

fn doc(root: &Path, args: &[&str]) -> serde_json::Value {
    let o = run(root, &[args, &["--json"]].concat());
    let v = json(&o);
    assert_valid(
        &schema("cdi-generate-1.schema.json"),
        &v,
        &format!("cdi generate {args:?} on {}", root.display()),
    );
    v
}

/// Every fixture host: each spec `cdi generate` would write passes the
/// crate and the upstream schema, at the crate's minimum version; between
/// them the hosts cover NVIDIA (nodes, mounts), AMD (KFD), Intel and VFIO.
#[test]
fn every_fixture_host_gets_specs_the_crate_accepts_at_its_minimum() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let upstream = upstream_schema();
    let mut seen = std::collections::BTreeSet::new();
    let mut written = 0;
    for host in fixture_hosts() {
        let name = host.file_name().unwrap().to_string_lossy().into_owned();
        let before = files(&host);
        let d = doc(&host, &["--dry-run"]);
        assert_eq!(files(&host), before, "{name}: a dry run wrote");
        let outcome = d["outcome"].as_str().unwrap();
        if outcome == "refused" {
            let reason = d["reason"].as_str().unwrap();
            assert!(
                reason.contains("nothing to write"),
                "{name}: refused: {reason}"
            );
            continue;
        }
        assert_eq!(outcome, "dry-run", "{name}");
        for s in d["specs"].as_array().unwrap() {
            let spec = &s["spec"];
            let text = serde_json::to_string_pretty(spec).unwrap();
            let path = tmp.path().join(format!(
                "{name}-{}",
                s["file"].as_str().unwrap().rsplit('/').next().unwrap()
            ));
            std::fs::write(&path, &text).unwrap();
            let min = oracle_check(&path)
                .unwrap_or_else(|e| panic!("{name}: the crate refuses the spec: {e}\n{text}"));
            assert_eq!(min, s["cdi_version"].as_str().unwrap(), "{name}: version");
            assert_eq!(min, s["minimum_version"].as_str().unwrap(), "{name}");
            if let Some(u) = &upstream {
                assert_valid(u, spec, &name);
            }
            written += 1;
            for dev in spec["devices"].as_array().unwrap() {
                let e = &dev["containerEdits"];
                for n in e["deviceNodes"].as_array().into_iter().flatten() {
                    // Every node has the host node's numbers, mode, owner.
                    for f in ["major", "minor", "fileMode", "uid", "gid", "type"] {
                        assert!(!n[f].is_null(), "{name}: {n} has no {f}");
                    }
                    let p = n["path"].as_str().unwrap();
                    let what = if p.starts_with("/dev/nvidia") {
                        "nvidia-node"
                    } else if p == "/dev/kfd" {
                        "kfd"
                    } else if p.starts_with("/dev/vfio/") {
                        "vfio"
                    } else {
                        "drm"
                    };
                    seen.insert(what);
                }
                if e["mounts"].as_array().is_some_and(|m| !m.is_empty()) {
                    seen.insert("mounts");
                }
            }
        }
    }
    assert!(written >= 6, "only {written} specs over the fixture hosts");
    for want in ["nvidia-node", "kfd", "vfio", "drm", "mounts"] {
        assert!(seen.contains(want), "no fixture host gave a {want} edit");
    }
}

fn spec_file(root: &Path, name: &str) -> String {
    std::fs::read_to_string(root.join("etc/cdi").join(name)).expect("spec")
}

/// Golden specs for an NVIDIA and an AMD host, applied as a transaction:
/// `--check` agrees until the host changes, `rollback` removes them.
#[test]
fn golden_specs_apply_check_rollback() {
    for (fixture, files_) in [
        (NVIDIA, &["exliar-gpu.json"][..]),
        (AMD, &["exliar-gpu.json", "exliar-vfio.json"][..]),
    ] {
        let (_t, root) = fixture_copy(fixture, "root");
        let before = files(&root);
        let o = run(&root, &["--dry-run"]);
        assert_success(&o, "dry run");
        insta::assert_snapshot!(
            format!("generate_dry_run_{fixture}"),
            redact(&format!("{}--- stderr\n{}", stdout(&o), stderr(&o)), &root)
        );
        let o = run(&root, &["--yes"]);
        assert_success(&o, "generate");
        for f in files_ {
            let text = spec_file(&root, f);
            insta::assert_snapshot!(format!("spec_{fixture}_{f}"), text);
            let min = oracle_check(&root.join("etc/cdi").join(f)).expect("the crate reads it");
            assert!(text.contains(&format!("\"cdiVersion\": \"{min}\"")));
        }
        // Up to date; the same run again changes nothing.
        let o = run(&root, &["--check"]);
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
        let d = doc(&root, &["--yes"]);
        assert_eq!(d["outcome"], "nothing-to-do");
        // The host changes (a node's group): the written spec is stale.
        edit(&root, "exliar-nodes.txt", |t| {
            t.replace("0660 0 105", "0660 0 993")
        });
        let o = run(&root, &["--check"]);
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        assert!(
            stdout(&o).contains("exliar-gpu.json: stale"),
            "{}",
            stdout(&o)
        );
        // Rolled back: the tree is as it was (but for the edit above).
        let o = txn_cmd(&["rollback", "last"], &root).output().unwrap();
        assert_success(&o, "rollback");
        edit(&root, "exliar-nodes.txt", |t| {
            t.replace("0660 0 993", "0660 0 105")
        });
        assert_eq!(tree_diff(&before, &files(&root)), "", "{fixture}");
    }
}

/// Names: index, PCI address, UUID and `all`; indexes keep their card when
/// a filter leaves others out.
#[test]
fn names_and_filters() {
    let d = doc(&host(AMD), &["--dry-run", "--vendor", "amd"]);
    let devices = &d["specs"][0]["devices"];
    assert_eq!(
        devices,
        &serde_json::json!([
            "exliar.dev/gpu=1",
            "exliar.dev/gpu=0000:03:00.0",
            "exliar.dev/gpu=all"
        ])
    );
    // The VFIO card is AMD's too; --kind gpu leaves it out.
    assert_eq!(d["specs"][1]["kind"], "exliar.dev/vfio");
    let d = doc(&host(AMD), &["--dry-run", "--kind", "vfio"]);
    assert_eq!(d["specs"].as_array().unwrap().len(), 1);
    assert_eq!(d["specs"][0]["kind"], "exliar.dev/vfio");
    let d = doc(&host(AMD), &["--dry-run", "--gpu", "00:02.0", "--drm-card"]);
    let nodes: Vec<&str> = d["specs"][0]["spec"]["devices"][0]["containerEdits"]["deviceNodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["path"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["/dev/dri/card0", "/dev/dri/renderD128"]);
    let d = doc(&host(NVIDIA), &["--dry-run"]);
    let devices = &d["specs"][0]["devices"];
    assert!(
        devices.as_array().unwrap().contains(&serde_json::json!(
            "exliar.dev/gpu=GPU-9c2b7d14-61f0-4e3a-8b55-3a0e7f6d1c28"
        )),
        "{devices}"
    );
    // No such GPU: refused.
    let o = run(&host(AMD), &["--dry-run", "--gpu", "0000:09:00.0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("0000:09:00.0: no GPU at this address"));
}

/// NVIDIA's hook program under the root: a createContainer hook updates the
/// container's ld cache for the libraries' folders; `--no-hooks` drops it.
#[test]
fn ldcache_hook_only_with_the_hook_program() {
    let (_t, root) = fixture_copy(NVIDIA, "root");
    let hooks = |args: &[&str]| {
        let d = doc(&root, &[&["--dry-run"], args].concat());
        d["specs"][0]["spec"]["devices"][0]["containerEdits"]["hooks"].clone()
    };
    assert!(hooks(&[]).is_null());
    put(&root, "usr/bin/nvidia-cdi-hook", "");
    assert_eq!(
        hooks(&[]),
        serde_json::json!([{
            "hookName": "createContainer",
            "path": "/usr/bin/nvidia-cdi-hook",
            "args": ["nvidia-cdi-hook", "update-ldcache", "--folder", "/usr/lib/x86_64-linux-gnu"]
        }])
    );
    assert!(hooks(&["--no-hooks"]).is_null());
}

/// A spec that needs cdiVersion 0.6.0 (annotations) is refused for Debian
/// 12's Podman, which loads up to 0.5.0, and written for Docker 26; a pin
/// below what the content needs is refused.
#[test]
fn engine_versions_decide() {
    let (_t, root) = fixture_copy(AMD, "root");
    put(&root, "var/lib/dpkg/status", PODMAN);
    let before = files(&root);
    let o = run(&root, &["--yes", "--annotation", "exliar.dev/site=lab"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("podman 4.3.1 loads CDI specs up to cdiVersion 0.5.0")
            && err.contains("this one declares 0.6.0")
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(tree_diff(&before, &files(&root)), "");
    // Without the annotation, Podman takes it (0.5.0).
    let d = doc(&root, &["--dry-run"]);
    assert_eq!(d["specs"][0]["cdi_version"], "0.5.0");
    assert_eq!(d["engines"][0]["accepts"], true);
    // --force writes it anyway.
    let d = doc(
        &root,
        &["--yes", "--force", "--annotation", "exliar.dev/site=lab"],
    );
    assert_eq!(d["outcome"], "applied");
    let o = txn_cmd(&["rollback", "last"], &root).output().unwrap();
    assert_success(&o, "rollback");
    // Docker 26 loads up to 0.7.0.
    put(&root, "var/lib/dpkg/status", DOCKER26);
    let d = doc(&root, &["--yes", "--annotation", "exliar.dev/site=lab"]);
    assert_eq!(d["outcome"], "applied", "{d}");
    assert_eq!(d["specs"][0]["cdi_version"], "0.6.0");
    assert!(spec_file(&root, "exliar-gpu.json").contains("\"exliar.dev/site\": \"lab\""));
    oracle_check(&root.join("etc/cdi/exliar-gpu.json")).expect("the crate reads it");
    // Docker is not configured for CDI: said.
    assert!(
        d["notes"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .contains("exliar runtime configure docker")),
        "{d}"
    );
    // A pin below the content's needs.
    let o = run(&root, &["--dry-run", "--cdi-version", "0.4.0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cdiVersion 0.4.0 cannot express this spec (it needs 0.5.0)"),
        "{}",
        stderr(&o)
    );
}

/// /var/run is a link to /run on real hosts: the spec goes where it leads,
/// inside the root.
#[test]
fn output_through_a_link_inside_the_root() {
    let (_t, root) = fixture_copy(AMD, "root");
    std::fs::create_dir_all(root.join("var")).unwrap();
    std::fs::create_dir_all(root.join("run")).unwrap();
    std::os::unix::fs::symlink("/run", root.join("var/run")).unwrap();
    let d = doc(&root, &["--yes", "--output", "/var/run/cdi"]);
    assert_eq!(d["outcome"], "applied");
    assert_eq!(d["output"]["resolved"], "/run/cdi");
    assert!(root.join("run/cdi/exliar-gpu.json").is_file());
    let o = run(&root, &["--check", "--output", "/var/run/cdi"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

/// Bad input: nothing is written, the reason is given.
#[test]
fn refusals_touch_nothing() {
    // A spec directory that is a link climbing out of the root.
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("a/b/root");
    copy_tree(&host(AMD), &{
        std::fs::create_dir_all(t.path().join("a/b")).unwrap();
        root.clone()
    });
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::os::unix::fs::symlink("../../../../outside", root.join("etc/cdi")).unwrap();
    let before = files(t.path());
    let o = run(&root, &["--yes"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("leads out of the root"),
        "{}",
        stderr(&o)
    );
    assert_eq!(tree_diff(&before, &files(t.path())), "");

    // Two cards claiming one node: the i915 card's render node listed under
    // the amdgpu card too.
    let (_t, root) = fixture_copy(AMD, "root");
    let amd = std::fs::read_link(root.join("sys/bus/pci/devices/0000:03:00.0")).unwrap();
    let dir = root
        .join("sys/bus/pci/devices")
        .join(amd)
        .join("drm/renderD128");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dev"), "226:128\n").unwrap();
    let before = files(&root);
    let o = run(&root, &["--yes"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(
            "/dev/dri/renderD128 is claimed by 0000:00:02.0 (i915) and by 0000:03:00.0 (amdgpu)"
        ),
        "{}",
        stderr(&o)
    );
    assert_eq!(tree_diff(&before, &files(&root)), "");

    // The NVIDIA driver's information file cannot be read (a folder where
    // the file should be): /dev/nvidiaN is unknown, the card is skipped.
    let (_t, root) = fixture_copy(NVIDIA, "root");
    let info = root.join("proc/driver/nvidia/gpus/0000:2d:00.0/information");
    std::fs::remove_file(&info).unwrap();
    std::fs::create_dir(&info).unwrap();
    let before = files(&root);
    let o = run(&root, &["--yes"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("skipped 0000:2d:00.0: its /dev/nvidiaN is unknown")
            && err.contains("every matching card was skipped"),
        "{err}"
    );
    assert_eq!(tree_diff(&before, &files(&root)), "");

    // Another spec in the directory defines one of exliar's devices.
    let (_t, root) = fixture_copy(AMD, "root");
    put(
        &root,
        "etc/cdi/mine.json",
        r#"{"cdiVersion":"0.5.0","kind":"exliar.dev/vfio","devices":[{"name":"0","containerEdits":{"env":["A=1"]}}]}"#,
    );
    let before = files(&root);
    let o = run(&root, &["--yes"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(
            "exliar.dev/vfio=0 would be defined by /etc/cdi/exliar-vfio.json and /etc/cdi/mine.json"
        ),
        "{}",
        stderr(&o)
    );
    assert_eq!(tree_diff(&before, &files(&root)), "");
}

/// A card no longer on vfio-pci leaves exliar-vfio.json behind: `--check`
/// calls it obsolete.
#[test]
fn check_finds_an_obsolete_file() {
    let (_t, root) = fixture_copy(AMD, "root");
    let o = run(&root, &["--yes"]);
    assert_success(&o, "generate");
    let o = run(&root, &["--check", "--kind", "gpu"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("/etc/cdi/exliar-vfio.json: obsolete"),
        "{}",
        stdout(&o)
    );
}

/// contrib/systemd/exliar-cdi.service, with ExecStart pointed at the built
/// binary, passes `systemd-analyze verify`; the command it runs does
/// nothing when the specs are current.
#[test]
fn the_boot_unit_passes_systemd_analyze_verify() {
    let Some(tool) = tool_or_skip("/usr/bin/systemd-analyze", "systemd") else {
        return;
    };
    let text =
        std::fs::read_to_string(manifest_dir().join("contrib/systemd/exliar-cdi.service")).unwrap();
    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let argv: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(argv[..2], ["/usr/bin/exliar", "cdi"]);
    let t = tempfile::tempdir().unwrap();
    let unit = t.path().join("exliar-cdi.service");
    std::fs::write(
        &unit,
        text.replace("/usr/bin/exliar", env!("CARGO_BIN_EXE_exliar")),
    )
    .unwrap();
    let o = std::process::Command::new(&tool)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Its command, twice: the second run changes nothing.
    let (_t, root) = fixture_copy(AMD, "root");
    assert_success(&run(&root, &argv[3..]), "first run");
    let before = history(&root).len();
    let d = doc(&root, &argv[3..]);
    assert_eq!(d["outcome"], "nothing-to-do");
    assert_eq!(history(&root).len(), before, "a transaction for nothing");
}
