//! Fleet outputs on the fixture hosts: `exliar nfd` (the features.d file:
//! every label valid under NFD's rules on every host, written through the
//! transaction engine, `--check`, rollback, the malformed folders),
//! `nfd lint` against the containers probe's cases, and the custom
//! resources (`nfd rule`, `kubevirt config`, `kubevirt vm`) validated
//! against their CRDs' schemas in strict mode by tests/k8s/crd-validate.py.

#![allow(clippy::unwrap_used)] // a failed setup step is a failed test

mod common;

use std::path::{Path, PathBuf};

use common::*;

const AMD: &str = "hw17-alderlake-asus-rx6700xt-rx550-vfio";
const NVIDIA: &str = "drv-nvidia-open-rtx3060";
const TWO_T400: &str = "hw28-truenas-dual-t400-nvidia-vfio";
const FILE: &str = "etc/kubernetes/node-feature-discovery/features.d/exliar";

fn run(root: &Path, args: &[&str]) -> std::process::Output {
    exliar()
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("exliar")
}

/// The probe's reference folder, read in place.
fn reference() -> Option<PathBuf> {
    let p = manifest_dir().join("../shared/reference/containers");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("SKIP: {} is absent", p.display());
        None
    }
}

/// Every fixture host: the file `nfd --print` makes passes NFD's rules
/// (`nfd lint`, exliar's port of them) and, where present, the probe's
/// own checker; no label is dropped.
#[test]
fn labels_are_valid_on_every_fixture_host() {
    let t = tempfile::tempdir().unwrap();
    let probe = reference().map(|r| r.join("09-nfd-features-check.py"));
    for host in fixture_hosts() {
        let name = host.file_name().unwrap().to_string_lossy().into_owned();
        let o = run(&host, &["nfd", "--print"]);
        assert_success(&o, &name);
        let text = stdout(&o);
        let lines = text.lines().filter(|l| !l.starts_with('#')).count();
        assert!(lines >= 5, "{name}: {text}");
        assert!(text.len() < 65536);
        let f = t.path().join(&name);
        std::fs::write(&f, &text).unwrap();
        let o = exliar()
            .args(["nfd", "lint", "--json"])
            .arg(&f)
            .output()
            .unwrap();
        assert_success(&o, &format!("lint {name}"));
        let v = json(&o);
        assert_eq!(
            v["files"][0]["labels"].as_object().unwrap().len(),
            lines,
            "{name}: a label was dropped"
        );
        if let Some(p) = probe.as_ref().filter(|p| p.is_file()) {
            let o = std::process::Command::new("/usr/bin/python3")
                .arg(p)
                .arg(&f)
                .output()
                .unwrap();
            assert!(o.status.success(), "{name}: {}", stdout(&o));
        }
    }
}

