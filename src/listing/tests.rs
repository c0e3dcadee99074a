use proptest::prelude::*;

use super::*;
use crate::model::{PciAddress, describe_class};

fn parse(text: &str) -> Inventory {
    match parse_files(&[ListingFile {
        name: "t.txt".to_string(),
        text: text.to_string(),
    }]) {
        Ok(inv) => inv,
        Err(e) => panic!("{e}"),
    }
}

fn addr(s: &str) -> PciAddress {
    match PciAddress::parse(s) {
        Ok(a) => a,
        Err(e) => panic!("{e}"),
    }
}

fn dev<'a>(inv: &'a Inventory, a: &str) -> &'a Device {
    match inv.device(&addr(a)) {
        Some(d) => d,
        None => panic!("{a} missing"),
    }
}

#[test]
fn header_and_indented_members() {
    let inv = parse(
        "IOMMU Group 1:\n\t00:01.0 PCI bridge [0604]: Intel Corporation Device [8086:1901] (rev 07)\n\t01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GM206 [GeForce GTX 960] [10de:1401] (rev a1)\nIOMMU Group 2:\n\t00:02.0 VGA compatible controller [0300]: Intel Corporation HD Graphics 530 [8086:1912] (rev 06)\n",
    );
    assert_eq!(inv.devices.len(), 3);
    assert_eq!(inv.iommu.enabled, Some(true));
    assert_eq!(
        inv.iommu.groups.get(&1),
        Some(&vec![addr("00:01.0"), addr("01:00.0")])
    );
    let gpu = dev(&inv, "01:00.0");
    assert_eq!(gpu.iommu_group, Some(1));
    assert_eq!(gpu.vendor_name.as_deref(), Some("NVIDIA Corporation"));
    assert_eq!(gpu.device_name.as_deref(), Some("GM206 [GeForce GTX 960]"));
    assert_eq!(dev(&inv, "00:02.0").iommu_group, Some(2));
    assert_eq!(
        inv.source,
        Source::Listing {
            files: vec!["t.txt".to_string()]
        }
    );
    assert!(inv.warnings.is_empty(), "{:?}", inv.warnings);
}

#[test]
fn lspci_after_a_group_listing_is_not_in_the_last_group() {
    let inv = parse(
        "IOMMU Group 35:\n\t41:00.0 USB controller [0c03]: Intel Corporation Device [8086:1138]\nuser@host$ lspci -nnk\n00:00.0 Host bridge [0600]: Intel Corporation Device [8086:4660] (rev 02)\n\tKernel driver in use: skl_uncore\n01:00.0 VGA compatible controller [0300]: NVIDIA Corporation Device [10de:1d01]\n",
    );
    assert_eq!(dev(&inv, "41:00.0").iommu_group, Some(35));
    assert_eq!(dev(&inv, "00:00.0").iommu_group, None);
    assert_eq!(dev(&inv, "00:00.0").driver.as_deref(), Some("skl_uncore"));
    assert_eq!(dev(&inv, "01:00.0").iommu_group, None);

    // Even without a prompt line in between.
    let inv = parse(
        "IOMMU Group 35:\n\t41:00.0 USB controller [0c03]: Intel Corporation Device [8086:1138]\n00:00.0 Host bridge [0600]: Intel Corporation Device [8086:4660] (rev 02)\n",
    );
    assert_eq!(dev(&inv, "00:00.0").iommu_group, None);

    // Unindented members are members when the group's first one is too.
    let inv = parse(
        "IOMMU Group 3\n00:14.0 USB controller [0c03]: Intel Corporation Device [8086:a12f]\n00:14.2 Signal processing controller [1180]: Intel Corporation Device [8086:a131]\n",
    );
    assert_eq!(dev(&inv, "00:14.2").iommu_group, Some(3));
}

#[test]
fn columns_listing_with_usb_and_continuation_lines() {
    let inv = parse(
        "root@pve:~# bash iommu.sh\nGroup 3:\t[8086:43ed]     00:14.0  USB controller                           Tiger Lake-H USB 3.2 Gen 2x1 xHCI Host Controller\nUSB:\t\t[1d6b:0002]\t\t Bus 001 Device 001                       Linux Foundation 2.0 root hub\n\t\t[8086:43ef]     00:14.2  RAM memory                               Tiger Lake-H Shared SRAM\nGroup 12:\t[1002:7480] [R] 03:00.0  VGA compatible controller                Navi 33 [Radeon RX 7700S/7600/7600S/7600M XT/PRO W7600]\n",
    );
    assert_eq!(inv.devices.len(), 3);
    assert_eq!(dev(&inv, "00:14.2").iommu_group, Some(3));
    assert_eq!(dev(&inv, "00:14.2").class, Some(ClassCode(0x050000)));
    let gpu = dev(&inv, "03:00.0");
    assert_eq!((gpu.vendor_id, gpu.device_id), (Some(0x1002), Some(0x7480)));
    assert_eq!(gpu.iommu_group, Some(12));
    assert_eq!(gpu.vendor_name, None);
}

