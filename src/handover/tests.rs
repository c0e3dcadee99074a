use std::cell::RefCell;
use std::collections::BTreeSet;

use super::*;
use crate::bind::MemoryState;
use crate::host::sim::{SimDevice, SimKernel, SimTree};

fn addr(s: &str) -> PciAddress {
    PciAddress::parse(s).expect("test address")
}

const GPU: &str = "0000:01:00.0";
const AUDIO: &str = "0000:01:00.1";
const OTHER_AUDIO: &str = "0000:00:1f.3";

/// The service manager of the tests: units and whether they run, with
/// failures on request.
#[derive(Default)]
struct SimServices {
    active: RefCell<BTreeSet<String>>,
    fail_stop: RefCell<bool>,
    fail_start: RefCell<u32>,
    calls: RefCell<Vec<String>>,
}

impl Services for SimServices {
    fn active(&self, unit: &str) -> bool {
        self.active.borrow().contains(unit)
    }
    fn stop(&self, unit: &str) -> io::Result<()> {
        self.calls.borrow_mut().push(format!("stop {unit}"));
        if *self.fail_stop.borrow() {
            return Err(io::Error::other(format!(
                "systemctl stop {unit} failed: injected"
            )));
        }
        self.active.borrow_mut().remove(unit);
        self.active.borrow_mut().remove(DISPLAY_MANAGER);
        Ok(())
    }
    fn start(&self, unit: &str) -> io::Result<()> {
        self.calls.borrow_mut().push(format!("start {unit}"));
        if *self.fail_start.borrow() > 0 {
            *self.fail_start.borrow_mut() -= 1;
            return Err(io::Error::other(format!(
                "systemctl start {unit} failed: injected"
            )));
        }
        self.active.borrow_mut().insert(unit.to_string());
        self.active.borrow_mut().insert(DISPLAY_MANAGER.into());
        Ok(())
    }
}

fn running_dm() -> SimServices {
    let s = SimServices::default();
    s.active.borrow_mut().insert("gdm3.service".into());
    s.active.borrow_mut().insert(DISPLAY_MANAGER.into());
    s
}

/// A desktop whose only GPU (a `bochs-drm` VGA with its HDMI audio) holds
/// the framebuffer console, with a firmware framebuffer still bound, gdm
/// running and a second sound card on the same audio driver when `shared`.
fn single_gpu_host(root: &Path, shared: bool) -> io::Result<()> {
    let mut t = SimTree::new()
        .device(
            SimDevice::new(addr(GPU), 0x030000, 0x1234, 0x1111)
                .driver("bochs-drm")
                .group(1)
                .boot_vga(),
        )
        .device(
            SimDevice::new(addr(AUDIO), 0x040300, 0x8086, 0x293e)
                .driver("snd_hda_intel")
                .group(1),
        )
        .driver_module("bochs-drm", "bochs")
        .driver_module("snd_hda_intel", "snd_hda_intel")
        .driver_module("vfio-pci", "vfio_pci")
        .vtconsole(0, "(S) dummy device", true)
        .vtconsole(1, "(M) frame buffer device", true)
        .platform_fb("simple-framebuffer", "simple-framebuffer.0");
    if shared {
        t = t.device(
            SimDevice::new(addr(OTHER_AUDIO), 0x040300, 0x8086, 0xa348)
                .driver("snd_hda_intel")
                .group(2),
        );
    }
    t.build(root)?;
    std::fs::create_dir_all(root.join("run/systemd/system"))?;
    std::fs::create_dir_all(root.join("etc/systemd/system"))?;
    std::os::unix::fs::symlink(
        "/lib/systemd/system/gdm3.service",
        root.join("etc/systemd/system/display-manager.service"),
    )?;
    Ok(())
}

/// An NVIDIA card: the driver stack of four modules, held in order.
fn nvidia_host(root: &Path) -> io::Result<()> {
    SimTree::new()
        .device(
            SimDevice::new(addr(GPU), 0x030000, 0x10de, 0x2204)
                .driver("nvidia")
                .group(1)
                .boot_vga(),
        )
        .device(
            SimDevice::new(addr(AUDIO), 0x040300, 0x10de, 0x1aef)
                .driver("snd_hda_intel")
                .group(1),
        )
        .driver_module("nvidia", "nvidia")
        .driver_module("snd_hda_intel", "snd_hda_intel")
        .driver_module("vfio-pci", "vfio_pci")
        .holder("nvidia", "nvidia_modeset")
        .holder("nvidia", "nvidia_uvm")
        .holder("nvidia_modeset", "nvidia_drm")
        .vtconsole(0, "(S) dummy device", true)
        .vtconsole(1, "(M) frame buffer device", true)
        .build(root)
}

