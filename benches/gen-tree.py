#!/usr/bin/env python3
"""Generate a synthetic host tree (sysfs + IOMMU groups) for benchmarks.

    benches/gen-tree.py OUT FUNCTIONS

FUNCTIONS >= 60. The layout is an SR-IOV-heavy server: a chipset on bus 0,
two GPUs with audio functions, then root ports each holding a network
adapter whose physical function carries virtual functions, until FUNCTIONS
PCI functions exist. Every function gets the attributes the kernel exposes
and a 64-byte `config` file, so pciutils can read the tree too:

    lspci -nnk -A linux-sysfs -O sysfs.path=OUT/sys/bus/pci
"""

import os
import struct
import sys


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def config_bytes(vendor, device, cls, rev, header_type, ssv, ssd):
    cfg = bytearray(64)
    struct.pack_into("<HH", cfg, 0, vendor, device)
    struct.pack_into("<HH", cfg, 4, 0x0406, 0x0010)  # command, status
    cfg[8] = rev
    cfg[9] = cls & 0xFF
    cfg[10] = (cls >> 8) & 0xFF
    cfg[11] = (cls >> 16) & 0xFF
    cfg[14] = header_type
    if header_type == 0:
        struct.pack_into("<HH", cfg, 44, ssv, ssd)
    return bytes(cfg)


class Tree:
    def __init__(self, out):
        self.out = out
        self.sys = os.path.join(out, "sys")
        self.group = 0
        self.count = 0
        os.makedirs(os.path.join(self.sys, "bus/pci/devices"), exist_ok=True)
        os.makedirs(os.path.join(self.sys, "kernel/iommu_groups"), exist_ok=True)
        for d in ("pcieport", "ahci", "nvidia", "snd_hda_intel", "ixgbe", "ixgbevf", "xhci_hcd", "i915"):
            os.makedirs(os.path.join(self.sys, "bus/pci/drivers", d), exist_ok=True)

    def new_group(self):
        g = self.group
        self.group += 1
        os.makedirs(os.path.join(self.sys, f"kernel/iommu_groups/{g}/devices"), exist_ok=True)
        return g

    def add(self, parent_rel, addr, vendor, device, cls, driver, group, rev=1, boot_vga=None, bridge=False):
        """parent_rel: path below sys/devices (e.g. 'pci0000:00' or 'pci0000:00/0000:00:01.0')."""
        rel = f"{parent_rel}/{addr}"
        d = os.path.join(self.sys, "devices", rel)
        os.makedirs(d, exist_ok=True)
        ssv, ssd = vendor, 0x0001
        attrs = {
            "class": f"0x{cls:06x}\n",
            "vendor": f"0x{vendor:04x}\n",
            "device": f"0x{device:04x}\n",
            "subsystem_vendor": f"0x{ssv:04x}\n",
            "subsystem_device": f"0x{ssd:04x}\n",
            "revision": f"0x{rev:02x}\n",
            "numa_node": "0\n",
            "irq": "16\n",
            "local_cpus": "ff\n",
            "enable": "1\n",
            "driver_override": "(null)\n",
            "reset_method": "flr bus\n",
            "current_link_speed": "16.0 GT/s PCIe\n",
            "current_link_width": "16\n",
            "max_link_speed": "16.0 GT/s PCIe\n",
            "max_link_width": "16\n",
            "modalias": f"pci:v{vendor:08X}d{device:08X}sv{ssv:08X}sd{ssd:08X}bc{cls >> 16:02X}sc{(cls >> 8) & 0xFF:02X}i{cls & 0xFF:02X}\n",
            "resource": "0x0000000000000000 0x0000000000000000 0x0000000000000000\n" * 13,
        }
        attrs["uevent"] = (
            (f"DRIVER={driver}\n" if driver else "")
            + f"PCI_CLASS={cls:X}\nPCI_ID={vendor:04X}:{device:04X}\nPCI_SUBSYS_ID={ssv:04X}:{ssd:04X}\n"
            + f"PCI_SLOT_NAME={addr}\n" + attrs["modalias"].replace("pci:", "MODALIAS=pci:", 1)
        )
        if boot_vga is not None:
            attrs["boot_vga"] = f"{boot_vga}\n"
        for k, v in attrs.items():
            write(os.path.join(d, k), v)
        with open(os.path.join(d, "config"), "wb") as f:
            f.write(config_bytes(vendor, device, cls, rev, 1 if bridge else 0, ssv, ssd))
        depth = rel.count("/") + 2  # from sys/devices/<rel> back to sys/
        up = "../" * depth
        os.symlink(f"{up}bus/pci/drivers/{driver}", os.path.join(d, "driver")) if driver else None
        if group is not None:
            os.symlink(f"{up}kernel/iommu_groups/{group}", os.path.join(d, "iommu_group"))
            os.symlink(f"../../../../devices/{rel}", os.path.join(self.sys, f"kernel/iommu_groups/{group}/devices/{addr}"))
        os.symlink(f"../../../devices/{rel}", os.path.join(self.sys, "bus/pci/devices", addr))
        self.count += 1
        return rel, d


