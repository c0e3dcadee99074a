use super::*;
use crate::bind::MemoryState;
use crate::host::sim::{SimDevice, SimKernel, SimTree};

fn addr(s: &str) -> PciAddress {
    PciAddress::parse(s).expect("test address")
}

const GPU: &str = "0000:01:00.0";
const AUDIO: &str = "0000:01:00.1";

/// The host's own display (boot VGA) plus the card to hand over: VGA and
/// HDMI audio in one group, on their host drivers.
fn host_with_a_card() -> SimTree {
    SimTree::new()
        .device(
            SimDevice::new(addr("0000:00:02.0"), 0x030000, 0x8086, 0x3e92)
                .driver("i915")
                .group(1)
                .boot_vga(),
        )
        .device(
            SimDevice::new(addr(GPU), 0x030000, 0x1234, 0x1111)
                .driver("bochs-drm")
                .group(3),
        )
        .device(
            SimDevice::new(addr(AUDIO), 0x040300, 0x1234, 0x2222)
                .driver("snd_hda_intel")
                .group(3),
        )
}

fn drivers(k: &SimKernel) -> Vec<Option<String>> {
    [GPU, AUDIO].iter().map(|a| k.driver(&addr(a))).collect()
}

fn original() -> Vec<Option<String>> {
    vec![Some("bochs-drm".into()), Some("snd_hda_intel".into())]
}

#[test]
fn dynamic_takes_the_card_and_gives_it_back() -> std::io::Result<()> {
    let t = tempfile::tempdir()?;
    host_with_a_card().build(t.path())?;
    let k = SimKernel::new(t.path())?;
    let host = HostRoot::new(t.path());
    let mut st = MemoryState(Vec::new());
    let fns = vec![addr(GPU), addr(AUDIO)];
    let mut steps = Vec::new();
    act(&host, &k, &mut st, &Action::Take(fns.clone()), &mut steps)
        .map_err(|e| std::io::Error::other(e.1))?;
    assert_eq!(
        drivers(&k),
        vec![Some("vfio-pci".to_string()), Some("vfio-pci".to_string())]
    );
    assert_eq!(k.vfio_nodes(), [3]);
    assert!(steps.iter().any(|s| s.what.contains("bind")), "{steps:?}");
    act(&host, &k, &mut st, &Action::GiveBack(fns), &mut steps)
        .map_err(|e| std::io::Error::other(e.1))?;
    assert_eq!(drivers(&k), original());
    assert!(k.vfio_nodes().is_empty());
    // every step timed
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert!(steps.iter().all(|s| s.secs >= 0.0));
    Ok(())
}

/// A kernel write failing at every point of the take: the start is refused
/// (fatal) and every function is back on its driver; then the give-back
/// (what `release end` runs) finds nothing left to do wrong.
#[test]
fn a_failure_anywhere_in_the_take_leaves_the_host_as_it_was() -> std::io::Result<()> {
    // how many kernel operations a take makes
    let ops = {
        let t = tempfile::tempdir()?;
        host_with_a_card().build(t.path())?;
        let k = SimKernel::new(t.path())?;
        let mut st = MemoryState(Vec::new());
        act(
            &HostRoot::new(t.path()),
            &k,
            &mut st,
            &Action::Take(vec![addr(GPU), addr(AUDIO)]),
            &mut Vec::new(),
        )
        .map_err(|e| std::io::Error::other(e.1))?;
        k.ops().len()
    };
    assert!(ops >= 6, "{ops}");
    for n in 0..ops {
        let t = tempfile::tempdir()?;
        host_with_a_card().build(t.path())?;
        let k = SimKernel::new(t.path())?;
        k.fail_op(n);
        let host = HostRoot::new(t.path());
        let mut st = MemoryState(Vec::new());
        let r = act(
            &host,
            &k,
            &mut st,
            &Action::Take(vec![addr(GPU), addr(AUDIO)]),
            &mut Vec::new(),
        );
        match r {
            Err((fatal, msg)) => {
                assert!(fatal, "op {n}: {msg}");
                assert_eq!(drivers(&k), original(), "op {n}: {msg}");
                assert_eq!(k.driver_override(&addr(GPU)), None, "op {n}");
            }
            // an operation whose failure the bind works around (a module
            // already loaded, …): then it must have worked
            Ok(()) => assert_eq!(
                drivers(&k),
                vec![Some("vfio-pci".to_string()), Some("vfio-pci".to_string())],
                "op {n}"
            ),
        }
    }
    Ok(())
}

