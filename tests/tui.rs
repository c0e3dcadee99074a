//! `exliar tui` driven through its library API with ratatui's TestBackend:
//! every page on three fixture hosts at 80×24 and 160×48 (insta snapshots),
//! and key sequences that choose a GPU, apply its plan into a temporary
//! target (compared with `exliar apply`), roll it back, filter, open help
//! and quit.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use exliar::tui::{App, Options, Page, view};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::KeyCode;

use common::{copy_tree, exliar, files, host, tree_diff};

/// The two-GPU desktop, the identical-cards host, the laptop whose NVIDIA
/// GPU is a 3D controller.
const HOSTS: [(&str, &str); 3] = [
    ("desktop", "hw10-ryzen5000g-cezanne-rx580-rtx3060"),
    ("identical", "hw23-ryzen1-x370-dual-identical-rx580"),
    ("laptop", "hw21-laptop-kabylake-u-mx150-optimus-dirty-group"),
];

/// The distribution the plans are made for (a copy, so that it is writable).
const DISTRO: &str = "debian12-grub-intel";

/// The hardware root as a relative path (cargo runs tests in the package
/// folder): the tab bar shows it, and it is the same in every checkout.
fn rel_host(name: &str) -> PathBuf {
    PathBuf::from("tests/fixtures/hosts").join(name)
}

fn opts(hw: &str, target: &Path) -> Options {
    let mut o = Options::new(rel_host(hw));
    o.target = Some(target.to_path_buf());
    o.connect = "test:///default".into();
    o.colour = false;
    o.exliar = PathBuf::from(env!("CARGO_BIN_EXE_exliar"));
    // The targets are fixture copies: there is no update-initramfs to run
    // in them (the CLI comparison passes --no-run too).
    o.run_commands = false;
    // The status line's hint for users is not part of the snapshots.
    o.privileged = true;
    o
}

fn distro_copy() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("target");
    copy_tree(&host(DISTRO), &dir);
    (t, dir)
}

