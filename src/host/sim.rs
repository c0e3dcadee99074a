//! A simulated kernel and host trees to run it on: **test doubles**, not
//! used by the `exliar` binary.
//!
//! [`SimKernel`] implements the kernel-write interface ([`Kernel`]) on a host
//! tree in an ordinary folder (one a test built with [`SimTree`], or a copy of
//! a fixture) and makes the effects the real kernel would make, as files and
//! links the ordinary readers ([`HostRoot`], the sysfs reader) then see:
//!
//! * a write to `sys/bus/pci/devices/ADDR/driver_override` stores the name up
//!   to the first newline; an empty name clears it (the file then reads
//!   `(null)`, as in sysfs); `reset_method` stores what is written;
//! * `sys/bus/pci/drivers/X/unbind` (value `ADDR`) removes the device's
//!   `driver` link and the `DRIVER=` line of its `uevent`; a device not bound
//!   to `X` is `ENODEV`, as in the kernel;
//! * `sys/bus/pci/drivers_probe` (value `ADDR`) binds an unbound device: to
//!   the override's driver when an override is set (and to nothing when that
//!   driver is not loaded, as the kernel does), else to the device's natural
//!   driver (the one it had when the simulation started) if that driver's
//!   folder exists. vfio-pci takes only devices in an IOMMU group and creates
//!   `dev/vfio/N`; the node goes when no member of group `N` is left on
//!   vfio-pci;
//! * `sys/bus/pci/devices/ADDR/rom` (for a device given a ROM with
//!   [`SimKernel::set_rom`]): `"0\n"` (exactly those two bytes) disables the
//!   ROM, anything else enables it, as the kernel's store does. While it is
//!   disabled, `rom` is an empty folder, which [`HostRoot`] refuses to read
//!   (`InvalidInput`, the kind of the kernel's `EINVAL` for a disabled ROM);
//!   enabled, it is a file holding the ROM. [`SimKernel::rom_read_fails`]
//!   makes the enable succeed while the ROM stays unreadable;
//! * `load_module("vfio-pci")` creates `sys/bus/pci/drivers/vfio-pci` (any
//!   module gets `sys/module/NAME`).
//!
//! Every operation is recorded ([`SimKernel::ops`]). Failures can be
//! injected: at the K-th operation ([`SimKernel::fail_op`]), for one kind of
//! write to one device ([`SimKernel::fail_on`]), as a probe that does not
//! bind ([`SimKernel::probe_fails`]), or as a crash of the writing process
//! from operation K on ([`SimKernel::halt_at`]).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Component, Path, PathBuf};

use super::kernel::{Kernel, KernelOp};
use super::root::HostRoot;
use crate::model::PciAddress;

const DEVICES: &str = "sys/bus/pci/devices";
const DRIVERS: &str = "sys/bus/pci/drivers";
const VFIO_PCI: &str = "vfio-pci";

/// One operation the simulated kernel was asked for, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimOp {
    pub op: KernelOp,
    /// `None` when it was carried out; the error otherwise.
    pub error: Option<String>,
}

/// A device's ROM in the simulation.
#[derive(Debug, Clone)]
struct SimRom {
    bytes: Vec<u8>,
    enabled: bool,
    read_fails: bool,
}

#[derive(Debug, Default)]
struct Inject {
    fail_ops: BTreeSet<usize>,
    fail_on: Vec<(PciAddress, String)>,
    probe_fails: BTreeSet<(PciAddress, String)>,
    halt_at: Option<usize>,
    missing_modules: BTreeSet<String>,
}

/// The simulated kernel. See the module documentation.
#[derive(Debug)]
pub struct SimKernel {
    root: PathBuf,
    /// Each device's natural driver and IOMMU group, from the tree at start.
    devices: BTreeMap<PciAddress, (Option<String>, Option<u32>)>,
    ops: RefCell<Vec<SimOp>>,
    inject: RefCell<Inject>,
    roms: RefCell<BTreeMap<PciAddress, SimRom>>,
    /// Which module provides each PCI driver (`drivers/X/module` at start).
    driver_modules: BTreeMap<String, String>,
    /// Each module's dependencies (the modules whose `holders/` name it).
    deps: BTreeMap<String, Vec<String>>,
}

fn errno(e: rustix::io::Errno, what: String) -> io::Error {
    let kind = io::Error::from(e).kind();
    io::Error::new(kind, format!("{what}: {e}"))
}

