//! Unattended Windows: an `Autounattend.xml` answer file made from the
//! host's locale and the VM's disk and firmware, checked against the rules
//! of Windows Setup's answer-file format that can be checked offline, and
//! written into a small ISO that the VM gets as a second CD-ROM (Windows
//! Setup looks for `Autounattend.xml` at the root of every removable drive
//! and CD).
//!
//! The password never travels on a command line: it is read from a prompt
//! on the terminal or from a file only its owner can read, held in a
//! [`Secret`] (which prints `<hidden>`), and written into the answer file
//! only in Windows' obfuscated form (base64 of UTF-16LE of the password
//! followed by the word `Password`, `PlainText` false). That form is not
//! encryption: the ISO is as secret as the password, and is kept `0600`.
//!
//! See `docs/unattend.md` for the choices the answer file makes.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub mod check;
pub mod iso;
pub mod locale;
pub mod password;

pub use check::check_answer_file;
pub use iso::{build_iso, iso_argv};
pub use locale::{HostLocale, host_locale};
pub use password::{prompt_password, read_password_file};

/// A password: its Debug, Display and Serialize print `<hidden>`; the value
/// is reached only through [`Secret::expose`]. Its bytes are overwritten
/// when it is dropped.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value itself: only for the answer file's obfuscated form.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<hidden>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<hidden>")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&bytes);
    }
}

/// What an unattended Windows installation is made from.
#[derive(Debug, Clone, Serialize)]
pub struct Unattend {
    /// The local account Setup creates (an administrator).
    pub user: String,
    pub password: Secret,
    /// The Windows computer name (NetBIOS rules: 1–15 characters).
    pub computer_name: String,
    pub locale: HostLocale,
    /// The virtio-win ISO is attached: windowsPE loads viostor, vioscsi
    /// and NetKVM from it, so that Setup sees a virtio disk.
    pub virtio_drivers: bool,
    /// 10 or 11.
    pub windows: u8,
    /// UEFI (GPT: EFI + MSR + Windows) or BIOS (MBR: System Reserved +
    /// Windows).
    pub firmware_efi: bool,
}

