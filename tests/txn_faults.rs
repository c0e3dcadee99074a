//! The transaction engine under broken stores, links, failing commands and
//! I/O errors (issue #11, section 1).

mod common;

use std::path::Path;
use std::process::Output;

use common::*;

const DEBIAN: &str = "debian12-grub-intel";

/// `exliar status ARGS --root ROOT`.
fn status(args: &[&str], root: &Path) -> Output {
    exliar()
        .arg("status")
        .args(args)
        .arg("--root")
        .arg(root)
        .output()
        .expect("status")
}

/// `exliar ARGS --target DIR`; panics unless it succeeds (named by its
/// first word).
fn txn_ok(args: &[&str], dir: &Path) -> Output {
    let out = txn_cmd(args, dir).output().expect(args[0]);
    assert_success(&out, args[0]);
    out
}

/// A transaction folder without a journal (what a kill in the first
/// milliseconds of an old apply left) is reported and skipped: history,
/// status, apply, rollback and recover all work.
#[test]
fn txn_folder_without_journal_is_reported_and_skipped() {
    let (_t, dir) = target_in_memory(DEBIAN);
    let empty = dir.join("var/lib/exliar/txn/20261204T150000Z");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let out = txn_ok(&["history"], &dir);
    assert!(
        stderr(&out).contains("20261204T150000Z") && stderr(&out).contains("skipped"),
        "{}",
        stderr(&out)
    );
    let out = on_target(&["apply", "--yes", "--no-run"], HW_IDENTICAL, &dir)
        .output()
        .expect("apply");
    assert_success(&out, "apply over a folder without journal");
    let h = history(&dir);
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(h[0].1, "applied");
    // status sees the applied transaction (the root is the target here)
    let (_h, hw) = target_in_memory(HW_IDENTICAL);
    std::fs::create_dir_all(hw.join("var/lib/exliar/txn/20261204T150000Z")).expect("mkdir");
    let out = status(&["--json"], &hw);
    assert_success(&out, "status");
    assert!(
        stderr(&out).contains("20261204T150000Z"),
        "{}",
        stderr(&out)
    );
    let doc = json(&out);
    assert_valid(&schema("status-1.schema.json"), &doc, "status --json");
    assert!(doc["unfinished_transaction"].is_null(), "{doc}");
    let out = txn_ok(&["recover", "--no-run"], &dir);
    assert!(
        stdout(&out).contains("Nothing to recover"),
        "{}",
        stdout(&out)
    );
    txn_ok(&["rollback", "--no-run"], &dir);
    assert_eq!(history(&dir)[0].1, "rolled-back");
    // a garbled journal: the same
    std::fs::write(empty.join("journal.json"), b"{\"schema\": ").expect("write");
    let out = txn_ok(&["history"], &dir);
    assert!(
        stderr(&out).contains("unreadable journal"),
        "{}",
        stderr(&out)
    );
}

/// A rollback whose regeneration fails (here the real runner: the fixture
/// has no update-initramfs to chroot into) is journaled `rolling-back`
/// with every file restored, says to run `exliar recover`, and recover
/// finishes it; status does not claim the isolation any more.
#[test]
fn rollback_with_failing_regeneration_is_journaled() {
    let (_t, dir) = target_in_memory(DEBIAN);
    let original = files(&dir);
    on_target(&["apply", "--yes", "--no-run"], HW_IDENTICAL, &dir)
        .assert()
        .success();
    let out = txn_cmd(&["rollback"], &dir).output().expect("rollback");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("exliar recover"), "{}", stderr(&out));
    assert_eq!(history(&dir)[0].1, "rolling-back");
    assert_eq!(files(&dir), original, "the files are restored");
    // status (of a root holding these transactions) no longer claims the
    // isolation, and names the unfinished transaction
    let (_h, hw) = target_in_memory(HW_IDENTICAL);
    std::fs::create_dir_all(hw.join("var/lib")).expect("mkdir");
    copy_tree(&dir.join("var/lib/exliar"), &hw.join("var/lib/exliar"));
    let out = status(&["--json"], &hw);
    assert_success(&out, "status");
    let doc = json(&out);
    assert_valid(&schema("status-1.schema.json"), &doc, "status --json");
    assert!(doc["boot_isolation"].is_null(), "{doc}");
    assert_eq!(doc["unfinished_transaction"]["status"], "rolling-back");
    let out = status(&[], &hw);
    assert!(
        stdout(&out).contains("run `exliar recover`"),
        "{}",
        stdout(&out)
    );
    // another rollback is refused for the unfinished one, not for "foreign changes"
    let out = txn_cmd(&["rollback", "--no-run"], &dir)
        .output()
        .expect("rollback");
    assert!(
        stderr(&out).contains("unfinished") && stderr(&out).contains("exliar recover"),
        "{}",
        stderr(&out)
    );
    let out = txn_ok(&["recover", "--no-run"], &dir);
    assert!(
        stdout(&out).contains("Rollback finished"),
        "{}",
        stdout(&out)
    );
    assert_eq!(history(&dir)[0].1, "rolled-back");
    assert_eq!(files(&dir), original);
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
}

