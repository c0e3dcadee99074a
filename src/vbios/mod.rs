//! A GPU's option ROM ("VBIOS"): is a ROM file one a VM can use?
//!
//! [`check`] is pure: it walks the ROM's image chain as firmware does and
//! says what it found ([`RomReport`], JSON schema `exliar.vbios/1`). The
//! layouts are the published ones:
//!
//! * every image starts with the expansion ROM header: `0x55 0xAA`, and at
//!   `+0x18` a little-endian `u16` pointer to the image's PCI Data Structure
//!   (PCI Firmware Specification 3.0, "PCI Expansion ROM");
//! * the PCI Data Structure: `"PCIR"`, vendor `u16` at `+4`, device `u16` at
//!   `+6`, device list pointer `u16` at `+8` (revision 3 and later; a list
//!   of device ids ending with 0, relative to the structure), its length at
//!   `+0xA`, its revision at `+0xC`, the class code (3 bytes, programming
//!   interface first) at `+0xD`, the image length in 512-byte units at
//!   `+0x10`, the code revision at `+0x12`, the code type at `+0x14` (0 x86
//!   PC-AT, 1 Open Firmware, 2 PA-RISC, 3 UEFI) and the indicator at
//!   `+0x15`, whose bit 7 marks the last image;
//! * a legacy x86 image: its initialization size in 512-byte units at `+2`;
//!   the bytes it covers sum to 0 (mod 256), which SeaBIOS checks;
//! * a UEFI image (UEFI specification, "PCI Option ROMs"): the
//!   initialization size `u16` at `+2`, the EFI signature `0x0EF1` (`u32`)
//!   at `+4`, the subsystem at `+8`, the machine type at `+0xA`, the
//!   compression type at `+0xC` (1: UEFI compression) and the offset of the
//!   PE image at `+0x16`.
//!
//! The chain is walked the way OVMF (EDK2's PCI bus driver) walks it: image
//! after image by the PCIR image length, until an image is marked last or
//! no signature is found. Some dumps (nvflash's, for NVIDIA cards) carry a
//! header before the first image; [`check`] finds the image after it and
//! [`strip`] removes it.
//!
//! [`dump`] reads a device's ROM through sysfs.

pub mod synth;
mod sysfs;

use serde::{Serialize, Serializer};

pub use sysfs::{Dump, VbiosError, dump};

/// The JSON schema name of [`RomReport`].
pub const SCHEMA: &str = "exliar.vbios/1";

/// A ROM is at most 16 MiB (the UEFI specification's limit for an option
/// ROM; the PCI expansion ROM BAR of a GPU is far smaller).
pub const ROM_LIMIT: u64 = crate::host::readfile::ROM_LIMIT;

/// At most this many images are walked: a real ROM has a handful.
const MAX_IMAGES: usize = 64;
/// The entries of a device list that are read (it ends with 0).
const MAX_DEVICE_LIST: usize = 256;
/// The header fields read: up to the PCIR pointer.
const HEADER_LEN: usize = 0x1A;
/// The PCI Data Structure fields read (revision 2.x length).
const PCIR_LEN: usize = 0x18;

/// What an image's code is for (PCIR code type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CodeType {
    /// 0: x86 PC-AT compatible (legacy BIOS, SeaBIOS).
    X86,
    /// 1: Open Firmware (IEEE 1275).
    OpenFirmware,
    /// 2: HP PA-RISC.
    PaRisc,
    /// 3: UEFI (a driver OVMF loads; a GPU's is its GOP driver).
    Uefi,
    /// Anything else (vendors' own images, NVIDIA's among them).
    Other,
}

impl CodeType {
    fn of(raw: u8) -> Self {
        match raw {
            0 => CodeType::X86,
            1 => CodeType::OpenFirmware,
            2 => CodeType::PaRisc,
            3 => CodeType::Uefi,
            _ => CodeType::Other,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            CodeType::X86 => "legacy x86 BIOS",
            CodeType::OpenFirmware => "Open Firmware",
            CodeType::PaRisc => "PA-RISC",
            CodeType::Uefi => "UEFI",
            CodeType::Other => "vendor-specific",
        }
    }
}

