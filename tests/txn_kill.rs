//! Real SIGKILLs from outside, at random times, during `apply`, `rollback`
//! and `recover` (issue #11): after `recover` (itself killed sometimes,
//! then run again) every target is byte-identical to the original, or to
//! the applied state when the apply had finished; no temporary file is
//! left anywhere; the store keeps working. The regeneration command is the
//! debug-only test runner's real `sleep` child (`EXLIAR_TEST_RUNNER`), so
//! kills land inside it too.
//!
//! Deterministic delays: `EXLIAR_KILL_SEED` (printed) seeds them.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// splitmix64: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The sleeping stand-in for the regeneration commands.
const RUNNER: &str = "sleep:20";

/// A pause before each write operation (debug seam), so that the window
/// where files are written is as wide as the others.
const WRITE_DELAY_US: &str = "200";

struct Target {
    hw: &'static str,
    distro: &'static str,
    extra: &'static [&'static str],
}

const TARGETS: [Target; 4] = [
    Target {
        hw: HW_IDENTICAL,
        distro: "debian12-grub-intel",
        extra: &[],
    },
    Target {
        hw: HW_SPLIT,
        distro: "fedora40-bls-amd",
        extra: &[],
    },
    Target {
        hw: HW_IDENTICAL,
        distro: "popos-kernelstub",
        extra: &[],
    },
    Target {
        hw: HW_SPLIT,
        distro: "arch-systemd-boot",
        extra: &["--bootloader", "systemd-boot"],
    },
];

fn command(t: &Target, dir: &Path, what: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_exliar"));
    c.env_remove("EXLIAR_ROOT")
        .env_remove("EXLIAR_LOG")
        .env("EXLIAR_TEST_RUNNER", RUNNER)
        .env("EXLIAR_TEST_WRITE_DELAY_US", WRITE_DELAY_US)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match what {
        "apply" => {
            c.args(["apply", "--yes", "--root"])
                .arg(host(t.hw))
                .args(t.extra);
        }
        other => {
            c.arg(other);
        }
    }
    c.arg("--target").arg(dir);
    c
}

/// Run to the end; panics unless it succeeds.
fn finish(t: &Target, dir: &Path, what: &str, ctx: &str) {
    let out = command(t, dir, what)
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{ctx}: {what} failed: {}",
        stderr(&out)
    );
}

/// Start `what`, SIGKILL it after `delay` (unless it ended first).
/// Returns whether the kill landed.
fn kill_after(mut c: Command, delay: Duration) -> bool {
    let mut child: Child = c.spawn().expect("spawn");
    let end = Instant::now() + delay;
    loop {
        if let Some(_st) = child.try_wait().expect("wait") {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(Duration::from_micros(500)));
    }
    // std's kill is SIGKILL on Unix
    let killed = child.kill().is_ok();
    let st = child.wait().expect("wait");
    killed && !st.success()
}

/// How long `what` takes to the end, in microseconds (for the kill range).
fn duration_us(t: &Target, dir: &Path, what: &str) -> u64 {
    let s = Instant::now();
    finish(t, dir, what, "calibration");
    s.elapsed().as_micros() as u64
}

/// The last transaction's status, after checking none is unfinished.
fn last_status(dir: &Path, ctx: &str) -> Option<String> {
    let h = history(dir);
    for (id, st) in &h {
        assert!(
            matches!(
                st.as_str(),
                "applied" | "failed" | "rolled-back" | "recovered"
            ),
            "{ctx}: transaction {id} is {st} after recover"
        );
    }
    h.last().map(|x| x.1.clone())
}

#[derive(Default)]
struct Counts {
    kills: BTreeMap<&'static str, usize>,
    missed: BTreeMap<&'static str, usize>,
    ends: BTreeMap<&'static str, usize>,
    /// Where the kills landed, from the journal they left.
    landed: BTreeMap<(&'static str, &'static str), usize>,
}

/// Where a kill of `phase` landed, from the newest journal (`before`
/// transactions existed when the killed command started).
fn landed(dir: &Path, phase: &str, before: usize) -> &'static str {
    let ts = transactions(dir);
    let Some(j) = ts.last().filter(|_| ts.len() > before) else {
        return "before the transaction existed";
    };
    let cmds = j["commands"].as_array().cloned().unwrap_or_default();
    let running = |key: &str| cmds.iter().any(|c| c[key] == "running");
    let written = j["files"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f["state"] != "pending"));
    match (phase, j["status"].as_str().unwrap_or("")) {
        (_, "applying") if running("state") => "applying, inside the regeneration command",
        (_, "applying") if written => "applying, writing files",
        (_, "applying") => "applying, before the first file",
        (_, "rolling-back") if running("revert_state") => {
            "rolling back, inside the regeneration command"
        }
        (_, "rolling-back") => "rolling back, restoring files",
        ("apply", "applied") => "applied, before the process ended",
        ("rollback", "applied") => "before the rollback started",
        ("recover", "applied") => "with nothing to recover",
        (_, "rolled-back") => "rolled back, before the process ended",
        (_, "recovered" | "failed") => "recovered, before the process ended",
        _ => "other",
    }
}

