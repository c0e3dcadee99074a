//! `vm create` options as typed values (pure parsing, no host access).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A size in MiB from `8G`, `8GiB`, `4096M`, `512MiB`, `1T` or a plain
/// number of MiB.
pub fn parse_size_mib(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (examples: 8G, 4096M)"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "m" | "mb" | "mib" => 1,
        "g" | "gb" | "gib" => 1024,
        "t" | "tb" | "tib" => 1024 * 1024,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use M, G or T)")),
    };
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if v == 0 {
        return Err(format!("{s:?}: the size must be more than 0"));
    }
    Ok(v)
}

/// A hugepage size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HugeSize {
    #[serde(rename = "2M")]
    TwoMiB,
    #[serde(rename = "1G")]
    OneGiB,
}

impl HugeSize {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "2M" | "2MB" | "2MIB" | "2048K" => Ok(HugeSize::TwoMiB),
            "1G" | "1GB" | "1GIB" => Ok(HugeSize::OneGiB),
            _ => Err(format!("--hugepages {s:?}: use 2M or 1G")),
        }
    }
    pub fn kib(self) -> u64 {
        match self {
            HugeSize::TwoMiB => 2048,
            HugeSize::OneGiB => 1024 * 1024,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            HugeSize::TwoMiB => "2M",
            HugeSize::OneGiB => "1G",
        }
    }
}

/// `--network`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "kebab-case")]
pub enum NetworkArg {
    /// A libvirt network (`default`: libvirt's NAT network).
    Network(String),
    Bridge(String),
    Macvtap(String),
    /// QEMU's user-mode networking (no libvirt network needed).
    User,
    None,
}

impl NetworkArg {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |what: &str| format!("--network {s:?}: {what}");
        let ifname = |n: &str| -> Result<String, String> {
            let ok = !n.is_empty()
                && n.len() < 16
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
            if ok {
                Ok(n.to_string())
            } else {
                Err(bad("not an interface name"))
            }
        };
        Ok(match s.split_once('=') {
            None if s == "none" => NetworkArg::None,
            None if s == "user" => NetworkArg::User,
            None if s == "default" => NetworkArg::Network("default".into()),
            Some(("network", n)) => NetworkArg::Network(ifname(n)?),
            Some(("bridge", n)) => NetworkArg::Bridge(ifname(n)?),
            Some(("macvtap", n)) => NetworkArg::Macvtap(ifname(n)?),
            _ => {
                return Err(bad(
                    "use default, network=NAME, bridge=BR, macvtap=IF, user or none",
                ));
            }
        })
    }
}

/// `--disk`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "kebab-case")]
pub enum DiskArg {
    None,
    /// A new qcow2 image of this many MiB.
    New(u64),
    /// An existing image file.
    Image(PathBuf),
    /// A whole block device.
    Block(PathBuf),
}

impl DiskArg {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "none" {
            return Ok(DiskArg::None);
        }
        if s.starts_with("/dev/") {
            return Ok(DiskArg::Block(PathBuf::from(s)));
        }
        if s.starts_with('/') || s.starts_with('.') || s.contains('/') {
            return Ok(DiskArg::Image(PathBuf::from(s)));
        }
        parse_size_mib(s)
            .map(DiskArg::New)
            .map_err(|e| format!("--disk: {e}; or give a path (an image, /dev/…) or none"))
    }
}

/// The image format of an existing file, from its first bytes.
pub fn image_format(head: &[u8]) -> &'static str {
    if head.starts_with(b"QFI\xfb") {
        "qcow2"
    } else {
        "raw"
    }
}

/// A size for `qemu-img` from MiB (`64G` when whole GiB).
pub fn qemu_size(mib: u64) -> String {
    if mib.is_multiple_of(1024) {
        format!("{}G", mib / 1024)
    } else {
        format!("{mib}M")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size_mib("8G"), Ok(8192));
        assert_eq!(parse_size_mib("8GiB"), Ok(8192));
        assert_eq!(parse_size_mib("4096"), Ok(4096));
        assert_eq!(parse_size_mib("64M"), Ok(64));
        assert_eq!(parse_size_mib("1t"), Ok(1 << 20));
        for bad in ["", "G", "8X", "-1G", "0", "1.5G", "99999999999999999999T"] {
            assert!(parse_size_mib(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn networks() {
        assert_eq!(
            NetworkArg::parse("default"),
            Ok(NetworkArg::Network("default".into()))
        );
        assert_eq!(
            NetworkArg::parse("bridge=br0"),
            Ok(NetworkArg::Bridge("br0".into()))
        );
        assert_eq!(
            NetworkArg::parse("macvtap=enp5s0"),
            Ok(NetworkArg::Macvtap("enp5s0".into()))
        );
        assert_eq!(NetworkArg::parse("none"), Ok(NetworkArg::None));
        for bad in [
            "bridge=",
            "bridge=a b",
            "tap=x",
            "bridge=<x>",
            "macvtap=0123456789abcdef",
        ] {
            assert!(NetworkArg::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn disks() {
        assert_eq!(DiskArg::parse("64G"), Ok(DiskArg::New(65536)));
        assert_eq!(
            DiskArg::parse("/dev/sdb"),
            Ok(DiskArg::Block("/dev/sdb".into()))
        );
        assert_eq!(
            DiskArg::parse("/srv/win.qcow2"),
            Ok(DiskArg::Image("/srv/win.qcow2".into()))
        );
        assert_eq!(DiskArg::parse("none"), Ok(DiskArg::None));
        assert!(DiskArg::parse("big").is_err());
        assert_eq!(qemu_size(65536), "64G");
        assert_eq!(qemu_size(100), "100M");
        assert_eq!(image_format(b"QFI\xfb\0\0\0\x03"), "qcow2");
        assert_eq!(image_format(b"\0\0"), "raw");
    }

    proptest! {
        #[test]
        fn size_parsing_never_panics(s in ".{0,24}") {
            let _ = parse_size_mib(&s);
            let _ = DiskArg::parse(&s);
            let _ = NetworkArg::parse(&s);
        }
        #[test]
        fn sizes_round_trip(n in 1u64..1_000_000) {
            prop_assert_eq!(parse_size_mib(&format!("{n}M")), Ok(n));
            prop_assert_eq!(parse_size_mib(&qemu_size(n)), Ok(n));
        }
    }
}