/// The UEFI header of a code-type-3 image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EfiImage {
    /// The EFI signature `0x0EF1` is there.
    pub signature_ok: bool,
    /// 10 application, 11 boot-service driver (a GOP is one), 12 runtime driver.
    pub subsystem: u16,
    /// `application`, `boot-service-driver`, `runtime-driver`, `other`.
    pub subsystem_name: &'static str,
    /// PE machine type: `0x8664` x64, `0x014c` IA32, `0xaa64` AArch64, `0x0ebc` EBC.
    #[serde(serialize_with = "hex4")]
    pub machine_type: u16,
    /// `x64`, `ia32`, `aarch64`, `ebc`, `arm`, `riscv64`, `loongarch64`, `ia64`, `other`.
    pub machine: &'static str,
    /// Compressed with the UEFI compression algorithm (compression type 1).
    pub compressed: bool,
    pub compression_type: u16,
}

impl EfiImage {
    /// Whether OVMF on an x86-64 guest can run it (x64 or EFI byte code).
    pub fn runs_on_x64(&self) -> bool {
        matches!(self.machine_type, 0x8664 | 0x0EBC)
    }
}

/// One image of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RomImage {
    /// Offset of its `0x55 0xAA` in the file.
    pub offset: usize,
    /// Its length from the PCIR (512-byte units × 512).
    pub length: usize,
    #[serde(serialize_with = "hex4")]
    pub vendor: u16,
    #[serde(serialize_with = "hex4")]
    pub device: u16,
    /// Further device ids the image is for (PCIR 3.0 device list).
    #[serde(serialize_with = "hex4_list")]
    pub device_list: Vec<u16>,
    /// `0x030000`: base class, subclass, programming interface.
    #[serde(serialize_with = "class_hex")]
    pub class_code: u32,
    pub pcir_revision: u8,
    pub code_revision: u16,
    pub code_type: CodeType,
    /// The raw PCIR code type byte.
    pub code_type_raw: u8,
    /// Bit 7 of the indicator: the last image of the chain.
    pub last: bool,
    /// The file ends inside the image.
    pub truncated: bool,
    /// Legacy x86 images: whether the initialized bytes sum to 0 (`None`
    /// for other images and truncated ones).
    pub checksum_ok: Option<bool>,
    /// UEFI images: their EFI header.
    pub efi: Option<EfiImage>,
}

impl RomImage {
    /// Whether the image is for `vendor:device` (its own ids or its device list).
    pub fn is_for(&self, vendor: u16, device: u16) -> bool {
        self.vendor == vendor && (self.device == device || self.device_list.contains(&device))
    }

    /// A complete UEFI image with the EFI signature: what OVMF loads.
    pub fn is_uefi_driver(&self) -> bool {
        self.code_type == CodeType::Uefi
            && !self.truncated
            && self.efi.as_ref().is_some_and(|e| e.signature_ok)
    }
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The ROM cannot be used as it is.
    Error,
    /// It may work, with a limitation.
    Warning,
    /// Worth knowing.
    Note,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        }
    }
}

/// One thing found, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// A stable id (`no-uefi`, `id-mismatch`, …; listed in docs/json.md).
    pub id: &'static str,
    pub severity: Severity,
    pub message: String,
    pub remedy: String,
}

/// The ids a ROM is expected to be for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExpectedIds {
    #[serde(serialize_with = "hex4")]
    pub vendor: u16,
    #[serde(serialize_with = "hex4")]
    pub device: u16,
}

