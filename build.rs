//! Build facts for `exliar --version`: the git commit (from the checkout,
//! else `EXLIAR_GIT_COMMIT`, else `unknown` — a release tarball), the
//! target and the profile. No network, no git needed.

use std::path::Path;
use std::process::Command;

fn main() {
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