def build(out, n):
    t = Tree(out)
    root = "pci0000:00"
    os.makedirs(os.path.join(t.sys, "devices", root), exist_ok=True)
    # Chipset: host bridge, SATA, USB, LPC in one group.
    t.add(root, "0000:00:00.0", 0x8086, 0x3e30, 0x060000, None, t.new_group())
    t.add(root, "0000:00:02.0", 0x8086, 0x3e92, 0x030000, "i915", t.new_group(), boot_vga=1)
    chip = t.new_group()
    t.add(root, "0000:00:14.0", 0x8086, 0xa36d, 0x0c0330, "xhci_hcd", chip)
    t.add(root, "0000:00:17.0", 0x8086, 0xa352, 0x010601, "ahci", chip)
    # Two GPUs with audio behind root ports 00:01.0 and 00:01.1.
    for i, bus in enumerate((0x01, 0x02)):
        g = t.new_group()
        rp, _ = t.add(root, f"0000:00:01.{i}", 0x8086, 0x1901, 0x060400, "pcieport", g, bridge=True)
        t.add(rp, f"0000:{bus:02x}:00.0", 0x10de, 0x2204, 0x030000, "nvidia", g, boot_vga=0)
        t.add(rp, f"0000:{bus:02x}:00.1", 0x10de, 0x1aef, 0x040300, "snd_hda_intel", g)
    # SR-IOV network adapters: one per root port, each PF with VFs.
    port = 0
    bus = 0x10
    while t.count < n:
        port += 1
        rp_addr = f"0000:00:{0x1c + port // 8:02x}.{port % 8}"
        g = t.new_group()
        rp, _ = t.add(root, rp_addr, 0x8086, 0xa110, 0x060400, "pcieport", g, bridge=True)
        pf_addr = f"0000:{bus:02x}:00.0"
        pf_rel, pf_dir = t.add(rp, pf_addr, 0x8086, 0x10fb, 0x020000, "ixgbe", t.new_group())
        vfs = min(255, n - t.count)
        write(os.path.join(pf_dir, "sriov_totalvfs"), "255\n")
        write(os.path.join(pf_dir, "sriov_numvfs"), f"{vfs}\n")
        for v in range(vfs):
            fn = v + 1
            vf_addr = f"0000:{bus:02x}:{fn >> 3:02x}.{fn & 7}"
            vf_rel, vf_dir = t.add(rp, vf_addr, 0x8086, 0x10ed, 0x020000, "ixgbevf", t.new_group())
            os.symlink(f"../{pf_addr}", os.path.join(vf_dir, "physfn"))
            os.symlink(f"../{vf_addr}", os.path.join(pf_dir, f"virtfn{v}"))
        bus += 1
    os.makedirs(os.path.join(out, "proc"), exist_ok=True)
    write(os.path.join(out, "proc/cmdline"), "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro intel_iommu=on iommu=pt\n")
    return t.count


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    count = build(sys.argv[1], int(sys.argv[2]))
    print(f"{sys.argv[1]}: {count} PCI functions")
