//! The GPU knowledge file (`data/gpu-db.toml`), compiled in at build time.
//!
//! `build.rs` turns the file into a Rust `static` (`OUT_DIR/gpu-db.rs`), so
//! the embedded database costs nothing at run time: no parse, no
//! allocation. Another file (`GpuDb::parse`) is read into owned values of
//! the same types.

use std::borrow::Cow;

use serde::Deserialize;

/// The embedded data file's text.
pub const GPU_DB_TOML: &str = include_str!("../../data/gpu-db.toml");

/// Text: borrowed in the embedded database, owned in a parsed one.
pub type Text = Cow<'static, str>;
/// A list: borrowed in the embedded database, owned in a parsed one.
pub type List<T> = Cow<'static, [T]>;

// `static EMBEDDED: GpuDb`, written by build.rs from data/gpu-db.toml.
include!(concat!(env!("OUT_DIR"), "/gpu-db.rs"));

#[derive(Debug, Clone, Deserialize)]
pub struct IdSet {
    pub vendor: Text,
    /// Empty: every device of the vendor.
    #[serde(default)]
    pub devices: List<Text>,
    pub name: Text,
    pub source: Text,
}

impl IdSet {
    fn matches(&self, vendor: u16, device: Option<u16>) -> bool {
        hex_eq(&self.vendor, vendor)
            && (self.devices.is_empty()
                || device.is_some_and(|d| self.devices.iter().any(|x| hex_eq(x, d))))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuirkMatch {
    Ids,
    CardClasses,
    BootDisplay,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Quirk {
    pub id: Text,
    #[serde(rename = "match")]
    pub matcher: QuirkMatch,
    pub vendor: Text,
    #[serde(default)]
    pub devices: List<Text>,
    #[serde(default)]
    pub classes: List<Text>,
    pub title: Text,
    pub advice: Text,
    #[serde(default)]
    pub needs: Text,
    pub source: Text,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GpuDb {
    #[serde(default)]
    pub bmc: List<IdSet>,
    #[serde(default)]
    pub integrated: List<IdSet>,
    #[serde(default, rename = "quirk")]
    pub quirks: List<Quirk>,
}

fn hex_eq(text: &str, v: u16) -> bool {
    u16::from_str_radix(text, 16).is_ok_and(|x| x == v)
}

/// What a quirk needs to know about one GPU.
#[derive(Debug, Clone, Copy)]
pub struct QuirkSubject<'a> {
    pub vendor_id: Option<u16>,
    pub device_id: Option<u16>,
    pub boot_display: bool,
    /// Class/subclass of every function of the card with the GPU's vendor.
    pub card_classes: &'a [u16],
}

impl GpuDb {
    /// Parse a data file.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The embedded data file, as build.rs compiled it (a file that does
    /// not parse fails the build).
    pub fn embedded() -> &'static GpuDb {
        &EMBEDDED
    }

    pub fn bmc(&self, vendor: Option<u16>, device: Option<u16>) -> Option<&IdSet> {
        let v = vendor?;
        self.bmc.iter().find(|s| s.matches(v, device))
    }

    pub fn integrated(&self, vendor: Option<u16>, device: Option<u16>) -> Option<&IdSet> {
        let v = vendor?;
        self.integrated.iter().find(|s| s.matches(v, device))
    }

    pub fn quirks_for(&self, s: QuirkSubject<'_>) -> Vec<&Quirk> {
        let Some(vendor) = s.vendor_id else {
            return Vec::new();
        };
        self.quirks
            .iter()
            .filter(|q| hex_eq(&q.vendor, vendor))
            .filter(|q| match q.matcher {
                QuirkMatch::Ids => s
                    .device_id
                    .is_some_and(|d| q.devices.iter().any(|x| hex_eq(x, d))),
                QuirkMatch::CardClasses => q
                    .classes
                    .iter()
                    .any(|c| s.card_classes.iter().any(|cc| hex_eq(c, *cc))),
                QuirkMatch::BootDisplay => s.boot_display,
            })
            .collect()
    }

    pub fn quirk(&self, id: &str) -> Option<&Quirk> {
        self.quirks.iter().find(|q| q.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_static_is_the_toml() -> Result<(), Box<dyn std::error::Error>> {
        let from_toml = GpuDb::parse(GPU_DB_TOML)?;
        // Cow's Debug shows the text, not whether it is borrowed.
        assert_eq!(format!("{:?}", GpuDb::embedded()), format!("{from_toml:?}"));
        assert!(matches!(EMBEDDED.quirks, Cow::Borrowed(_)));
        Ok(())
    }

    #[test]
    fn embedded_file_parses_and_every_entry_has_a_source() -> Result<(), toml::de::Error> {
        let db = GpuDb::parse(GPU_DB_TOML)?;
        assert!(!db.bmc.is_empty() && !db.integrated.is_empty() && db.quirks.len() >= 3);
        for q in db.quirks.iter() {
            assert!(!q.source.trim().is_empty(), "quirk {} has no source", q.id);
            assert!(u16::from_str_radix(&q.vendor, 16).is_ok(), "{}", q.id);
            for d in q.devices.iter() {
                assert!(
                    d.len() == 4 && u16::from_str_radix(d, 16).is_ok(),
                    "{}: {d}",
                    q.id
                );
            }
        }
        for s in db.bmc.iter().chain(db.integrated.iter()) {
            assert!(!s.source.trim().is_empty(), "{} has no source", s.name);
            for d in s.devices.iter() {
                assert!(
                    d.len() == 4 && u16::from_str_radix(d, 16).is_ok(),
                    "{}: {d}",
                    s.name
                );
            }
        }
        let ids: std::collections::BTreeSet<_> = db.quirks.iter().map(|q| &q.id).collect();
        assert_eq!(ids.len(), db.quirks.len(), "quirk ids are unique");
        Ok(())
    }

    #[test]
    fn matches_reset_bug_and_usb_functions() {
        let db = GpuDb::embedded();
        let polaris = db.quirks_for(QuirkSubject {
            vendor_id: Some(0x1002),
            device_id: Some(0x67df),
            boot_display: false,
            card_classes: &[0x0300, 0x0403],
        });
        assert_eq!(
            polaris.iter().map(|q| &*q.id).collect::<Vec<_>>(),
            ["amd-reset-bug"]
        );
        let turing = db.quirks_for(QuirkSubject {
            vendor_id: Some(0x10de),
            device_id: Some(0x1e84),
            boot_display: false,
            card_classes: &[0x0300, 0x0403, 0x0c03, 0x0c80],
        });
        assert_eq!(
            turing.iter().map(|q| &*q.id).collect::<Vec<_>>(),
            ["nvidia-usb-ucsi"]
        );
        assert!(db.bmc(Some(0x1a03), Some(0x2000)).is_some());
        assert!(db.integrated(Some(0x1002), Some(0x1638)).is_some());
        assert!(db.integrated(Some(0x1002), Some(0x67df)).is_none());
    }
}
