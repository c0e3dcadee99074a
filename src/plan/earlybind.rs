//! Binding by address for identical guest and host cards: when the guest
//! card shares vendor:device with a card the host keeps, `ids=` cannot tell
//! them apart. A small POSIX sh script writes `vfio-pci` into
//! `/sys/bus/pci/devices/<addr>/driver_override` for the guest's functions
//! before any GPU driver binds them (the Arch wiki approach for identical
//! GPUs, made safe: missing devices are skipped, nothing is bound when the
//! IOMMU is off, and the boot never fails because of it).
//!
//! modprobe runs it:
//! - vfio-pci as a module: `install vfio-pci <script> vfio-pci $CMDLINE_OPTS`
//!   (the script then loads vfio-pci with `modprobe -i`), and softdeps make
//!   the GPU/audio drivers load vfio-pci first.
//! - vfio-pci built in, or booster (whose init runs no `install` command):
//!   a pseudo-module `install exliar_vfio_early_bind <script> vfio-pci` that
//!   the GPU/audio drivers' softdeps pull in; the script then asks the
//!   loaded vfio-pci to probe the overridden devices.
//!
//! Addresses are [`PciAddress`] values, printed by their `Display`: only hex
//! digits, `:` and `.` reach the script.

use crate::model::PciAddress;

pub const SCRIPT_PATH: &str = "/usr/lib/exliar/vfio-early-bind";
/// The pseudo-module name (only an `install` line defines it).
pub const PSEUDO_MODULE: &str = "exliar_vfio_early_bind";
/// initramfs-tools hook that copies the script into the image.
pub const TOOLS_HOOK_PATH: &str = "/etc/initramfs-tools/hooks/exliar-vfio";

/// The modprobe.d `install` line that runs the script.
pub fn install_line(pseudo: bool) -> String {
    if pseudo {
        format!("install {PSEUDO_MODULE} {SCRIPT_PATH} vfio-pci")
    } else {
        format!("install vfio-pci {SCRIPT_PATH} vfio-pci $CMDLINE_OPTS")
    }
}

/// The early-bind script for these addresses (mode 0755).
pub fn script(addresses: &[PciAddress]) -> String {
    let mut addrs: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
    addrs.sort();
    addrs.dedup();
    let devices = addrs.join(" ");
    format!(
        r#"#!/bin/sh
# Written by exliar. Binds the guest GPU's functions to vfio-pci by PCI
# address before any GPU driver can take them: the host keeps a card with the
# same vendor:device ids, so vfio-pci's ids= cannot tell the two apart.
# modprobe runs it (see /etc/modprobe.d/00-exliar-vfio.conf), in the
# initramfs and in the running system. It never fails the boot.
#
# Usage: vfio-early-bind [MODULE [OPTIONS...]]
# Sets driver_override, loads MODULE (vfio-pci) ignoring install commands,
# then has a vfio-pci that was already there probe the devices.

PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
DEVICES="{devices}"

# Without an active IOMMU the card would be lost to the host for nothing.
iommu=
for group in /sys/kernel/iommu_groups/*; do
	[ -e "$group" ] && iommu=1
	break
done

if [ -n "$iommu" ]; then
	for dev in $DEVICES; do
		override="/sys/bus/pci/devices/$dev/driver_override"
		[ -e "$override" ] || continue
		echo vfio-pci > "$override" 2>/dev/null || :
	done
fi

status=0
if [ "$#" -gt 0 ]; then
	modprobe -i "$@" || status=$?
fi

if [ -n "$iommu" ] && [ -d /sys/bus/pci/drivers/vfio-pci ]; then
	for dev in $DEVICES; do
		[ -e "/sys/bus/pci/devices/$dev" ] || continue
		[ -e "/sys/bus/pci/devices/$dev/driver" ] && continue
		echo "$dev" > /sys/bus/pci/drivers_probe 2>/dev/null || :
	done
fi
exit "$status"
"#
    )
}

/// `/etc/initramfs-tools/hooks/exliar-vfio` (mode 0755): copies the script
/// into the image. mkinitramfs copies /etc/modprobe.d itself.
pub fn initramfs_tools_hook() -> String {
    format!(
        r#"#!/bin/sh
# Written by exliar: puts the vfio early-bind script into the initramfs;
# modprobe runs it through /etc/modprobe.d/00-exliar-vfio.conf.
PREREQ=""
prereqs()
{{
	echo "$PREREQ"
}}
case "$1" in
prereqs)
	prereqs
	exit 0
	;;
esac

. /usr/share/initramfs-tools/hook-functions
copy_exec {SCRIPT_PATH}
exit 0
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_lists_validated_addresses_only() {
        let s = script(&[
            PciAddress::new(0, 0x0b, 0, 1),
            PciAddress::new(0, 0x0b, 0, 0),
            PciAddress::new(0x10000, 0xe1, 0, 0),
            PciAddress::new(0, 0x0b, 0, 0),
        ]);
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains("\nDEVICES=\"0000:0b:00.0 0000:0b:00.1 10000:e1:00.0\"\n"));
        assert!(s.contains("modprobe -i \"$@\""));
        assert!(!s.contains("new_id"));
    }

    #[test]
    fn install_lines() {
        assert_eq!(
            install_line(false),
            "install vfio-pci /usr/lib/exliar/vfio-early-bind vfio-pci $CMDLINE_OPTS"
        );
        assert_eq!(
            install_line(true),
            "install exliar_vfio_early_bind /usr/lib/exliar/vfio-early-bind vfio-pci"
        );
    }

    #[test]
    fn hook_follows_the_prereqs_protocol() {
        let h = initramfs_tools_hook();
        assert!(h.contains("prereqs)\n\tprereqs\n\texit 0"));
        assert!(h.contains(". /usr/share/initramfs-tools/hook-functions\ncopy_exec /usr/lib/exliar/vfio-early-bind\n"));
    }
}