impl SimKernel {
    /// Start simulating the host tree at `root`. The devices' current
    /// drivers become their natural drivers (see [`SimKernel::set_natural`]).
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        let host = HostRoot::new(&root);
        let mut devices = BTreeMap::new();
        let names = host.list_dir(DEVICES).map_err(|e| e.source)?;
        for name in names {
            let Ok(a) = PciAddress::parse(&name) else {
                continue;
            };
            let dir = Path::new(DEVICES).join(&name);
            let driver = host.link_name(dir.join("driver")).map_err(|e| e.source)?;
            let group = host
                .link_name(dir.join("iommu_group"))
                .map_err(|e| e.source)?
                .and_then(|g| g.parse().ok());
            devices.insert(a, (driver, group));
        }
        let mut driver_modules = BTreeMap::new();
        for d in host.list_dir(DRIVERS).unwrap_or_default() {
            if let Ok(Some(m)) = host.link_name(Path::new(DRIVERS).join(&d).join("module")) {
                driver_modules.insert(d, m);
            }
        }
        let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for m in host.list_dir("sys/module").unwrap_or_default() {
            for h in host
                .list_dir(format!("sys/module/{m}/holders"))
                .unwrap_or_default()
            {
                deps.entry(h).or_default().push(m.clone());
            }
        }
        Ok(Self {
            root,
            devices,
            ops: RefCell::new(Vec::new()),
            inject: RefCell::new(Inject::default()),
            roms: RefCell::new(BTreeMap::new()),
            driver_modules,
            deps,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The driver `drivers_probe` picks for `a` when no override is set.
    pub fn set_natural(&mut self, a: PciAddress, driver: Option<&str>) {
        if let Some(d) = self.devices.get_mut(&a) {
            d.0 = driver.map(str::to_string);
        }
    }

    /// Every operation so far, in order, with its result.
    pub fn ops(&self) -> Vec<SimOp> {
        self.ops.borrow().clone()
    }

    /// The operations that were carried out.
    pub fn applied(&self) -> Vec<KernelOp> {
        self.ops
            .borrow()
            .iter()
            .filter(|o| o.error.is_none())
            .map(|o| o.op.clone())
            .collect()
    }

    /// Forget the recorded operations (the count for [`SimKernel::fail_op`]
    /// and [`SimKernel::halt_at`] starts again).
    pub fn clear_ops(&self) {
        self.ops.borrow_mut().clear();
    }

    /// Operation number `k` (0-based, counting every operation asked for)
    /// fails with `EIO` and changes nothing.
    pub fn fail_op(&self, k: usize) {
        self.inject.borrow_mut().fail_ops.insert(k);
    }

    /// The next write for device `a` whose path ends in `attr`
    /// (`driver_override`, `unbind`, `drivers_probe`, `reset_method`) fails
    /// with `EIO`, once. A write is for `a` when its path or its value
    /// names `a`.
    pub fn fail_on(&self, a: PciAddress, attr: &str) {
        self.inject.borrow_mut().fail_on.push((a, attr.to_string()));
    }

    /// Probing `driver` for `a` does not bind it (the write itself succeeds,
    /// as in the kernel, whose `drivers_probe` does not report a failed
    /// probe).
    pub fn probe_fails(&self, a: PciAddress, driver: &str) {
        self.inject
            .borrow_mut()
            .probe_fails
            .insert((a, driver.to_string()));
    }

    /// `modprobe NAME` fails.
    pub fn missing_module(&self, name: &str) {
        self.inject
            .borrow_mut()
            .missing_modules
            .insert(name.replace('-', "_"));
    }

    /// The writing process dies before operation `k`: that operation and
    /// every later one reach nothing (each fails), until [`SimKernel::resume`].
    pub fn halt_at(&self, k: usize) {
        self.inject.borrow_mut().halt_at = Some(k);
    }

    /// Whether a halt set with [`SimKernel::halt_at`] has been reached.
    pub fn halted(&self) -> bool {
        let n = self.ops.borrow().len();
        self.inject.borrow().halt_at.is_some_and(|k| n > k)
    }

    /// A new process: operations reach the kernel again.
    pub fn resume(&self) {
        self.inject.borrow_mut().halt_at = None;
    }

    /// Give device `a` an option ROM holding `bytes`: its `rom` entry
    /// appears, disabled (see the module documentation).
    pub fn set_rom(&self, a: PciAddress, bytes: Vec<u8>) -> io::Result<()> {
        let rom = SimRom {
            bytes,
            enabled: false,
            read_fails: false,
        };
        self.show_rom(&a, &rom)?;
        self.roms.borrow_mut().insert(a, rom);
        Ok(())
    }

    /// Enabling the ROM of `a` succeeds, but it cannot be read (as when
    /// the kernel cannot map the ROM: `EIO`).
    pub fn rom_read_fails(&self, a: PciAddress) {
        if let Some(r) = self.roms.borrow_mut().get_mut(&a) {
            r.read_fails = true;
        }
    }

    /// Whether the ROM of `a` is enabled now (`None`: it has no ROM).
    pub fn rom_enabled(&self, a: &PciAddress) -> Option<bool> {
        self.roms.borrow().get(a).map(|r| r.enabled)
    }

    /// Lay the `rom` entry out in the tree as `rom`'s state says.
    fn show_rom(&self, a: &PciAddress, rom: &SimRom) -> io::Result<()> {
        let path = self.root.join(self.dev_dir(a)?).join("rom");
        match std::fs::symlink_metadata(&path) {
            Ok(md) if md.is_dir() => std::fs::remove_dir(&path)?,
            Ok(_) => std::fs::remove_file(&path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if rom.enabled && !rom.read_fails {
            std::fs::write(&path, &rom.bytes)
        } else {
            std::fs::create_dir(&path)
        }
    }

    fn write_rom(&self, a: &PciAddress, value: &str, shown: &str) -> io::Result<()> {
        let mut roms = self.roms.borrow_mut();
        let Some(rom) = roms.get_mut(a) else {
            return Err(errno(rustix::io::Errno::NOENT, shown.to_string()));
        };
        // The kernel's pci_write_rom: disabled only by "0" and one more byte.
        rom.enabled = !(value.len() == 2 && value.starts_with('0'));
        let rom = rom.clone();
        drop(roms);
        self.show_rom(a, &rom)
    }

    // --- the kernel's state, read straight from the tree ----------------------

    fn dev_dir(&self, a: &PciAddress) -> io::Result<PathBuf> {
        HostRoot::new(&self.root)
            .resolve(&Path::new(DEVICES).join(a.to_string()))
            .map_err(|e| e.source)
    }

    /// The driver `a` is bound to now.
    pub fn driver(&self, a: &PciAddress) -> Option<String> {
        std::fs::read_link(self.root.join(DEVICES).join(a.to_string()).join("driver"))
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
    }

    /// The device's `driver_override`, `None` when unset.
    pub fn driver_override(&self, a: &PciAddress) -> Option<String> {
        std::fs::read_to_string(
            self.root
                .join(DEVICES)
                .join(a.to_string())
                .join("driver_override"),
        )
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s != "(null)")
    }

    /// The groups that have a `dev/vfio/N` node.
    pub fn vfio_nodes(&self) -> Vec<u32> {
        let mut v: Vec<u32> = std::fs::read_dir(self.root.join("dev/vfio"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                    .collect()
            })
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    // --- effects -----------------------------------------------------------------

    fn set_uevent_driver(&self, dir: &Path, driver: Option<&str>) -> io::Result<()> {
        let path = self.root.join(dir).join("uevent");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut out = String::new();
        if let Some(d) = driver {
            out.push_str(&format!("DRIVER={d}\n"));
        }
        for l in text.lines().filter(|l| !l.starts_with("DRIVER=")) {
            out.push_str(l);
            out.push('\n');
        }
        std::fs::write(&path, out)
    }

    fn bind_to(&self, a: &PciAddress, driver: &str) -> io::Result<()> {
        let dir = self.dev_dir(a)?;
        // The link is relative, like sysfs's: up from the device's folder to
        // `sys`, then down to the driver (`../../../bus/pci/drivers/X`).
        let ups = dir.components().count().saturating_sub(1);
        let target: PathBuf = std::iter::repeat_n(Component::ParentDir.as_os_str(), ups)
            .collect::<PathBuf>()
            .join("bus/pci/drivers")
            .join(driver);
        std::os::unix::fs::symlink(&target, self.root.join(&dir).join("driver"))?;
        self.set_uevent_driver(&dir, Some(driver))?;
        if driver == VFIO_PCI
            && let Some(g) = self.group(a)
        {
            let vfio = self.root.join("dev/vfio");
            std::fs::create_dir_all(&vfio)?;
            std::fs::write(vfio.join("vfio"), "")?;
            std::fs::write(vfio.join(g.to_string()), "")?;
        }
        Ok(())
    }

    fn unbind_from(&self, a: &PciAddress, driver: &str) -> io::Result<()> {
        let dir = self.dev_dir(a)?;
        std::fs::remove_file(self.root.join(&dir).join("driver"))?;
        self.set_uevent_driver(&dir, None)?;
        if driver == VFIO_PCI
            && let Some(g) = self.group(a)
        {
            let still = self
                .devices
                .iter()
                .any(|(m, (_, mg))| *mg == Some(g) && self.driver(m).as_deref() == Some(VFIO_PCI));
            if !still {
                match std::fs::remove_file(self.root.join("dev/vfio").join(g.to_string())) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn group(&self, a: &PciAddress) -> Option<u32> {
        self.devices.get(a).and_then(|d| d.1)
    }

    fn device_arg(&self, value: &str, what: &str) -> io::Result<PciAddress> {
        let a = PciAddress::parse(value.trim())
            .map_err(|_| errno(rustix::io::Errno::NODEV, format!("{what}: {value:?}")))?;
        if !self.devices.contains_key(&a) {
            return Err(errno(rustix::io::Errno::NODEV, format!("{what}: {a}")));
        }
        Ok(a)
    }

    fn probe(&self, a: PciAddress) -> io::Result<()> {
        if self.driver(&a).is_some() {
            return Ok(()); // already bound: nothing to do
        }
        let candidate = match self.driver_override(&a) {
            Some(o) => Some(o),
            None => self.devices.get(&a).and_then(|d| d.0.clone()),
        };
        let Some(drv) = candidate else {
            return Ok(());
        };
        let loaded = self.root.join(DRIVERS).join(&drv).is_dir();
        let refused = self.inject.borrow().probe_fails.contains(&(a, drv.clone()))
            || (drv == VFIO_PCI && self.group(&a).is_none());
        if loaded && !refused {
            self.bind_to(&a, &drv)?;
        }
        Ok(())
    }

    fn apply_write(&self, rel: &Path, value: &str) -> io::Result<()> {
        let parts: Vec<&str> = rel.iter().filter_map(|c| c.to_str()).collect();
        let shown = format!("/{}", rel.display());
        match parts.as_slice() {
            ["sys", "bus", "pci", "devices", addr, attr] => {
                let a = self.device_arg(addr, &shown)?;
                let file = self.root.join(self.dev_dir(&a)?).join(attr);
                match *attr {
                    "driver_override" => {
                        let name = value.split('\n').next().unwrap_or("");
                        let stored = if name.is_empty() { "(null)" } else { name };
                        std::fs::write(file, format!("{stored}\n"))
                    }
                    "reset_method" => std::fs::write(file, format!("{}\n", value.trim())),
                    "rom" => self.write_rom(&a, value, &shown),
                    _ => Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!("{shown}: the simulation does not write this attribute"),
                    )),
                }
            }
            ["sys", "bus", "pci", "drivers", drv, "unbind"] => {
                if !self.root.join(DRIVERS).join(drv).is_dir() {
                    return Err(errno(rustix::io::Errno::NOENT, shown));
                }
                let a = self.device_arg(value, &shown)?;
                if self.driver(&a).as_deref() != Some(*drv) {
                    return Err(errno(rustix::io::Errno::NODEV, shown));
                }
                self.unbind_from(&a, drv)
            }
            ["sys", "bus", "pci", "drivers_probe"] => {
                let a = self.device_arg(value, &shown)?;
                self.probe(a)
            }
            ["sys", "class", "vtconsole", vc, "bind"] => {
                let file = self.root.join(format!("sys/class/vtconsole/{vc}/bind"));
                if !file.is_file() {
                    return Err(errno(rustix::io::Errno::NOENT, shown));
                }
                match value.trim() {
                    v @ ("0" | "1") => std::fs::write(file, format!("{v}\n")),
                    _ => Err(errno(rustix::io::Errno::INVAL, shown)),
                }
            }
            [
                "sys",
                "bus",
                "platform",
                "drivers",
                drv,
                verb @ ("bind" | "unbind"),
            ] => {
                let ddir = self.root.join(format!("sys/bus/platform/drivers/{drv}"));
                if !ddir.is_dir() {
                    return Err(errno(rustix::io::Errno::NOENT, shown));
                }
                let dev = value.trim();
                let pdev = self.root.join(format!("sys/devices/platform/{dev}"));
                if dev.is_empty() || dev.contains('/') || !pdev.is_dir() {
                    return Err(errno(rustix::io::Errno::NODEV, shown));
                }
                let bound = std::fs::symlink_metadata(ddir.join(dev)).is_ok();
                if *verb == "unbind" {
                    if !bound {
                        return Err(errno(rustix::io::Errno::NODEV, shown));
                    }
                    std::fs::remove_file(ddir.join(dev))?;
                    std::fs::remove_file(pdev.join("driver"))
                } else {
                    if std::fs::symlink_metadata(pdev.join("driver")).is_ok() {
                        return Err(errno(rustix::io::Errno::BUSY, shown));
                    }
                    std::os::unix::fs::symlink(
                        format!("../../../../devices/platform/{dev}"),
                        ddir.join(dev),
                    )?;
                    std::os::unix::fs::symlink(
                        format!("../../../bus/platform/drivers/{drv}"),
                        pdev.join("driver"),
                    )
                }
            }
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{shown}: the simulation does not write this file"),
            )),
        }
    }

    fn apply_load(&self, name: &str) -> io::Result<()> {
        let norm = name.replace('-', "_");
        if self.inject.borrow().missing_modules.contains(&norm) {
            return Err(io::Error::other(format!(
                "modprobe {name} failed: modprobe: FATAL: Module {name} not found"
            )));
        }
        let dir = self.root.join("sys/module").join(&norm);
        if dir.is_dir() {
            return Ok(()); // loaded: modprobe does nothing
        }
        // modprobe loads what it depends on first
        for d in self.deps.get(&norm).cloned().unwrap_or_default() {
            self.apply_load(&d)?;
            let h = self.root.join("sys/module").join(&d).join("holders");
            std::fs::create_dir_all(&h)?;
            std::os::unix::fs::symlink(format!("../../{norm}"), h.join(&norm))?;
        }
        std::fs::create_dir_all(&dir)?;
        if norm == "vfio_pci" {
            std::fs::create_dir_all(self.root.join(DRIVERS).join(VFIO_PCI))?;
        }
        // its drivers register and probe the devices no driver has (one
        // whose override names another driver stays unbound)
        for (drv, m) in &self.driver_modules {
            if *m != norm {
                continue;
            }
            let ddir = self.root.join(DRIVERS).join(drv);
            std::fs::create_dir_all(&ddir)?;
            std::os::unix::fs::symlink(format!("../../../../module/{norm}"), ddir.join("module"))?;
            let natural: Vec<PciAddress> = self
                .devices
                .iter()
                .filter(|(_, (n, _))| n.as_deref() == Some(drv.as_str()))
                .map(|(a, _)| *a)
                .collect();
            for a in natural {
                let ov = self.driver_override(&a);
                if self.driver(&a).is_none()
                    && ov.as_deref().is_none_or(|o| o == drv)
                    && !self.inject.borrow().probe_fails.contains(&(a, drv.clone()))
                {
                    self.bind_to(&a, drv)?;
                }
            }
        }
        Ok(())
    }

    fn apply_unload(&self, name: &str) -> io::Result<()> {
        let norm = name.replace('-', "_");
        let dir = self.root.join("sys/module").join(&norm);
        if !dir.is_dir() {
            return Err(io::Error::other(format!(
                "modprobe -r {name} failed: modprobe: FATAL: Module {norm} is not in kernel."
            )));
        }
        let holders: Vec<String> = std::fs::read_dir(dir.join("holders"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if !holders.is_empty() {
            return Err(io::Error::other(format!(
                "modprobe -r {name} failed: modprobe: FATAL: Module {norm} is in use by: {}",
                holders.join(" ")
            )));
        }
        // its drivers go, and with them their devices' bindings
        let mut drivers: Vec<String> = self
            .driver_modules
            .iter()
            .filter(|(_, m)| **m == norm)
            .map(|(d, _)| d.clone())
            .collect();
        if norm == "vfio_pci" {
            drivers.push(VFIO_PCI.to_string());
        }
        for drv in drivers {
            let bound: Vec<PciAddress> = self
                .devices
                .keys()
                .filter(|a| self.driver(a).as_deref() == Some(drv.as_str()))
                .copied()
                .collect();
            for a in bound {
                self.unbind_from(&a, &drv)?;
            }
            match std::fs::remove_dir_all(self.root.join(DRIVERS).join(&drv)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::remove_dir_all(&dir)?;
        for d in self.deps.get(&norm).cloned().unwrap_or_default() {
            let _ = std::fs::remove_file(
                self.root
                    .join("sys/module")
                    .join(d)
                    .join("holders")
                    .join(&norm),
            );
        }
        Ok(())
    }

    /// Decide whether operation `op` (about to get number `k`) is to fail.
    fn injected(&self, k: usize, op: &KernelOp) -> Option<io::Error> {
        let mut inj = self.inject.borrow_mut();
        if inj.halt_at.is_some_and(|h| k >= h) {
            return Some(io::Error::new(
                io::ErrorKind::Interrupted,
                format!("{op}: the writing process is gone (simulated crash)"),
            ));
        }
        let eio = || Some(errno(rustix::io::Errno::IO, "injected".to_string()));
        if inj.fail_ops.contains(&k) {
            return eio();
        }
        if let KernelOp::Write { path, value } = op {
            let last = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let text = path.to_string_lossy();
            let hit = inj.fail_on.iter().position(|(a, attr)| {
                let s = a.to_string();
                last == attr && (text.contains(&s) || value.trim() == s)
            });
            if let Some(i) = hit {
                inj.fail_on.remove(i);
                return eio();
            }
        }
        None
    }

    fn run(&self, op: KernelOp) -> io::Result<()> {
        let k = self.ops.borrow().len();
        let result = match self.injected(k, &op) {
            Some(e) => Err(e),
            None => match &op {
                KernelOp::Write { path, value } => self.apply_write(path, value),
                KernelOp::LoadModule { name } => self.apply_load(name),
                KernelOp::UnloadModule { name } => self.apply_unload(name),
            },
        };
        self.ops.borrow_mut().push(SimOp {
            op,
            error: result.as_ref().err().map(ToString::to_string),
        });
        result
    }
}

impl Kernel for SimKernel {
    fn write_attr(&self, rel: &Path, value: &str) -> io::Result<()> {
        self.run(KernelOp::Write {
            path: rel.to_path_buf(),
            value: value.to_string(),
        })
    }

    fn load_module(&self, name: &str) -> io::Result<()> {
        self.run(KernelOp::LoadModule {
            name: name.to_string(),
        })
    }

    fn unload_module(&self, name: &str) -> io::Result<()> {
        self.run(KernelOp::UnloadModule {
            name: name.to_string(),
        })
    }
}

// --- host trees ------------------------------------------------------------------

/// One PCI function of a [`SimTree`].
#[derive(Debug, Clone)]
pub struct SimDevice {
    pub address: PciAddress,
    pub class: u32,
    pub vendor: u16,
    pub device: u16,
    pub driver: Option<String>,
    pub group: Option<u32>,
    /// Written for VGA-class devices only (`boot_vga`).
    pub boot_vga: bool,
    pub reset_method: Option<String>,
}

impl SimDevice {
    /// A function at `address` with its class code and ids.
    pub fn new(address: PciAddress, class: u32, vendor: u16, device: u16) -> Self {
        Self {
            address,
            class,
            vendor,
            device,
            driver: None,
            group: None,
            boot_vga: false,
            reset_method: None,
        }
    }
    pub fn driver(mut self, d: &str) -> Self {
        self.driver = Some(d.to_string());
        self
    }
    pub fn group(mut self, g: u32) -> Self {
        self.group = Some(g);
        self
    }
    pub fn boot_vga(mut self) -> Self {
        self.boot_vga = true;
        self
    }
    pub fn reset_method(mut self, m: &str) -> Self {
        self.reset_method = Some(m.to_string());
        self
    }
}

/// Builds a host tree laid out like a live host's `/` (sysfs devices with
/// `uevent`, driver and IOMMU-group links, driver folders, IOMMU groups,
/// modules, and optionally the root disk's and default route's devices).
#[derive(Debug, Clone, Default)]
pub struct SimTree {
    devices: Vec<SimDevice>,
    modules: Vec<String>,
    no_iommu: bool,
    root_disk: Option<(PciAddress, String)>,
    route: Option<(PciAddress, String)>,
    driver_modules: Vec<(String, String)>,
    holders: Vec<(String, String)>,
    vtconsoles: Vec<(u32, String, bool)>,
    platform_fbs: Vec<(String, String)>,
}

impl SimTree {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn device(mut self, d: SimDevice) -> Self {
        self.devices.push(d);
        self
    }
    /// A loaded module (`sys/module/NAME`; `vfio_pci` also gets its driver).
    pub fn module(mut self, name: &str) -> Self {
        self.modules.push(name.replace('-', "_"));
        self
    }
    /// No IOMMU: no `sys/kernel/iommu_groups` (group numbers are ignored).
    pub fn no_iommu(mut self) -> Self {
        self.no_iommu = true;
        self
    }
    /// `/` is mounted from partition 2 of block device `disk` (`nvme0n1`)
    /// on the controller at `a`.
    pub fn root_disk(mut self, a: PciAddress, disk: &str) -> Self {
        self.root_disk = Some((a, disk.to_string()));
        self
    }
    /// PCI driver `driver` is provided by (loaded) module `module`
    /// (`drivers/DRIVER/module`).
    pub fn driver_module(mut self, driver: &str, module: &str) -> Self {
        self.driver_modules
            .push((driver.to_string(), module.replace('-', "_")));
        self
    }
    /// Loaded module `holder` uses loaded module `module`
    /// (`sys/module/MODULE/holders/HOLDER`).
    pub fn holder(mut self, module: &str, holder: &str) -> Self {
        self.holders.push((module.to_string(), holder.to_string()));
        self
    }
    /// A virtual console driver: `sys/class/vtconsole/vtconN/{name,bind}`.
    pub fn vtconsole(mut self, n: u32, name: &str, bound: bool) -> Self {
        self.vtconsoles.push((n, name.to_string(), bound));
        self
    }
    /// A firmware framebuffer: platform device `device` bound to platform
    /// driver `driver` (`efi-framebuffer`, `simple-framebuffer`).
    pub fn platform_fb(mut self, driver: &str, device: &str) -> Self {
        self.platform_fbs
            .push((driver.to_string(), device.to_string()));
        self
    }
    /// The default route goes through interface `iface` of the NIC at `a`.
    pub fn default_route(mut self, a: PciAddress, iface: &str) -> Self {
        self.route = Some((a, iface.to_string()));
        self
    }

    /// Write the tree under `root` (an existing, empty folder).
    pub fn build(&self, root: &Path) -> io::Result<()> {
        let w = |rel: &str, text: &str| -> io::Result<()> {
            let p = root.join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(p, text)
        };
        let link = |target: &str, rel: &str| -> io::Result<()> {
            let p = root.join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::os::unix::fs::symlink(target, p)
        };
        std::fs::create_dir_all(root.join(DEVICES))?;
        std::fs::create_dir_all(root.join(DRIVERS))?;
        w("sys/bus/pci/drivers_probe", "")?;
        w(
            "proc/cmdline",
            "BOOT_IMAGE=/vmlinuz root=/dev/nvme0n1p2 ro\n",
        )?;
        if !self.no_iommu {
            std::fs::create_dir_all(root.join("sys/kernel/iommu_groups"))?;
        }
        for d in &self.devices {
            let a = d.address.to_string();
            let rel = format!("sys/devices/pci{:04x}:00/{a}", d.address.domain);
            let mut uevent = String::new();
            if let Some(drv) = &d.driver {
                uevent.push_str(&format!("DRIVER={drv}\n"));
                std::fs::create_dir_all(root.join(DRIVERS).join(drv))?;
                link(
                    &format!("../../../bus/pci/drivers/{drv}"),
                    &format!("{rel}/driver"),
                )?;
            }
            uevent.push_str(&format!(
                "PCI_CLASS={:X}\nPCI_ID={:04X}:{:04X}\nPCI_SUBSYS_ID={:04X}:{:04X}\nPCI_SLOT_NAME={a}\n",
                d.class, d.vendor, d.device, d.vendor, d.device
            ));
            w(&format!("{rel}/uevent"), &uevent)?;
            w(&format!("{rel}/class"), &format!("0x{:06x}\n", d.class))?;
            w(&format!("{rel}/vendor"), &format!("0x{:04x}\n", d.vendor))?;
            w(&format!("{rel}/device"), &format!("0x{:04x}\n", d.device))?;
            w(&format!("{rel}/driver_override"), "(null)\n")?;
            if d.class >> 8 == 0x0300 {
                w(
                    &format!("{rel}/boot_vga"),
                    if d.boot_vga { "1\n" } else { "0\n" },
                )?;
            }
            if let Some(m) = &d.reset_method {
                w(&format!("{rel}/reset_method"), &format!("{m}\n"))?;
            }
            if let (Some(g), false) = (d.group, self.no_iommu) {
                link(
                    &format!("../../../kernel/iommu_groups/{g}"),
                    &format!("{rel}/iommu_group"),
                )?;
                link(
                    &format!("../../../../devices/pci{:04x}:00/{a}", d.address.domain),
                    &format!("sys/kernel/iommu_groups/{g}/devices/{a}"),
                )?;
            }
            link(
                &format!("../../../devices/pci{:04x}:00/{a}", d.address.domain),
                &format!("{DEVICES}/{a}"),
            )?;
        }
        for (drv, m) in &self.driver_modules {
            std::fs::create_dir_all(root.join(DRIVERS).join(drv))?;
            std::fs::create_dir_all(root.join("sys/module").join(m))?;
            link(
                &format!("../../../../module/{m}"),
                &format!("{DRIVERS}/{drv}/module"),
            )?;
        }
        for (m, h) in &self.holders {
            std::fs::create_dir_all(root.join("sys/module").join(h))?;
            link(
                &format!("../../{h}"),
                &format!("sys/module/{m}/holders/{h}"),
            )?;
        }
        for (n, name, bound) in &self.vtconsoles {
            w(
                &format!("sys/class/vtconsole/vtcon{n}/name"),
                &format!("{name}\n"),
            )?;
            w(
                &format!("sys/class/vtconsole/vtcon{n}/bind"),
                if *bound { "1\n" } else { "0\n" },
            )?;
        }
        for (drv, dev) in &self.platform_fbs {
            std::fs::create_dir_all(root.join("sys/devices/platform").join(dev))?;
            link(
                &format!("../../../devices/platform/{dev}"),
                &format!("sys/bus/platform/devices/{dev}"),
            )?;
            link(
                &format!("../../../../devices/platform/{dev}"),
                &format!("sys/bus/platform/drivers/{drv}/{dev}"),
            )?;
            link(
                &format!("../../../bus/platform/drivers/{drv}"),
                &format!("sys/devices/platform/{dev}/driver"),
            )?;
        }
        for m in &self.modules {
            std::fs::create_dir_all(root.join("sys/module").join(m))?;
            if m == "vfio_pci" {
                std::fs::create_dir_all(root.join(DRIVERS).join(VFIO_PCI))?;
            }
        }
        if let Some((a, disk)) = &self.root_disk {
            let part = format!("{disk}p2");
            let dev = format!(
                "sys/devices/pci{:04x}:00/{a}/nvme/nvme0/{disk}/{part}",
                a.domain
            );
            std::fs::create_dir_all(root.join(&dev))?;
            link(
                &format!("../../{}", dev.trim_start_matches("sys/")),
                &format!("sys/class/block/{part}"),
            )?;
            w(
                "proc/self/mountinfo",
                &format!(
                    "22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/{part} rw\n23 22 0:5 / /dev rw - devtmpfs udev rw\n"
                ),
            )?;
        }
        if let Some((a, iface)) = &self.route {
            let dev = format!("sys/devices/pci{:04x}:00/{a}/net/{iface}", a.domain);
            std::fs::create_dir_all(root.join(&dev))?;
            link(
                &format!("../../{}", dev.trim_start_matches("sys/")),
                &format!("sys/class/net/{iface}"),
            )?;
            w(
                "proc/net/route",
                &format!(
                    "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n{iface}\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\n"
                ),
            )?;
        }
        Ok(())
    }
}

/// Every file and link under `root` with its contents or target, for
/// comparing a tree before and after (dry runs write nothing).
pub fn tree_contents(root: &Path) -> io::Result<BTreeMap<PathBuf, String>> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, String>) -> io::Result<()> {
        for e in std::fs::read_dir(root.join(rel))? {
            let e = e?;
            let r = rel.join(e.file_name());
            let t = e.file_type()?;
            if t.is_symlink() {
                let target = std::fs::read_link(root.join(&r))?;
                out.insert(r, format!("-> {}", target.display()));
            } else if t.is_dir() {
                out.insert(r.clone(), "dir".to_string());
                walk(root, &r, out)?;
            } else {
                let bytes = std::fs::read(root.join(&r))?;
                out.insert(r, String::from_utf8_lossy(&bytes).into_owned());
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> PciAddress {
        PciAddress::parse(s).expect("test address")
    }

    fn pair() -> SimTree {
        SimTree::new()
            .device(
                SimDevice::new(addr("0000:01:00.0"), 0x030000, 0x1234, 0x1111)
                    .driver("bochs-drm")
                    .group(3),
            )
            .device(
                SimDevice::new(addr("0000:01:00.1"), 0x040300, 0x1234, 0x2222)
                    .driver("snd_hda_intel")
                    .group(3),
            )
            .device(
                SimDevice::new(addr("0000:02:00.0"), 0x020000, 0x8086, 0x10d3)
                    .driver("e1000e")
                    .group(4),
            )
    }

    #[test]
    fn override_unbind_probe_and_vfio_nodes() -> io::Result<()> {
        let t = tempfile::tempdir()?;
        pair().build(t.path())?;
        let k = SimKernel::new(t.path())?;
        let (gpu, audio) = (addr("0000:01:00.0"), addr("0000:01:00.1"));
        k.load_module("vfio-pci")?;
        for a in [gpu, audio] {
            let drv = k.driver(&a).unwrap_or_default();
            k.write_attr(
                Path::new(&format!("{DEVICES}/{a}/driver_override")),
                "vfio-pci\n",
            )?;
            assert_eq!(k.driver_override(&a).as_deref(), Some("vfio-pci"));
            k.write_attr(
                Path::new(&format!("{DRIVERS}/{drv}/unbind")),
                &a.to_string(),
            )?;
            assert_eq!(k.driver(&a), None);
            k.write_attr(Path::new("sys/bus/pci/drivers_probe"), &a.to_string())?;
            assert_eq!(k.driver(&a).as_deref(), Some("vfio-pci"));
        }
        assert_eq!(k.vfio_nodes(), [3]);
        // the ordinary reader sees it, through uevent and through the link
        let host = HostRoot::new(t.path());
        let inv = crate::host::sysfs::read_inventory(&host, &crate::host::PciIds::default())
            .map_err(io::Error::other)?;
        assert_eq!(
            inv.device(&gpu).and_then(|d| d.driver.as_deref()),
            Some("vfio-pci")
        );
        assert_eq!(
            inv.device(&gpu).and_then(|d| d.driver_override.as_deref()),
            Some("vfio-pci")
        );
        // a device not on the driver named: ENODEV, nothing changes
        let e = k.write_attr(
            Path::new(&format!("{DRIVERS}/e1000e/unbind")),
            &gpu.to_string(),
        );
        assert!(e.is_err());
        k.write_attr(Path::new(&format!("{DEVICES}/{gpu}/driver_override")), "\n")?;
        k.write_attr(
            Path::new(&format!("{DRIVERS}/vfio-pci/unbind")),
            &gpu.to_string(),
        )?;
        assert_eq!(
            k.vfio_nodes(),
            [3],
            "the audio function still holds group 3"
        );
        k.write_attr(Path::new("sys/bus/pci/drivers_probe"), &gpu.to_string())?;
        assert_eq!(
            k.driver(&gpu).as_deref(),
            Some("bochs-drm"),
            "natural driver"
        );
        assert_eq!(k.driver_override(&gpu), None);
        k.write_attr(
            Path::new(&format!("{DRIVERS}/vfio-pci/unbind")),
            &audio.to_string(),
        )?;
        assert!(k.vfio_nodes().is_empty());
        Ok(())
    }

    #[test]
    fn injected_failures_change_nothing() -> io::Result<()> {
        let t = tempfile::tempdir()?;
        pair().build(t.path())?;
        let k = SimKernel::new(t.path())?;
        let gpu = addr("0000:01:00.0");
        k.fail_op(1);
        k.fail_on(gpu, "drivers_probe");
        k.fail_on(gpu, "drivers_probe");
        k.write_attr(
            Path::new(&format!("{DEVICES}/{gpu}/driver_override")),
            "vfio-pci\n",
        )?;
        let before = tree_contents(t.path())?;
        assert!(k.load_module("vfio-pci").is_err(), "op 1 fails");
        assert_eq!(tree_contents(t.path())?, before);
        k.load_module("vfio-pci")?;
        k.write_attr(
            Path::new(&format!("{DRIVERS}/bochs-drm/unbind")),
            &gpu.to_string(),
        )?;
        assert!(
            k.write_attr(Path::new("sys/bus/pci/drivers_probe"), &gpu.to_string())
                .is_err()
        );
        assert_eq!(k.driver(&gpu), None);
        assert_eq!(k.ops().iter().filter(|o| o.error.is_some()).count(), 2);
        k.halt_at(5);
        assert!(!k.halted());
        assert!(
            k.write_attr(Path::new(&format!("{DEVICES}/{gpu}/driver_override")), "\n")
                .is_err()
        );
        assert!(k.halted());
        assert_eq!(k.driver_override(&gpu).as_deref(), Some("vfio-pci"));
        Ok(())
    }

    #[test]
    fn override_to_a_missing_driver_leaves_the_device_unbound() -> io::Result<()> {
        let t = tempfile::tempdir()?;
        pair().build(t.path())?;
        let k = SimKernel::new(t.path())?;
        let nic = addr("0000:02:00.0");
        k.write_attr(
            Path::new(&format!("{DEVICES}/{nic}/driver_override")),
            "vfio-pci",
        )?;
        k.write_attr(
            Path::new(&format!("{DRIVERS}/e1000e/unbind")),
            &nic.to_string(),
        )?;
        k.write_attr(Path::new("sys/bus/pci/drivers_probe"), &nic.to_string())?;
        assert_eq!(k.driver(&nic), None, "vfio-pci is not loaded");
        Ok(())
    }
}