/// `apply` on `dir` exits 2 with a stderr that passes `check`, and neither
/// writes a file nor starts a journal.
fn refused_up_front(dir: &Path, check: impl Fn(&str)) {
    let original = files(dir);
    let out = on_target(&["apply", "--yes", "--no-run"], HW_IDENTICAL, dir)
        .output()
        .expect("apply");
    assert_eq!(out.status.code(), Some(2));
    check(&stderr(&out));
    assert_eq!(files(dir), original);
    assert!(history(dir).is_empty(), "a journal was created");
}

/// A symlinked /etc/modprobe.d is refused before anything is written (no
/// journal); recover of a transaction interrupted over such a folder
/// succeeds (it never wrote through the link).
#[test]
fn symlinked_folder_is_refused_up_front_and_recover_never_sticks() {
    let (_t, dir) = target_in_memory(DEBIAN);
    // the Debian tree has no /etc/modprobe.d: make it a link to a folder
    std::fs::create_dir(dir.join("etc/modprobe.real")).expect("mkdir");
    std::os::unix::fs::symlink("modprobe.real", dir.join("etc/modprobe.d")).expect("ln");
    refused_up_front(&dir, |err| {
        assert!(
            err.contains("etc/modprobe.d")
                && err.contains("symbolic link")
                && err.contains("Nothing was changed"),
            "{err}"
        );
    });
    txn_cmd(&["recover", "--no-run"], &dir).assert().success();

    // a file where a folder goes: refused up front too
    let (_t3, dir) = target_in_memory(DEBIAN);
    std::fs::create_dir_all(dir.join("usr/lib")).expect("mkdir");
    std::fs::write(dir.join("usr/lib/exliar"), b"not a folder").expect("write");
    // Refused by the planner (it cannot read the file it would write) or
    // by apply's up-front check: either way before anything is written.
    refused_up_front(&dir, |err| {
        assert!(
            err.contains("usr/lib/exliar")
                && (err.contains("is not a folder") || err.contains("Not a directory"))
                && err.to_lowercase().contains("nothing was changed"),
            "{err}"
        );
    });

    // Interrupted (debug hook) at every step, then /etc/modprobe.d made a
    // link before recover: recover never writes through it, and ends.
    let mut points = 0;
    for k in 1..100 {
        let (_t2, dir) = target_in_memory(DEBIAN);
        let original = files(&dir);
        let out = apply_crashing_at(HW_IDENTICAL, &dir, k);
        if out.status.success() {
            break;
        }
        points += 1;
        let md = dir.join("etc/modprobe.d");
        if md.exists() {
            continue;
        }
        std::fs::create_dir(dir.join("etc/modprobe.real")).expect("mkdir");
        std::os::unix::fs::symlink("modprobe.real", &md).expect("ln");
        let out = txn_cmd(&["recover", "--no-run"], &dir)
            .output()
            .expect("recover");
        assert_success(&out, &format!("boundary {k}: recover over a linked folder"));
        std::fs::remove_file(&md).expect("rm link");
        std::fs::remove_dir(dir.join("etc/modprobe.real")).expect("rmdir");
        assert_eq!(files(&dir), original, "boundary {k}");
    }
    assert!(points > 3, "{points}");
}

