//! The transaction engine under broken stores, links, failing commands and
//! I/O errors (issue #11, section 1).

mod common;
mod txn_support;

use common::*;
use txn_support::*;

const DEBIAN: &str = "debian12-grub-intel";

/// A transaction folder without a journal (what a kill in the first
/// milliseconds of an old apply left) is reported and skipped: history,
/// status, apply, rollback and recover all work.
#[test]
fn txn_folder_without_journal_is_reported_and_skipped() {
    let (_t, dir) = target(DEBIAN);
    let empty = dir.join("var/lib/exliar/txn/20261204T150000Z");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let out = txn_cmd(&["history"], &dir).output().expect("history");
    assert_success(&out, "history");
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
    let (_h, hw) = target(HW_IDENTICAL);
    std::fs::create_dir_all(hw.join("var/lib/exliar/txn/20261204T150000Z")).expect("mkdir");
    let out = exliar()
        .args(["status", "--json", "--root"])
        .arg(&hw)
        .output()
        .expect("status");
    assert_success(&out, "status");
    assert!(
        stderr(&out).contains("20261204T150000Z"),
        "{}",
        stderr(&out)
    );
    let doc = json(&out);
    assert_valid(&schema("status-1.schema.json"), &doc, "status --json");
    assert!(doc["unfinished_transaction"].is_null(), "{doc}");
    let out = txn_cmd(&["recover", "--no-run"], &dir)
        .output()
        .expect("recover");
    assert_success(&out, "recover");
    assert!(
        stdout(&out).contains("Nothing to recover"),
        "{}",
        stdout(&out)
    );
    let out = txn_cmd(&["rollback", "--no-run"], &dir)
        .output()
        .expect("rollback");
    assert_success(&out, "rollback");
    assert_eq!(history(&dir)[0].1, "rolled-back");
    // a garbled journal: the same
    std::fs::write(empty.join("journal.json"), b"{\"schema\": ").expect("write");
    let out = txn_cmd(&["history"], &dir).output().expect("history");
    assert_success(&out, "history");
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
    let (_t, dir) = target(DEBIAN);
    let original = files(&dir);
    on_target(&["apply", "--yes", "--no-run"], HW_IDENTICAL, &dir)
        .assert()
        .success();
    let out = txn_cmd(&["rollback"], &dir).output().expect("rollback");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("exliar recover"), "{}", stderr(&out));
    assert_eq!(history(&dir)[0].1, "rolling-back");
    assert_eq!(files(&dir), original, "the files are restored");
    // another rollback is refused for the unfinished one, not for "foreign changes"
    let out = txn_cmd(&["rollback", "--no-run"], &dir)
        .output()
        .expect("rollback");
    assert!(
        stderr(&out).contains("unfinished") && stderr(&out).contains("exliar recover"),
        "{}",
        stderr(&out)
    );
    let out = txn_cmd(&["recover", "--no-run"], &dir)
        .output()
        .expect("recover");
    assert_success(&out, "recover");
    assert!(
        stdout(&out).contains("Rollback finished"),
        "{}",
        stdout(&out)
    );
    assert_eq!(history(&dir)[0].1, "rolled-back");
    assert_eq!(files(&dir), original);
    assert!(leftovers(&dir).is_empty(), "{:?}", leftovers(&dir));
}

/// A symlinked /etc/modprobe.d is refused before anything is written (no
/// journal); recover of a transaction interrupted over such a folder
/// succeeds (it never wrote through the link).
#[test]
fn symlinked_folder_is_refused_up_front_and_recover_never_sticks() {
    let (_t, dir) = target(DEBIAN);
    // the Debian tree has no /etc/modprobe.d: make it a link to a folder
    std::fs::create_dir(dir.join("etc/modprobe.real")).expect("mkdir");
    std::os::unix::fs::symlink("modprobe.real", dir.join("etc/modprobe.d")).expect("ln");
    let original = files(&dir);
    let out = on_target(&["apply", "--yes", "--no-run"], HW_IDENTICAL, &dir)
        .output()
        .expect("apply");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("etc/modprobe.d")
            && err.contains("symbolic link")
            && err.contains("Nothing was changed"),
        "{err}"
    );
    assert_eq!(files(&dir), original);
    assert!(history(&dir).is_empty(), "a journal was created");
    txn_cmd(&["recover", "--no-run"], &dir).assert().success();

    // Interrupted (debug hook) at every step, then /etc/modprobe.d made a
    // link before recover: recover never writes through it, and ends.
    let mut points = 0;
    for k in 1..100 {
        let (_t2, dir) = target(DEBIAN);
        let original = files(&dir);
        let out = on_target(&["apply", "--yes", "--no-run"], HW_IDENTICAL, &dir)
            .env("EXLIAR_TEST_CRASH_AT", k.to_string())
            .output()
            .expect("apply");
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
    let (_t, dir) = target(DEBIAN);
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
    let (_t, dir) = target(DEBIAN);
    assert!(!dir.join("var/lib/exliar").exists());
    let out = txn_cmd(&["history"], &dir).output().expect("history");
    assert_success(&out, "history");
    assert!(stdout(&out).contains("No transactions"), "{}", stdout(&out));
    assert!(
        !dir.join("var/lib/exliar").exists(),
        "history created the state folder"
    );
    let (_h, hw) = target(HW_IDENTICAL);
    let out = exliar()
        .args(["status", "--root"])
        .arg(&hw)
        .output()
        .expect("status");
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
}