/// What [`check`] found (`exliar.vbios/1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RomReport {
    pub schema: &'static str,
    pub exliar_version: &'static str,
    /// The file's size in bytes.
    pub size: usize,
    /// Bytes before the first image (a dump tool's header); 0 when the
    /// file starts with its first image.
    pub prefix_bytes: usize,
    /// The image chain, in order.
    pub images: Vec<RomImage>,
    /// Bytes after the image marked last (padding, vendor data).
    pub trailing_bytes: usize,
    /// The card the ROM is checked against, when given.
    pub expected: Option<ExpectedIds>,
    /// The file starts with a valid image (`0x55 0xAA` and a PCIR).
    pub signature_ok: bool,
    /// Every image is for the expected card; `None` when none was given.
    pub ids_match: Option<bool>,
    /// It has a legacy x86 image (what SeaBIOS runs).
    pub has_legacy: bool,
    /// It has a complete UEFI image (a GOP driver: what OVMF runs).
    pub has_uefi_gop: bool,
    /// Usable as a VM's ROM file as it is: the signature is at the start,
    /// the ids match when a card was given, it has a UEFI image, and
    /// nothing is broken (no finding of severity `error`).
    pub usable: bool,
    pub findings: Vec<Finding>,
    /// Sentences about where the ROM came from, filled by its reader
    /// (`vbios dump`: the boot display's shadowed copy, a ROM left
    /// enabled); [`check`] leaves it empty.
    pub warnings: Vec<String>,
}

impl RomReport {
    /// The findings of severity `error`.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }
}

// --- serializers -----------------------------------------------------------------

fn hex4<S: Serializer>(v: &u16, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{v:04x}"))
}

fn hex4_list<S: Serializer>(v: &[u16], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|d| format!("{d:04x}")))
}

fn class_hex<S: Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("0x{v:06x}"))
}

// --- reading ---------------------------------------------------------------------

fn u16_at(rom: &[u8], at: usize) -> Option<u16> {
    let b = rom.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(rom: &[u8], at: usize) -> Option<u32> {
    let b = rom.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn has_signature(rom: &[u8], at: usize) -> bool {
    rom.get(at..at.saturating_add(2)) == Some(&[0x55, 0xAA][..])
}

/// The offset of the PCI Data Structure of the image at `at`, when its
/// pointer leads to a whole `"PCIR"` structure inside the buffer.
fn pcir_of(rom: &[u8], at: usize) -> Option<usize> {
    let ptr = u16_at(rom, at + 0x18)?;
    let pcir = at.checked_add(usize::from(ptr))?;
    let end = pcir.checked_add(PCIR_LEN)?;
    (end <= rom.len() && &rom[pcir..pcir + 4] == b"PCIR").then_some(pcir)
}

/// Where the first image starts: 0 when the file starts with a signature
/// (an image, perhaps damaged: the walk says how); else the first
/// `0x55 0xAA` whose PCIR pointer leads to a `"PCIR"` (a dump tool's header
/// comes before it); `None` when there is no image.
fn first_image(rom: &[u8]) -> Option<usize> {
    if has_signature(rom, 0) {
        return Some(0);
    }
    rom.windows(2)
        .enumerate()
        .skip(1)
        .filter(|(_, w)| *w == [0x55, 0xAA])
        .map(|(i, _)| i)
        .find(|&i| pcir_of(rom, i).is_some())
}

fn subsystem_name(v: u16) -> &'static str {
    match v {
        10 => "application",
        11 => "boot-service-driver",
        12 => "runtime-driver",
        _ => "other",
    }
}

fn machine_name(v: u16) -> &'static str {
    match v {
        0x8664 => "x64",
        0x014C => "ia32",
        0xAA64 => "aarch64",
        0x0EBC => "ebc",
        0x01C2 => "arm",
        0x0200 => "ia64",
        0x5064 => "riscv64",
        0x6264 => "loongarch64",
        _ => "other",
    }
}

/// Sum of bytes mod 256 over the bytes a legacy BIOS checks: the
/// initialization size (header byte 2, in 512-byte units), or the image
/// length when that is 0 or runs past the image.
fn legacy_checksum_ok(rom: &[u8], at: usize, image_len: usize) -> bool {
    let init = usize::from(rom.get(at + 2).copied().unwrap_or(0)) * 512;
    let n = if init == 0 || init > image_len {
        image_len
    } else {
        init
    };
    let bytes = rom.get(at..at + n).unwrap_or(&[]);
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)) == 0
}

