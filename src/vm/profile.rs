//! VM profiles: per-OS defaults, TOML files shipped in `profiles/` and
//! overridable by `/etc/exliar/profiles/NAME.toml`.

use serde::Deserialize;

use crate::host::HostRoot;

use super::create::FirmwareChoice;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    #[serde(skip)]
    pub name: String,
    /// `windows` or `linux`.
    pub os: String,
    /// `efi-secure`, `efi` or `bios`.
    pub firmware: FirmwareChoice,
    pub tpm: bool,
    /// Hyper-V enlightenments (Windows guests).
    pub hyperv: bool,
    /// The guest clock: `localtime` (Windows) or `utc`.
    pub clock: String,
    /// virtio disk and NIC (for Windows only when the virtio-win ISO is there).
    pub virtio: bool,
    pub memory_mib: u64,
    pub cpus: u32,
    pub disk_mib: u64,
}

const SHIPPED: &[(&str, &str)] = &[
    ("windows11", include_str!("../../profiles/windows11.toml")),
    ("windows10", include_str!("../../profiles/windows10.toml")),
    ("linux", include_str!("../../profiles/linux.toml")),
];

pub fn names() -> Vec<&'static str> {
    SHIPPED.iter().map(|(n, _)| *n).collect()
}

/// The profile `name`: `/etc/exliar/profiles/NAME.toml` when the host has
/// one, else the shipped one.
pub fn load(host: &HostRoot, name: &str) -> Result<Profile, String> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(format!("{name:?} is not a profile name"));
    }
    let path = format!("etc/exliar/profiles/{name}.toml");
    let (text, from) = match host.read_optional(&path) {
        Ok(Some(t)) => (t, format!("/{path}")),
        Ok(None) => match SHIPPED.iter().find(|(n, _)| *n == name) {
            Some((_, t)) => (t.to_string(), format!("the shipped profile {name}")),
            None => {
                return Err(format!(
                    "no profile {name:?}: shipped are {}, or put one in /etc/exliar/profiles/{name}.toml",
                    names().join(", ")
                ));
            }
        },
        Err(e) => return Err(format!("{}: {}", e.path, e.source)),
    };
    let mut p: Profile = toml::from_str(&text).map_err(|e| format!("{from}: {e}"))?;
    if !matches!(p.os.as_str(), "windows" | "linux") {
        return Err(format!("{from}: os must be \"windows\" or \"linux\""));
    }
    if !matches!(p.clock.as_str(), "localtime" | "utc") {
        return Err(format!("{from}: clock must be \"localtime\" or \"utc\""));
    }
    p.name = name.to_string();
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_profiles_load_and_overrides_win() {
        let t = tempfile::tempdir().expect("tempdir");
        let h = HostRoot::new(t.path());
        for n in names() {
            let p = load(&h, n).expect(n);
            assert_eq!(p.name, n);
        }
        let w = load(&h, "windows11").expect("w11");
        assert!(w.tpm && w.hyperv && w.firmware == FirmwareChoice::EfiSecure);
        let dir = t.path().join("etc/exliar/profiles");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut text =
            include_str!("../../profiles/windows11.toml").replace("tpm = true", "tpm = false");
        std::fs::write(dir.join("windows11.toml"), &text).expect("write");
        assert!(!load(&h, "windows11").expect("override").tpm);
        text.push_str("colour = \"blue\"\n");
        std::fs::write(dir.join("windows11.toml"), &text).expect("write");
        let e = load(&h, "windows11").expect_err("unknown key");
        assert!(
            e.contains("/etc/exliar/profiles/windows11.toml") && e.contains("colour"),
            "{e}"
        );
        assert!(load(&h, "../x").is_err());
        assert!(load(&h, "beos").expect_err("none").contains("windows11"));
    }
}