/// Transaction ids are exliar's own format: a path is refused (exit 2),
/// never followed to a journal elsewhere.
#[test]
fn transaction_ids_are_validated() {
    let (_t, dir) = target_in_memory(DEBIAN);
    on_target(&["apply", "--yes", "--no-run"], HW_IDENTICAL, &dir)
        .assert()
        .success();
    let id = history(&dir)[0].0.clone();
    // a copy of the applied transaction outside the store
    copy_tree(
        &dir.join("var/lib/exliar/txn").join(&id),
        &dir.join("elsewhere"),
    );
    for bad in ["../../x", "../../../../elsewhere", "/etc", "last/..", ""] {
        let out = txn_cmd(&["rollback", "--no-run", bad], &dir)
            .output()
            .expect("rollback");
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("not a transaction id"),
            "{bad}: {}",
            stderr(&out)
        );
    }
    assert_eq!(history(&dir)[0].1, "applied");
    txn_cmd(&["rollback", "--no-run", &id], &dir)
        .assert()
        .success();
}

/// `history` and `status` write nothing: no state folder, no lock, on a
/// target without transactions ("No transactions").
#[test]
fn history_and_status_are_read_only() {
    let (_t, dir) = target_in_memory(DEBIAN);
    assert!(!dir.join("var/lib/exliar").exists());
    let out = txn_ok(&["history"], &dir);
    assert!(stdout(&out).contains("No transactions"), "{}", stdout(&out));
    assert!(
        !dir.join("var/lib/exliar").exists(),
        "history created the state folder"
    );
    let (_h, hw) = target_in_memory(HW_IDENTICAL);
    let out = status(&[], &hw);
    assert_success(&out, "status");
    assert!(
        !hw.join("var/lib/exliar").exists(),
        "status wrote the state"
    );
    // read-only store: history still reads it
    on_target(&["apply", "--yes", "--no-run"], HW_IDENTICAL, &dir)
        .assert()
        .success();
    let lock = dir.join("var/lib/exliar/lock");
    std::fs::remove_file(&lock).expect("rm lock");
    assert_eq!(history(&dir).len(), 1);
    assert!(!lock.exists(), "history created the lock");

    // unprivileged (as nobody, where setpriv exists): history reads the
    // journals, writes nothing
    let setpriv = Path::new("/usr/bin/setpriv");
    if !setpriv.exists() || !is_root() {
        eprintln!("skipping the unprivileged part: no setpriv, or not root");
        return;
    }
    let mut p = dir.clone();
    while let Some(parent) = p.parent() {
        // the temporary folders are 0700: let nobody through
        if p.starts_with(std::env::temp_dir()) || p.starts_with("/dev/shm") {
            let _ = std::process::Command::new("chmod")
                .arg("o+rx")
                .arg(&p)
                .status();
        }
        p = parent.to_path_buf();
    }
    let out = std::process::Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_exliar"))
        .args(["history", "--json", "--target"])
        .arg(&dir)
        .output()
        .expect("setpriv");
    assert_success(&out, "history as nobody");
    assert!(!stderr(&out).contains("skipped"), "{}", stderr(&out));
    assert_eq!(json(&out)["transactions"].as_array().map(Vec::len), Some(1));
    assert!(!lock.exists(), "history created the lock");
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A write failing part-way through apply: the transaction is reverted,
/// the message and the JSON say so (`host`, `next`), no temporary file
/// stays; failing again in the revert, the message says to run `exliar
/// recover`, which ends it.
#[test]
fn a_failed_apply_says_what_state_the_host_is_in() {
    let apply_schema = schema("apply-1.schema.json");
    let (_t, dir) = target_in_memory(DEBIAN);
    let original = files(&dir);
    // the first write operation after the transaction was on record
    let mut n = 1;
    let out = loop {
        let out = on_target(
            &["apply", "--yes", "--no-run", "--json"],
            HW_IDENTICAL,
            &dir,
        )
        .env("EXLIAR_TEST_FAIL_WRITE", format!("{n}:ENOSPC"))
        .output()
        .expect("apply");
        assert!(stderr(&out).contains("test fault"), "{}", stderr(&out));
        if json(&out)["host"] == "restored" {
            break out;
        }
        n += 1;
    };
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let doc = json(&out);
    assert_valid(&apply_schema, &doc, "failed apply");
    assert_eq!(doc["host"], "restored", "{doc}");
    assert_eq!(doc["restored"], true);
    assert!(doc["next"].is_null());
    assert!(
        stderr(&out).contains("No space left on device")
            && stderr(&out).contains("every file is back to its original"),
        "{}",
        stderr(&out)
    );
    assert_eq!(files(&dir), original);
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    assert_eq!(history(&dir).last().expect("a transaction").1, "failed");

    // the disk stays full: the revert fails too
    let out = on_target(
        &["apply", "--yes", "--no-run", "--json"],
        HW_IDENTICAL,
        &dir,
    )
    .env("EXLIAR_TEST_FAIL_WRITE", "110+:EROFS")
    .output()
    .expect("apply");
    assert_eq!(out.status.code(), Some(2));
    let doc = json(&out);
    assert_valid(&apply_schema, &doc, "failed apply, not reverted");
    assert_eq!(doc["host"], "partly-changed", "{doc}");
    assert_eq!(doc["restored"], false);
    assert_eq!(doc["next"], "exliar recover");
    assert!(
        stderr(&out).contains("partly changed") && stderr(&out).contains("`exliar recover`"),
        "{}",
        stderr(&out)
    );
    txn_cmd(&["recover", "--no-run"], &dir).assert().success();
    assert_eq!(files(&dir), original);
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
}

/// Temporary files a killed write leaves (`.NAME.exliar-tmp` beside a
/// journaled file, or in the store) are swept by `recover`.
#[test]
fn recover_sweeps_temporary_files() {
    let (_t, dir) = target_in_memory(DEBIAN);
    let original = files(&dir);
    let out = apply_crashing_at(HW_IDENTICAL, &dir, 3);
    assert!(stderr(&out).contains("test crash"), "{}", stderr(&out));
    let beside = dir.join("etc/initramfs-tools/.modules.exliar-tmp");
    std::fs::write(&beside, b"half").expect("write");
    let id = history(&dir)[0].0.clone();
    let in_store = dir
        .join("var/lib/exliar/txn")
        .join(&id)
        .join(".journal.json.exliar-tmp");
    std::fs::write(&in_store, b"{").expect("write");
    let building = dir.join("var/lib/exliar/txn/.new-20261204T150000Z");
    std::fs::create_dir(&building).expect("mkdir");
    txn_cmd(&["recover", "--no-run"], &dir).assert().success();
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
    assert_eq!(files(&dir), original);
}

/// The fixture targets the fault and kill tests run on.
const TARGETS: [(&str, &str); 2] = [
    (HW_IDENTICAL, "debian12-grub-intel"),
    (HW_SPLIT, "fedora40-bls-amd"),
];

const ERRNOS: [&str; 3] = ["ENOSPC", "EROFS", "EACCES"];

/// How one failing command must end: after it (and `recover` when its
/// message says so), the target is `expected` byte for byte, nothing of
/// exliar's temporary files is left, and the store still works.
fn settle(
    dir: &Path,
    out: &std::process::Output,
    what: &str,
    outcomes: &mut std::collections::BTreeMap<&'static str, usize>,
) {
    let err = stderr(out);
    if out.status.success() {
        *outcomes.entry("succeeded").or_default() += 1;
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{what}: {err}");
    if err.contains("exliar recover") {
        *outcomes.entry("recover needed").or_default() += 1;
        let r = txn_cmd(&["recover", "--no-run"], dir)
            .output()
            .expect("recover");
        assert_success(&r, &format!("{what}: recover after the fault"));
    } else {
        assert!(err.contains("Nothing was changed"), "{what}: {err}");
        *outcomes.entry("nothing changed").or_default() += 1;
    }
}

fn assert_clean(dir: &Path, what: &str) {
    let l = leftovers(dir);
    assert!(l.is_empty(), "{what}: left behind: {l:?}");
    let h = txn_cmd(&["history", "--json"], dir)
        .output()
        .expect("history");
    assert_success(&h, what);
    assert!(!stderr(&h).contains("skipped"), "{what}: {}", stderr(&h));
}

/// Fault injection: ENOSPC, EROFS and EACCES at every write operation
/// (create, write, fsync, rename, mkdir, unlink, rmdir, folder fsync) of
/// apply, rollback and recover (of an interrupted apply and of a rollback
/// whose regeneration failed), on two targets. Each case ends, after
/// `recover` when the message says so, byte-identical to the original (or
/// to the applied state where the command got past its fault), with no
/// temporary file, and the store usable (history, then a new apply or
/// rollback). Prints the counts.
#[test]
fn a_fault_at_every_write_leaves_a_known_state() {
    use std::collections::BTreeMap;
    let start = std::time::Instant::now();
    let mut cases: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut outcomes: BTreeMap<(&str, &'static str), usize> = BTreeMap::new();
    let apply = |hw: &str, dir: &Path| {
        on_target(&["apply", "--yes", "--no-run"], hw, dir)
            .output()
            .expect("apply")
    };
    for (hw, distro) in TARGETS {
        let (_t, dir) = target_in_memory(distro);
        let original = files(&dir);
        assert_success(&apply(hw, &dir), "reference apply");
        let applied = files(&dir);
        let fresh = |setup: &str| {
            let (t, dir) = target_in_memory(distro);
            match setup {
                "applied" => assert_success(&apply(hw, &dir), "setup apply"),
                "interrupted-apply" => {
                    let o = apply_crashing_at(hw, &dir, 6);
                    assert!(stderr(&o).contains("test crash"), "{}", stderr(&o));
                }
                "unfinished-rollback" => {
                    assert_success(&apply(hw, &dir), "setup apply");
                    let o = txn_cmd(&["rollback"], &dir)
                        .env("EXLIAR_TEST_RUNNER", "sleep:0,fail:*")
                        .output()
                        .expect("rollback");
                    assert!(!o.status.success(), "{}", stderr(&o));
                    assert_eq!(history(&dir)[0].1, "rolling-back");
                }
                _ => {}
            }
            (t, dir)
        };
        for (phase, setup) in [
            ("apply", "none"),
            ("rollback", "applied"),
            ("recover (interrupted apply)", "interrupted-apply"),
            ("recover (unfinished rollback)", "unfinished-rollback"),
        ] {
            for errno in ERRNOS {
                for n in 1.. {
                    let (_t, dir) = fresh(setup);
                    let mut cmd = match phase {
                        "apply" => on_target(&["apply", "--yes", "--no-run"], hw, &dir),
                        "rollback" => txn_cmd(&["rollback", "--no-run"], &dir),
                        _ => txn_cmd(&["recover", "--no-run"], &dir),
                    };
                    let out = cmd
                        .env("EXLIAR_TEST_FAIL_WRITE", format!("{n}:{errno}"))
                        .output()
                        .expect("run");
                    let what = format!("{distro} {phase} {errno} at write {n}");
                    if !stderr(&out).contains("test fault") {
                        assert_success(&out, &what);
                        break;
                    }
                    *cases.entry((phase, errno)).or_default() += 1;
                    let mut o = BTreeMap::new();
                    settle(&dir, &out, &what, &mut o);
                    for (k, v) in o {
                        *outcomes.entry((phase, k)).or_default() += v;
                    }
                    let now = files(&dir);
                    let status = history(&dir).last().map(|h| h.1.clone());
                    // applied: the apply got past its fault, or the rollback
                    // was refused before it started; else the original
                    if status.as_deref() == Some("applied") {
                        assert!(!phase.starts_with("recover"), "{what}");
                        assert_eq!(now, applied, "{what}:\n{}", tree_diff(&applied, &now));
                    } else {
                        assert_eq!(now, original, "{what}:\n{}", tree_diff(&original, &now));
                    }
                    assert_clean(&dir, &what);
                    // the store takes a new transaction (or the rollback)
                    if status.as_deref() == Some("applied") {
                        let o = txn_cmd(&["rollback", "--no-run"], &dir)
                            .output()
                            .expect("rb");
                        assert_success(&o, &format!("{what}: rollback afterwards"));
                        assert_eq!(files(&dir), original, "{what}: rollback afterwards");
                    } else {
                        assert_success(&apply(hw, &dir), &format!("{what}: apply afterwards"));
                        assert_eq!(files(&dir), applied, "{what}: apply afterwards");
                    }
                }
            }
        }
    }
    let total: usize = cases.values().sum();
    eprintln!(
        "fault injection: {total} cases on {} targets",
        TARGETS.len()
    );
    for ((phase, errno), n) in &cases {
        eprintln!("  {phase:<30} {errno:<7} {n} write operations failed");
    }
    for ((phase, o), n) in &outcomes {
        eprintln!("  {phase:<30} then {o}: {n}");
    }
    eprintln!("  in {:.1}s", start.elapsed().as_secs_f64());
    assert!(total > 500, "only {total} cases");
}

/// The disk stays broken: EROFS from the N-th write operation on (so the
/// automatic revert fails too), at every N of apply and rollback. The
/// message says `exliar recover` whenever the host is not as before; once
/// the disk is back, recover ends it byte-identical, with nothing left.
#[test]
fn a_lasting_fault_is_finished_by_recover() {
    use std::collections::BTreeMap;
    let (hw, distro) = TARGETS[0];
    let apply = |dir: &Path| {
        on_target(&["apply", "--yes", "--no-run"], hw, dir)
            .output()
            .expect("apply")
    };
    let (_t, dir) = target_in_memory(distro);
    let original = files(&dir);
    assert_success(&apply(&dir), "reference apply");
    let applied = files(&dir);
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for phase in ["apply", "rollback"] {
        for n in 1.. {
            let (_t, dir) = target_in_memory(distro);
            let mut cmd = if phase == "apply" {
                on_target(&["apply", "--yes", "--no-run"], hw, &dir)
            } else {
                assert_success(&apply(&dir), "setup apply");
                txn_cmd(&["rollback", "--no-run"], &dir)
            };
            let out = cmd
                .env("EXLIAR_TEST_FAIL_WRITE", format!("{n}+:EROFS"))
                .output()
                .expect("run");
            let what = format!("{phase} EROFS from write {n} on");
            if !stderr(&out).contains("test fault") {
                assert_success(&out, &what);
                break;
            }
            assert_eq!(out.status.code(), Some(2), "{what}: {}", stderr(&out));
            let says_recover = stderr(&out).contains("exliar recover");
            let before = if phase == "apply" {
                &original
            } else {
                &applied
            };
            if !says_recover {
                assert!(stderr(&out).contains("Nothing was changed"), "{what}");
                assert_eq!(&files(&dir), before, "{what}: said nothing was changed");
            }
            *counts
                .entry((
                    phase,
                    if says_recover {
                        "recover needed"
                    } else {
                        "nothing changed"
                    },
                ))
                .or_default() += 1;
            // the disk is back
            let r = txn_cmd(&["recover", "--no-run"], &dir)
                .output()
                .expect("recover");
            assert_success(&r, &what);
            let now = files(&dir);
            let expected = match history(&dir).last().map(|h| h.1.as_str()) {
                Some("applied") => &applied,
                _ => &original,
            };
            assert_eq!(&now, expected, "{what}:\n{}", tree_diff(expected, &now));
            assert_clean(&dir, &what);
        }
    }
    let total: usize = counts.values().sum();
    eprintln!("lasting EROFS: {total} cases on {distro}");
    for ((phase, o), n) in &counts {
        eprintln!("  {phase:<9} then {o}: {n}");
    }
    assert!(total > 100, "only {total} cases");
}