#[test]
fn the_host_using_the_card_refuses_the_take() -> std::io::Result<()> {
    let t = tempfile::tempdir()?;
    host_with_a_card().build(t.path())?;
    let root = t.path();
    std::fs::create_dir_all(root.join(format!("sys/bus/pci/devices/{GPU}/drm/card1")))?;
    std::fs::create_dir_all(root.join(format!("sys/bus/pci/devices/{GPU}/drm/renderD129")))?;
    std::fs::create_dir_all(root.join("proc/4242/fd"))?;
    std::fs::write(root.join("proc/4242/comm"), "Xorg\n")?;
    std::os::unix::fs::symlink("/dev/dri/card1", root.join("proc/4242/fd/7"))?;
    std::fs::create_dir_all(root.join("proc/4243/fd"))?;
    std::os::unix::fs::symlink("/dev/null", root.join("proc/4243/fd/0"))?;
    let k = SimKernel::new(root)?;
    let host = HostRoot::new(root);
    let r = act(
        &host,
        &k,
        &mut MemoryState(Vec::new()),
        &Action::Take(vec![addr(GPU), addr(AUDIO)]),
        &mut Vec::new(),
    );
    let Err((true, msg)) = r else {
        panic!("not refused: {r:?}")
    };
    assert!(
        msg.contains("process 4242 (Xorg) holds /dev/dri/card1"),
        "{msg}"
    );
    assert!(k.ops().is_empty(), "nothing was written: {:?}", k.ops());
    assert_eq!(drivers(&k), original());
    Ok(())
}

/// With debugfs readable, the DRM core's own client list names the users (no
/// pass over /proc: a process there holding the node is not even looked at).
#[test]
fn the_drm_client_list_names_the_users_when_debugfs_is_there() -> std::io::Result<()> {
    let t = tempfile::tempdir()?;
    host_with_a_card().build(t.path())?;
    let root = t.path();
    std::fs::create_dir_all(root.join(format!("sys/bus/pci/devices/{GPU}/drm/card1")))?;
    std::fs::create_dir_all(root.join(format!("sys/bus/pci/devices/{GPU}/drm/renderD129")))?;
    std::fs::create_dir_all(root.join("sys/kernel/debug/dri/1"))?;
    std::fs::write(
        root.join("sys/kernel/debug/dri/1/clients"),
        "             command  tgid dev master a   uid      magic\n\
                        gnome-shell  1234   1   y    y  1000          0\n\
                     my app  4321 129   n    n  1000          0\n",
    )?;
    std::fs::create_dir_all(root.join("proc/4242/fd"))?;
    std::fs::write(root.join("proc/4242/comm"), "Xorg\n")?;
    std::os::unix::fs::symlink("/dev/dri/card1", root.join("proc/4242/fd/7"))?;
    let host = HostRoot::new(root);
    assert_eq!(
        drm_users(&host, &[addr(GPU), addr(AUDIO)]),
        [
            (
                1234,
                "gnome-shell".to_string(),
                "/dev/dri/card1".to_string()
            ),
            (4321, "my app".to_string(), "/dev/dri/card1".to_string()),
        ]
    );
    // an empty list: nobody, whatever /proc says
    std::fs::write(
        root.join("sys/kernel/debug/dri/1/clients"),
        "             command  tgid dev master a   uid      magic\n",
    )?;
    assert_eq!(drm_users(&host, &[addr(GPU)]), []);
    // unreadable as a client list: /proc is looked at
    std::fs::write(root.join("sys/kernel/debug/dri/1/clients"), "garbage\n")?;
    assert_eq!(
        drm_users(&host, &[addr(GPU)]),
        [(4242, "Xorg".to_string(), "/dev/dri/card1".to_string())]
    );
    Ok(())
}