#[test]
fn lspci_v_blocks_and_details() {
    let inv = parse(
        "00:02.0 VGA compatible controller: Intel Corporation 3rd Gen Core processor Graphics Controller (rev 09) (prog-if 00 [VGA controller])\n\tSubsystem: Lenovo Device 21f4\n\tFlags: bus master, fast devsel, latency 0, IRQ 33\n\tCapabilities: [90] MSI: Enable+ Count=1/1 Maskable- 64bit-\n\tIOMMU group: 4\n\tNUMA node: 0\n\tKernel driver in use: i915\n\tKernel modules: i915\n\n01:00.0 VGA compatible controller: NVIDIA Corporation GF108M [NVS 5400M] (rev a1) (prog-if 00 [VGA controller])\n\tSubsystem: Lenovo Device 21f4\n\tKernel driver in use: nvidia\n",
    );
    let igpu = dev(&inv, "00:02.0");
    assert_eq!(igpu.class, Some(ClassCode(0x030000)));
    assert_eq!(igpu.vendor_id, Some(0x8086));
    assert_eq!(igpu.driver.as_deref(), Some("i915"));
    assert_eq!(igpu.iommu_group, Some(4));
    assert_eq!(igpu.numa_node, Some(0));
    assert_eq!(igpu.subsystem_vendor_id, None);
    assert_eq!(dev(&inv, "01:00.0").driver.as_deref(), Some("nvidia"));
    assert_eq!(dev(&inv, "01:00.0").iommu_group, None);
}

#[test]
fn flat_format_in_lexicographic_order_with_prompt_and_cmdline() {
    let inv = parse(
        "$ ./iommu.sh \nBOOT_IMAGE=/boot/vmlinuz root=UUID=9ff8 ro quiet splash\nIOMMU group 10 00:1f.0 ISA bridge [0601]: Intel Corporation Z370 Chipset LPC/eSPI Controller [8086:a2c9]\nIOMMU group 1 00:00.0 Host bridge [0600]: Intel Corporation 8th Gen Core Processor Host Bridge/DRAM Registers [8086:3ec2] (rev 07)\nIOMMU group 2 01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GP108 [GeForce GT 1030] [10de:1d01] (rev a1)\n",
    );
    assert_eq!(dev(&inv, "00:1f.0").iommu_group, Some(10));
    assert_eq!(dev(&inv, "00:00.0").iommu_group, Some(1));
    assert_eq!(
        inv.host.kernel_cmdline.as_deref(),
        Some("BOOT_IMAGE=/boot/vmlinuz root=UUID=9ff8 ro quiet splash")
    );
    assert_eq!(
        inv.devices.iter().map(|d| d.address).collect::<Vec<_>>(),
        vec![addr("00:00.0"), addr("00:1f.0"), addr("01:00.0")]
    );
}

#[test]
fn truncated_line_warns_with_file_and_line() {
    let inv = parse(
        "IOMMU group 11\n  25:00.0 VGA compatible controller [0300]: Advanced Micro Devices, Inc. [AMD/ATI] Caicos PRO [Radeon HD 7450] [1002:677b]\n  25:00.1 Audio device [0403]: Advanced Micro Devices, Inc. [AMD/ATI] Caicos HDMI Audio [Radeon HD 6450] [1002:a...\n",
    );
    assert_eq!(inv.warnings.len(), 1);
    assert_eq!(inv.warnings[0].location, "t.txt:3");
    let audio = dev(&inv, "25:00.1");
    assert_eq!(audio.iommu_group, Some(11));
    assert_eq!(audio.class, Some(ClassCode(0x040300)));
    assert_eq!(audio.device_id, None);
}

#[test]
fn garbled_address_warns_and_is_skipped() {
    let inv = parse(
        "IOMMU Group 1 01:2z.0 VGA compatible controller [0300]: X [10de:1401]\nIOMMU Group 2 02:00.0 VGA compatible controller [0300]: NVIDIA Corporation X [10de:1401]\n",
    );
    assert_eq!(inv.devices.len(), 1);
    assert_eq!(inv.warnings.len(), 1);
    assert_eq!(inv.warnings[0].location, "t.txt:1");
}