/// What can go wrong making an unattended installation.
#[derive(Debug, thiserror::Error)]
pub enum UnattendError {
    #[error("user name {0:?}: {1}")]
    UserName(String, &'static str),
    #[error("computer name {0:?}: {1}")]
    ComputerName(String, &'static str),
    #[error("Windows {0}: exliar installs Windows 10 or 11")]
    WindowsVersion(u8),
    #[error("Windows 11 needs UEFI firmware (it requires Secure Boot and a TPM)")]
    Windows11Bios,
    #[error("the password is empty")]
    EmptyPassword,
    #[error("the password is longer than Windows' 127 characters")]
    LongPassword,
    #[error("the password has a control character, which an answer file cannot carry")]
    PasswordControl,
    #[error("{path}: {source}")]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: the first line is empty; put the password there")]
    PasswordFileEmpty(PathBuf),
    #[error(
        "{path}: warning: others can read this password file (mode {mode:04o}); run `chmod 600 {path}`"
    )]
    PasswordFileMode { path: PathBuf, mode: u32 },
    #[error("no terminal to ask for the password on: give --password-file")]
    NoTty,
    #[error("the terminal: {0}")]
    Tty(#[source] std::io::Error),
    #[error("the two passwords differ")]
    PasswordMismatch,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the answer file exliar made fails its own check: {}", .0.join("; "))]
    Findings(Vec<String>),
    #[error("xorriso could not be run (install the xorriso package): {0}")]
    XorrisoMissing(#[source] std::io::Error),
    #[error("xorriso failed making {out} ({status}): {stderr}")]
    Xorriso {
        out: PathBuf,
        status: String,
        stderr: String,
    },
}

/// Characters Windows refuses in a user name.
const USER_FORBIDDEN: &[char] = &[
    '"', '/', '\\', '[', ']', ':', ';', '|', '=', ',', '+', '*', '?', '<', '>', '@',
];

/// Windows' rules for a local user name: 1–20 characters, none of
/// `"/\[]:;|=,+*?<>@` nor a control character, not only dots and spaces,
/// and not a built-in account's name.
pub fn check_user_name(name: &str) -> Result<(), UnattendError> {
    let err = |why| Err(UnattendError::UserName(name.to_string(), why));
    let n = name.chars().count();
    if n == 0 {
        return err("empty");
    }
    if n > 20 {
        return err("longer than Windows' 20 characters");
    }
    if name.chars().any(|c| USER_FORBIDDEN.contains(&c)) {
        return err("has one of \" / \\ [ ] : ; | = , + * ? < > @, which Windows refuses");
    }
    if name.chars().any(char::is_control) {
        return err("has a control character");
    }
    if name.chars().all(|c| c == '.' || c == ' ') {
        return err("only dots and spaces");
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return err("begins or ends with a space");
    }
    const BUILT_IN: &[&str] = &[
        "Administrator",
        "Guest",
        "DefaultAccount",
        "WDAGUtilityAccount",
        "defaultuser0",
        "SYSTEM",
        "Administrators",
        "Users",
    ];
    if BUILT_IN.iter().any(|b| b.eq_ignore_ascii_case(name)) {
        return err("is a built-in Windows account or group");
    }
    Ok(())
}

/// Windows' rules for a computer name: 1–15 characters, ASCII letters,
/// digits and hyphens, not only digits, no hyphen at either end.
pub fn check_computer_name(name: &str) -> Result<(), UnattendError> {
    let err = |why| Err(UnattendError::ComputerName(name.to_string(), why));
    if name.is_empty() {
        return err("empty");
    }
    if name.len() > 15 {
        return err("longer than Windows' 15 characters");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return err("may have only ASCII letters, digits and hyphens");
    }
    if name.chars().all(|c| c.is_ascii_digit()) {
        return err("only digits");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return err("begins or ends with a hyphen");
    }
    Ok(())
}

/// A computer name from a VM name: its letters, digits and hyphens,
/// upper-cased, cut to 15 (`win11-gaming` → `WIN11-GAMING`); `None` when
/// nothing valid is left.
pub fn computer_name_for(vm_name: &str) -> Option<String> {
    let s: String = vm_name
        .chars()
        .map(|c| {
            if c == '_' || c == '.' || c == ' ' {
                '-'
            } else {
                c
            }
        })
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .map(|c| c.to_ascii_uppercase())
        .take(15)
        .collect();
    let s = s.trim_matches('-').to_string();
    check_computer_name(&s).ok().map(|()| s)
}

/// A password Windows can take from an answer file.
pub fn check_password(p: &Secret) -> Result<(), UnattendError> {
    if p.is_empty() {
        return Err(UnattendError::EmptyPassword);
    }
    if p.expose().chars().count() > 127 {
        return Err(UnattendError::LongPassword);
    }
    if p.expose().chars().any(char::is_control) {
        return Err(UnattendError::PasswordControl);
    }
    Ok(())
}

impl Unattend {
    /// Every input checked: the user and computer names, the password,
    /// the Windows version and firmware.
    pub fn validate(&self) -> Result<(), UnattendError> {
        check_password(&self.password)?;
        self.validate_without_password()
    }

    /// [`Unattend::validate`] before the password is known (planning).
    pub fn validate_without_password(&self) -> Result<(), UnattendError> {
        check_user_name(&self.user)?;
        check_computer_name(&self.computer_name)?;
        match self.windows {
            10 => {}
            11 if self.firmware_efi => {}
            11 => return Err(UnattendError::Windows11Bios),
            v => return Err(UnattendError::WindowsVersion(v)),
        }
        Ok(())
    }
}

/// Windows' obfuscated form of an answer-file password: base64 of the
/// UTF-16LE code units of the password followed by the element's name
/// (`Password` for a local account; Microsoft's example: `password` →
/// `cABhAHMAcwB3AG8AcgBkAFAAYQBzAHMAdwBvAHIAZAA=`).
pub fn obfuscate_password(p: &Secret) -> String {
    let mut bytes = Vec::with_capacity((p.expose().len() + 8) * 2);
    for u in p.expose().encode_utf16().chain("Password".encode_utf16()) {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    let out = base64(&bytes);
    bytes.iter_mut().for_each(|b| *b = 0);
    std::hint::black_box(&bytes);
    out
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The component attributes Windows Setup requires on every component.
pub const PUBLIC_KEY_TOKEN: &str = "31bf3856ad364e35";
pub const NS_UNATTEND: &str = "urn:schemas-microsoft-com:unattend";
pub const NS_WCM: &str = "http://schemas.microsoft.com/WMIConfig/2002/State";

/// The virtio-win drivers windowsPE loads, as the virtio-win ISO lays them
/// out (`viostor\w11\amd64`).
pub const VIRTIO_DRIVERS: &[&str] = &["viostor", "vioscsi", "NetKVM"];
/// The drive letters searched for the virtio-win ISO: in windowsPE the
/// CD-ROMs get letters from C: (the blank disk has none yet; X: is
/// windowsPE itself). A path that does not exist is skipped by Setup.
pub const VIRTIO_LETTERS: &[char] = &['C', 'D', 'E', 'F', 'G', 'H', 'I', 'J'];

/// The answer file (see `docs/unattend.md`). Call [`Unattend::validate`]
/// first; every value is escaped, so the file is well-formed whatever the
/// input.
pub fn autounattend_xml(u: &Unattend) -> String {
    use crate::xmlout::{El, comment, el};
    let component = |name: &str| {
        el("component")
            .a("name", name)
            .a("processorArchitecture", "amd64")
            .a("publicKeyToken", PUBLIC_KEY_TOKEN)
            .a("language", "neutral")
            .a("versionScope", "nonSxS")
    };
    let add = |name: &str| el(name).a("wcm:action", "add");
    let l = &u.locale;
    let zone = l.timezone.clone().unwrap_or_else(|| "UTC".into());

    // windowsPE: Setup's language, the drivers, the disk, the image.
    let mut pe = el("settings").a("pass", "windowsPE");
    pe = pe.k(component("Microsoft-Windows-International-Core-WinPE")
        .k(el("SetupUILanguage").k(el("UILanguage").t(&l.ui_language)))
        .k(el("InputLocale").t(&l.input_locale))
        .k(el("SystemLocale").t(&l.user_locale))
        .k(el("UILanguage").t(&l.ui_language))
        .k(el("UserLocale").t(&l.user_locale)));
    if u.virtio_drivers {
        let dir = if u.windows >= 11 { "w11" } else { "w10" };
        let mut paths = el("DriverPaths");
        let mut key = 0;
        for letter in VIRTIO_LETTERS {
            for drv in VIRTIO_DRIVERS {
                key += 1;
                paths = paths.k(add("PathAndCredentials")
                    .a("wcm:keyValue", key)
                    .k(el("Path").t(format!("{letter}:\\{drv}\\{dir}\\amd64"))));
            }
        }
        pe = pe.k(component("Microsoft-Windows-PnpCustomizationsWinPE")
            .k(comment(
                "virtio-win drivers (storage: viostor, vioscsi; network: NetKVM), \
                 searched on every CD-ROM letter",
            ))
            .k(paths));
    }
    let part = |order: u32, kind: &str, size: Option<u32>| {
        let p = add("CreatePartition")
            .k(el("Order").t(order))
            .k(el("Type").t(kind));
        match size {
            Some(mb) => p.k(el("Size").t(mb)),
            None => p.k(el("Extend").t("true")),
        }
    };
    // The MSR needs no formatting, and no partition gets a drive letter in
    // windowsPE (a CD-ROM may hold C: there; installed Windows calls its
    // own volume C: whatever windowsPE saw).
    let modify = |order: u32, partition: u32, extra: Vec<El>| {
        let mut m = add("ModifyPartition")
            .k(el("Order").t(order))
            .k(el("PartitionID").t(partition));
        for e in extra {
            m = m.k(e);
        }
        m
    };
    let (creates, modifies, windows_partition) = if u.firmware_efi {
        (
            vec![
                part(1, "EFI", Some(100)),
                part(2, "MSR", Some(16)),
                part(3, "Primary", None),
            ],
            vec![
                modify(1, 1, vec![el("Label").t("System"), el("Format").t("FAT32")]),
                modify(2, 3, vec![el("Label").t("Windows"), el("Format").t("NTFS")]),
            ],
            3,
        )
    } else {
        (
            vec![part(1, "Primary", Some(100)), part(2, "Primary", None)],
            vec![
                modify(
                    1,
                    1,
                    vec![
                        el("Label").t("System Reserved"),
                        el("Format").t("NTFS"),
                        el("Active").t("true"),
                    ],
                ),
                modify(2, 2, vec![el("Label").t("Windows"), el("Format").t("NTFS")]),
            ],
            2,
        )
    };
    let mut cp = el("CreatePartitions");
    for c in creates {
        cp = cp.k(c);
    }
    let mut mp = el("ModifyPartitions");
    for m in modifies {
        mp = mp.k(m);
    }
    let mut setup = component("Microsoft-Windows-Setup");
    if u.windows >= 11 {
        setup = setup.k(comment(
            "Windows 11: no LabConfig bypass of the TPM and Secure Boot checks; \
             the VM has a TPM 2.0 and Secure Boot, and they stay on",
        ));
    }
    setup = setup
        .k(comment(if u.firmware_efi {
            "disk 0 wiped: GPT with EFI (100 MB, FAT32), MSR (16 MB), Windows (NTFS, the rest)"
        } else {
            "disk 0 wiped: MBR with System Reserved (100 MB, NTFS, active), Windows (NTFS, the rest)"
        }))
        .k(el("DiskConfiguration").k(add("Disk")
            .k(el("DiskID").t(0))
            .k(el("WillWipeDisk").t("true"))
            .k(cp)
            .k(mp)))
        .k(el("ImageInstall").k(el("OSImage").k(el("InstallTo")
            .k(el("DiskID").t(0))
            .k(el("PartitionID").t(windows_partition)))))
        .k(el("UserData").k(el("AcceptEula").t("true")));
    pe = pe.k(setup);

    // specialize: the computer's name and clock.
    let specialize =
        el("settings")
            .a("pass", "specialize")
            .k(component("Microsoft-Windows-Shell-Setup")
                .k(el("ComputerName").t(&u.computer_name))
                .k(el("TimeZone").t(&zone)));

    // oobeSystem: the user's language and keyboard, the account, and the
    // screens that would ask again.
    let oobe = el("settings")
        .a("pass", "oobeSystem")
        .k(component("Microsoft-Windows-International-Core")
            .k(el("InputLocale").t(&l.input_locale))
            .k(el("SystemLocale").t(&l.user_locale))
            .k(el("UILanguage").t(&l.ui_language))
            .k(el("UserLocale").t(&l.user_locale)))
        .k(component("Microsoft-Windows-Shell-Setup")
            .k(el("OOBE")
                .k(el("HideEULAPage").t("true"))
                .k(el("HideOEMRegistrationScreen").t("true"))
                .k(el("HideOnlineAccountScreens").t("true"))
                .k(el("HideWirelessSetupInOOBE").t("true"))
                .k(el("ProtectYourPC").t(3)))
            .k(
                el("UserAccounts").k(el("LocalAccounts").k(add("LocalAccount")
                    .k(el("Password")
                        .k(el("Value").t(obfuscate_password(&u.password)))
                        .k(el("PlainText").t("false")))
                    .k(el("Description").t("made by exliar"))
                    .k(el("DisplayName").t(&u.user))
                    .k(el("Group").t("Administrators"))
                    .k(el("Name").t(&u.user)))),
            ));

    let root = el("unattend")
        .a("xmlns", NS_UNATTEND)
        .a("xmlns:wcm", NS_WCM)
        .k(pe)
        .k(specialize)
        .k(oobe);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    out.push_str(&format!(
        "<!-- Windows {} unattended installation, made by exliar; {} -->\n",
        u.windows,
        if u.firmware_efi { "UEFI" } else { "BIOS" }
    ));
    root.render(0, &mut out);
    out
}

/// Validate, make the answer file, and check it: the XML to put into the
/// ISO ([`build_iso`]), or why not.
pub fn prepare(u: &Unattend) -> Result<String, UnattendError> {
    u.validate()?;
    let xml = autounattend_xml(u);
    let findings = check_answer_file(&xml);
    if findings.is_empty() {
        Ok(xml)
    } else {
        Err(UnattendError::Findings(findings))
    }
}

/// Where the answer file ISO of VM `name` goes by default, beside its disk
/// images (`/var/lib/libvirt/images/NAME-unattend.iso`).
pub fn default_iso_path(images_dir: &Path, vm_name: &str) -> PathBuf {
    images_dir.join(format!("{vm_name}-unattend.iso"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
