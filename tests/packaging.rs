//! What packages install besides the binary, checked with the tools that
//! will read it: the man pages and completions `cargo run -p xtask -- dist`
//! generates from the CLI definition (`man -l` with warnings on, bash
//! loading the completion), the systemd units (`systemd-analyze verify`),
//! and `exliar --version`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{exliar, manifest_dir, tool_or_skip};

/// `xtask dist` into a new folder.
fn dist() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let out = t.path().join("dist");
    // cargo run: rebuilt when the CLI changed since.
    let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["run", "-q", "-p", "xtask", "--", "dist"])
        .arg(&out)
        .current_dir(manifest_dir())
        .status()
        .expect("xtask");
    assert!(st.success(), "xtask dist failed");
    (t, out)
}

fn pages(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("man/man1"))
        .expect("man1")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

#[test]
fn man_pages_render_without_warnings() {
    if tool_or_skip("/usr/bin/man", "man-db").is_none() {
        return;
    }
    let (_t, out) = dist();
    let pages = pages(&out);
    // exliar(1) and one per subcommand, nested ones too.
    for want in [
        "exliar.1",
        "exliar-tui.1",
        "exliar-vm-create.1",
        "exliar-plugin-new.1",
        "exliar-metrics.1",
    ] {
        assert!(
            pages.iter().any(|p| p.ends_with(want)),
            "{want} missing: {pages:?}"
        );
    }
    assert!(pages.len() > 40, "{} pages", pages.len());
    for p in &pages {
        let o = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(p)
            .env("MANWIDTH", "80")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .expect("man");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() && err.trim().is_empty(),
            "{}: {err}",
            p.display()
        );
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("NAME") && text.contains("SYNOPSIS"),
            "{}: {text}",
            p.display()
        );
    }
}

#[test]
fn completions_load_in_bash_and_match_the_binary() {
    let (_t, out) = dist();
    let bash = out.join("completions/exliar.bash");
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!("source '{}' && complete -p exliar", bash.display()))
        .output()
        .expect("bash");
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && said.contains("-F _exliar exliar"),
        "{said}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The words it completes come from the CLI: a subcommand added later is there.
    let text = std::fs::read_to_string(&bash).expect("bash completion");
    assert!(text.contains("tui") && text.contains("plugin") && text.contains("metrics"));
    for (shell, file) in [
        ("bash", "exliar.bash"),
        ("zsh", "_exliar"),
        ("fish", "exliar.fish"),
    ] {
        let o = exliar()
            .args(["completions", shell])
            .output()
            .expect("completions");
        assert!(o.status.success());
        assert_eq!(
            o.stdout,
            std::fs::read(out.join("completions").join(file)).expect("file"),
            "exliar completions {shell} differs from the packaged file"
        );
    }
    if Path::new("/usr/bin/fish").exists() {
        let o = Command::new("fish")
            .arg("-n")
            .arg(out.join("completions/exliar.fish"))
            .output()
            .expect("fish");
        assert!(o.status.success());
    }
}

