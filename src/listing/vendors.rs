//! Vendor names as lspci prints them (the pci.ids wording), to split
//! `Vendor Name Device Name` and to know a vendor's id when the text has no
//! `[vvvv:dddd]`.

/// pci.ids vendor names with their ids. `None`: the name is used by more
/// than one vendor id, so it says nothing about the id.
const VENDORS: &[(&str, Option<u16>)] = &[
    ("Advanced Micro Devices, Inc. [AMD/ATI]", Some(0x1002)),
    ("Advanced Micro Devices, Inc. [AMD]", Some(0x1022)),
    ("ATI Technologies Inc", Some(0x1002)),
    ("NVIDIA Corporation", Some(0x10de)),
    ("Intel Corporation", Some(0x8086)),
    ("ASPEED Technology, Inc.", Some(0x1a03)),
    ("Matrox Electronics Systems Ltd.", Some(0x102b)),
    ("Moore Threads Technology Co.,Ltd", Some(0x1ed5)),
    ("Silicon Motion, Inc.", Some(0x126f)),
    ("Cirrus Logic", Some(0x1013)),
    ("S3 Graphics Ltd.", Some(0x5333)),
    ("VMware", Some(0x15ad)),
    ("Microsoft Corporation", Some(0x1414)),
    ("Red Hat, Inc.", None),
    ("Realtek Semiconductor Co., Ltd.", Some(0x10ec)),
    ("Samsung Electronics Co Ltd", Some(0x144d)),
    ("ASMedia Technology Inc.", Some(0x1b21)),
    ("Renesas Technology Corp.", Some(0x1912)),
    ("Renesas Electronics Corp.", Some(0x1912)),
    ("Sandisk Corp", Some(0x15b7)),
    ("Phison Electronics Corporation", Some(0x1987)),
    ("MAXIO Technology (Hangzhou) Ltd.", Some(0x1e4b)),
    ("Kingston Technology Company, Inc.", Some(0x2646)),
    ("Micron Technology Inc", Some(0x1344)),
    ("Micron/Crucial Technology", Some(0xc0a9)),
    ("SK hynix", Some(0x1c5c)),
    ("Toshiba Corporation", Some(0x1179)),
    ("KIOXIA Corporation", Some(0x1e0f)),
    ("Marvell Technology Group Ltd.", None),
    ("JMicron Technology Corp.", Some(0x197b)),
    ("Broadcom Inc. and subsidiaries", Some(0x14e4)),
    ("Broadcom Limited", Some(0x14e4)),
    ("Broadcom Corporation", Some(0x14e4)),
    ("Broadcom / LSI", Some(0x1000)),
    ("LSI Logic / Symbios Logic", Some(0x1000)),
    ("Qualcomm Atheros", None),
    ("Qualcomm Technologies, Inc", Some(0x17cb)),
    ("MEDIATEK Corp.", Some(0x14c3)),
    ("Aquantia Corp.", Some(0x1d6a)),
    ("Mellanox Technologies", Some(0x15b3)),
    ("AMD Solarflare", Some(0x1924)),
    ("Solarflare Communications", Some(0x1924)),
    ("Emulex Corporation", Some(0x10df)),
    ("QLogic Corp.", Some(0x1077)),
    ("Chelsio Communications Inc", Some(0x1425)),
    ("Xilinx Corporation", Some(0x10ee)),
    ("Adaptec", None),
    ("VIA Technologies, Inc.", Some(0x1106)),
    ("Texas Instruments", Some(0x104c)),
    ("Creative Labs", Some(0x1102)),
    ("Genesys Logic, Inc.", Some(0x17a0)),
    ("Fresco Logic", Some(0x1b73)),
    ("Etron Technology, Inc.", Some(0x1b6f)),
    ("Ricoh Co Ltd", Some(0x1180)),
    ("O2 Micro, Inc.", Some(0x1217)),
    ("Huawei Technologies Co., Ltd.", Some(0x19e5)),
    ("Lenovo", Some(0x17aa)),
    ("ASUSTeK Computer Inc.", Some(0x1043)),
    ("Micro-Star International Co., Ltd. [MSI]", Some(0x1462)),
    ("ASRock Incorporation", Some(0x1849)),
    ("Gigabyte Technology Co., Ltd", Some(0x1458)),
    ("Super Micro Computer Inc", Some(0x15d9)),
    ("Hewlett-Packard Company", Some(0x103c)),
    ("Hewlett Packard Enterprise", Some(0x1590)),
    ("Dell", Some(0x1028)),
    ("Apple Inc.", Some(0x106b)),
    ("Acer Incorporated [ALI]", Some(0x1025)),
    ("PC Partner Limited / Sapphire Technology", Some(0x174b)),
    ("eVga.com. Corp.", Some(0x3842)),
    ("ZOTAC International (MCO) Ltd.", Some(0x19da)),
    ("Tul Corporation / PowerColor", Some(0x148c)),
    ("Elitegroup Computer Systems", Some(0x1019)),
];