/// The screen as text, one line per row, trailing blanks cut; the target's
/// temporary path replaced.
fn screen(app: &App, w: u16, h: u16, target: &Path) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    t.draw(|f| view::draw(f, app)).expect("draw");
    let buf = t.backend().buffer();
    let mut s = String::new();
    for y in 0..h {
        let mut line = String::new();
        for x in 0..w {
            line.push_str(buf[(x, y)].symbol());
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    let t = target.display().to_string();
    // Same width, so that the frame stays aligned.
    s.replace(&t, &format!("{:<w$}", "<target>", w = t.len()))
}

fn goto(app: &mut App, p: Page) {
    let n = Page::ALL.iter().position(|x| *x == p).expect("page") + 1;
    app.key(KeyCode::Char(
        char::from_digit(n as u32, 10).expect("digit"),
    ));
    assert!(app.wait_idle(Duration::from_secs(60)), "a job did not end");
}

fn virsh() -> bool {
    common::tool_or_skip("/usr/bin/virsh", "libvirt-clients").is_some()
}

#[test]
fn every_page_on_three_hosts_at_two_sizes() {
    let with_vms = virsh();
    for (label, hw) in HOSTS {
        let (_t, target) = distro_copy();
        let mut app = App::new(opts(hw, &target));
        for page in Page::ALL {
            if page == Page::Vms && !with_vms {
                continue;
            }
            goto(&mut app, page);
            for (w, h) in [(80u16, 24u16), (160, 48)] {
                let name = format!("{label}-{}-{w}x{h}", page.title().to_lowercase());
                insta::assert_snapshot!(name, screen(&app, w, h, &target));
            }
        }
    }
}

#[test]
fn choose_apply_compare_with_cli_then_roll_back() {
    let hw = HOSTS[0].1;
    let (_t1, tui_target) = distro_copy();
    let (_t2, cli_target) = distro_copy();
    let before = files(&tui_target);
    let mut app = App::new(opts(hw, &tui_target));
    goto(&mut app, Page::Isolate);
    // The recommended card is preselected; choose the other, then back.
    let rec = app.gpus()[app.isolate.gpu].address;
    app.key(KeyCode::Up);
    app.key(KeyCode::Down);
    app.key(KeyCode::Up);
    let chosen = app.gpus()[app.isolate.gpu].address;
    let s = screen(&app, 160, 48, &tui_target);
    if chosen != rec {
        assert!(s.contains(&format!("Plan: isolate {chosen}")), "{s}");
    }
    app.key(KeyCode::Down);
    assert_eq!(app.gpus()[app.isolate.gpu].address, rec);
    app.key(KeyCode::Char('a')); // by address
    let s = screen(&app, 160, 48, &tui_target);
    assert!(s.contains("[x] by address"), "{s}");
    assert!(s.contains(&format!("Plan: isolate {rec}")), "{s}");
    assert!(s.contains("vfio-pci"), "{s}");

    // A wrong answer changes nothing.
    app.key(KeyCode::Char('A'));
    assert!(screen(&app, 80, 24, &tui_target).contains("Type yes"));
    app.type_str("no");
    app.key(KeyCode::Enter);
    assert!(app.wait_idle(Duration::from_secs(60)));
    assert_eq!(
        tree_diff(&before, &files(&tui_target)),
        "",
        "changed without a yes"
    );

    app.key(KeyCode::Char('A'));
    app.type_str("yes");
    app.key(KeyCode::Enter);
    assert!(app.wait_idle(Duration::from_secs(120)), "apply did not end");
    let s = screen(&app, 160, 48, &tui_target);
    assert!(s.contains("Applied transaction"), "{s}");
    assert!(
        s.contains("$ update-initramfs"),
        "the commands are shown: {s}"
    );

    let out = exliar()
        .args(["apply", "--yes", "--no-run", "--by-address", "--gpu"])
        .arg(rec.to_string())
        .arg("--root")
        .arg(host(hw))
        .arg("--target")
        .arg(&cli_target)
        .output()
        .expect("exliar apply");
    common::assert_success(&out, "exliar apply");
    let tui_files = files(&tui_target);
    assert_ne!(tree_diff(&before, &tui_files), "", "the TUI wrote nothing");
    assert_eq!(
        tree_diff(&files(&cli_target), &tui_files),
        "",
        "the TUI's apply differs from the CLI's"
    );

    // History: the transaction with its diff; roll it back.
    goto(&mut app, Page::History);
    let s = screen(&app, 160, 48, &tui_target);
    assert!(s.contains("applied"), "{s}");
    assert!(s.contains("+softdep nvidia pre: vfio-pci"), "the diff: {s}");
    app.key(KeyCode::Char('R'));
    let s = screen(&app, 160, 48, &tui_target);
    assert!(s.contains("restores this"), "the preview: {s}");
    assert!(
        s.contains("removed (exliar created it)"),
        "what goes away: {s}"
    );
    assert!(
        s.contains("--- /etc/initramfs-tools/modules"),
        "what is restored: {s}"
    );
    app.type_str("yes");
    app.key(KeyCode::Enter);
    assert!(
        app.wait_idle(Duration::from_secs(120)),
        "rollback did not end"
    );
    let s = screen(&app, 160, 48, &tui_target);
    assert!(s.contains("Rolled back"), "{s}");
    assert_eq!(
        tree_diff(&before, &files(&tui_target)),
        "",
        "not byte-identical after the rollback"
    );
    // And the plan is there to apply again.
    goto(&mut app, Page::Isolate);
    let s = screen(&app, 160, 48, &tui_target);
    assert!(s.contains(&format!("Plan: isolate {rec}")), "{s}");
}

#[test]
fn rollback_refuses_a_foreign_edit_unless_forced() {
    let hw = HOSTS[1].1;
    let (_t, target) = distro_copy();
    let before = files(&target);
    let mut app = App::new(opts(hw, &target));
    goto(&mut app, Page::Isolate);
    app.key(KeyCode::Char('A'));
    app.type_str("yes");
    app.key(KeyCode::Enter);
    assert!(app.wait_idle(Duration::from_secs(120)));
    // Someone edits a file exliar manages.
    let grub = target.join("etc/initramfs-tools/modules");
    let mut text = std::fs::read_to_string(&grub).expect("modules");
    text.push_str("# edited by hand\n");
    std::fs::write(&grub, &text).expect("write");
    goto(&mut app, Page::History);
    app.key(KeyCode::Char('R'));
    app.type_str("yes");
    app.key(KeyCode::Enter);
    assert!(app.wait_idle(Duration::from_secs(120)));
    let s = screen(&app, 160, 48, &target);
    assert!(s.contains("refused or failed"), "{s}");
    assert!(
        s.contains("edited by hand"),
        "the foreign edit is shown: {s}"
    );
    assert_eq!(std::fs::read_to_string(&grub).expect("modules"), text);
    app.key(KeyCode::Char('f'));
    app.key(KeyCode::Char('R'));
    app.type_str("yes");
    app.key(KeyCode::Enter);
    assert!(app.wait_idle(Duration::from_secs(120)));
    assert!(screen(&app, 160, 48, &target).contains("Rolled back"));
    assert_eq!(tree_diff(&before, &files(&target)), "");
}

#[test]
fn filter_help_and_quit() {
    let (_t, target) = distro_copy();
    let mut app = App::new(opts(HOSTS[0].1, &target));
    let all = screen(&app, 160, 48, &target);
    assert!(all.contains("SMBus"), "{all}");
    app.key(KeyCode::Char('/'));
    app.type_str("audio");
    app.key(KeyCode::Enter);
    let s = screen(&app, 160, 48, &target);
    assert!(s.contains("filter: audio"), "{s}");
    assert!(s.contains("Audio"), "{s}");
    assert!(!s.contains("SMBus"), "the filter hides other devices: {s}");
    // Esc in the filter clears it; q then quits.
    app.key(KeyCode::Char('/'));
    app.key(KeyCode::Esc);
    assert!(screen(&app, 160, 48, &target).contains("SMBus"));
    app.key(KeyCode::Char('/'));
    app.type_str("no such device");
    app.key(KeyCode::Enter);
    assert!(screen(&app, 80, 24, &target).contains("No device matches"));

    app.key(KeyCode::Char('?'));
    let s = screen(&app, 80, 24, &target);
    assert!(s.contains("Keys (any key closes)"), "{s}");
    assert!(s.contains("filter the devices"), "{s}");
    app.key(KeyCode::Esc);
    assert!(!app.help && !app.quit);
    app.key(KeyCode::Char('q'));
    assert!(app.quit);
}

#[test]
fn ctrl_c_quits_from_a_prompt_and_the_filter() {
    use ratatui::crossterm::event::{Event, KeyEvent, KeyModifiers};
    let ctrl_c = Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    let (_t, target) = distro_copy();
    let mut app = App::new(opts(HOSTS[0].1, &target));
    app.key(KeyCode::Char('/'));
    app.on_event(&ctrl_c);
    assert!(app.quit);
    let mut app = App::new(opts(HOSTS[0].1, &target));
    goto(&mut app, Page::Isolate);
    app.key(KeyCode::Char('A'));
    assert!(app.prompt.is_some());
    app.on_event(&ctrl_c);
    assert!(app.quit);
}

#[test]
fn check_page_shows_evidence_and_runs_again() {
    let (_t, target) = distro_copy();
    let mut app = App::new(opts(HOSTS[2].1, &target));
    goto(&mut app, Page::Check);
    let n = app.check.data.as_ref().expect("checks").report.checks.len();
    assert!(n > 5, "{n} checks");
    for _ in 0..n {
        app.key(KeyCode::Down);
    }
    assert_eq!(app.check.sel, n - 1);
    let s = screen(&app, 160, 48, &target);
    assert!(s.contains("Selected check"), "{s}");
    app.key(KeyCode::Char('r'));
    assert!(screen(&app, 80, 24, &target).contains("running the checks"));
    assert!(app.wait_idle(Duration::from_secs(60)));
    assert!(screen(&app, 80, 24, &target).contains("Checks run again"));
}

/// A target this process cannot write: `/` for a user, a read-only tmpfs
/// for root (root may write anywhere else).
struct ReadOnly {
    _dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl ReadOnly {
    fn new() -> Option<ReadOnly> {
        if !rustix_root() {
            return Some(ReadOnly {
                _dir: None,
                path: PathBuf::from("/"),
            });
        }
        let d = tempfile::tempdir().expect("tempdir");
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "ro", "tmpfs"])
            .arg(d.path())
            .status();
        if !matches!(st, Ok(s) if s.success()) {
            assert!(!common::in_ci(), "mount -o ro tmpfs failed under CI");
            eprintln!("skipping: cannot mount a read-only tmpfs");
            return None;
        }
        Some(ReadOnly {
            path: d.path().to_path_buf(),
            _dir: Some(d),
        })
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if self._dir.is_some() {
            let _ = std::process::Command::new("umount")
                .arg(&self.path)
                .status();
        }
    }
}

