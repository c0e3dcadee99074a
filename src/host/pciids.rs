//! Names from the system's `pci.ids`, looked up lazily.
//!
//! The file (about 1.3 MB) is not read whole: the first lookup streams it
//! once to index where each vendor's block lies, and each vendor looked up
//! has its block read (see [`super::idsdb`]). Results are cached, so a host
//! with 4096 functions of three vendors reads three blocks.

use super::idsdb::IdsDb;

/// Where distributions install `pci.ids`, relative to the host root.
pub const PCI_IDS_PATHS: &[&str] = &[
    "usr/share/misc/pci.ids",
    "usr/share/hwdata/pci.ids",
    "usr/share/pci.ids",
];

/// A lazily-searched `pci.ids` text (see [`super::idsdb`]).
#[derive(Debug, Default)]
pub struct PciIds(IdsDb);

impl PciIds {
    pub fn new(text: String) -> Self {
        Self(IdsDb::new("pci.ids", text))
    }

    /// Names from the open `pci.ids` file of `len` bytes, read as lookups
    /// need it (see [`super::idsdb`]).
    pub fn from_file(file: std::fs::File, len: u64) -> Self {
        Self(IdsDb::from_file("pci.ids", file, len))
    }

    /// An empty database: every lookup gives `None`.
    pub fn empty() -> Self {
        Self::new(String::new())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether names are read from an open file as lookups need them
    /// (rather than from a text in memory).
    #[cfg(test)]
    pub(crate) fn reads_a_file(&self) -> bool {
        self.0.reads_a_file()
    }

    /// A `pci.ids` holding only the lines looked up so far: what a snapshot
    /// needs to reproduce the same names.
    pub fn trimmed(&self) -> String {
        self.0.trimmed()
    }

    pub fn vendor(&self, vendor: u16) -> Option<String> {
        self.0.vendor(vendor)
    }

    /// A device of `vendor` (subsystem lines are not devices).
    pub fn device(&self, vendor: u16, device: u16) -> Option<String> {
        self.0.item(vendor, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# comment 10de  fake\n\
1002  Advanced Micro Devices, Inc. [AMD/ATI]\n\
\t67df  Ellesmere [Radeon RX 470/480/570/570X/580/580X/590]\n\
\t\t1002 0b37  Radeon RX 480\n\
\taaf0  Ellesmere HDMI Audio [Radeon RX 470/480 / 570/580/590]\n\
10de  NVIDIA Corporation\n\
\t1401  GM206 [GeForce GTX 960]\n\
# a comment inside\n\
\t0fba  GM206 High Definition Audio Controller\n\
C 03  Display controller\n\
\t00  VGA compatible controller\n";

    #[test]
    fn finds_vendors_and_devices() {
        let ids = PciIds::new(SAMPLE.to_string());
        assert_eq!(ids.vendor(0x10de).as_deref(), Some("NVIDIA Corporation"));
        assert_eq!(
            ids.device(0x10de, 0x0fba).as_deref(),
            Some("GM206 High Definition Audio Controller")
        );
        assert_eq!(
            ids.device(0x1002, 0x67df).as_deref(),
            Some("Ellesmere [Radeon RX 470/480/570/570X/580/580X/590]")
        );
        // Subsystem lines are not device lines.
        assert_eq!(ids.device(0x1002, 0x1002), None);
        assert_eq!(ids.device(0x10de, 0x9999), None);
        assert_eq!(ids.vendor(0x1234), None);
        // Cached answers agree.
        assert_eq!(ids.vendor(0x10de).as_deref(), Some("NVIDIA Corporation"));
    }

    #[test]
    fn trimmed_copy_answers_the_same() {
        let ids = PciIds::new(SAMPLE.to_string());
        let _ = ids.device(0x10de, 0x0fba);
        let _ = ids.device(0x10de, 0x9999);
        let small = PciIds::new(ids.trimmed());
        assert_eq!(small.vendor(0x10de), ids.vendor(0x10de));
        assert_eq!(small.device(0x10de, 0x0fba), ids.device(0x10de, 0x0fba));
        assert_eq!(small.vendor(0x1002), None);
        assert!(ids.trimmed().len() < SAMPLE.len());
    }

    #[test]
    fn empty_database_answers_none() {
        let ids = PciIds::empty();
        assert_eq!(ids.vendor(0x10de), None);
        assert_eq!(ids.device(0x10de, 0x1401), None);
    }
}