#[test]
fn drm_client_lists_of_old_and_new_kernels_parse() {
    // 6.1 (as Debian 12's kernel prints it in the real-kernel tier): command pid dev master a uid magic
    let v61 = "             command   pid dev master a   uid      magic\n                Xorg   812   0   y    y     0          0\n";
    assert_eq!(
        parse_drm_clients(v61),
        Some(vec![(812, "Xorg".to_string())])
    );
    // 6.12 adds the client's name and id
    let v612 = "             command  tgid dev master a   uid      magic                                name                   id\n         kwin_wayland  1502   0   y    y  1000          0                            <unset>                    9\n            <unknown>    77 128   n    n     0          0                            <unset>                   10\n";
    assert_eq!(
        parse_drm_clients(v612),
        Some(vec![
            (1502, "kwin_wayland".to_string()),
            (77, "<unknown>".to_string())
        ])
    );
    assert_eq!(parse_drm_clients("garbage"), None);
    assert_eq!(parse_drm_clients(""), None);
    assert_eq!(
        parse_drm_clients("command tgid dev\nno numbers here\n"),
        None
    );
}

#[test]
fn boot_mode_verifies_and_warns() -> std::io::Result<()> {
    let t = tempfile::tempdir()?;
    host_with_a_card().build(t.path())?;
    let k = SimKernel::new(t.path())?;
    let r = act(
        &HostRoot::new(t.path()),
        &k,
        &mut MemoryState(Vec::new()),
        &Action::Verify(vec![addr(GPU)]),
        &mut Vec::new(),
    );
    let Err((false, msg)) = r else {
        panic!("{r:?}")
    };
    assert!(
        msg.contains("0000:01:00.0 (bochs-drm)") && msg.contains("boot isolation"),
        "{msg}"
    );
    assert!(k.ops().is_empty());
    Ok(())
}

#[test]
fn what_the_hook_does_per_phase_and_mode() {
    let f = vec![addr(GPU), addr(AUDIO)];
    let dynamic = Some((Handover::Dynamic, f.clone()));
    let boot = Some((Handover::Boot, f.clone()));
    let nocard = Some((Handover::Dynamic, Vec::new()));
    assert_eq!(decide("prepare", "begin", None), Action::Nothing);
    assert_eq!(
        decide("prepare", "begin", dynamic.as_ref()),
        Action::Take(f.clone())
    );
    assert_eq!(
        decide("release", "end", dynamic.as_ref()),
        Action::GiveBack(f.clone())
    );
    assert_eq!(decide("started", "begin", dynamic.as_ref()), Action::Log);
    assert_eq!(decide("stopped", "end", dynamic.as_ref()), Action::Log);
    assert_eq!(
        decide("prepare", "begin", boot.as_ref()),
        Action::Verify(f.clone())
    );
    assert_eq!(decide("release", "end", boot.as_ref()), Action::Log);
    assert_eq!(decide("migrate", "begin", boot.as_ref()), Action::Nothing);
    assert_eq!(decide("prepare", "begin", nocard.as_ref()), Action::Log);
    let single = Some((Handover::SingleGpu, f.clone()));
    assert_eq!(
        decide("prepare", "begin", single.as_ref()),
        Action::HandOver(f.clone())
    );
    assert_eq!(
        decide("release", "end", single.as_ref()),
        Action::DisplayBack
    );
    assert_eq!(decide("started", "begin", single.as_ref()), Action::Log);
    assert_eq!(decide("stopped", "end", single.as_ref()), Action::Log);
}

