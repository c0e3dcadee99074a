//! Build facts for `exliar --version`: the git commit (from the checkout,
//! else `EXLIAR_GIT_COMMIT`, else `unknown` — a release tarball), the
//! target and the profile. No network, no git needed.
//!
//! And `data/gpu-db.toml` as JSON (`OUT_DIR/gpu-db.json`), which exliar
//! embeds: reading JSON at run time costs a fraction of parsing the TOML,
//! and every bind, handover and analysis reads the database.

use std::path::Path;
use std::process::Command;

fn main() {
    gpu_db_json();
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let git = Path::new(&dir).join(".git");
    if git.is_dir() {
        println!("cargo:rerun-if-changed=.git/HEAD");
        if let Ok(head) = std::fs::read_to_string(git.join("HEAD"))
            && let Some(r) = head.trim().strip_prefix("ref: ")
        {
            println!("cargo:rerun-if-changed=.git/{r}");
        }
    }
    println!("cargo:rerun-if-env-changed=EXLIAR_GIT_COMMIT");
    let commit = std::env::var("EXLIAR_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let o = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .current_dir(&dir)
                .output()
                .ok()?;
            let c = String::from_utf8(o.stdout).ok()?.trim().to_string();
            (o.status.success() && !c.is_empty()).then_some(c)
        })
        .unwrap_or_else(|| "unknown".into());
    let target = std::env::var("TARGET").unwrap_or_default();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    println!("cargo:rustc-env=EXLIAR_BUILD=commit {commit}, {target}, {profile}");
}

/// `data/gpu-db.toml` → `OUT_DIR/gpu-db.json`. A TOML error fails the build,
/// naming the file.
fn gpu_db_json() {
    println!("cargo:rerun-if-changed=data/gpu-db.toml");
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let src = Path::new(&dir).join("data/gpu-db.toml");
    let text = match std::fs::read_to_string(&src) {
        Ok(t) => t,
        Err(e) => fail(&format!("{}: {e}", src.display())),
    };
    let value: toml::Value = match toml::from_str(&text) {
        Ok(v) => v,
        Err(e) => fail(&format!("{}: {e}", src.display())),
    };
    let json = match serde_json::to_string(&value) {
        Ok(j) => j,
        Err(e) => fail(&format!("{}: {e}", src.display())),
    };
    let out =
        Path::new(&std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into())).join("gpu-db.json");
    if let Err(e) = std::fs::write(&out, json) {
        fail(&format!("{}: {e}", out.display()));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1)
}
