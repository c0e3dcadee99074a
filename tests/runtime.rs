//! `exliar runtime list|configure` on temporary roots: engines found from a
//! dpkg status file or pacman's database, their CDI support, the edits of
//! daemon.json and config.toml (applied as transactions, undone byte for
//! byte by `exliar rollback last`), and the refusals that touch nothing.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const PODMAN: &str =
    "Package: podman\nStatus: install ok installed\nVersion: 4.3.1+ds1-8+deb12u1+b3\n";
const DOCKER26: &str =
    "Package: docker.io\nStatus: install ok installed\nVersion: 26.1.5+dfsg1-9+deb13u1+b1\n";
const DOCKER20: &str =
    "Package: docker.io\nStatus: install ok installed\nVersion: 20.10.24+dfsg1-1+deb12u1+b6\n";
const CONTAINERD17: &str = "Package: containerd\nStatus: install ok installed\nVersion: 1.7.24~ds1-6+deb13u1\nBuilt-Using: golang-tags.cncf-container-device-interface (= 0.8.0-5)\n";
const CONTAINERD16: &str =
    "Package: containerd\nStatus: install ok installed\nVersion: 1.6.20~ds1-1+deb12u3\n";

const DAEMON_JSON: &str = "{\n  \"log-driver\": \"journald\",\n  \"features\": {\n    \"buildkit\": true\n  },\n  \"storage-driver\": \"overlay2\"\n}\n";
const CONFIG_TOML: &str = "# containerd, as the cluster wants it\nversion = 2\nroot = \"/var/lib/containerd\" # big disk\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    sandbox_image = \"registry.k8s.io/pause:3.8\"\n    # CDI: off for now\n    enable_cdi = false\n\n  [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n    snapshotter = \"overlayfs\"\n";

/// A temporary root whose dpkg status lists `packages`, with `files`.
fn root(packages: &[&str], files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("root");
    write(&dir, "var/lib/dpkg/status", &packages.join("\n"));
    for (p, text) in files {
        write(&dir, p, text);
    }
    (t, dir)
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    exliar()
        .arg("--root")
        .arg(dir)
        .args(args)
        .output()
        .expect("exliar")
}