fn finding(
    id: &'static str,
    severity: Severity,
    message: String,
    remedy: impl Into<String>,
) -> Finding {
    Finding {
        id,
        severity,
        message,
        remedy: remedy.into(),
    }
}

const REDUMP: &str = "dump it again (exliar vbios dump ADDR -o FILE, from a card that did not initialise the host's display) or take the card vendor's ROM file";

/// Walk the chain from `start`; returns the images and where the walk
/// stopped after an image marked last (`None` when it stopped otherwise).
fn walk(rom: &[u8], start: usize, findings: &mut Vec<Finding>) -> (Vec<RomImage>, Option<usize>) {
    let mut images: Vec<RomImage> = Vec::new();
    let mut at = start;
    loop {
        let n = images.len();
        if n == MAX_IMAGES {
            findings.push(finding(
                "too-many-images",
                Severity::Error,
                format!("more than {MAX_IMAGES} images; the walk stopped at 0x{at:x}"),
                "this is not a GPU ROM as firmware expects it; ".to_string() + REDUMP,
            ));
            return (images, None);
        }
        if !has_signature(rom, at) {
            // Only reached after an image not marked last (the first
            // image's signature was found by `first_image`).
            findings.push(finding(
                "chain-broken",
                Severity::Error,
                format!(
                    "image {} is not marked last, but no image starts after it (no 0x55 0xAA at 0x{at:x})",
                    n.saturating_sub(1)
                ),
                "the ROM is damaged or cut; ".to_string() + REDUMP,
            ));
            return (images, None);
        }
        if at + HEADER_LEN > rom.len() {
            findings.push(finding(
                "truncated",
                Severity::Error,
                format!(
                    "image {n} at 0x{at:x}: the file ends inside its header ({} of {HEADER_LEN} bytes)",
                    rom.len() - at
                ),
                "the dump is incomplete; ".to_string() + REDUMP,
            ));
            return (images, None);
        }
        let ptr = u16_at(rom, at + 0x18).unwrap_or(0);
        let Some(pcir) = pcir_of(rom, at) else {
            let target = at + usize::from(ptr);
            let (id, what) = if target + PCIR_LEN > rom.len() {
                ("pcir-out-of-range", "points past the end of the file")
            } else {
                ("pcir-missing", "does not point at a \"PCIR\" structure")
            };
            findings.push(finding(
                id,
                Severity::Error,
                format!(
                    "image {n} at 0x{at:x}: its PCI data structure pointer (0x{ptr:04x}) {what}"
                ),
                "this is not a valid PCI option ROM (damaged, cut or not a ROM); ".to_string()
                    + REDUMP,
            ));
            return (images, None);
        };
        let vendor = u16_at(rom, pcir + 4).unwrap_or(0);
        let device = u16_at(rom, pcir + 6).unwrap_or(0);
        let list_ptr = u16_at(rom, pcir + 8).unwrap_or(0);
        let revision = rom[pcir + 0xC];
        let class_code = u32::from(rom[pcir + 0xF]) << 16
            | u32::from(rom[pcir + 0xE]) << 8
            | u32::from(rom[pcir + 0xD]);
        let length = usize::from(u16_at(rom, pcir + 0x10).unwrap_or(0)) * 512;
        let code_revision = u16_at(rom, pcir + 0x12).unwrap_or(0);
        let raw_type = rom[pcir + 0x14];
        let last = rom[pcir + 0x15] & 0x80 != 0;
        let code_type = CodeType::of(raw_type);
        let available = rom.len() - at;
        let truncated = length > available;
        let image_end = at + length.min(available);

        let mut device_list = Vec::new();
        if revision >= 3 && list_ptr != 0 {
            let mut p = pcir + usize::from(list_ptr);
            while device_list.len() < MAX_DEVICE_LIST {
                match u16_at(rom, p) {
                    Some(0) | None => break,
                    Some(d) => device_list.push(d),
                }
                p += 2;
            }
        }
        let checksum_ok =
            (code_type == CodeType::X86 && !truncated).then(|| legacy_checksum_ok(rom, at, length));
        let efi = (code_type == CodeType::Uefi).then(|| {
            let subsystem = u16_at(rom, at + 8).unwrap_or(0);
            let machine_type = u16_at(rom, at + 0xA).unwrap_or(0);
            let compression_type = u16_at(rom, at + 0xC).unwrap_or(0);
            EfiImage {
                signature_ok: u32_at(rom, at + 4) == Some(0x0EF1),
                subsystem,
                subsystem_name: subsystem_name(subsystem),
                machine_type,
                machine: machine_name(machine_type),
                compressed: compression_type == 1,
                compression_type,
            }
        });
        images.push(RomImage {
            offset: at,
            length,
            vendor,
            device,
            device_list,
            class_code,
            pcir_revision: revision,
            code_revision,
            code_type,
            code_type_raw: raw_type,
            last,
            truncated,
            checksum_ok,
            efi,
        });
        if length == 0 {
            findings.push(finding(
                "zero-length",
                Severity::Error,
                format!("image {n} at 0x{at:x} declares a length of 0; the chain cannot go on"),
                "the ROM is damaged; ".to_string() + REDUMP,
            ));
            return (images, None);
        }
        if truncated {
            findings.push(finding(
                "truncated",
                Severity::Error,
                format!(
                    "image {n} at 0x{at:x} is {length} bytes long, but the file ends {available} bytes into it"
                ),
                "the dump is incomplete; ".to_string() + REDUMP,
            ));
            return (images, None);
        }
        at = image_end;
        if last {
            return (images, Some(at));
        }
        if at >= rom.len() {
            findings.push(finding(
                "no-last-image",
                Severity::Warning,
                format!(
                    "no image is marked last (PCIR indicator bit 7); the chain runs to the end of the file after image {n}"
                ),
                "firmware stops at the end of the ROM, so this usually works; a ROM from the card's vendor is marked properly",
            ));
            return (images, None);
        }
    }
}