#[test]
fn only_exliars_domains_are_read() {
    assert_eq!(read_domain("<domain><name>other</name></domain>"), None);
    assert_eq!(read_domain("not xml at all"), None);
    let xml = format!(
        "<domain><metadata><x:vm xmlns:x='{}'><x:profile>linux</x:profile><x:gpu>{GPU}</x:gpu><x:functions>{GPU},{AUDIO}</x:functions><x:options>{{\"handover\":\"dynamic\"}}</x:options><x:version>0</x:version></x:vm></metadata></domain>",
        crate::vm::domain::NS
    );
    assert_eq!(
        read_domain(&xml),
        Some((Handover::Dynamic, vec![addr(GPU), addr(AUDIO)]))
    );
    // no handover in the options: boot (VMs made before the option)
    let old = xml.replace("{\"handover\":\"dynamic\"}", "{}");
    assert_eq!(read_domain(&old).map(|d| d.0), Some(Handover::Boot));
}

/// `act` that must succeed.
fn done(host: &HostRoot, k: &SimKernel, st: &mut MemoryState, a: &Action) -> std::io::Result<()> {
    act(host, k, st, a, &mut Vec::new()).map_err(|e| std::io::Error::other(e.1))
}

fn facts(libvirt: Option<(u32, u32)>, main: Option<&str>) -> HookHost {
    HookHost {
        libvirt,
        main: main.map(|m| m.as_bytes().to_vec()),
        dropin: None,
        chained: None,
        reload: Some(vec!["kill".into(), "-HUP".into(), "123".into()]),
        ..HookHost::default()
    }
}

#[test]
fn install_uses_qemu_d_and_leaves_a_users_hook_alone() {
    let exe = Path::new("/usr/bin/exliar");
    let p = install_plan(&facts(Some((9, 0)), Some("#!/bin/sh\necho mine\n")), exe);
    let paths: Vec<String> = p
        .steps
        .iter()
        .map(|s| match s {
            Step::WriteFile { path, mode, .. } => format!("{} {mode:o}", path.display()),
            Step::Run { argv, .. } => argv.join(" "),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        paths,
        [format!("{DROPIN} 755"), "kill -HUP 123".to_string()]
    );
    assert!(
        p.warnings[0].contains("someone else's hook"),
        "{:?}",
        p.warnings
    );
    let Step::WriteFile { after, .. } = &p.steps[0] else {
        panic!()
    };
    let script = String::from_utf8_lossy(after);
    assert!(
        script.ends_with("exec '/usr/bin/exliar' hook qemu \"$@\"\n"),
        "{script}"
    );
    // installed: nothing to do
    let mut h = facts(Some((9, 0)), None);
    h.dropin = Some(after.clone());
    assert!(install_plan(&h, exe).steps.is_empty());
}

#[test]
fn old_libvirt_gets_a_dispatcher_that_runs_the_kept_hook_first() {
    let exe = Path::new("/opt/it's here/exliar");
    let mine = "#!/bin/sh\necho mine >> /tmp/log\n";
    let p = install_plan(&facts(Some((6, 0)), Some(mine)), exe);
    let files = crate::plan::written(&p.steps);
    assert_eq!(files[0], (CHAINED.to_string(), mine.to_string()));
    assert_eq!(files[1].0, MAIN);
    assert!(
        files[1]
            .1
            .contains("'/etc/libvirt/hooks/qemu.exliar-chained' \"$@\" || exit $?"),
        "{}",
        files[1].1
    );
    assert!(
        files[1].1.contains(r"'/opt/it'\''s here/exliar' hook qemu"),
        "{}",
        files[1].1
    );
    // no hook there before: the dispatcher alone
    let p = install_plan(&facts(Some((6, 0)), None), exe);
    assert_eq!(p.steps.len(), 2);
}

#[test]
fn the_dispatcher_really_chains() -> std::io::Result<()> {
    // the old-libvirt dispatcher, run by sh: the kept hook sees the same
    // argv and XML first, then "exliar" (a stand-in script) does
    let t = tempfile::tempdir()?;
    let root = t.path();
    let log = root.join("log");
    let kept = root.join("etc/libvirt/hooks/qemu.exliar-chained");
    std::fs::create_dir_all(kept.parent().expect("parent"))?;
    std::fs::write(
        &kept,
        format!(
            "#!/bin/sh\necho \"kept $* $(cat | wc -c)\" >> '{}'\n",
            log.display()
        ),
    )?;
    let fake = root.join("exliar");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"exliar $* $(cat | wc -c)\" >> '{}'\n",
            log.display()
        ),
    )?;
    use std::os::unix::fs::PermissionsExt as _;
    for p in [&kept, &fake] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755))?;
    }
    let script =
        main_script(&fake, true).replace(&format!("/{CHAINED}"), &kept.display().to_string());
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .args(["qemu", "dom; rm -rf /", "prepare", "begin", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().expect("stdin").write_all(b"<domain/>")?;
            c.wait_with_output()
        })?;
    assert!(out.status.success());
    let l = std::fs::read_to_string(&log)?;
    assert_eq!(
        l,
        "kept dom; rm -rf / prepare begin - 10\nexliar hook qemu dom; rm -rf / prepare begin - 10\n"
    );
    // exliar gone: the kept hook still runs, and the hook lets libvirt go on
    std::fs::remove_file(&fake)?;
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .args(["qemu", "d2", "prepare", "begin", "-"])
        .stdin(std::process::Stdio::null())
        .output()?;
    assert!(out.status.success(), "{out:?}");
    assert!(std::fs::read_to_string(&log)?.ends_with("kept d2 prepare begin - 1\n"));
    Ok(())
}