fn rustix_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn read_only_says_so_in_place() {
    let Some(ro) = ReadOnly::new() else { return };
    let mut app = App::new(opts(HOSTS[0].1, &ro.path));
    assert!(
        app.needs_root().is_some(),
        "{} is writable",
        ro.path.display()
    );
    goto(&mut app, Page::Isolate);
    let s = screen(&app, 160, 48, &ro.path);
    assert!(s.contains("read-only"), "{s}");
    assert!(
        s.contains("Plan: isolate") || s.contains("REFUSED"),
        "the plan (or refusal) is still shown: {s}"
    );
    app.key(KeyCode::Char('A'));
    assert!(app.prompt.is_none(), "no prompt for what cannot be done");
    let s = screen(&app, 160, 48, &ro.path);
    assert!(s.contains("needs root"), "said on the status line: {s}");
}

#[test]
fn vm_form_previews_with_the_cli_and_defines_nothing() {
    if !virsh() {
        return;
    }
    let (_t, target) = distro_copy();
    let mut app = App::new(opts(HOSTS[0].1, &target));
    goto(&mut app, Page::Vms);
    let s = screen(&app, 160, 48, &target);
    assert!(
        s.contains("test") && s.contains("running"),
        "test:///default's domain: {s}"
    );
    app.key(KeyCode::Char('c'));
    for _ in 0..6 {
        app.key(KeyCode::Backspace);
    }
    app.type_str("tuivm");
    app.key(KeyCode::Tab);
    for _ in 0..12 {
        app.key(KeyCode::Backspace);
    }
    app.type_str("linux");
    // F2 before a preview is refused.
    app.key(KeyCode::F(2));
    assert!(app.prompt.is_none());
    app.key(KeyCode::Enter);
    assert!(app.wait_idle(Duration::from_secs(60)));
    let s = screen(&app, 160, 48, &target);
    assert!(
        s.contains("$ exliar vm create tuivm --profile linux"),
        "{s}"
    );
    // What the CLI says for this host (its fixture has no OVMF): shown as is.
    assert!(s.contains("refused") || s.contains("<domain"), "{s}");
    app.key(KeyCode::Esc);
    assert!(app.vms.form.is_none());
    let list = std::process::Command::new("virsh")
        .args(["-c", "test:///default", "list", "--all", "--name"])
        .output()
        .expect("virsh");
    assert!(!String::from_utf8_lossy(&list.stdout).contains("tuivm"));
}

