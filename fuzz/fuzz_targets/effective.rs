//! Fuzz the effective vfio-pci evaluation (`exliar::plan::effective`): any
//! bytes, split on NUL into a modprobe.d file, a kernel command line and an
//! initramfs-tools `modules` file, must evaluate without a panic; the `ids=`
//! in effect is the last one found; what vfio-pci claims is among the
//! devices; the modules file's fixes round-trip like every editor.
#![no_main]

use exliar::model::PciAddress;
use exliar::plan::editors::InPlaceEdit;
use exliar::plan::effective::{self, Inputs};
use exliar::plan::initramfs::tools;
use exliar::plan::modprobe::PciId;
use libfuzzer_sys::fuzz_target;

#[path = "edit_check.rs"]
mod edit_check;
use edit_check::s;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let mut parts = text.splitn(3, '\0');
    let modprobe = parts.next().unwrap_or_default().to_string();
    let cmdline: Vec<String> = parts
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let modules = parts.next().unwrap_or_default();
    let files = vec![("/etc/modprobe.d/a.conf".to_string(), modprobe)];
    for builtin in [false, true] {
        let e = effective::evaluate(&Inputs {
            modprobe_d: &files,
            cmdline: &cmdline,
            initramfs_modules: Some(modules),
            builtin,
        });
        let ids = e.ids().map(|i| i.ids.clone()).unwrap_or_default();
        assert_eq!(e.ids(), e.settings.last());
        let devices = [
            (PciAddress::new(0, 1, 0, 0), PciId::new(0x10de, 0x1b80)),
            (PciAddress::new(0, 1, 0, 1), PciId::new(0x10de, 0x10f0)),
        ];
        let claimed = effective::claimed(&ids, &devices, &[]);
        assert!(claimed.iter().all(|a| devices.iter().any(|(d, _)| d == a)));
    }
    let _ = effective::parse_modules_file(modules);
    let _ = effective::cmdline_ids(&cmdline);
    let edit = InPlaceEdit::InitramfsToolsModules(tools::ModulesEdit {
        modules: s(&["vfio", "vfio_iommu_type1", "vfio_pci"]),
        fix_misplaced: true,
        move_vfio_args: true,
    });
    edit_check::round_trip(&edit, modules);
});
