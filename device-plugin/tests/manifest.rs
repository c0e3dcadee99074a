//! deploy/kubernetes/10-daemonset.yaml runs this binary: every flag it
//! passes exists (its `--help` names it).

#![allow(clippy::unwrap_used)] // a failed setup step is a failed test

#[test]
fn the_daemonset_passes_flags_that_exist() {
    let ds = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/kubernetes/10-daemonset.yaml");
    let text = std::fs::read_to_string(&ds).unwrap();
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_exliar-device-plugin"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    // The command list under `- exliar-device-plugin`.
    let mut flags = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let t = line.trim();
        if t == "- exliar-device-plugin" {
            inside = true;
            continue;
        }
        if inside {
            match t.strip_prefix("- --") {
                Some(f) => flags.push(f.split('=').next().unwrap().to_string()),
                None => break,
            }
        }
    }
    assert!(flags.len() >= 3, "{flags:?}");
    for f in &flags {
        assert!(
            help.contains(&format!("--{f} ")),
            "--{f} is not a flag:\n{help}"
        );
    }
}