/// Runtime page: bind the card to vfio-pci and give it back, through the
/// simulated kernel on a copy of the host (the kernel's effects as files;
/// no real device can move here).
#[test]
fn runtime_binds_and_unbinds_the_card() {
    use exliar::host::sim::SimKernel;
    let (_t, hw) = common::fixture_copy(HOSTS[0].1, "hw");
    let (_t2, target) = distro_copy();
    let mut o = opts(HOSTS[0].1, &target);
    o.root = hw.clone();
    o.kernel = Some(exliar::tui::KernelFactory(std::sync::Arc::new(|root| {
        Ok(Box::new(SimKernel::new(root)?) as Box<dyn exliar::host::kernel::Kernel>)
    })));
    let mut app = App::new(o);
    goto(&mut app, Page::Runtime);
    let card = app.gpus()[app.runtime.sel].address;
    app.key(KeyCode::Char('b'));
    assert!(app.wait_idle(Duration::from_secs(60)));
    let s = screen(&app, 160, 48, &target);
    assert!(s.contains("bind: done, verified"), "{s}");
    assert!(
        s.contains(&format!("{card}  vfio-pci")),
        "the card's functions now: {s}"
    );
    assert!(s.contains("held by exliar"), "{s}");
    let driver = |a: &str| {
        std::fs::read_link(hw.join("sys/bus/pci/devices").join(a).join("driver"))
            .ok()
            .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()))
    };
    assert_eq!(driver(&card.to_string()).as_deref(), Some("vfio-pci"));
    app.key(KeyCode::Char('u'));
    assert!(app.wait_idle(Duration::from_secs(60)));
    let s = screen(&app, 160, 48, &target);
    assert!(s.contains("unbind: done, verified"), "{s}");
    assert!(!s.contains("held by exliar"), "{s}");
    assert_eq!(
        driver(&card.to_string()),
        None,
        "back to no driver, as before"
    );
}

#[test]
fn without_a_terminal_it_says_so() {
    let out = exliar()
        .args(["tui", "--root"])
        .arg(host(HOSTS[0].1))
        .output()
        .expect("exliar tui");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        common::stderr(&out).contains("exliar tui needs a terminal"),
        "{}",
        common::stderr(&out)
    );
}