#[test]
fn files_merge_field_by_field_and_conflicts_warn() {
    let groups = ListingFile {
        name: "groups.txt".to_string(),
        text: "IOMMU Group 19 31:00.0 VGA compatible controller [0300]: Advanced Micro Devices, Inc. [AMD/ATI] Vega 10 XL/XT [Radeon RX Vega 56/64] [1002:687f] (rev c1)\n".to_string(),
    };
    let lspci = ListingFile {
        name: "lspci.txt".to_string(),
        text: "$ lspci -nnk -d 1002:687f\n31:00.0 VGA compatible controller [0300]: Advanced Micro Devices, Inc. [AMD/ATI] Vega 10 XL/XT [Radeon RX Vega 56/64] [1002:687f] (rev c3)\n\tSubsystem: ASUSTeK Computer Inc. Device [1043:04c4]\n\tKernel driver in use: vfio-pci\n\tKernel modules: amdgpu\n".to_string(),
    };
    let inv = match parse_files(&[groups, lspci]) {
        Ok(inv) => inv,
        Err(e) => panic!("{e}"),
    };
    let gpu = dev(&inv, "31:00.0");
    assert_eq!(gpu.iommu_group, Some(19));
    assert_eq!(gpu.driver.as_deref(), Some("vfio-pci"));
    assert_eq!(
        (gpu.subsystem_vendor_id, gpu.subsystem_device_id),
        (Some(0x1043), Some(0x04c4))
    );
    assert_eq!(gpu.revision, Some(0xc1), "the first value wins");
    assert_eq!(inv.warnings.len(), 1, "{:?}", inv.warnings);
    assert_eq!(inv.warnings[0].location, "lspci.txt:2");
    assert!(inv.warnings[0].message.contains("revision"));
}

#[test]
fn no_devices_is_nothing_usable() {
    let r = parse_files(&[
        ListingFile {
            name: "a.txt".to_string(),
            text: "hello\nIOMMU Group 1:\n".to_string(),
        },
        ListingFile {
            name: "b.bin".to_string(),
            text: "\u{0}\u{fffd}\u{fffd}".to_string(),
        },
    ]);
    match r {
        Err(ListingError::NothingUsable { files }) => assert_eq!(files, "a.txt, b.bin"),
        Ok(_) => panic!("parsed"),
    }
}