/// Check a ROM file: its image chain, and (with `expect`, the card's
/// `(vendor, device)`) whether it is this card's ROM. Never panics.
pub fn check(rom: &[u8], expect: Option<(u16, u16)>) -> RomReport {
    let mut findings = Vec::new();
    let expected = expect.map(|(vendor, device)| ExpectedIds { vendor, device });
    let start = first_image(rom);
    let (images, end) = match start {
        Some(s) => walk(rom, s, &mut findings),
        None => {
            let blank =
                !rom.is_empty() && (rom.iter().all(|b| *b == 0xFF) || rom.iter().all(|b| *b == 0));
            let what = if rom.is_empty() {
                "the file is empty".to_string()
            } else if blank {
                format!("all {} bytes are 0x{:02x}", rom.len(), rom[0])
            } else {
                "no 0x55 0xAA signature with a PCI data structure anywhere in the file".to_string()
            };
            findings.push(finding(
                "no-signature",
                Severity::Error,
                format!("not a PCI option ROM: {what}"),
                "a ROM read as all 0xff or all zeros means the card's ROM was not readable; "
                    .to_string()
                    + REDUMP,
            ));
            (Vec::new(), None)
        }
    };
    let prefix_bytes = start.unwrap_or(0);
    if prefix_bytes > 0 {
        findings.push(finding(
            "prefix",
            Severity::Error,
            format!(
                "{prefix_bytes} bytes (0x{prefix_bytes:x}) come before the first image: the header some dump tools (nvflash) write; QEMU needs the file to start with the image"
            ),
            "write a copy without it: exliar vbios check FILE --strip OUT",
        ));
    }
    let signature_ok = start == Some(0) && !images.is_empty();
    let trailing_bytes = end.map_or(0, |e| rom.len().saturating_sub(e));

    let ids_match = expected.map(|e| {
        let mut all = !images.is_empty();
        for (i, img) in images.iter().enumerate() {
            if !img.is_for(e.vendor, e.device) {
                all = false;
                findings.push(finding(
                    "id-mismatch",
                    Severity::Error,
                    format!(
                        "image {i} ({}) is for {:04x}:{:04x}, the card is {:04x}:{:04x}",
                        img.code_type.describe(),
                        img.vendor,
                        img.device,
                        e.vendor,
                        e.device
                    ),
                    "use the ROM of this exact card model (same vendor:device); another model's ROM can hang the guest or be ignored by the firmware",
                ));
            }
        }
        all
    });

    for (i, img) in images.iter().enumerate() {
        if img.checksum_ok == Some(false) {
            findings.push(finding(
                "checksum",
                Severity::Warning,
                format!("image {i} (legacy x86): its bytes do not sum to 0; the ROM was modified or damaged"),
                "SeaBIOS refuses such an image (OVMF does not check it); use an unmodified ROM, or fix the checksum byte if you edited it on purpose",
            ));
        }
        if let Some(efi) = &img.efi
            && !efi.signature_ok
        {
            findings.push(finding(
                "efi-signature",
                Severity::Warning,
                format!("image {i} is marked UEFI but has no EFI signature (0x0EF1)"),
                "OVMF will not load it; ".to_string() + REDUMP,
            ));
        }
    }

    let has_legacy = images.iter().any(|i| i.code_type == CodeType::X86);
    let has_uefi_gop = images.iter().any(RomImage::is_uefi_driver);
    if !images.is_empty() && !has_uefi_gop {
        findings.push(finding(
            "no-uefi",
            Severity::Error,
            "no UEFI image: OVMF cannot show the card's output before the guest driver loads".to_string(),
            "use a ROM with a GOP image (from the card's vendor, or techpowerup's VGA BIOS collection) or boot the VM with legacy BIOS (SeaBIOS)",
        ));
    }
    if has_uefi_gop
        && !images
            .iter()
            .filter(|i| i.is_uefi_driver())
            .any(|i| i.efi.as_ref().is_some_and(EfiImage::runs_on_x64))
    {
        findings.push(finding(
            "efi-machine",
            Severity::Warning,
            "no UEFI image is for x64 or EFI byte code: OVMF in an x86-64 guest cannot run it"
                .to_string(),
            "use the x86-64 ROM of this card",
        ));
    }
    if !images.is_empty() && !has_legacy {
        findings.push(finding(
            "no-legacy",
            Severity::Note,
            "no legacy x86 image: a VM with SeaBIOS (legacy BIOS) shows nothing until the guest driver loads".to_string(),
            "boot the VM with OVMF (UEFI)",
        ));
    }

    let usable = signature_ok
        && ids_match != Some(false)
        && has_uefi_gop
        && !findings.iter().any(|f| f.severity == Severity::Error);
    findings.sort_by_key(|f| f.severity);
    RomReport {
        schema: SCHEMA,
        exliar_version: env!("CARGO_PKG_VERSION"),
        size: rom.len(),
        prefix_bytes,
        images,
        trailing_bytes,
        expected,
        signature_ok,
        ids_match,
        has_legacy,
        has_uefi_gop,
        usable,
        findings,
        warnings: Vec::new(),
    }
}

/// Read a ROM file a user named (`--vbios FILE`, `vbios check FILE`): a
/// regular file or a pipe, at most [`ROM_LIMIT`] bytes, never a device
/// node. The error does not name the file; the caller does.
pub fn read_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    crate::host::readfile::read_input(path, ROM_LIMIT)
}

/// A copy of `rom` starting at its first image, when a header comes before
/// it; `None` when there is nothing to strip (the file starts with its
/// image, or has none).
pub fn strip(rom: &[u8]) -> Option<Vec<u8>> {
    match first_image(rom) {
        Some(at) if at > 0 => Some(rom[at..].to_vec()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