/// What "the host has its display back" means, read from the tree.
#[derive(Debug, PartialEq, Eq)]
struct View {
    drivers: Vec<(String, Option<String>, Option<String>)>,
    vtcons: Vec<String>,
    fbs: Vec<String>,
    modules: Vec<String>,
    dm: bool,
}

fn view(root: &Path, k: &SimKernel, s: &SimServices) -> View {
    let host = HostRoot::new(root);
    let mut drivers = Vec::new();
    for a in [GPU, AUDIO, OTHER_AUDIO] {
        let a = addr(a);
        if host.exists(format!("sys/bus/pci/devices/{a}")) {
            drivers.push((a.to_string(), k.driver(&a), k.driver_override(&a)));
        }
    }
    let vtcons = ["0", "1"]
        .iter()
        .map(|n| {
            host.read_optional(format!("sys/class/vtconsole/vtcon{n}/bind"))
                .ok()
                .flatten()
                .unwrap_or_default()
        })
        .collect();
    let fbs = host
        .list_dir("sys/bus/platform/drivers/simple-framebuffer")
        .unwrap_or_default();
    let mut modules = host.list_dir("sys/module").unwrap_or_default();
    modules.sort();
    View {
        drivers,
        vtcons,
        fbs,
        modules,
        dm: s.active("gdm3.service"),
    }
}

fn ctx<'a>(
    root: &'a Path,
    k: &'a SimKernel,
    s: &'a SimServices,
    st: &'a mut MemoryState,
) -> Ctx<'a> {
    Ctx {
        root,
        kernel: k,
        services: s,
        store: st,
        drm_wait: Duration::from_millis(0),
    }
}

/// The single-GPU desktop (gdm running) simulated, and how it looks.
fn desktop() -> io::Result<(tempfile::TempDir, SimKernel, SimServices, View)> {
    let t = tempfile::tempdir()?;
    single_gpu_host(t.path(), false)?;
    let k = SimKernel::new(t.path())?;
    let s = running_dm();
    let before = view(t.path(), &k, &s);
    Ok((t, k, s, before))
}

/// `take` for domain `win` of the card's two functions.
fn take_win(
    root: &Path,
    k: &SimKernel,
    s: &SimServices,
    st: &mut MemoryState,
    kill: KillPoint<'_>,
    steps: &mut Vec<Timed>,
) -> Ended {
    take(&mut ctx(root, k, s, st), "win", &fns(), kill, steps)
}

fn back(
    root: &Path,
    k: &SimKernel,
    s: &SimServices,
    st: &mut MemoryState,
    kill: KillPoint<'_>,
    steps: &mut Vec<Timed>,
) -> Ended {
    give_back(&mut ctx(root, k, s, st), kill, steps)
}

fn fns() -> Vec<PciAddress> {
    vec![addr(GPU), addr(AUDIO)]
}

#[test]
fn plan_stops_the_display_then_unbinds_console_and_framebuffer_then_binds_then_unloads()
-> io::Result<()> {
    let t = tempfile::tempdir()?;
    single_gpu_host(t.path(), false)?;
    let s = running_dm();
    let f = gather(&HostRoot::new(t.path()), &s, &fns());
    let p = plan(&f);
    assert_eq!(
        p,
        vec![
            Step::StopDisplayManager {
                unit: "gdm3.service".into()
            },
            Step::UnbindVtconsole {
                n: 1,
                name: "(M) frame buffer device".into()
            },
            Step::UnbindFramebuffer {
                driver: "simple-framebuffer".into(),
                device: "simple-framebuffer.0".into()
            },
            Step::BindVfio { functions: fns() },
            Step::UnloadModule {
                name: "bochs".into()
            },
            Step::UnloadModule {
                name: "snd_hda_intel".into()
            },
        ]
    );
    Ok(())
}

