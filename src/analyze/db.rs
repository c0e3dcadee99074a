//! The GPU knowledge file (`data/gpu-db.toml`), embedded at build time.

use serde::Deserialize;

/// The embedded data file's text.
pub const GPU_DB_TOML: &str = include_str!("../../data/gpu-db.toml");

/// The same file as JSON, converted by `build.rs`: what exliar reads at run
/// time (a fraction of the TOML parse, which every bind paid).
const GPU_DB_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/gpu-db.json"));

#[derive(Debug, Clone, Deserialize)]
pub struct IdSet {
    pub vendor: String,
    /// Empty: every device of the vendor.
    #[serde(default)]
    pub devices: Vec<String>,
    pub name: String,
    pub source: String,
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
    pub id: String,
    #[serde(rename = "match")]
    pub matcher: QuirkMatch,
    pub vendor: String,
    #[serde(default)]
    pub devices: Vec<String>,
    #[serde(default)]
    pub classes: Vec<String>,
    pub title: String,
    pub advice: String,
    #[serde(default)]
    pub needs: String,
    pub source: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GpuDb {
    #[serde(default)]
    pub bmc: Vec<IdSet>,
    #[serde(default)]
    pub integrated: Vec<IdSet>,
    #[serde(default, rename = "quirk")]
    pub quirks: Vec<Quirk>,
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

    /// The embedded data file. It is checked by the test suite, so a parse
    /// failure here is a build defect; it degrades to an empty database.
    pub fn embedded() -> Self {
        serde_json::from_str(GPU_DB_JSON).unwrap_or(GpuDb {
            bmc: Vec::new(),
            integrated: Vec::new(),
            quirks: Vec::new(),
        })
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
    fn embedded_json_is_the_toml() -> Result<(), Box<dyn std::error::Error>> {
        let from_toml = GpuDb::parse(GPU_DB_TOML)?;
        let from_json: GpuDb = serde_json::from_str(GPU_DB_JSON)?;
        assert_eq!(format!("{from_json:?}"), format!("{from_toml:?}"));
        assert_eq!(format!("{:?}", GpuDb::embedded()), format!("{from_toml:?}"));
        Ok(())
    }

    #[test]
    fn embedded_file_parses_and_every_entry_has_a_source() -> Result<(), toml::de::Error> {
        let db = GpuDb::parse(GPU_DB_TOML)?;
        assert!(!db.bmc.is_empty() && !db.integrated.is_empty() && db.quirks.len() >= 3);
        for q in &db.quirks {
            assert!(!q.source.trim().is_empty(), "quirk {} has no source", q.id);
            assert!(u16::from_str_radix(&q.vendor, 16).is_ok(), "{}", q.id);
            for d in &q.devices {
                assert!(
                    d.len() == 4 && u16::from_str_radix(d, 16).is_ok(),
                    "{}: {d}",
                    q.id
                );
            }
        }
        for s in db.bmc.iter().chain(&db.integrated) {
            assert!(!s.source.trim().is_empty(), "{} has no source", s.name);
            for d in &s.devices {
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
            polaris.iter().map(|q| q.id.as_str()).collect::<Vec<_>>(),
            ["amd-reset-bug"]
        );
        let turing = db.quirks_for(QuirkSubject {
            vendor_id: Some(0x10de),
            device_id: Some(0x1e84),
            boot_display: false,
            card_classes: &[0x0300, 0x0403, 0x0c03, 0x0c80],
        });
        assert_eq!(
            turing.iter().map(|q| q.id.as_str()).collect::<Vec<_>>(),
            ["nvidia-usb-ucsi"]
        );
        assert!(db.bmc(Some(0x1a03), Some(0x2000)).is_some());
        assert!(db.integrated(Some(0x1002), Some(0x1638)).is_some());
        assert!(db.integrated(Some(0x1002), Some(0x67df)).is_none());
    }
}