#[test]
fn a_file_without_devices_beside_one_with_them_warns() {
    let inv = match parse_files(&[
        ListingFile {
            name: "notes.md".to_string(),
            text: "some notes\n".to_string(),
        },
        ListingFile {
            name: "l.txt".to_string(),
            text: "01:00.0 VGA compatible controller: NVIDIA Corporation Device 1d01\n".to_string(),
        },
    ]) {
        Ok(inv) => inv,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(inv.iommu.enabled, None);
    assert_eq!(inv.warnings.len(), 1);
    assert_eq!(inv.warnings[0].location, "notes.md");
    assert_eq!(dev(&inv, "01:00.0").device_id, Some(0x1d01));
}

fn key(inv: &Inventory) -> (Vec<Device>, IommuState, HostFacts) {
    (inv.devices.clone(), inv.iommu.clone(), inv.host.clone())
}

const SAMPLE: &str = "IOMMU Group 1:\n\t00:01.0 PCI bridge [0604]: Intel Corporation Device [8086:1901] (rev 07)\n\t01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GM206 [GeForce GTX 960] [10de:1401] (rev a1)\n\t01:00.1 Audio device [0403]: NVIDIA Corporation Device [10de:0fba] (rev a1)\nIOMMU Group 2:\n\t00:02.0 VGA compatible controller [0300]: Intel Corporation HD Graphics 530 [8086:1912] (rev 06)\n";

proptest! {
    #[test]
    fn never_panics_on_arbitrary_text(text in "\\PC*") {
        let _ = parse_files(&[ListingFile { name: "f".to_string(), text }]);
    }

    #[test]
    fn never_panics_on_line_shaped_text(
        lines in proptest::collection::vec(
            "[ \t]{0,3}(IOMMU [Gg]roup [0-9]{1,3}:? ?|\\([0-9]\\) |\\[[0-9a-f]{4}:[0-9a-f]{4}\\] (\\[R\\] )?)?[0-9a-f]{0,5}:?[0-9a-f]{1,2}:[0-9a-f]{1,2}\\.[0-9]{1,2} [A-Za-z ]{0,12}(\\[[0-9a-f]{0,4}\\])?:? ?[\\PC]{0,30}(\\[[0-9a-f:.]{0,9}\\]?)? ?(\\(rev [0-9a-f]{0,3}\\)?)?",
            0..12,
        )
    ) {
        let text = lines.join("\n");
        let _ = parse_files(&[ListingFile { name: "f".to_string(), text }]);
    }

    #[test]
    fn a_leading_prompt_line_changes_nothing(prompt in "[$#>a-z@~:/ ]{1,40}") {
        let plain = parse(SAMPLE);
        let prompted = parse(&format!("{prompt}\n{SAMPLE}"));
        prop_assert_eq!(key(&plain), key(&prompted));
    }

    #[test]
    fn trailing_garbage_changes_nothing(
        garbage in proptest::collection::vec("[$#%>g-z][g-z ,;:/$#]{0,40}", 0..6)
    ) {
        let plain = parse(SAMPLE);
        let text = format!("{SAMPLE}{}", garbage.join("\n"));
        let tailed = parse(&text);
        prop_assert_eq!(key(&plain), key(&tailed));
    }

    #[test]
    fn a_device_line_round_trips(
        domain in proptest::option::of(0u32..0x20000),
        bus: u8,
        device in 0u8..32,
        function in 0u8..8,
        cs: u16,
        vendor: u16,
        dev_id: u16,
        rev in proptest::option::of(any::<u8>()),
        group in proptest::option::of(0u32..1000),
    ) {
        let a = PciAddress::new(domain.unwrap_or(0), bus, device, function);
        let shown = match domain {
            Some(_) => a.to_string(),
            None => format!("{bus:02x}:{device:02x}.{function:x}"),
        };
        let rev_text = rev.map(|r| format!(" (rev {r:02x})")).unwrap_or_default();
        let body = format!(
            "{shown} {} [{cs:04x}]: Some Vendor [SV] Widget [Model 5] [{vendor:04x}:{dev_id:04x}]{rev_text}",
            describe_class(cs)
        );
        let line = match group {
            Some(g) => format!("IOMMU Group {g} {body}"),
            None => body,
        };
        let inv = parse(&line);
        prop_assert_eq!(inv.devices.len(), 1);
        let d = &inv.devices[0];
        prop_assert_eq!(d.address, a);
        prop_assert_eq!(d.class, Some(ClassCode(u32::from(cs) << 8)));
        prop_assert_eq!(d.vendor_id, Some(vendor));
        prop_assert_eq!(d.device_id, Some(dev_id));
        prop_assert_eq!(d.revision, rev);
        prop_assert_eq!(d.iommu_group, group);
        prop_assert!(inv.warnings.is_empty());
    }
}

#[test]
fn domains_are_kept_and_domain_zero_merges_with_the_short_form() {
    let inv = parse(
        "IOMMU Group 12:\n\t0000:01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GA106 [GeForce RTX 3060] [10de:2504] (rev a1)\n\t10000:e1:00.0 Non-Volatile memory controller [0108]: Samsung Electronics Co Ltd NVMe SSD Controller PM9A1/PM9A3/980PRO [144d:a80a]\n$ lspci -nnk\n01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GA106 [GeForce RTX 3060] [10de:2504] (rev a1)\n\tKernel driver in use: nvidia\n",
    );
    assert_eq!(inv.devices.len(), 2);
    let gpu = dev(&inv, "0000:01:00.0");
    assert_eq!(gpu.iommu_group, Some(12));
    assert_eq!(gpu.driver.as_deref(), Some("nvidia"));
    assert_eq!(dev(&inv, "10000:e1:00.0").iommu_group, Some(12));
    assert!(inv.warnings.is_empty(), "{:?}", inv.warnings);
}

#[test]
fn log_lines_with_timestamps_are_not_device_lines() {
    let inv = parse(
        "12:30:45.123 kernel: pci 0000:01:00.0: vgaarb: setting as boot VGA device\n01:00.0 VGA compatible controller: NVIDIA Corporation Device 1d01\n",
    );
    assert_eq!(inv.devices.len(), 1);
    assert!(inv.warnings.is_empty(), "{:?}", inv.warnings);
}

/// A group number over 32 bits: the device is kept without a group and a
/// warning says why (the line was dropped silently).
#[test]
fn a_group_number_that_does_not_fit_warns_and_keeps_the_device() {
    let inv = parse(
        "IOMMU Group 4294967296 01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GA106 [GeForce RTX 3060] [10de:2503] (rev a1)\n\
         IOMMU Group 4294967295 02:00.0 VGA compatible controller [0300]: NVIDIA Corporation GA106 [GeForce RTX 3060] [10de:2503] (rev a1)\n\
         IOMMU Group 7:\n\
         \t03:00.0 Audio device [0403]: NVIDIA Corporation GA106 High Definition Audio Controller [10de:228e] (rev a1)\n\
         IOMMU Group 123456789012345678901234567890:\n\
         \t04:00.0 VGA compatible controller [0300]: NVIDIA Corporation GA106 [GeForce RTX 3060] [10de:2503] (rev a1)\n\
         (99999999999) 05:00.0 VGA compatible controller [0300]: NVIDIA Corporation GA106 [GeForce RTX 3060] [10de:2503] (rev a1)\n\
         06:00.0 VGA compatible controller [0300]: NVIDIA Corporation GA106 [GeForce RTX 3060] [10de:2503] (rev a1)\n\
         \tIOMMU group: 5000000000\n",
    );
    assert_eq!(dev(&inv, "01:00.0").iommu_group, None);
    assert_eq!(dev(&inv, "02:00.0").iommu_group, Some(u32::MAX));
    assert_eq!(dev(&inv, "03:00.0").iommu_group, Some(7));
    // Not a member of group 7 above it.
    assert_eq!(dev(&inv, "04:00.0").iommu_group, None);
    assert_eq!(dev(&inv, "05:00.0").iommu_group, None);
    assert_eq!(dev(&inv, "06:00.0").iommu_group, None);
    let w: Vec<String> = inv
        .warnings
        .iter()
        .map(|w| format!("{}: {}", w.location, w.message))
        .collect();
    assert_eq!(
        w,
        [
            "t.txt:1: IOMMU group number 4294967296 does not fit (the largest is 4294967295); 0000:01:00.0 is kept without a group",
            "t.txt:5: IOMMU group number 123456789012345678901234… does not fit (the largest is 4294967295); the devices below it are kept without a group",
            "t.txt:7: IOMMU group number 99999999999 does not fit (the largest is 4294967295); 0000:05:00.0 is kept without a group",
            "t.txt:9: IOMMU group number 5000000000 does not fit (the largest is 4294967295); ignored",
        ]
    );
}

/// `n` GPU lines, each in its own group; `identical` gives them all one
/// vendor:device pair.
fn many_gpus(n: usize, identical: bool) -> String {
    let mut s = String::with_capacity(n * 130);
    for i in 0..n {
        let (domain, bus, dev, func) = (i >> 16, (i >> 8) & 0xff, (i >> 3) & 0x1f, i & 7);
        let id = if identical { 0x2503 } else { i & 0xffff };
        s.push_str(&format!(
            "IOMMU Group {i} {domain:04x}:{bus:02x}:{dev:02x}.{func} VGA compatible controller [0300]: NVIDIA Corporation GA106 [GeForce RTX 3060] [10de:{id:04x}] (rev a1)\n"
        ));
    }
    s
}

/// 65 536 GPU lines (every address of one PCI domain): parsed and analyzed
/// in well under a second in a debug build. Comparing every GPU with every
/// device and every other GPU took minutes.
#[test]
fn a_listing_of_65536_gpus_is_analyzed_in_linear_time() {
    let inv = parse(&many_gpus(65_536, false));
    assert_eq!(inv.devices.len(), 65_536);
    assert!(inv.warnings.is_empty(), "{:?}", &inv.warnings[..1]);
    let a = crate::analyze::analyze(&inv);
    assert_eq!(a.gpus.len(), 65_536);
    assert!(a.gpus.iter().all(|g| g.functions.len() == 1));
    // Ids repeat every 65 536 lines only: no GPU has a twin.
    assert!(a.gpus.iter().all(|g| g.identical_ids_with.is_empty()));
}

/// 16 000 GPUs with one vendor:device pair: each lists at most 32 of its
/// twins and says how many there are (the full lists took 4.7 GB).
#[test]
fn sixteen_thousand_identical_gpus_are_listed_in_part() {
    let inv = parse(&many_gpus(16_000, true));
    let a = crate::analyze::analyze(&inv);
    assert_eq!(a.gpus.len(), 16_000);
    for g in &a.gpus {
        assert_eq!(g.identical_ids_count, 15_999);
        assert_eq!(
            g.identical_ids_with.len(),
            crate::analyze::gpu::MAX_TWINS_LISTED
        );
        assert!(!g.identical_ids_with.contains(&g.address));
        let verdict = g.verdict().to_string();
        assert!(
            verdict.ends_with("and 15991 more: bind by address, not by id."),
            "{verdict}"
        );
    }
    assert_eq!(
        a.gpus[0].identical_ids_with.first(),
        Some(&a.gpus[1].address),
        "twins are listed in address order"
    );
    assert_eq!(
        a.gpus[1].identical_ids_with.first(),
        Some(&a.gpus[0].address),
        "each GPU leaves itself out of the shared list"
    );
}