fn out_err(o: &std::process::Output, dir: &Path) -> String {
    redact(
        &format!(
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        dir,
    )
}

#[test]
fn list_golden() {
    let (_t, dir) = root(
        &[PODMAN, DOCKER20, CONTAINERD17],
        &[
            ("etc/docker/daemon.json", DAEMON_JSON),
            ("etc/containerd/config.toml", CONFIG_TOML),
            (
                "etc/containers/containers.conf.d/50-cdi.conf",
                "[engine]\ncdi_spec_dirs = [\"/etc/cdi\", \"/var/run/cdi\", \"/opt/cdi\"]\n",
            ),
        ],
    );
    let o = run(&dir, &["runtime", "list"]);
    assert_eq!(o.status.code(), Some(0));
    insta::assert_snapshot!("list.txt", out_err(&o, &dir));
    let o = run(&dir, &["runtime", "list", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let doc = json(&o);
    assert_eq!(doc["schema"], "exliar.runtimes/1");
    assert_valid(&schema("runtimes-1.schema.json"), &doc, "runtime list");
    insta::assert_snapshot!(
        "list.json",
        redact(&serde_json::to_string_pretty(&doc).expect("json"), &dir)
    );
}

#[test]
fn list_reads_pacman_and_says_when_there_is_nothing() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("root");
    write(
        &dir,
        "var/lib/pacman/local/docker-1:28.2.2-1/desc",
        "%NAME%\ndocker\n\n%VERSION%\n1:28.2.2-1\n\n%BASE%\ndocker\n",
    );
    write(
        &dir,
        "var/lib/pacman/local/podman-docker-5.5.0-1/desc",
        "%NAME%\npodman-docker\n\n%VERSION%\n5.5.0-1\n",
    );
    write(
        &dir,
        "etc/docker/daemon.json",
        "{\"features\": {\"cdi\": true}}",
    );
    let doc = json(&run(&dir, &["runtime", "list", "--json"]));
    let engines = doc["engines"].as_array().expect("engines");
    assert_eq!(engines.len(), 1, "{doc}");
    assert_eq!(engines[0]["name"], "docker");
    assert_eq!(engines[0]["version"], "28.2.2");
    assert_eq!(engines[0]["source"], "pacman: docker 1:28.2.2-1");
    assert_eq!(engines[0]["cdi"]["max_cdi_version"], "0.8.0");
    assert_eq!(engines[0]["configured"]["configured"], true);

    let empty = tempfile::tempdir().expect("tempdir");
    let o = run(empty.path(), &["runtime", "list"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).starts_with("No container engine"),
        "{}",
        stdout(&o)
    );
}

/// Plan (shown, not applied without --yes), apply, a second run with
/// nothing to do, then `rollback last`: every byte as it was.
fn apply_then_rollback(dir: &Path, engine: &str, file: &str, name: &str) -> String {
    let original = files(dir);
    let o = run(dir, &["runtime", "configure", engine]);
    assert_eq!(o.status.code(), Some(1), "{}", out_err(&o, dir));
    insta::assert_snapshot!(format!("configure-{name}-plan.txt"), out_err(&o, dir));
    assert_eq!(files(dir), original, "{engine}: the unconfirmed plan wrote");

    let o = run(dir, &["runtime", "configure", engine, "--yes", "--json"]);
    assert_success(&o, engine);
    let doc = json(&o);
    assert_eq!(doc["schema"], "exliar.runtime-configure/1");
    assert_eq!(doc["outcome"], "applied", "{doc}");
    assert_valid(
        &schema("runtime-configure-1.schema.json"),
        &doc,
        "configure",
    );
    assert_valid(&schema("apply-1.schema.json"), &doc["apply"], "apply");
    assert_eq!(doc["apply"]["plan"]["subject"], "runtime");
    assert_eq!(doc["apply"]["plan"]["engine"], engine);
    let edited = std::fs::read_to_string(dir.join(file)).expect("edited");

    let o = run(dir, &["runtime", "configure", engine, "--json"]);
    assert_success(&o, engine);
    let doc = json(&o);
    assert_eq!(doc["outcome"], "nothing-to-do", "{}", out_err(&o, dir));
    assert_valid(
        &schema("runtime-configure-1.schema.json"),
        &doc,
        "configure",
    );
    let o = run(dir, &["runtime", "list", "--json"]);
    let listed = json(&o);
    let e = listed["engines"]
        .as_array()
        .expect("engines")
        .iter()
        .find(|e| e["name"] == engine)
        .expect("engine listed")
        .clone();
    assert_eq!(e["configured"]["configured"], true, "{e}");

    let o = exliar()
        .arg("--root")
        .arg(dir)
        .args(["rollback", "last"])
        .output()
        .expect("rollback");
    assert_success(&o, "rollback");
    assert!(
        stdout(&o).contains(&format!("({engine} configuration): rolled back")),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        files(dir),
        original,
        "{engine}: rollback did not restore every byte"
    );
    edited
}

#[test]
fn docker_configure_apply_rollback() {
    let (_t, dir) = root(&[DOCKER26], &[("etc/docker/daemon.json", DAEMON_JSON)]);
    let edited = apply_then_rollback(&dir, "docker", "etc/docker/daemon.json", "docker");
    assert_eq!(
        edited,
        "{\n  \"log-driver\": \"journald\",\n  \"features\": {\n    \"buildkit\": true,\n    \"cdi\": true\n  },\n  \"storage-driver\": \"overlay2\",\n  \"cdi-spec-dirs\": [\"/etc/cdi\", \"/var/run/cdi\"]\n}\n"
    );
    // No daemon.json at all: created, and rollback removes it (and its
    // folder).
    let (_t, dir) = root(&[DOCKER26], &[]);
    let edited = apply_then_rollback(&dir, "docker", "etc/docker/daemon.json", "docker-new");
    assert!(edited.contains("\"cdi\": true"), "{edited}");
}

#[test]
fn containerd_configure_apply_rollback() {
    let (_t, dir) = root(
        &[CONTAINERD17],
        &[("etc/containerd/config.toml", CONFIG_TOML)],
    );
    let edited = apply_then_rollback(
        &dir,
        "containerd",
        "etc/containerd/config.toml",
        "containerd",
    );
    assert_eq!(
        edited,
        CONFIG_TOML
            .replace("enable_cdi = false", "enable_cdi = true")
            .replace(
                "    enable_cdi = true\n",
                "    enable_cdi = true\n    cdi_spec_dirs = [\"/etc/cdi\", \"/var/run/cdi\"]\n"
            )
    );
}

#[test]
fn configure_spec_dirs_and_assume_version() {
    // An rpm root: nothing says which Docker it is.
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("root");
    write(
        &dir,
        "etc/docker/daemon.json",
        "{\"cdi-spec-dirs\": [\"/etc/cdi\"]}",
    );
    let o = run(&dir, &["runtime", "configure", "docker", "--yes"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--assume-version"),
        "{}",
        out_err(&o, &dir)
    );
    let o = run(
        &dir,
        &[
            "runtime",
            "configure",
            "docker",
            "--yes",
            "--assume-version",
            "27.3.1",
            "--spec-dir",
            "/opt/cdi/",
            "/etc/cdi",
        ],
    );
    assert_success(&o, "configure");
    assert_eq!(
        std::fs::read_to_string(dir.join("etc/docker/daemon.json")).expect("read"),
        "{\"cdi-spec-dirs\": [\"/etc/cdi\", \"/opt/cdi\"], \"features\": {\"cdi\": true}}"
    );
    let o = run(
        &dir,
        &[
            "runtime",
            "configure",
            "docker",
            "--assume-version",
            "27.3.1",
            "--spec-dir",
            "cdi",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", out_err(&o, &dir));
}

#[test]
fn podman_is_a_check() {
    let (_t, dir) = root(&[PODMAN], &[]);
    let o = run(&dir, &["runtime", "configure", "podman"]);
    assert_eq!(o.status.code(), Some(0));
    insta::assert_snapshot!("configure-podman.txt", out_err(&o, &dir));
    let o = run(
        &dir,
        &[
            "runtime",
            "configure",
            "podman",
            "--json",
            "--spec-dir",
            "/opt/cdi",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert_valid(
        &schema("runtime-configure-1.schema.json"),
        &json(&o),
        "podman",
    );
    insta::assert_snapshot!("configure-podman-missing.json", redact(&stdout(&o), &dir));
    assert!(
        !dir.join("var/lib/exliar").exists(),
        "a check made a transaction"
    );
}

/// Engine, dpkg packages, files, the reason's words.
type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

/// Refused with the reason, exit 1, nothing touched, no transaction.
#[test]
fn refusals_touch_nothing() {
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(outside.path().join("daemon.json"), "{}").expect("write");
    let cases: Vec<Case<'_>> = vec![
        (
            "docker",
            vec![DOCKER26],
            vec![("etc/docker/daemon.json", "{\"debug\": true,\n")],
            "not valid JSON",
        ),
        (
            "docker",
            vec![DOCKER26],
            vec![("etc/docker/daemon.json", "{\"features\": [\"cdi\"]}")],
            "\"features\" is not an object",
        ),
        (
            "containerd",
            vec![CONTAINERD17],
            vec![(
                "etc/containerd/config.toml",
                "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"\n",
            )],
            "not valid TOML",
        ),
        (
            "containerd",
            vec![CONTAINERD17],
            vec![(
                "etc/containerd/config.toml",
                "disabled_plugins = [\"cri\"]\n",
            )],
            "CRI plugin off",
        ),
        (
            "docker",
            vec![DOCKER20],
            vec![],
            "Docker gained CDI in 25.0",
        ),
        (
            "containerd",
            vec![CONTAINERD16],
            vec![],
            "enable_cdi came in 1.7",
        ),
        (
            "containerd",
            vec![PODMAN],
            vec![],
            "no containerd was found",
        ),
    ];
    for (engine, pkgs, files_in, why) in cases {
        let (_t, dir) = root(&pkgs, &files_in);
        let before = files(&dir);
        let o = run(&dir, &["runtime", "configure", engine, "--yes"]);
        assert_eq!(o.status.code(), Some(1), "{why}: {}", out_err(&o, &dir));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(why) && err.contains("nothing was changed"),
            "{why}: {err}"
        );
        assert_eq!(files(&dir), before, "{why}: touched");
        assert!(!dir.join("var/lib/exliar").exists(), "{why}: a transaction");
        let o = run(&dir, &["runtime", "configure", engine, "--yes", "--json"]);
        let doc = json(&o);
        assert_eq!(doc["outcome"], "refused", "{doc}");
        assert_valid(&schema("runtime-configure-1.schema.json"), &doc, why);
        assert!(
            doc["reason"].as_str().is_some_and(|r| r.contains(why)),
            "{doc}"
        );
    }
    // A daemon.json that is a link out of the root: refused, and the file
    // it points at is untouched.
    let (_t, dir) = root(&[DOCKER26], &[]);
    std::fs::create_dir_all(dir.join("etc/docker")).expect("mkdir");
    std::os::unix::fs::symlink(
        outside.path().join("daemon.json"),
        dir.join("etc/docker/daemon.json"),
    )
    .expect("symlink");
    let o = run(&dir, &["runtime", "configure", "docker", "--yes"]);
    assert_eq!(o.status.code(), Some(1), "{}", out_err(&o, &dir));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("symbolic link"),
        "{}",
        out_err(&o, &dir)
    );
    assert_eq!(
        std::fs::read_to_string(outside.path().join("daemon.json")).expect("read"),
        "{}"
    );
    assert!(!dir.join("var/lib/exliar").exists());
    // `list` says so rather than reading through it.
    let doc = json(&run(&dir, &["runtime", "list", "--json"]));
    assert_eq!(
        doc["engines"][0]["configured"]["configured"], false,
        "{doc}"
    );
}

/// The edits as real engines read them: Debian 13's dockerd 26.1.5
/// (`dockerd --validate`, which rejects unknown directives: Debian 12's
/// 20.10 rejects `cdi-spec-dirs`) and containerd 1.7.24 (`containerd config
/// dump`, the merged configuration it would run with). No daemon is
/// started. `EXLIAR_DOCKERD` and `EXLIAR_CONTAINERD` name the binaries
/// (tests/runtime-engines.sh extracts them from Debian's packages under
/// target/); each part is skipped, saying so, without its binary.
#[test]
fn real_engines_accept_the_edits() {
    let tool = |var: &str| match std::env::var_os(var) {
        Some(p) if Path::new(&p).is_file() => Some(PathBuf::from(p)),
        _ => {
            eprintln!(
                "skipping the {var} part: set {var} to the binary (tests/runtime-engines.sh)"
            );
            None
        }
    };
    if let Some(dockerd) = tool("EXLIAR_DOCKERD") {
        let validate = |file: &Path| {
            let o = std::process::Command::new(&dockerd)
                .args(["--validate", "--userland-proxy=false", "--config-file"])
                .arg(file)
                .output()
                .expect("dockerd --validate");
            (
                o.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
            )
        };
        // The check is strict: an unknown directive fails.
        let (_t, dir) = root(
            &[DOCKER26],
            &[("etc/docker/daemon.json", "{\"cdi-spec-dirz\": []}")],
        );
        assert!(!validate(&dir.join("etc/docker/daemon.json")).0);
        for (name, text) in [
            ("absent", None),
            ("user's", Some(DAEMON_JSON)),
            (
                "cdi off",
                Some(
                    "{\"features\":{\"cdi\":false},\"cdi-spec-dirs\":[\"/opt/cdi\"],\"debug\":true}",
                ),
            ),
        ] {
            let files_in: Vec<(&str, &str)> = text
                .map(|t| ("etc/docker/daemon.json", t))
                .into_iter()
                .collect();
            let (_t, dir) = root(&[DOCKER26], &files_in);
            assert_success(
                &run(&dir, &["runtime", "configure", "docker", "--yes"]),
                name,
            );
            let (ok, out) = validate(&dir.join("etc/docker/daemon.json"));
            assert!(ok && out.contains("configuration OK"), "{name}: {out}");
        }
    }
    if let Some(containerd) = tool("EXLIAR_CONTAINERD") {
        let dump = |file: &Path| {
            let o = std::process::Command::new(&containerd)
                .arg("--config")
                .arg(file)
                .args(["config", "dump"])
                .output()
                .expect("containerd config dump");
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        let (_t, dir) = root(
            &[CONTAINERD17],
            &[("etc/containerd/config.toml", CONFIG_TOML)],
        );
        let file = dir.join("etc/containerd/config.toml");
        assert!(dump(&file).contains("enable_cdi = false"));
        assert_success(
            &run(&dir, &["runtime", "configure", "containerd", "--yes"]),
            "containerd",
        );
        let merged = dump(&file);
        assert!(merged.contains("enable_cdi = true"), "{merged}");
        assert!(
            merged.contains("cdi_spec_dirs = [\"/etc/cdi\", \"/var/run/cdi\"]"),
            "{merged}"
        );
        assert!(merged.contains("snapshotter = \"overlayfs\""), "{merged}");
        let (_t, dir) = root(&[CONTAINERD17], &[]);
        assert_success(
            &run(&dir, &["runtime", "configure", "containerd", "--yes"]),
            "new",
        );
        let merged = dump(&dir.join("etc/containerd/config.toml"));
        assert!(merged.contains("enable_cdi = true"), "{merged}");
        // Version 1: [plugins.cri], which containerd 1.7 migrates.
        let (_t, dir) = root(
            &[CONTAINERD17],
            &[("etc/containerd/config.toml", "oom_score = 0\n")],
        );
        assert_success(
            &run(&dir, &["runtime", "configure", "containerd", "--yes"]),
            "v1",
        );
        let merged = dump(&dir.join("etc/containerd/config.toml"));
        assert!(merged.contains("enable_cdi = true"), "{merged}");
    }
}

/// containerd with a config version it cannot read: the user migrates it.
#[test]
fn containerd_config_version_must_fit_the_engine() {
    const CONTAINERD2: &str =
        "Package: containerd\nStatus: install ok installed\nVersion: 2.1.4~ds1-1\n";
    for (pkg, text, why) in [
        (CONTAINERD17, "version = 3\n", "containerd 2's"),
        (CONTAINERD2, "oom_score = 0\n", "containerd config migrate"),
    ] {
        let (_t, dir) = root(&[pkg], &[("etc/containerd/config.toml", text)]);
        let o = run(&dir, &["runtime", "configure", "containerd", "--yes"]);
        assert_eq!(o.status.code(), Some(1), "{}", out_err(&o, &dir));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(why),
            "{}",
            out_err(&o, &dir)
        );
        assert!(!dir.join("var/lib/exliar").exists());
    }
    // Version 1 with containerd 1.7: [plugins.cri], and a warning.
    let (_t, dir) = root(
        &[CONTAINERD17],
        &[("etc/containerd/config.toml", "oom_score = 0\n")],
    );
    let o = run(&dir, &["runtime", "configure", "containerd", "--yes"]);
    assert_success(&o, "v1");
    assert!(stdout(&o).contains("deprecated"), "{}", out_err(&o, &dir));
    let t = std::fs::read_to_string(dir.join("etc/containerd/config.toml")).expect("read");
    assert!(
        t.starts_with("oom_score = 0\n") && t.contains("[plugins.cri]"),
        "{t}"
    );
    // containerd 2 and no file: version 3's table.
    let (_t, dir) = root(&[CONTAINERD2], &[]);
    assert_success(
        &run(&dir, &["runtime", "configure", "containerd", "--yes"]),
        "v3",
    );
    let t = std::fs::read_to_string(dir.join("etc/containerd/config.toml")).expect("read");
    assert!(
        t.starts_with("version = 3\n") && t.contains("io.containerd.cri.v1.runtime"),
        "{t}"
    );
}

/// An unreadable dpkg status: said on stderr, the rest still read.
#[test]
fn unreadable_package_database_is_said() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("root");
    std::fs::create_dir_all(dir.join("var/lib/dpkg/status")).expect("mkdir");
    write(
        &dir,
        "var/lib/pacman/local/podman-5.4.2-1/desc",
        "%NAME%\npodman\n\n%VERSION%\n5.4.2-1\n",
    );
    let o = run(&dir, &["runtime", "list"]);
    assert_eq!(o.status.code(), Some(0), "{}", out_err(&o, &dir));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("var/lib/dpkg/status"),
        "{}",
        out_err(&o, &dir)
    );
    assert!(
        stdout(&o).starts_with("podman 5.4.2 (pacman: podman 5.4.2-1)"),
        "{}",
        out_err(&o, &dir)
    );
}