#[test]
fn reload_is_systemd_or_sighup_to_the_daemon() -> std::io::Result<()> {
    let t = tempfile::tempdir()?;
    let r = t.path();
    assert_eq!(gather(&HostRoot::new(r), None).reload, None);
    std::fs::create_dir_all(r.join("run/libvirt"))?;
    std::fs::write(r.join("run/libvirt/libvirtd.pid"), "4321\n")?;
    // a stale pid file: no such process
    assert_eq!(gather(&HostRoot::new(r), None).reload, None);
    std::fs::create_dir_all(r.join("proc/4321"))?;
    assert_eq!(
        gather(&HostRoot::new(r), None).reload,
        Some(vec!["kill".into(), "-HUP".into(), "4321".into()])
    );
    std::fs::create_dir_all(r.join("run/systemd/system"))?;
    assert_eq!(
        gather(&HostRoot::new(r), None).reload.map(|a| a[0].clone()),
        Some("systemctl".into())
    );
    Ok(())
}

#[test]
fn with_systemd_the_boot_unit_comes_with_the_hook_as_plain_files() {
    let exe = Path::new("/opt/my tools/exliar%1");
    let mut h = facts(Some((9, 0)), None);
    h.systemd = true;
    let p = install_plan(&h, exe);
    let writes = crate::plan::written(&p.steps);
    let unit = writes
        .iter()
        .find(|(p, _)| p == UNIT)
        .map(|w| w.1.clone())
        .unwrap_or_default();
    assert!(
        unit.contains("ExecStart=\"/opt/my tools/exliar%%1\" recover-display --boot\n"),
        "{unit}"
    );
    assert!(unit.contains("Before=display-manager.service"), "{unit}");
    assert!(
        unit.contains(&format!(
            "ConditionPathExists=/{}",
            crate::handover::JOURNAL
        )),
        "{unit}"
    );
    assert!(
        writes
            .iter()
            .any(|(p, t)| p == UNIT_WANTS && t.contains("Wants=exliar-recover-display.service")),
        "{writes:?}"
    );
    let last = p.steps.last();
    assert!(
        matches!(last, Some(Step::Run { argv, undo: None, .. }) if argv == &["systemctl", "daemon-reload"]),
        "{last:?}"
    );
    // installed already: nothing to do
    let mut h2 = h.clone();
    h2.dropin = Some(dropin_script(exe).into_bytes());
    h2.unit = Some(unit.into_bytes());
    h2.unit_wants = writes
        .iter()
        .find(|(p, _)| p == UNIT_WANTS)
        .map(|w| w.1.clone().into_bytes());
    assert!(install_plan(&h2, exe).steps.is_empty());
    // no systemd: no unit
    let p = install_plan(&facts(Some((9, 0)), None), exe);
    assert!(
        !p.steps.iter().any(
            |s| matches!(s, Step::WriteFile { path, .. } if path.display().to_string() == UNIT)
        )
    );
}

