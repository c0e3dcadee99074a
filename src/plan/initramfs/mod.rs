//! Initramfs generators: which vfio modules go into the image, how each
//! generator is told, and how its images are rebuilt.
//!
//! - [`mkinitcpio`]: `/etc/mkinitcpio.conf` arrays (`MODULES`, `HOOKS`, `FILES`).
//! - [`dracut`]: a drop-in `/etc/dracut.conf.d/zz-exliar-vfio.conf`.
//! - [`tools`]: initramfs-tools' `/etc/initramfs-tools/modules`.
//! - [`booster`]: `/etc/booster.yaml` comma lists.

use serde::Serialize;

pub mod booster;
pub mod dracut;
pub mod mkinitcpio;
pub mod tools;

/// The initramfs generator a system uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Generator {
    Mkinitcpio,
    Dracut,
    InitramfsTools,
    Booster,
}

impl Generator {
    /// The command (argv) that rebuilds the images of every installed kernel.
    pub fn regenerate_command(self) -> &'static [&'static str] {
        match self {
            Generator::Mkinitcpio => &["mkinitcpio", "-P"],
            Generator::Dracut => &["dracut", "-f", "--regenerate-all"],
            Generator::InitramfsTools => &["update-initramfs", "-u", "-k", "all"],
            Generator::Booster => &["/usr/lib/booster/regenerate_images"],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Generator::Mkinitcpio => "mkinitcpio",
            Generator::Dracut => "dracut",
            Generator::InitramfsTools => "initramfs-tools",
            Generator::Booster => "booster",
        }
    }
}

/// The vfio modules to load early for a kernel `(major, minor)`.
/// `vfio_virqfd` was merged into `vfio` in Linux 6.2 and is not listed from
/// then on (a missing module breaks some generators' builds).
pub fn vfio_modules(kernel: (u32, u32)) -> Vec<&'static str> {
    let mut v = vec!["vfio", "vfio_iommu_type1", "vfio_pci"];
    if kernel < (6, 2) {
        v.push("vfio_virqfd");
    }
    v
}

/// Every vfio module exliar may have added, whatever the kernel.
pub(crate) const VFIO_MODULES_ANY: &[&str] =
    &["vfio", "vfio_iommu_type1", "vfio_pci", "vfio_virqfd"];

/// Drivers that would claim a GPU or its HDMI audio if loaded before
/// vfio-pci. In a load-order list, the vfio modules must come first.
pub(crate) const CLAIMING_DRIVERS: &[&str] = &[
    "amdgpu",
    "radeon",
    "nouveau",
    "nvidia",
    "nvidia_modeset",
    "nvidia_uvm",
    "nvidia_drm",
    "i915",
    "xe",
    "snd_hda_intel",
];

/// A module name as modprobe compares it: `-` and `_` alike; mkinitcpio's
/// optional-module `?` suffix dropped.
pub fn normalize_module(name: &str) -> String {
    name.trim().trim_end_matches('?').replace('-', "_")
}

pub(crate) fn is_claiming(name: &str) -> bool {
    CLAIMING_DRIVERS.contains(&normalize_module(name).as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virqfd_only_before_6_2() {
        assert_eq!(
            vfio_modules((6, 1)),
            ["vfio", "vfio_iommu_type1", "vfio_pci", "vfio_virqfd"]
        );
        assert_eq!(vfio_modules((5, 15)).len(), 4);
        assert_eq!(
            vfio_modules((6, 2)),
            ["vfio", "vfio_iommu_type1", "vfio_pci"]
        );
        assert_eq!(vfio_modules((7, 0)).len(), 3);
    }

    #[test]
    fn regenerate_commands() {
        assert_eq!(
            Generator::Mkinitcpio.regenerate_command(),
            ["mkinitcpio", "-P"]
        );
        assert_eq!(
            Generator::Dracut.regenerate_command(),
            ["dracut", "-f", "--regenerate-all"]
        );
        assert_eq!(
            Generator::InitramfsTools.regenerate_command(),
            ["update-initramfs", "-u", "-k", "all"]
        );
        assert_eq!(
            Generator::Booster.regenerate_command(),
            ["/usr/lib/booster/regenerate_images"]
        );
    }

    #[test]
    fn module_names_compare_like_modprobe() {
        assert_eq!(normalize_module("vfio-pci"), "vfio_pci");
        assert_eq!(normalize_module("nvidia-drm?"), "nvidia_drm");
        assert!(is_claiming("snd-hda-intel"));
        assert!(!is_claiming("kvm_amd"));
    }
}