#[test]
fn systemd_units_verify() {
    if tool_or_skip("/usr/bin/systemd-analyze", "systemd").is_none() {
        return;
    }
    let (t, out) = dist();
    let units = t.path().join("units");
    std::fs::create_dir(&units).expect("mkdir");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_exliar"));
    let mut names = Vec::new();
    for e in std::fs::read_dir(manifest_dir().join("contrib/systemd")).expect("contrib/systemd") {
        let p = e.expect("entry").path();
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        // The binary where this build has it (packages put it in /usr/bin).
        let text = std::fs::read_to_string(&p)
            .expect("unit")
            .replace("/usr/bin/exliar", &bin.display().to_string());
        std::fs::write(units.join(&name), text).expect("write");
        names.push(name);
    }
    names.sort();
    assert_eq!(
        names,
        [
            "exliar-cdi.service",
            "exliar-metrics.service",
            "exliar-recover.service"
        ]
    );
    let verify = |dir: &Path| {
        let mut c = Command::new("systemd-analyze");
        c.arg("verify")
            .env("MANPATH", out.join("man"))
            .env("SYSTEMD_LOG_COLOR", "0");
        for n in &names {
            c.arg(dir.join(n));
        }
        c.output().expect("systemd-analyze")
    };
    let o = verify(&units);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.trim().is_empty(), "{err}");
    // It can fail: a misspelt key is reported.
    let bad = units.join("exliar-recover.service");
    let text = std::fs::read_to_string(&bad)
        .expect("unit")
        .replace("RemainAfterExit", "RemainAfterExitt");
    std::fs::write(&bad, text).expect("write");
    let o = verify(&units);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("RemainAfterExitt"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn version_names_the_commit_target_and_profile() {
    let o = exliar().arg("--version").output().expect("--version");
    let v = String::from_utf8_lossy(&o.stdout);
    assert!(
        v.starts_with(&format!("exliar {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    assert!(
        v.contains("x86_64-unknown-linux-gnu") || v.contains("linux"),
        "{v}"
    );
    assert!(v.contains(", debug)") || v.contains(", release)"), "{v}");
    let commit = v
        .split("commit ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or("");
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{v}"
    );
}

fn nix_instantiate(args: &[&str]) -> std::process::Output {
    Command::new("nix-instantiate")
        .args(args)
        .env("NIX_REMOTE", "")
        .output()
        .expect("nix-instantiate")
}

/// Every `.nix` file exliar ships parses, and so does every module
/// `exliar plan --format nix` prints; nix/module.nix, given the same card,
/// yields the same kernel parameters, initrd modules and modprobe
/// configuration as the printed module (evaluated with a stub of the lib
/// functions it uses: there is no nixpkgs here; `nix flake check` against
/// nixpkgs is a manual step, docs/packaging.md).
#[test]
fn nix_files_parse_and_the_module_matches_plan_format_nix() {
    if tool_or_skip("/usr/bin/nix-instantiate", "nix-bin").is_none() {
        return;
    }
    let m = manifest_dir();
    for f in [
        "flake.nix",
        "nix/package.nix",
        "nix/module.nix",
        "tests/packaging/module-vs-plan.nix",
    ] {
        let o = nix_instantiate(&["--parse", &m.join(f).display().to_string()]);
        assert!(
            o.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let t = tempfile::tempdir().expect("tempdir");
    let mut compared = 0;
    for hw in [
        "hw10-ryzen5000g-cezanne-rx580-rtx3060",
        "hw17-alderlake-asus-rx6700xt-rx550-vfio",
        "hw09-ryzen-x570-rtx3060",
        "hw14-am5-granite-ridge-rx7800xt-rtx2070super",
    ] {
        let o = exliar()
            .args(["plan", "--format", "nix", "--root"])
            .arg(common::host(hw))
            .arg("--target")
            .arg(common::host("nixos-amd"))
            .output()
            .expect("plan --format nix");
        if !o.status.success() {
            continue; // refused for this card: nothing printed
        }
        let plan = t.path().join(format!("{hw}.nix"));
        std::fs::write(&plan, &o.stdout).expect("write");
        let p = nix_instantiate(&["--parse", &plan.display().to_string()]);
        assert!(
            p.status.success(),
            "{hw}: {}",
            String::from_utf8_lossy(&p.stderr)
        );
        // The card's ids and drivers, read back from the printed module.
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let ids: Vec<String> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("options vfio-pci ids="))
            .flat_map(|l| {
                l.split(',')
                    .map(|s| format!("\"{}\"", s.trim()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let drivers: Vec<String> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("softdep "))
            .filter_map(|l| l.split_whitespace().next().map(|d| format!("\"{d}\"")))
            .collect();
        if ids.is_empty() {
            continue; // by address: the printed module binds in its own way
        }
        let iommu = if text.contains("intel_iommu=on") {
            "intel"
        } else {
            "none"
        };
        let e = nix_instantiate(&[
            "--eval",
            "--strict",
            "--json",
            &m.join("tests/packaging/module-vs-plan.nix")
                .display()
                .to_string(),
            "--arg",
            "module",
            &m.join("nix/module.nix").display().to_string(),
            "--arg",
            "plan",
            &plan.display().to_string(),
            "--argstr",
            "iommu",
            iommu,
            "--arg",
            "ids",
            &format!("[ {} ]", ids.join(" ")),
            "--arg",
            "drivers",
            &format!("[ {} ]", drivers.join(" ")),
        ]);
        assert!(
            e.status.success(),
            "{hw}: {}",
            String::from_utf8_lossy(&e.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&e.stdout).expect("json");
        assert_eq!(
            v["ours"], v["theirs"],
            "{hw}: nix/module.nix differs from plan --format nix"
        );
        compared += 1;
    }
    assert!(compared >= 2, "only {compared} hosts compared");
}

/// The files of the Debian package (build-deb.sh, from the release build),
/// normalised for comparison with other distributions' layouts: man pages
/// without `.gz`, zsh's folder, Debian's own doc files left out.
fn deb_files(t: &Path) -> std::collections::BTreeSet<String> {
    let o = Command::new(manifest_dir().join("contrib/debian/build-deb.sh"))
        .arg(t.join("deb"))
        .output()
        .expect("build-deb.sh");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let deb = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let o = Command::new("dpkg-deb")
        .args(["-c", &deb])
        .output()
        .expect("dpkg-deb -c");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| p.trim_start_matches("./").to_string())
        .filter(|p| !p.is_empty() && !p.ends_with('/') && !p.starts_with("usr/share/doc/"))
        .map(normalise)
        .collect()
}

fn normalise(p: String) -> String {
    p.trim_end_matches(".gz").replace(
        "usr/share/zsh/vendor-completions/",
        "usr/share/zsh/site-functions/",
    )
}

/// Arch's PKGBUILD (bash -n, its arrays, and its package() run into a
/// folder) and the RPM spec (rpmlint without an error; its %files expanded
/// by rpm) install the same files as the .deb.
#[test]
fn pkgbuild_and_spec_install_what_the_deb_installs() {
    let m = manifest_dir();
    let release = m.join("target/release/exliar");
    if !release.is_file() {
        assert!(
            !common::in_ci(),
            "no release build: .ci/run builds it first"
        );
        eprintln!("skipping: needs `cargo build --release` first");
        return;
    }
    let (t, dist) = dist();
    let deb = deb_files(t.path());
    assert!(deb.contains("usr/bin/exliar") && deb.len() > 50, "{deb:?}");

    // PKGBUILD: syntax, arrays, then package() into a folder.
    let pkgbuild = m.join("contrib/arch/PKGBUILD");
    let o = Command::new("bash")
        .arg("-n")
        .arg(&pkgbuild)
        .output()
        .expect("bash -n");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let src = t.path().join("src/exliar-0.1.0");
    std::fs::create_dir_all(src.join("target")).expect("mkdir");
    std::os::unix::fs::symlink(m.join("target/release"), src.join("target/release")).expect("ln");
    std::os::unix::fs::symlink(m.join("contrib"), src.join("contrib")).expect("ln");
    std::os::unix::fs::symlink(m.join("README.md"), src.join("README.md")).expect("ln");
    std::os::unix::fs::symlink(&dist, src.join("dist")).expect("ln");
    let pkgdir = t.path().join("pkg");
    let script = format!(
        "set -eu; source '{}'; declare -p pkgname pkgver depends source sha256sums >/dev/null; \
         [ \"$pkgver\" = '{}' ]; type build prepare package >/dev/null; \
         srcdir='{}'; pkgdir='{}'; cd \"$srcdir\"; package",
        pkgbuild.display(),
        env!("CARGO_PKG_VERSION"),
        t.path().join("src").display(),
        pkgdir.display()
    );
    let o = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("bash");
    assert!(
        o.status.success(),
        "PKGBUILD: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut arch = std::collections::BTreeSet::new();
    let mut stack = vec![pkgdir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(&pkgdir).expect("rel").display().to_string();
                if !rel.starts_with("usr/share/doc/") {
                    arch.insert(normalise(rel));
                }
            }
        }
    }
    assert_eq!(arch, deb, "PKGBUILD and .deb install different files");

    // The spec: rpmlint, then its %files with rpm's macros expanded.
    let spec = m.join("contrib/rpm/exliar.spec");
    if tool_or_skip("/usr/bin/rpmlint", "rpmlint").is_some() {
        let o = Command::new("rpmlint")
            .arg("-r")
            .arg(m.join("contrib/rpm/exliar.rpmlintrc"))
            .arg(&spec)
            .output()
            .expect("rpmlint");
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && text.contains(" 0 errors"),
            "rpmlint:\n{text}"
        );
    }
    if tool_or_skip("/usr/bin/rpm", "rpm").is_none() {
        return;
    }
    let text = std::fs::read_to_string(&spec).expect("spec");
    let files: Vec<&str> = text
        .split("%files\n")
        .nth(1)
        .expect("%files")
        .split("\n%changelog")
        .next()
        .expect("files")
        .lines()
        .filter(|l| {
            !l.trim().is_empty()
                && !l.starts_with("%license")
                && !l.starts_with("%doc")
                && !l.starts_with("%dir")
        })
        .collect();
    let mut rpm = std::collections::BTreeSet::new();
    for f in files {
        // systemd-rpm-macros' _unitdir, which Debian's rpm lacks.
        let o = Command::new("rpm")
            .args(["--define", "_unitdir /usr/lib/systemd/system", "-E", f])
            .output()
            .expect("rpm -E");
        let path = String::from_utf8_lossy(&o.stdout)
            .trim()
            .trim_start_matches('/')
            .to_string();
        if path.contains('*') {
            // a glob: the .deb's files it matches
            let (pre, post) = path.split_once('*').expect("glob");
            let post = post.trim_end_matches(".1*").trim_end_matches('*');
            let hits: Vec<&String> = deb
                .iter()
                .filter(|d| d.starts_with(pre) && d.ends_with(&format!("{post}.1")))
                .collect();
            assert!(!hits.is_empty(), "{path} matches nothing");
            rpm.extend(hits.into_iter().cloned());
        } else {
            rpm.insert(normalise(path));
        }
    }
    assert_eq!(rpm, deb, "the spec's %files and the .deb differ");
}
