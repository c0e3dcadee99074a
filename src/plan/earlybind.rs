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

    /// Run the script against a fake /sys with a fake modprobe: the paths
    /// are rewritten into a temporary directory.
    fn run_script(
        root: &std::path::Path,
        iommu: bool,
        vfio_registered: bool,
        args: &[&str],
    ) -> String {
        let sys = root.join("sys");
        let dev = |a: &str| sys.join("bus/pci/devices").join(a);
        for a in ["0000:0b:00.0", "0000:0b:00.1", "0000:0c:00.0"] {
            let _ = std::fs::create_dir_all(dev(a));
            let _ = std::fs::write(dev(a).join("driver_override"), "(null)\n");
        }
        let _ = std::fs::create_dir_all(dev("0000:0c:00.0").join("driver"));
        let _ = std::fs::create_dir_all(sys.join("kernel/iommu_groups"));
        if iommu {
            let _ = std::fs::create_dir_all(sys.join("kernel/iommu_groups/7"));
        }
        if vfio_registered {
            let _ = std::fs::create_dir_all(sys.join("bus/pci/drivers/vfio-pci"));
        }
        let bin = root.join("bin");
        let _ = std::fs::create_dir_all(&bin);
        let log = root.join("modprobe.log");
        let fake = format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display());
        let _ = std::fs::write(bin.join("modprobe"), fake);
        let _ = std::process::Command::new("chmod")
            .arg("+x")
            .arg(bin.join("modprobe"))
            .status();
        let text = script(&[
            PciAddress::new(0, 0x0b, 0, 0),
            PciAddress::new(0, 0x0b, 0, 1),
            PciAddress::new(0, 0x0c, 0, 0),
            PciAddress::new(0, 0x0d, 0, 0),
        ])
        // sysfs takes each write on its own; a plain file must append.
        .replace(
            "> /sys/bus/pci/drivers_probe",
            ">> /sys/bus/pci/drivers_probe",
        )
        .replace("/sys/", &format!("{}/", sys.display()))
        .replace(
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            &format!("PATH={}", bin.display()),
        );
        let path = root.join("vfio-early-bind");
        let _ = std::fs::write(&path, text);
        let status = std::process::Command::new("sh")
            .arg(&path)
            .args(args)
            .status();
        assert!(status.is_ok_and(|s| s.success()));
        let read = |p: std::path::PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "0b.0={} 0b.1={} 0c.0={} probe={} modprobe={}",
            read(dev("0000:0b:00.0").join("driver_override")).trim(),
            read(dev("0000:0b:00.1").join("driver_override")).trim(),
            read(dev("0000:0c:00.0").join("driver_override")).trim(),
            read(sys.join("bus/pci/drivers_probe"))
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(","),
            read(log).trim(),
        )
    }

    #[test]
    fn script_behaviour_on_a_fake_sysfs() {
        let Ok(tmp) = tempfile::tempdir() else {
            return;
        };
        let case = |name: &str, iommu, registered, args: &[&str]| {
            let root = tmp.path().join(name);
            run_script(&root, iommu, registered, args)
        };
        assert_eq!(
            case("module", true, false, &["vfio-pci", "x=1"]),
            "0b.0=vfio-pci 0b.1=vfio-pci 0c.0=vfio-pci probe= modprobe=-i vfio-pci x=1"
        );
        // vfio-pci already there: the unbound devices are probed (0c has a
        // driver; 0d does not exist).
        assert_eq!(
            case("builtin", true, true, &["vfio-pci"]),
            "0b.0=vfio-pci 0b.1=vfio-pci 0c.0=vfio-pci probe=0000:0b:00.0,0000:0b:00.1 modprobe=-i vfio-pci"
        );
        // No IOMMU: nothing is bound, vfio-pci still loads.
        assert_eq!(
            case("no-iommu", false, true, &["vfio-pci"]),
            "0b.0=(null) 0b.1=(null) 0c.0=(null) probe= modprobe=-i vfio-pci"
        );
        assert_eq!(
            case("no-args", true, false, &[]),
            "0b.0=vfio-pci 0b.1=vfio-pci 0c.0=vfio-pci probe= modprobe="
        );
    }

    #[test]
    fn scripts_are_valid_sh() {
        let Ok(tmp) = tempfile::tempdir() else {
            return;
        };
        let hook = tmp.path().join("hook");
        let _ = std::fs::write(&hook, initramfs_tools_hook());
        let out = std::process::Command::new("sh")
            .arg(&hook)
            .arg("prereqs")
            .output();
        assert!(
            out.as_ref()
                .is_ok_and(|o| o.status.success() && o.stdout == b"\n"),
            "{out:?}"
        );
        let s = tmp.path().join("script");
        let _ = std::fs::write(&s, script(&[PciAddress::new(0, 1, 0, 0)]));
        let st = std::process::Command::new("sh").arg("-n").arg(&s).status();
        assert!(st.is_ok_and(|s| s.success()));
    }

    #[test]
    fn hook_follows_the_prereqs_protocol() {
        let h = initramfs_tools_hook();
        assert!(h.contains("prereqs)\n\tprereqs\n\texit 0"));
        assert!(h.contains(". /usr/share/initramfs-tools/hook-functions\ncopy_exec /usr/lib/exliar/vfio-early-bind\n"));
    }
}
