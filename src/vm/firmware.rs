//! OVMF for a VM: the QEMU firmware descriptors first
//! (`/etc/qemu/firmware`, then `/usr/share/qemu/firmware`, `*.json` by file
//! name, an `/etc` file hiding a same-named one), then the paths each
//! distribution installs to.

use std::path::PathBuf;

use serde::Deserialize;

use crate::host::HostRoot;

/// A firmware code file and the variables template that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    pub code: PathBuf,
    pub vars: PathBuf,
    pub secure_boot: bool,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "interface-types", default)]
    interface_types: Vec<String>,
    mapping: Mapping,
    #[serde(default)]
    targets: Vec<Target>,
    #[serde(default)]
    features: Vec<String>,
}

#[derive(Deserialize)]
struct Mapping {
    #[serde(default)]
    device: String,
    executable: Option<FileRef>,
    #[serde(rename = "nvram-template")]
    nvram_template: Option<FileRef>,
}

#[derive(Deserialize)]
struct FileRef {
    filename: String,
}

#[derive(Deserialize)]
struct Target {
    architecture: String,
    #[serde(default)]
    machines: Vec<String>,
}

/// Known (code, vars, secure boot with Microsoft keys) per distribution.
const KNOWN: &[(&str, &str, bool)] = &[
    // Debian, Ubuntu (ovmf)
    (
        "usr/share/OVMF/OVMF_CODE_4M.ms.fd",
        "usr/share/OVMF/OVMF_VARS_4M.ms.fd",
        true,
    ),
    (
        "usr/share/OVMF/OVMF_CODE_4M.fd",
        "usr/share/OVMF/OVMF_VARS_4M.fd",
        false,
    ),
    (
        "usr/share/OVMF/OVMF_CODE.fd",
        "usr/share/OVMF/OVMF_VARS.fd",
        false,
    ),
    // Fedora, RHEL (edk2-ovmf)
    (
        "usr/share/edk2/ovmf/OVMF_CODE.secboot.fd",
        "usr/share/edk2/ovmf/OVMF_VARS.secboot.fd",
        true,
    ),
    (
        "usr/share/edk2/ovmf/OVMF_CODE.fd",
        "usr/share/edk2/ovmf/OVMF_VARS.fd",
        false,
    ),
    // Arch (edk2-ovmf)
    (
        "usr/share/edk2/x64/OVMF_CODE.secboot.4m.fd",
        "usr/share/edk2/x64/OVMF_VARS.4m.fd",
        true,
    ),
    (
        "usr/share/edk2/x64/OVMF_CODE.4m.fd",
        "usr/share/edk2/x64/OVMF_VARS.4m.fd",
        false,
    ),
    // openSUSE (qemu-ovmf-x86_64)
    (
        "usr/share/qemu/ovmf-x86_64-ms-4m-code.bin",
        "usr/share/qemu/ovmf-x86_64-ms-4m-vars.bin",
        true,
    ),
    (
        "usr/share/qemu/ovmf-x86_64-4m-code.bin",
        "usr/share/qemu/ovmf-x86_64-4m-vars.bin",
        false,
    ),
    // NixOS (virtualisation.libvirtd.qemu.ovmf)
    (
        "run/libvirt/nix-ovmf/OVMF_CODE.fd",
        "run/libvirt/nix-ovmf/OVMF_VARS.fd",
        false,
    ),
];

fn abs(p: &str) -> PathBuf {
    PathBuf::from(format!("/{}", p.trim_start_matches('/')))
}