#[test]
fn plan_keeps_a_shared_audio_driver_and_unloads_nvidia_holders_first() -> io::Result<()> {
    let t = tempfile::tempdir()?;
    single_gpu_host(t.path(), true)?;
    let p = plan(&gather(&HostRoot::new(t.path()), &running_dm(), &fns()));
    assert!(
        !p.contains(&Step::UnloadModule {
            name: "snd_hda_intel".into()
        }),
        "another sound card uses snd_hda_intel: {p:?}"
    );
    let t = tempfile::tempdir()?;
    nvidia_host(t.path())?;
    let p = plan(&gather(&HostRoot::new(t.path()), &NoServices, &fns()));
    let unloads: Vec<&str> = p
        .iter()
        .filter_map(|s| match s {
            Step::UnloadModule { name } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        unloads,
        [
            "nvidia_drm",
            "nvidia_modeset",
            "nvidia_uvm",
            "nvidia",
            "snd_hda_intel"
        ]
    );
    // no systemd: no display manager step
    assert!(
        !p.iter()
            .any(|s| matches!(s, Step::StopDisplayManager { .. }))
    );
    Ok(())
}

#[test]
fn take_and_give_back_round_trip() -> io::Result<()> {
    for nvidia in [false, true] {
        let t = tempfile::tempdir()?;
        if nvidia {
            nvidia_host(t.path())?;
        } else {
            single_gpu_host(t.path(), false)?;
        }
        let k = SimKernel::new(t.path())?;
        let s = running_dm();
        let before = view(t.path(), &k, &s);
        let mut st = MemoryState(Vec::new());
        let mut steps = Vec::new();
        let e = take_win(t.path(), &k, &s, &mut st, &mut never, &mut steps);
        assert_eq!(e, Ended::Ok, "{steps:?}");
        let taken = view(t.path(), &k, &s);
        assert_eq!(taken.vtcons[1].trim(), "0");
        assert!(taken.fbs.is_empty() || nvidia, "{taken:?}");
        assert!(!taken.dm || nvidia);
        for (a, d, _) in &taken.drivers {
            assert_eq!(d.as_deref(), Some("vfio-pci"), "{a}");
        }
        let gone = if nvidia { "nvidia" } else { "bochs" };
        assert!(!taken.modules.iter().any(|m| m == gone), "{taken:?}");
        let j = read_journal(&HostRoot::new(t.path()))
            .map_err(io::Error::other)?
            .ok_or_else(|| io::Error::other("no journal"))?;
        assert_eq!(j.phase, Phase::Taken);
        assert!(j.entries.iter().all(|e| e.state == State::Done));
        assert!(steps.len() > j.entries.len(), "each step timed: {steps:?}");

        let e = back(t.path(), &k, &s, &mut st, &mut never, &mut steps);
        assert_eq!(e, Ended::Ok);
        assert_eq!(view(t.path(), &k, &s), before);
        assert!(!t.path().join(JOURNAL).exists());
        // nothing recorded: a second give-back does nothing
        k.clear_ops();
        let e = back(t.path(), &k, &s, &mut st, &mut never, &mut steps);
        assert_eq!(e, Ended::Ok);
        assert!(k.ops().is_empty());
    }
    Ok(())
}

/// How many kernel operations a whole take and give-back make.
fn count_ops(shared: bool) -> io::Result<(usize, usize)> {
    let t = tempfile::tempdir()?;
    single_gpu_host(t.path(), shared)?;
    let k = SimKernel::new(t.path())?;
    let s = running_dm();
    let mut st = MemoryState(Vec::new());
    let mut steps = Vec::new();
    assert_eq!(
        take_win(t.path(), &k, &s, &mut st, &mut never, &mut steps),
        Ended::Ok
    );
    let n_take = k.ops().len();
    assert_eq!(
        back(t.path(), &k, &s, &mut st, &mut never, &mut steps),
        Ended::Ok
    );
    Ok((n_take, k.ops().len() - n_take))
}

#[test]
fn a_failure_at_any_kernel_operation_of_take_leaves_the_host_as_it_was() -> io::Result<()> {
    let (n, _) = count_ops(false)?;
    assert!(n >= 8, "{n}");
    for fail in 0..n {
        let (t, k, s, before) = desktop()?;
        k.fail_op(fail);
        let mut st = MemoryState(Vec::new());
        let mut steps = Vec::new();
        let e = take_win(t.path(), &k, &s, &mut st, &mut never, &mut steps);
        match e {
            Ended::Failed { message, left } => {
                assert!(!left, "op {fail}: {message}");
                assert!(message.contains("undone"), "op {fail}: {message}");
            }
            other => panic!("op {fail}: {other:?} ({:?})", k.ops()),
        }
        assert_eq!(view(t.path(), &k, &s), before, "op {fail}: {:?}", k.ops());
        assert!(!t.path().join(JOURNAL).exists(), "op {fail}");
    }
    Ok(())
}

#[test]
fn a_display_manager_that_will_not_stop_is_a_refusal_with_nothing_changed() -> io::Result<()> {
    let (t, k, s, _) = desktop()?;
    *s.fail_stop.borrow_mut() = true;
    let before = view(t.path(), &k, &s);
    let mut st = MemoryState(Vec::new());
    let e = take_win(t.path(), &k, &s, &mut st, &mut never, &mut Vec::new());
    assert!(
        matches!(&e, Ended::Failed { message, left: false } if message.contains("gdm3.service")),
        "{e:?}"
    );
    assert!(k.ops().is_empty());
    assert_eq!(view(t.path(), &k, &s), before);
    Ok(())
}

#[test]
fn a_failure_during_give_back_still_brings_the_display_back_and_recover_finishes() -> io::Result<()>
{
    let (n_take, n_back) = count_ops(false)?;
    for fail in 0..n_back {
        let (t, k, s, before) = desktop()?;
        let mut st = MemoryState(Vec::new());
        let mut steps = Vec::new();
        assert_eq!(
            take_win(t.path(), &k, &s, &mut st, &mut never, &mut steps),
            Ended::Ok
        );
        k.fail_op(n_take + fail);
        let e = back(t.path(), &k, &s, &mut st, &mut never, &mut steps);
        assert!(
            matches!(e, Ended::Failed { left: true, .. }),
            "op {fail}: {e:?}"
        );
        // the display manager comes back whatever failed before it
        assert!(s.active("gdm3.service"), "op {fail}");
        // `exliar recover-display`: finishes from the journal
        let e = back(t.path(), &k, &s, &mut st, &mut never, &mut steps);
        assert_eq!(e, Ended::Ok, "op {fail}");
        assert_eq!(view(t.path(), &k, &s), before, "op {fail}: {:?}", k.ops());
        assert!(!t.path().join(JOURNAL).exists());
    }
    Ok(())
}

#[test]
fn a_display_manager_that_will_not_start_is_retried_by_recover() -> io::Result<()> {
    let (t, k, s, before) = desktop()?;
    let mut st = MemoryState(Vec::new());
    let mut steps = Vec::new();
    take_win(t.path(), &k, &s, &mut st, &mut never, &mut steps);
    *s.fail_start.borrow_mut() = 1;
    let e = back(t.path(), &k, &s, &mut st, &mut never, &mut steps);
    assert!(
        matches!(&e, Ended::Failed { message, left: true } if message.contains("gdm3")),
        "{e:?}"
    );
    // everything else came back
    let v = view(t.path(), &k, &s);
    assert_eq!(v.drivers, before.drivers);
    assert_eq!(v.vtcons, before.vtcons);
    let e = back(t.path(), &k, &s, &mut st, &mut never, &mut steps);
    assert_eq!(e, Ended::Ok);
    assert_eq!(view(t.path(), &k, &s), before);
    Ok(())
}

#[test]
fn a_kill_at_any_point_of_take_or_give_back_is_finished_by_recover() -> io::Result<()> {
    let probe = tempfile::tempdir()?;
    single_gpu_host(probe.path(), false)?;
    let n = plan(&gather(&HostRoot::new(probe.path()), &running_dm(), &fns())).len();
    // every kill point of take, then of give-back
    for giving_back in [false, true] {
        for k_at in 0..n {
            for after in [false, true] {
                let (t, k, s, before) = desktop()?;
                let mut st = MemoryState(Vec::new());
                let mut steps = Vec::new();
                let mut at = |i: usize, a: bool| i == k_at && a == after;
                let what =
                    format!("kill at step {k_at} (after: {after}, giving back: {giving_back})");
                if giving_back {
                    assert_eq!(
                        take_win(t.path(), &k, &s, &mut st, &mut never, &mut steps),
                        Ended::Ok
                    );
                    let e = back(t.path(), &k, &s, &mut st, &mut at, &mut steps);
                    assert_eq!(e, Ended::Killed, "{what}");
                } else {
                    let e = take_win(t.path(), &k, &s, &mut st, &mut at, &mut steps);
                    assert_eq!(e, Ended::Killed, "{what}");
                }
                assert!(t.path().join(JOURNAL).exists(), "{what}");
                // the bindings a killed exliar recorded stay in its state
                // file, which the next one reads
                let mut st2 = MemoryState(st.0.clone());
                let e = back(t.path(), &k, &s, &mut st2, &mut never, &mut steps);
                assert_eq!(e, Ended::Ok, "{what}");
                assert_eq!(view(t.path(), &k, &s), before, "{what}: {:?}", k.ops());
                assert!(!t.path().join(JOURNAL).exists(), "{what}");
            }
        }
    }
    Ok(())
}

#[test]
fn a_second_take_while_one_is_recorded_is_refused() -> io::Result<()> {
    let (t, k, s, _) = desktop()?;
    let mut st = MemoryState(Vec::new());
    let mut steps = Vec::new();
    assert_eq!(
        take_win(t.path(), &k, &s, &mut st, &mut never, &mut steps),
        Ended::Ok
    );
    k.clear_ops();
    let e = take(
        &mut ctx(t.path(), &k, &s, &mut st),
        "other",
        &fns(),
        &mut never,
        &mut steps,
    );
    assert!(
        matches!(&e, Ended::Failed { message, left: true } if message.contains("recover-display") && message.contains("win")),
        "{e:?}"
    );
    assert!(k.ops().is_empty());
    Ok(())
}

#[test]
fn a_process_holding_the_card_is_named_and_the_take_undone() -> io::Result<()> {
    let t = tempfile::tempdir()?;
    single_gpu_host(t.path(), false)?;
    // a compositor (no display manager) holding /dev/dri/card0
    std::fs::create_dir_all(
        t.path()
            .join(format!("sys/bus/pci/devices/{GPU}/drm/card0")),
    )?;
    std::fs::create_dir_all(t.path().join("proc/4242/fd"))?;
    std::fs::write(t.path().join("proc/4242/comm"), "sway\n")?;
    std::os::unix::fs::symlink("/dev/dri/card0", t.path().join("proc/4242/fd/9"))?;
    let k = SimKernel::new(t.path())?;
    let s = SimServices::default();
    let before = view(t.path(), &k, &s);
    let mut st = MemoryState(Vec::new());
    let e = take_win(t.path(), &k, &s, &mut st, &mut never, &mut Vec::new());
    assert!(
        matches!(&e, Ended::Failed { message, left: false } if message.contains("4242") && message.contains("sway")),
        "{e:?}"
    );
    assert_eq!(view(t.path(), &k, &s), before);
    Ok(())
}

#[test]
fn a_card_without_a_console_leaves_the_console_alone() -> io::Result<()> {
    let t = tempfile::tempdir()?;
    SimTree::new()
        .device(
            SimDevice::new(addr(GPU), 0x030000, 0x1234, 0x1111)
                .driver("bochs-drm")
                .group(1),
        )
        .driver_module("bochs-drm", "bochs")
        .vtconsole(1, "(M) frame buffer device", true)
        .build(t.path())?;
    let p = plan(&gather(&HostRoot::new(t.path()), &NoServices, &[addr(GPU)]));
    assert_eq!(
        p,
        vec![
            Step::BindVfio {
                functions: vec![addr(GPU)]
            },
            Step::UnloadModule {
                name: "bochs".into()
            }
        ]
    );
    // with a framebuffer of its own, the console is let go of first
    std::fs::create_dir_all(
        t.path()
            .join(format!("sys/bus/pci/devices/{GPU}/graphics/fb1")),
    )?;
    let p = plan(&gather(&HostRoot::new(t.path()), &NoServices, &[addr(GPU)]));
    assert!(matches!(p[0], Step::UnbindVtconsole { n: 1, .. }), "{p:?}");
    Ok(())
}