/// Dynamic, a failure at each kernel operation of the give-back: the hook
/// says so, and the next give-back (libvirt's next `release end`, or
/// `exliar unbind`, from the same binding records) finishes it.
#[test]
fn a_failed_give_back_is_finished_by_the_next() -> std::io::Result<()> {
    let fs = vec![addr(GPU), addr(AUDIO)];
    let count = {
        let t = tempfile::tempdir()?;
        host_with_a_card().build(t.path())?;
        let k = SimKernel::new(t.path())?;
        let mut st = MemoryState(Vec::new());
        let host = HostRoot::new(t.path());
        done(&host, &k, &mut st, &Action::Take(fs.clone()))?;
        k.clear_ops();
        done(&host, &k, &mut st, &Action::GiveBack(fs.clone()))?;
        k.ops().len()
    };
    assert!(count >= 4, "{count}");
    for n in 0..count {
        let t = tempfile::tempdir()?;
        host_with_a_card().build(t.path())?;
        let k = SimKernel::new(t.path())?;
        let host = HostRoot::new(t.path());
        let mut st = MemoryState(Vec::new());
        done(&host, &k, &mut st, &Action::Take(fs.clone()))?;
        k.clear_ops();
        k.fail_op(n);
        let first = act(
            &host,
            &k,
            &mut st,
            &Action::GiveBack(fs.clone()),
            &mut Vec::new(),
        );
        if first.is_ok() {
            assert_eq!(drivers(&k), original(), "op {n}");
            continue;
        }
        act(
            &host,
            &k,
            &mut st,
            &Action::GiveBack(fs.clone()),
            &mut Vec::new(),
        )
        .map_err(|e| std::io::Error::other(format!("op {n}: {}", e.1)))?;
        assert_eq!(drivers(&k), original(), "op {n}");
        assert_eq!(k.driver_override(&addr(GPU)), None, "op {n}");
        assert!(st.0.is_empty(), "op {n}: records left {:?}", st.0);
    }
    Ok(())
}

/// Dynamic, the hook killed at each kernel operation of the take (the
/// writing process gone: nothing of it undoes anything), then libvirt's
/// `release end` after the failed start: the records the take wrote
/// before each change bring every function back.
#[test]
fn a_take_killed_anywhere_is_undone_by_the_release() -> std::io::Result<()> {
    let fs = vec![addr(GPU), addr(AUDIO)];
    let mut killed = 0;
    for n in 0..40 {
        let t = tempfile::tempdir()?;
        host_with_a_card().build(t.path())?;
        let k = SimKernel::new(t.path())?;
        let host = HostRoot::new(t.path());
        let mut st = MemoryState(Vec::new());
        k.halt_at(n);
        let _ = act(
            &host,
            &k,
            &mut st,
            &Action::Take(fs.clone()),
            &mut Vec::new(),
        );
        if !k.halted() {
            break; // the take made fewer operations: every kill point done
        }
        killed += 1;
        k.resume();
        // a new process: it reads the records the killed one left
        let mut st2 = MemoryState(st.0.clone());
        act(
            &host,
            &k,
            &mut st2,
            &Action::GiveBack(fs.clone()),
            &mut Vec::new(),
        )
        .map_err(|e| std::io::Error::other(format!("kill at op {n}: {}", e.1)))?;
        assert_eq!(drivers(&k), original(), "kill at op {n}");
        assert_eq!(k.driver_override(&addr(GPU)), None, "kill at op {n}");
        assert_eq!(k.driver_override(&addr(AUDIO)), None, "kill at op {n}");
        assert!(k.vfio_nodes().is_empty(), "kill at op {n}");
    }
    assert!(killed >= 6, "every kill point of the take: {killed}");
    Ok(())
}
