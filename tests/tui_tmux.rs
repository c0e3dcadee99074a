//! The real `exliar tui` binary in a real terminal: tmux (Debian's) runs it
//! on a fixture root, keys go in with `send-keys`, the screen comes back
//! with `capture-pane`. After `q` the terminal must be as it was: the
//! alternate screen left and the cursor visible.
//!
//! The binary is the release build (`.ci/run` builds it first) when there is
//! one, else the debug build (said on stderr; under CI that is a failure).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn screen(&self) -> String {
        self.cmd(&["capture-pane", "-p", "-t", "t"])
    }
    fn wait_for(&self, text: &str, what: &str) -> String {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(
                Instant::now() < end,
                "{what}: no {text:?} on the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    fn keys(&self, keys: &[&str]) {
        let mut a = vec!["send-keys", "-t", "t"];
        a.extend_from_slice(keys);
        self.cmd(&a);
    }
    fn format(&self, f: &str) -> String {
        self.cmd(&["display-message", "-p", "-t", "t", f])
            .trim()
            .to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// The newest modification time under `dir`.
fn newest(dir: &Path) -> Option<std::time::SystemTime> {
    let mut best = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        let t = if p.is_dir() {
            newest(&p)
        } else {
            e.metadata().and_then(|m| m.modified()).ok()
        };
        best = best.max(t);
    }
    best
}

fn binary() -> PathBuf {
    let root = common::manifest_dir();
    let release = root.join("target/release/exliar");
    let built = std::fs::metadata(&release).and_then(|m| m.modified()).ok();
    if built.is_some() && built >= newest(&root.join("src")) {
        return release;
    }
    assert!(
        !common::in_ci(),
        "no release build of the current sources: .ci/run builds it (cargo build --release)"
    );
    eprintln!("tui_tmux: no release build of the current sources; running the debug binary");
    PathBuf::from(env!("CARGO_BIN_EXE_exliar"))
}

#[test]
fn real_binary_in_tmux_starts_shows_the_plan_and_restores_the_terminal() {
    if common::tool_or_skip("/usr/bin/tmux", "tmux").is_none() {
        return;
    }
    let bin = binary();
    let (_t, target) = common::target("debian12-grub-intel");
    let hw = common::host("hw10-ryzen5000g-cezanne-rx580-rtx3060");
    let tmux = Tmux {
        socket: format!("exliar-test-{}", std::process::id()),
    };
    // The pane's shell prints the exit status and stays, so that the
    // terminal's state after exliar can be read.
    let script = format!(
        "'{}' tui --root '{}' --target '{}' --no-run; echo \"exliar exited $?\"; sleep 600",
        bin.display(),
        hw.display(),
        target.display()
    );
    let st = Command::new("tmux")
        .args(["-L", &tmux.socket, "-f", "/dev/null", "new-session", "-d"])
        .args(["-s", "t", "-x", "100", "-y", "30"])
        .args(["sh", "-c", &script])
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .status()
        .expect("tmux new-session");
    assert!(st.success());
    let host = tmux.wait_for("IOMMU groups", "start");
    assert!(host.contains("1 Host"), "{host}");
    assert!(host.contains("0000:12:00.0"), "{host}");
    assert_eq!(
        tmux.format("#{alternate_on}"),
        "1",
        "exliar draws on the alternate screen"
    );

    tmux.keys(&["3"]);
    let plan = tmux.wait_for("Plan: isolate 0000:12:00.0", "the Isolate page");
    assert!(
        plan.contains("+options vfio-pci ids=10de:2504,10de:228e"),
        "{plan}"
    );
    tmux.keys(&["?"]);
    tmux.wait_for("Keys (any key closes)", "help");
    tmux.keys(&["Escape"]);
    tmux.keys(&["q"]);
    let after = tmux.wait_for("exliar exited 0", "quit");
    assert!(
        !after.contains("1 Host"),
        "the TUI's screen is gone:\n{after}"
    );
    assert_eq!(tmux.format("#{alternate_on}"), "0", "alternate screen left");
    assert_eq!(tmux.format("#{cursor_flag}"), "1", "cursor visible");

    // The screens, for the record (the closing note quotes them).
    let dir = common::manifest_dir().join("target/tui-captures");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("host.txt"), &host);
    let _ = std::fs::write(dir.join("isolate.txt"), &plan);
    // Nothing was applied: quitting from the plan changes nothing.
    assert!(common::history(&target).is_empty());
}