/// Run `phase` and SIGKILL it after a random delay (up to 1.1 times its
/// calibrated duration `us`); count the kill and where it landed, or the
/// miss. `before`: the transactions that existed when it started.
fn kill_phase(
    t: &Target,
    dir: &Path,
    phase: &'static str,
    us: u64,
    before: usize,
    rng: &mut Rng,
    counts: &mut Counts,
) {
    let d = Duration::from_micros(rng.below(us * 11 / 10));
    if kill_after(command(t, dir, phase), d) {
        *counts.kills.entry(phase).or_default() += 1;
        let at = landed(dir, phase, before);
        *counts.landed.entry((phase, at)).or_default() += 1;
    } else {
        *counts.missed.entry(phase).or_default() += 1;
    }
}

/// Recover after a kill: sometimes kill recover too, then recover to the
/// end; check the target is one of the two known states, clean, and
/// bring it back to the original (a rollback when applied).
#[allow(clippy::too_many_arguments)]
fn recover_and_check(
    t: &Target,
    dir: &Path,
    rng: &mut Rng,
    recover_us: u64,
    original: &Tree,
    applied: &Tree,
    counts: &mut Counts,
    ctx: &str,
) {
    if rng.below(2) == 0 {
        kill_phase(t, dir, "recover", recover_us, 0, rng, counts);
    }
    finish(t, dir, "recover", ctx);
    let now = files(dir);
    let l = leftovers(dir);
    assert!(l.is_empty(), "{ctx}: left behind: {l:?}");
    match last_status(dir, ctx).as_deref() {
        Some("applied") => {
            assert_eq!(&now, applied, "{ctx}:\n{}", tree_diff(applied, &now));
            *counts.ends.entry("applied").or_default() += 1;
            // the store works: roll it back for the next round
            finish(t, dir, "rollback", ctx);
            assert_eq!(&files(dir), original, "{ctx}: rollback afterwards");
        }
        other => {
            assert_eq!(
                &now,
                original,
                "{ctx} ({other:?}):\n{}",
                tree_diff(original, &now)
            );
            *counts.ends.entry("original").or_default() += 1;
        }
    }
}

#[test]
fn sigkill_at_random_times_then_recover() {
    let seed = std::env::var("EXLIAR_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x11_5eed_u64);
    // kills per target (apply, rollback and recover together)
    let quota: usize = std::env::var("EXLIAR_KILL_QUOTA")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(130);
    eprintln!(
        "kill test: seed {seed} (EXLIAR_KILL_SEED), {quota} kills per target (EXLIAR_KILL_QUOTA)"
    );
    let start = Instant::now();
    let mut rng = Rng(seed);
    let mut counts = Counts::default();
    for t in &TARGETS {
        let (_tmp, dir) = target_in_memory(t.distro);
        let original = files(&dir);
        // calibrate: apply and rollback to the end
        let apply_us = duration_us(t, &dir, "apply");
        let applied = files(&dir);
        assert_ne!(applied, original, "{}: the plan changes nothing", t.distro);
        let rollback_us = duration_us(t, &dir, "rollback");
        assert_eq!(files(&dir), original);
        let recover_us = rollback_us;
        let killed = |c: &Counts| c.kills.values().sum::<usize>();
        let at_start = killed(&counts);
        let recover = |rng: &mut Rng, counts: &mut Counts, ctx: &str| {
            recover_and_check(t, &dir, rng, recover_us, &original, &applied, counts, ctx)
        };
        for round in 0.. {
            if killed(&counts) - at_start >= quota {
                break;
            }
            assert!(round < 400, "{}: kills do not land", t.distro);
            // apply, killed
            let ctx = format!("{} round {round} apply", t.distro);
            let before = transactions(&dir).len();
            kill_phase(t, &dir, "apply", apply_us, before, &mut rng, &mut counts);
            recover(&mut rng, &mut counts, &ctx);

            // rollback, killed
            let ctx = format!("{} round {round} rollback", t.distro);
            finish(t, &dir, "apply", &ctx);
            kill_phase(t, &dir, "rollback", rollback_us, 0, &mut rng, &mut counts);
            recover(&mut rng, &mut counts, &ctx);
        }
    }
    let kills: usize = counts.kills.values().sum();
    eprintln!(
        "kill test: {kills} SIGKILLs on {} targets in {:.1}s",
        TARGETS.len(),
        start.elapsed().as_secs_f64()
    );
    for (phase, n) in &counts.kills {
        eprintln!(
            "  {phase:<9} killed {n}, ended before the kill {}",
            counts.missed.get(phase).copied().unwrap_or(0)
        );
    }
    for ((phase, at), n) in &counts.landed {
        eprintln!("  {phase:<9} kill landed {at}: {n}");
    }
    for (end, n) in &counts.ends {
        eprintln!("  recovered to the {end} state: {n}");
    }
    eprintln!("  every run byte-identical, no temporary file, store usable");
    assert!(kills >= quota * TARGETS.len(), "only {kills} kills");
}