/// Corporate suffixes that end a vendor name this table does not know.
const SUFFIXES: &[&str] = &[
    "Inc.",
    "Inc",
    "Corp.",
    "Corp",
    "Corporation",
    "Ltd.",
    "Ltd",
    "Limited",
    "GmbH",
    "AG",
    "LLC",
    "S.A.",
    "Incorporated",
    "Company",
    "Co.,Ltd",
    "Co.,Ltd.",
];

/// The id pci.ids gives a vendor name, when the name is known and unique.
pub fn vendor_id_of(name: &str) -> Option<u16> {
    VENDORS
        .iter()
        .find(|(n, _)| *n == name)
        .and_then(|(_, id)| *id)
}

/// Split `Vendor Name Device Name` into its two parts. Known vendor names
/// first (the longest that fits); otherwise the text up to the first
/// corporate suffix (`Inc.`, `Corporation`, …, with a following
/// `[Abbreviation]`), when that comes within the first six words. Without
/// either, the vendor is unknown and everything is the device name.
pub fn split_vendor(name: &str) -> (Option<&str>, &str) {
    let name = name.trim();
    let known = VENDORS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| {
            name.strip_prefix(n)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
        })
        .max_by_key(|n| n.len());
    if let Some(v) = known {
        return (Some(v), name[v.len()..].trim());
    }
    // Unknown vendor: look for a suffix word within the first six words.
    let mut end = None;
    for (i, (start, word)) in word_spans(name).enumerate() {
        if i >= 6 {
            break;
        }
        if i > 0 && SUFFIXES.contains(&word.trim_end_matches(',')) {
            end = Some(start + word.len());
            break;
        }
    }
    let Some(mut end) = end else {
        return (None, name);
    };
    // A following `[ABBR]` belongs to the vendor (`… Ltd. [MSI]`).
    let rest = &name[end..];
    let trimmed = rest.trim_start();
    if trimmed.starts_with('[')
        && let Some(close) = trimmed.find(']')
    {
        let inner = &trimmed[1..close];
        if !inner.is_empty() && !inner.contains(':') && inner.len() <= 20 {
            end += rest.len() - trimmed.len() + close + 1;
        }
    }
    let vendor = name[..end].trim();
    let device = name[end..].trim();
    if vendor.is_empty() {
        (None, name)
    } else {
        (Some(vendor), device)
    }
}

/// Words with their byte offsets.
fn word_spans(s: &str) -> impl Iterator<Item = (usize, &str)> {
    s.split(' ')
        .scan(0usize, |pos, w| {
            let start = *pos;
            *pos += w.len() + 1;
            Some((start, w))
        })
        .filter(|(_, w)| !w.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_known_vendors_longest_first() {
        assert_eq!(
            split_vendor("Advanced Micro Devices, Inc. [AMD/ATI] Ellesmere [Radeon RX 580]"),
            (
                Some("Advanced Micro Devices, Inc. [AMD/ATI]"),
                "Ellesmere [Radeon RX 580]"
            )
        );
        assert_eq!(
            split_vendor("Advanced Micro Devices, Inc. [AMD] Device"),
            (Some("Advanced Micro Devices, Inc. [AMD]"), "Device")
        );
        assert_eq!(
            split_vendor("NVIDIA Corporation"),
            (Some("NVIDIA Corporation"), "")
        );
        assert_eq!(
            split_vendor("Intel Corporationish thing"),
            (None, "Intel Corporationish thing")
        );
        assert_eq!(vendor_id_of("ASPEED Technology, Inc."), Some(0x1a03));
        assert_eq!(vendor_id_of("Qualcomm Atheros"), None);
    }

    #[test]
    fn splits_unknown_vendors_at_a_corporate_suffix() {
        assert_eq!(
            split_vendor("Foo Widgets Co., Ltd. [FW] Turbo 3000"),
            (Some("Foo Widgets Co., Ltd. [FW]"), "Turbo 3000")
        );
        assert_eq!(
            split_vendor("Acme Corp. Gizmo [1234]"),
            (Some("Acme Corp."), "Gizmo [1234]")
        );
        assert_eq!(
            split_vendor("Killer E2400 Gigabit Ethernet Controller"),
            (None, "Killer E2400 Gigabit Ethernet Controller")
        );
        assert_eq!(split_vendor(""), (None, ""));
    }
}