/// Find OVMF. `secure_boot`: the Secure Boot build with Microsoft's keys
/// enrolled in its variables (what Windows 11 needs); else one without
/// Secure Boot. The error says which package installs it.
pub fn find(host: &HostRoot, secure_boot: bool) -> Result<Firmware, String> {
    let mut names: Vec<(String, String)> = Vec::new();
    for dir in ["etc/qemu/firmware", "usr/share/qemu/firmware"] {
        for n in host.list_dir(dir).unwrap_or_default() {
            if n.ends_with(".json") && !names.iter().any(|(m, _)| *m == n) {
                names.push((n.clone(), format!("{dir}/{n}")));
            }
        }
    }
    names.sort();
    for (_, path) in &names {
        let Ok(Some(text)) = host.read_optional(path) else {
            continue;
        };
        let Ok(d) = serde_json::from_str::<Descriptor>(&text) else {
            continue;
        };
        let x86_q35 = d.targets.iter().any(|t| {
            t.architecture == "x86_64" && t.machines.iter().any(|m| m.starts_with("pc-q35"))
        });
        let is_sb = d.features.iter().any(|f| f == "secure-boot");
        let enrolled = d.features.iter().any(|f| f == "enrolled-keys");
        if !d.interface_types.iter().any(|i| i == "uefi")
            || d.mapping.device != "flash"
            || !x86_q35
            || d.features
                .iter()
                .any(|f| f == "amd-sev" || f == "intel-tdx")
        {
            continue;
        }
        if secure_boot != (is_sb && enrolled) || (!secure_boot && is_sb) {
            continue;
        }
        let (Some(code), Some(vars)) = (d.mapping.executable, d.mapping.nvram_template) else {
            continue;
        };
        if host.exists(code.filename.trim_start_matches('/'))
            && host.exists(vars.filename.trim_start_matches('/'))
        {
            return Ok(Firmware {
                code: abs(&code.filename),
                vars: abs(&vars.filename),
                secure_boot,
            });
        }
    }
    for (code, vars, sb) in KNOWN {
        if *sb == secure_boot && host.exists(code) && host.exists(vars) {
            return Ok(Firmware {
                code: abs(code),
                vars: abs(vars),
                secure_boot,
            });
        }
    }
    Err(format!(
        "no OVMF {}firmware found (no matching /usr/share/qemu/firmware/*.json descriptor, nor a known path): install it (Debian/Ubuntu: ovmf; Fedora: edk2-ovmf; Arch: edk2-ovmf; openSUSE: qemu-ovmf-x86_64; NixOS: virtualisation.libvirtd.qemu.ovmf.enable){}",
        if secure_boot { "Secure Boot " } else { "" },
        if secure_boot {
            ", or choose --firmware efi / --profile windows10"
        } else {
            ", or choose --firmware bios"
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(files: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().expect("tempdir");
        for (p, c) in files {
            let f = t.path().join(p);
            std::fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
            std::fs::write(f, c).expect("write");
        }
        t
    }

    const SB: &str = r#"{"interface-types":["uefi"],"mapping":{"device":"flash","executable":{"filename":"/usr/share/OVMF/OVMF_CODE_4M.ms.fd","format":"raw"},"nvram-template":{"filename":"/usr/share/OVMF/OVMF_VARS_4M.ms.fd","format":"raw"}},"targets":[{"architecture":"x86_64","machines":["pc-q35-*"]}],"features":["acpi-s3","enrolled-keys","requires-smm","secure-boot"]}"#;
    const PLAIN: &str = r#"{"interface-types":["uefi"],"mapping":{"device":"flash","executable":{"filename":"/usr/share/OVMF/OVMF_CODE_4M.fd","format":"raw"},"nvram-template":{"filename":"/usr/share/OVMF/OVMF_VARS_4M.fd","format":"raw"}},"targets":[{"architecture":"x86_64","machines":["pc-i440fx-*","pc-q35-*"]}],"features":["acpi-s3"]}"#;

    #[test]
    fn descriptors_then_known_paths() {
        let t = root(&[
            ("usr/share/qemu/firmware/40-sb.json", SB),
            ("usr/share/qemu/firmware/60-plain.json", PLAIN),
            ("usr/share/OVMF/OVMF_CODE_4M.ms.fd", ""),
            ("usr/share/OVMF/OVMF_VARS_4M.ms.fd", ""),
            ("usr/share/OVMF/OVMF_CODE_4M.fd", ""),
            ("usr/share/OVMF/OVMF_VARS_4M.fd", ""),
        ]);
        let h = HostRoot::new(t.path());
        let sb = find(&h, true).expect("sb");
        assert_eq!(sb.code, PathBuf::from("/usr/share/OVMF/OVMF_CODE_4M.ms.fd"));
        assert_eq!(sb.vars, PathBuf::from("/usr/share/OVMF/OVMF_VARS_4M.ms.fd"));
        let plain = find(&h, false).expect("plain");
        assert_eq!(plain.code, PathBuf::from("/usr/share/OVMF/OVMF_CODE_4M.fd"));
        // Fedora's layout, no descriptors
        let t = root(&[
            ("usr/share/edk2/ovmf/OVMF_CODE.secboot.fd", ""),
            ("usr/share/edk2/ovmf/OVMF_VARS.secboot.fd", ""),
        ]);
        let h = HostRoot::new(t.path());
        assert_eq!(
            find(&h, true).expect("fedora").vars,
            PathBuf::from("/usr/share/edk2/ovmf/OVMF_VARS.secboot.fd")
        );
        let e = find(&h, false).expect_err("no plain");
        assert!(e.contains("edk2-ovmf"), "{e}");
    }

    #[test]
    fn this_machines_descriptors_when_present() {
        let h = HostRoot::new("/");
        if !h.exists("usr/share/qemu/firmware") {
            eprintln!("SKIP: no /usr/share/qemu/firmware here (package ovmf)");
            return;
        }
        let f = find(&h, true).expect("Debian's ovmf has a Secure Boot build");
        assert!(f.secure_boot && h.exists(f.code.strip_prefix("/").expect("abs")));
    }
}