/// The probe's good and bad feature files: the same verdicts and reasons.
#[test]
fn lint_agrees_with_the_probe_cases() {
    let Some(r) = reference() else { return };
    let good = r.join("nfd-cases/exliar-good");
    let bad = r.join("nfd-cases/exliar-bad");
    let o = exliar().args(["nfd", "lint"]).arg(&good).output().unwrap();
    assert_success(&o, "good");
    assert!(stdout(&o).contains("ok (2 labels)"), "{}", stdout(&o));
    let o = exliar().args(["nfd", "lint"]).arg(&bad).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    for want in [
        "label \"gpu.count\": no namespace",
        "namespace \"kubernetes.io\" is not allowed",
        "value \"Tesla T4\" is not a valid label value",
        "label \"exliar.example.com/Bad_/x\": more than one '/'",
        "expiry-time \"tomorrow\" is not RFC 3339",
    ] {
        assert!(out.contains(want), "{want}\n{out}");
    }
    // Malformed folders: a link, a dot file, a file over 64 KiB.
    let t = tempfile::tempdir().unwrap();
    std::fs::copy(&good, t.path().join("good")).unwrap();
    std::os::unix::fs::symlink(&good, t.path().join("link")).unwrap();
    std::fs::write(t.path().join(".hidden"), "a.com/x=1\n").unwrap();
    std::fs::write(t.path().join("huge"), "#".repeat(65537)).unwrap();
    let o = exliar()
        .args(["nfd", "lint"])
        .arg(t.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let out = redact(&stdout(&o), t.path());
    insta::assert_snapshot!("nfd_lint_folder", out);
}

/// Labels for two fixture hosts, golden.
#[test]
fn labels_golden() {
    for h in [AMD, NVIDIA] {
        let o = run(&host(h), &["nfd", "--print"]);
        assert_success(&o, h);
        insta::assert_snapshot!(format!("nfd_{h}"), stdout(&o));
    }
}

/// Written through the transaction engine: a diff, the file, `--check`,
/// nothing to do the second time, stale when the host changes, rollback.
#[test]
fn write_check_rollback() {
    let (_t, root) = fixture_copy(AMD, "root");
    let root = std::fs::canonicalize(&root).unwrap();
    let before = files(&root);
    let o = run(&root, &["nfd", "--check"]);
    assert_eq!(o.status.code(), Some(1), "missing: stale");
    let o = run(&root, &["nfd", "--yes", "--json"]);
    assert_success(&o, "nfd");
    let v = json(&o);
    assert_eq!(v["outcome"], "applied");
    assert_eq!(v["schema"], "exliar.nfd/1");
    assert_valid(&schema("nfd-1.schema.json"), &v, "nfd --json");
    assert_eq!(v["apply"]["plan"]["subject"], "nfd");
    let text = std::fs::read_to_string(root.join(FILE)).unwrap();
    assert_eq!(text, stdout(&run(&root, &["nfd", "--print"])));
    // No temporary file is left for NFD to read (dot files it skips).
    let dir = root.join(FILE).parent().unwrap().to_path_buf();
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["exliar"]);
    assert_eq!(run(&root, &["nfd", "--check"]).status.code(), Some(0));
    let v = json(&run(&root, &["nfd", "--yes", "--json"]));
    assert_eq!(v["outcome"], "nothing-to-do");
    // The card leaves vfio-pci: the file is stale.
    let drv = std::fs::canonicalize(root.join("sys/bus/pci/devices/0000:04:00.0"))
        .unwrap()
        .join("driver");
    std::fs::remove_file(&drv).unwrap();
    let o = run(&root, &["nfd", "--check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("stale"), "{}", stdout(&o));
    let o = txn_cmd(&["rollback", "last"], &root).output().unwrap();
    assert_success(&o, "rollback");
    let mut after = files(&root);
    // (the driver link removed above is not the transaction's)
    after.insert(
        drv.strip_prefix(&root).unwrap().to_path_buf(),
        before[drv.strip_prefix(&root).unwrap()].clone(),
    );
    assert_eq!(tree_diff(&before, &after), "");
}

/// Malformed features.d folders: refused (nothing written) or warned.
#[test]
fn malformed_feature_folders() {
    // The folder is a link climbing out of the root.
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("a")).unwrap();
    let root = t.path().join("a/root");
    copy_tree(&host(AMD), &root);
    std::fs::create_dir_all(root.join("etc/kubernetes/node-feature-discovery")).unwrap();
    std::os::unix::fs::symlink(
        "../../../../../outside",
        root.join("etc/kubernetes/node-feature-discovery/features.d"),
    )
    .unwrap();
    let before = files(t.path());
    let o = run(&root, &["nfd", "--yes"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("leads out of the root"),
        "{}",
        stderr(&o)
    );
    assert_eq!(tree_diff(&before, &files(t.path())), "");

    // exliar's file is a link: refused.
    let (_t, root) = fixture_copy(AMD, "root");
    let dir = root.join("etc/kubernetes/node-feature-discovery/features.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", dir.join("exliar")).unwrap();
    let before = files(&root);
    let o = run(&root, &["nfd", "--yes"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("a symbolic link"), "{}", stderr(&o));
    assert_eq!(tree_diff(&before, &files(&root)), "");

    // Other files: too large (ignored by NFD), one overriding exliar's
    // labels (read after it): warned, exliar's file still written.
    std::fs::remove_file(dir.join("exliar")).unwrap();
    std::fs::write(dir.join("big"), "#".repeat(70000)).unwrap();
    std::fs::write(dir.join("zz-mine"), "exliar.dev/iommu=false\n").unwrap();
    let o = run(&root, &["nfd", "--yes"]);
    assert_success(&o, "nfd");
    let err = stderr(&o);
    assert!(
        err.contains("big: 70000 bytes: NFD ignores files over 65536"),
        "{err}"
    );
    assert!(
        err.contains("zz-mine sets exliar.dev/iommu too and is read after exliar"),
        "{err}"
    );
    assert!(dir.join("exliar").is_file());
}

/// The custom resources, strictly against their CRDs' schemas.
fn crd_validate(schema_file: &str, docs: &[(&str, String)]) {
    let Some(r) = reference() else { return };
    let schema = r.join("crd-schemas").join(schema_file);
    let python = Path::new("/usr/bin/python3");
    let ok = python.exists()
        && std::process::Command::new(python)
            .args(["-c", "import jsonschema, yaml"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP: Debian's python3-jsonschema and python3-yaml are needed");
        assert!(
            !in_ci(),
            "CI needs python3-jsonschema (tests/k8s/apt-packages.txt)"
        );
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(python);
    cmd.arg(manifest_dir().join("tests/k8s/crd-validate.py"))
        .arg(&schema);
    for (name, text) in docs {
        let p = t.path().join(format!("{name}.json"));
        std::fs::write(&p, text).unwrap();
        cmd.arg(p);
    }
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    // The validator can fail: a misspelt field.
    let bad = docs[0].1.replacen("\"kind\"", "\"knd\"", 1);
    let p = t.path().join("bad.json");
    std::fs::write(&p, bad).unwrap();
    let o = std::process::Command::new(python)
        .arg(manifest_dir().join("tests/k8s/crd-validate.py"))
        .arg(&schema)
        .arg(&p)
        .output()
        .unwrap();
    assert!(!o.status.success(), "a misspelt field passes");
}

#[test]
fn kubevirt_config_and_vm_golden_and_valid() {
    let mut crs = Vec::new();
    let mut vms = Vec::new();
    for h in [AMD, TWO_T400] {
        let o = run(&host(h), &["kubevirt", "config"]);
        let cr = stdout(&o);
        insta::assert_snapshot!(
            format!("kubevirt_config_{h}"),
            format!(
                "{cr}--- stderr (exit {:?})\n{}",
                o.status.code(),
                stderr(&o)
            )
        );
        crs.push((h, cr));
        let o = run(&host(h), &["kubevirt", "vm"]);
        assert_success(&o, h);
        vms.push((h, stdout(&o)));
    }
    // exliar's own plugin as the provider.
    let o = run(&host(AMD), &["kubevirt", "config", "--provider", "exliar"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        v["spec"]["configuration"]["permittedHostDevices"]["pciHostDevices"][0]["externalResourceProvider"],
        true
    );
    crs.push(("exliar-provider", stdout(&o)));
    crd_validate("kubevirt.io_v1_KubeVirt.openAPIV3Schema.json", &crs);
    crd_validate("kubevirt.io_v1_VirtualMachine.openAPIV3Schema.json", &vms);
}

/// Snapshots of several nodes, merged: ids passed through on one node and
/// kept by the host on another are reported.
#[test]
fn kubevirt_merges_snapshots_and_reports_conflicts() {
    let o = exliar()
        .args(["kubevirt", "config", "--snapshot"])
        .arg(host("hw02-msi-b450m-mortar-ryzen-apu-rx580"))
        .arg("--snapshot")
        .arg(host("hw10-ryzen5000g-cezanne-rx580-rtx3060"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "a conflict is a finding");
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let sel: Vec<&str> = v["spec"]["configuration"]["permittedHostDevices"]["pciHostDevices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["pciVendorSelector"].as_str().unwrap())
        .collect();
    assert!(sel.contains(&"1002:67DF") && sel.len() >= 3, "{sel:?}");
    insta::assert_snapshot!("kubevirt_two_nodes_stderr", stderr(&o));
}

#[test]
fn nfd_rule_is_valid() {
    let o = run(&host(AMD), &["nfd", "rule"]);
    assert_success(&o, "rule");
    let rule = stdout(&o);
    insta::assert_snapshot!("nfd_rule", rule);
    let o = exliar()
        .args(["nfd", "rule", "--snapshot"])
        .arg(host(AMD))
        .arg("--snapshot")
        .arg(host(NVIDIA))
        .output()
        .unwrap();
    assert_success(&o, "rule of two");
    let two = stdout(&o);
    assert!(two.contains("exliar.dev/gpu.10de-2487") && two.contains("exliar.dev/gpu.1002-73df"));
    crd_validate("nfd-api-crds.yaml", &[("rule", rule), ("two", two)]);
}

/// deploy/kubernetes: every manifest passes `kubernetes-validate --strict`
/// for a current (1.37) and an old (1.25) Kubernetes, with no warning (a
/// kind it has no schema for is only a warning there); the commands the
/// containers run exist.
#[test]
fn manifests_validate_strictly() {
    let dir = manifest_dir().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3);
    let have = std::process::Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        eprintln!("SKIP: kubernetes-validate (PyPI) is not installed");
        assert!(
            !in_ci(),
            "CI needs kubernetes-validate (.ci/run installs it)"
        );
    } else {
        for k in ["1.37.0", "1.25.0"] {
            let o = std::process::Command::new("kubernetes-validate")
                .args(["--strict", "-k", k])
                .args(&files)
                .output()
                .unwrap();
            let out = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
            assert!(o.status.success(), "{k}: {out}");
            assert!(
                !out.contains("WARN") && !out.contains("ERROR"),
                "{k}: {out}"
            );
            assert_eq!(
                out.matches(" passed for resource ").count(),
                4,
                "{k}: {out}"
            );
        }
        // It can fail: a misspelt field in a copy.
        let t = tempfile::tempdir().unwrap();
        let bad = t.path().join("bad.yaml");
        let text = std::fs::read_to_string(dir.join("10-daemonset.yaml")).unwrap();
        std::fs::write(
            &bad,
            text.replacen("readOnlyRootFilesystem", "readOnlyRootFileSystem", 1),
        )
        .unwrap();
        let o = std::process::Command::new("kubernetes-validate")
            .args(["--strict", "-k", "1.37.0"])
            .arg(&bad)
            .output()
            .unwrap();
        assert!(!o.status.success(), "a misspelt field passes");
    }
    // The flags the manifests pass exist.
    let ds = std::fs::read_to_string(dir.join("10-daemonset.yaml")).unwrap();
    assert!(ds.contains("--every=60"));
    let help = stdout(&exliar().args(["nfd", "--help"]).output().unwrap());
    assert!(help.contains("--every <SECONDS>"), "{help}");
}
