//! The QEMU device sets of the scenarios other test binaries boot too (the
//! real-tools tier boots an installed root on the same machines).

/// A "GPU" (VGA, fn0) with its "HDMI audio" (HDA + codec, fn1) in one slot behind a PCIe
/// root port (bus 02), an e1000e NIC (bus 03), and the host's own display (virtio-vga,
/// bus 01: SeaBIOS initialises it first, so it is the boot VGA device).
pub const GPU_PAIR_DEVICES: &str = "\
    -device pcie-root-port,id=rp1,bus=pcie.0,chassis=1,addr=0x2 \
    -device pcie-root-port,id=rp2,bus=pcie.0,chassis=2,addr=0x3 \
    -device pcie-root-port,id=rp3,bus=pcie.0,chassis=3,addr=0x4 \
    -device virtio-vga,bus=rp1 \
    -device VGA,bus=rp2,addr=0x0.0,multifunction=on \
    -device ich9-intel-hda,bus=rp2,addr=0x0.1 -device hda-duplex,audiodev=snd0 \
    -device e1000e,bus=rp3,romfile=";

/// Two identical display devices (two `-device VGA`, 1234:1111) on separate root ports.
pub const IDENTICAL_DEVICES: &str = "\
    -device pcie-root-port,id=rp1,bus=pcie.0,chassis=1,addr=0x2 \
    -device pcie-root-port,id=rp2,bus=pcie.0,chassis=2,addr=0x3 \
    -device VGA,bus=rp1 \
    -device VGA,bus=rp2";

/// The host of a single-GPU handover: its only display is the VGA (fn0, bus 01, the
/// boot VGA device, with the framebuffer console on it once `bochs` loads), with its
/// "HDMI audio" (HDA + codec, fn1) in the same slot and IOMMU group.
pub const SINGLE_GPU_DEVICES: &str = "\
    -device pcie-root-port,id=rp1,bus=pcie.0,chassis=1,addr=0x2 \
    -device VGA,bus=rp1,addr=0x0.0,multifunction=on \
    -device ich9-intel-hda,bus=rp1,addr=0x0.1 -device hda-duplex,audiodev=snd0";
