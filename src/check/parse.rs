//! Pure parsers for the files `exliar check` reads. Text (or bytes) in,
//! facts out; nothing here touches the file system.

use std::collections::{BTreeMap, BTreeSet};

/// One kernel command-line parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub key: String,
    pub value: Option<String>,
}

/// The kernel command line, tokenized like the kernel's `next_arg()`:
/// whitespace separates parameters, double quotes group (and are removed),
/// and everything after a lone `--` belongs to init, not the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmdline {
    pub params: Vec<Param>,
}

/// Parameter names compare with `-` and `_` as the same character, like the
/// kernel's `parameq()`.
pub fn param_name_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).all(|(x, y)| {
            let n = |c: u8| if c == b'-' { b'_' } else { c };
            n(x) == n(y)
        })
}

impl Cmdline {
    pub fn parse(text: &str) -> Self {
        let mut params = Vec::new();
        let mut chars = text.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.peek().is_none() {
                break;
            }
            let mut tok = String::new();
            let mut in_quote = false;
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() && !in_quote {
                    break;
                }
                chars.next();
                if c == '"' {
                    in_quote = !in_quote;
                    continue;
                }
                tok.push(c);
            }
            if tok == "--" {
                break;
            }
            let (key, value) = match tok.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (tok, None),
            };
            params.push(Param { key, value });
        }
        Self { params }
    }

    /// The value of the last occurrence of `key`: `Some(None)` for a bare
    /// flag, `None` when absent.
    pub fn get(&self, key: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .rev()
            .find(|p| param_name_eq(&p.key, key))
            .map(|p| p.value.as_deref())
    }

    /// Every value given for `key`, in order.
    pub fn all(&self, key: &str) -> Vec<Option<&str>> {
        self.params
            .iter()
            .filter(|p| param_name_eq(&p.key, key))
            .map(|p| p.value.as_deref())
            .collect()
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Whether any value of `key` (comma-separated options) contains `opt`.
    pub fn has_option(&self, key: &str, opt: &str) -> bool {
        self.all(key)
            .iter()
            .flatten()
            .any(|v| v.split(',').any(|o| o.trim() == opt))
    }

    /// `key=value` text of every occurrence of `key`, for evidence.
    pub fn show(&self, key: &str) -> Vec<String> {
        self.params
            .iter()
            .filter(|p| param_name_eq(&p.key, key))
            .map(|p| match &p.value {
                Some(v) => format!("{}={v}", p.key),
                None => p.key.clone(),
            })
            .collect()
    }
}

/// A kernel configuration value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kconfig {
    Yes,
    Module,
    /// `# CONFIG_X is not set`
    NotSet,
    Value(String),
}

impl Kconfig {
    pub fn show(&self) -> String {
        match self {
            Kconfig::Yes => "y".into(),
            Kconfig::Module => "m".into(),
            Kconfig::NotSet => "is not set".into(),
            Kconfig::Value(v) => v.clone(),
        }
    }
    pub fn enabled(&self) -> bool {
        matches!(self, Kconfig::Yes | Kconfig::Module)
    }
}

/// Parse a kernel `.config` (`/boot/config-*`, `/proc/config.gz`).
pub fn parse_kconfig(text: &str) -> BTreeMap<String, Kconfig> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("# ")
            && let Some(key) = rest.strip_suffix(" is not set")
            && key.starts_with("CONFIG_")
        {
            m.insert(key.to_string(), Kconfig::NotSet);
        } else if l.starts_with("CONFIG_")
            && let Some((k, v)) = l.split_once('=')
        {
            let v = match v {
                "y" => Kconfig::Yes,
                "m" => Kconfig::Module,
                "n" => Kconfig::NotSet,
                other => Kconfig::Value(other.trim_matches('"').to_string()),
            };
            m.insert(k.to_string(), v);
        }
    }
    m
}

/// The lines of a kernel config that mention `keys` (for snapshots).
pub fn trim_kconfig(text: &str, keys: &[&str]) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let l = line.trim();
        let key = l
            .strip_prefix("# ")
            .and_then(|r| r.strip_suffix(" is not set"))
            .or_else(|| l.split_once('=').map(|(k, _)| k));
        if key.is_some_and(|k| keys.contains(&k)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A module name as the kernel compares it: `-` and `_` are the same.
pub fn module_norm(name: &str) -> String {
    name.replace('-', "_")
}

/// `kernel/drivers/vfio/pci/vfio-pci.ko.zst` → `vfio_pci`.
pub fn module_name_from_path(path: &str) -> Option<String> {
    let base = path.trim().rsplit('/').next()?;
    let stem = [".ko.zst", ".ko.xz", ".ko.gz", ".ko"]
        .iter()
        .find_map(|s| base.strip_suffix(s))?;
    (!stem.is_empty()).then(|| module_norm(stem))
}

/// The modules listed in `modules.dep` (first field of each line) or
/// `modules.builtin` (one path a line): normalized name → path.
pub fn parse_module_list(text: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let path = line.split(':').next().unwrap_or("").trim();
        if let Some(name) = module_name_from_path(path) {
            m.entry(name).or_insert_with(|| path.to_string());
        }
    }
    m
}

/// The lines of `modules.dep`/`modules.builtin` for `names` (for snapshots).
pub fn trim_module_list(text: &str, names: &[&str]) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let path = line.split(':').next().unwrap_or("");
        if module_name_from_path(path).is_some_and(|n| names.iter().any(|x| module_norm(x) == n)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `6.1.0-27-amd64` → `(6, 1, 0)`.
pub fn kernel_version(release: &str) -> Option<(u32, u32, u32)> {
    let mut nums = release.trim().split(|c: char| !c.is_ascii_digit());
    let a = nums.next()?.parse().ok()?;
    let b = nums.next()?.parse().ok()?;
    let c = nums.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    Some((a, b, c))
}

/// The flags of the first CPU in `/proc/cpuinfo`.
pub fn cpu_flags(cpuinfo: &str) -> BTreeSet<String> {
    cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "flags").then(|| v.split_whitespace().map(String::from).collect())
        })
        .unwrap_or_default()
}

/// The value part of an EFI variable file (the first 4 bytes are attributes).
pub fn efivar_value(bytes: &[u8]) -> Option<&[u8]> {
    (bytes.len() > 4).then(|| &bytes[4..])
}

/// A UTF-16LE string EFI variable (`LoaderInfo`), without the trailing NUL.
pub fn efivar_utf16(bytes: &[u8]) -> Option<String> {
    let v = efivar_value(bytes)?;
    let units: Vec<u16> = v
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|u| *u != 0)
        .collect();
    let s = String::from_utf16_lossy(&units);
    (!s.is_empty()).then_some(s)
}

/// A one-byte boolean EFI variable (`SecureBoot`, `SetupMode`).
pub fn efivar_bool(bytes: &[u8]) -> Option<bool> {
    efivar_value(bytes).and_then(|v| v.first()).map(|b| *b != 0)
}

/// Interrupt-chip names in `/proc/interrupts` that tell whether interrupt
/// remapping is in use (`IR-PCI-MSI`, `IR-IO-APIC`, `PCI-MSI`, `IO-APIC`),
/// with device suffixes removed (`IR-PCI-MSIX-0000:01:00.0` → `IR-PCI-MSIX`).
pub fn irq_chips(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        for tok in line.split_whitespace() {
            if let Some(c) = irq_chip(tok) {
                out.insert(c);
            }
        }
    }
    out
}

fn irq_chip(tok: &str) -> Option<String> {
    let base = tok.strip_prefix("IR-").unwrap_or(tok);
    let kinds = [
        "PCI-MSIX", "PCI-MSI", "IO-APIC", "DMAR-MSI", "AMD-IR", "HPET-MSI",
    ];
    let kind = kinds.iter().find(|k| base.starts_with(*k))?;
    // Only the kind itself, or the kind followed by `-<device>`.
    let rest = &base[kind.len()..];
    if !(rest.is_empty() || rest.starts_with('-')) {
        return None;
    }
    Some(if tok.starts_with("IR-") {
        format!("IR-{kind}")
    } else {
        (*kind).to_string()
    })
}

/// The first line per interrupt chip (for snapshots), plus the CPU header.
pub fn trim_interrupts(text: &str) -> String {
    let mut seen = BTreeSet::new();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let chips: BTreeSet<String> = line.split_whitespace().filter_map(irq_chip).collect();
        if i == 0 || chips.iter().any(|c| !seen.contains(c)) {
            seen.extend(chips);
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A `/proc/meminfo`-style `Key:   123 kB` value.
pub fn meminfo_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.trim() != key {
            return None;
        }
        v.split_whitespace().next()?.parse().ok()
    })
}

/// The effective user and its groups from `/proc/self/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcUser {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

pub fn proc_status_user(text: &str) -> Option<ProcUser> {
    let field = |name: &str| -> Option<Vec<u32>> {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == name).then(|| {
                v.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
        })
    };
    let uid = field("Uid")?;
    let gid = field("Gid")?;
    Some(ProcUser {
        // Uid: real, effective, saved, filesystem.
        uid: *uid.get(1).or(uid.first())?,
        gid: *gid.get(1).or(gid.first())?,
        groups: field("Groups").unwrap_or_default(),
    })
}

/// A group's id and listed members from `/etc/group`.
pub fn group_entry(text: &str, name: &str) -> Option<(u32, Vec<String>)> {
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        if f.next()? != name {
            return None;
        }
        let _pw = f.next()?;
        let gid = f.next()?.trim().parse().ok()?;
        let members = f
            .next()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(String::from)
            .collect();
        Some((gid, members))
    })
}

/// The `/etc/group` lines of `names` (for snapshots: no other user names).
pub fn trim_groups(text: &str, names: &[&str]) -> String {
    let mut out = String::new();
    for l in text.lines() {
        if l.split(':').next().is_some_and(|n| names.contains(&n)) {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// The last uncommented assignment of `key` in a shell-sourced file
/// (`/etc/default/grub`, `/etc/default/limine`), quotes removed. Command
/// substitutions are returned as written.
pub fn shell_value(text: &str, key: &str) -> Option<String> {
    text.lines().rev().find_map(|l| {
        let l = l.trim_start();
        if l.starts_with('#') {
            return None;
        }
        let l = l.strip_prefix("export ").unwrap_or(l);
        let (k, v) = l.split_once('=')?;
        let k = k.strip_suffix('+').unwrap_or(k);
        if k != key {
            return None;
        }
        let v = v.trim_end();
        let v = v
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
            .unwrap_or(v);
        Some(v.to_string())
    })
}

/// Every value of `key` in a Boot Loader Specification entry (key and value
/// separated by spaces or TABs; `options` may repeat).
pub fn bls_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let l = l.trim();
            let (k, v) = l.split_once([' ', '\t'])?;
            (k == key).then(|| v.trim().to_string())
        })
        .collect()
}

/// `cmdline:` / `kernel_cmdline:` values of a Limine ≥ 8 `limine.conf`.
pub fn limine_cmdlines(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                return None;
            }
            let (k, v) = l.split_once(':')?;
            let k = k.trim().to_ascii_lowercase();
            (k == "cmdline" || k == "kernel_cmdline").then(|| v.trim().to_string())
        })
        .collect()
}

/// The options of the first (default) line of a `refind_linux.conf`.
pub fn refind_default_options(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .find_map(|l| {
            // "Label"  "options"
            let mut parts = l.split('"').filter(|p| !p.trim().is_empty());
            let _label = parts.next()?;
            parts.next().map(|o| o.replace("\"\"", "\""))
        })
}

/// `user.kernel_options` of a kernelstub configuration (config_rev 3: a
/// list; older revisions: one string).
pub fn kernelstub_options(text: &str) -> Result<Vec<String>, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let opts = &v["user"]["kernel_options"];
    if let Some(a) = opts.as_array() {
        return Ok(a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect());
    }
    if let Some(s) = opts.as_str() {
        return Ok(s.split_whitespace().map(String::from).collect());
    }
    Err("no user.kernel_options".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cmdline_tokens_quotes_and_init_args() {
        let c = Cmdline::parse(
            "BOOT_IMAGE=/vmlinuz root=UUID=x ro quiet intel_iommu=on,sm_on foo=\"a b\" \"bar=c d\" iommu=1 iommu=pt -- --firecracker-init x=y\n",
        );
        assert_eq!(c.get("intel_iommu"), Some(Some("on,sm_on")));
        assert!(c.has_option("intel_iommu", "on"));
        assert_eq!(c.get("foo"), Some(Some("a b")));
        assert_eq!(c.get("bar"), Some(Some("c d")));
        assert_eq!(c.get("quiet"), Some(None));
        assert_eq!(c.get("iommu"), Some(Some("pt")));
        assert_eq!(c.all("iommu").len(), 2);
        assert_eq!(c.get("x"), None, "after -- belongs to init");
        assert_eq!(c.get("--firecracker-init"), None);
        let d = Cmdline::parse("vfio-pci.ids=10de:1b81 rd.driver.pre=vfio-pci");
        assert_eq!(d.get("vfio_pci.ids"), Some(Some("10de:1b81")));
    }

    #[test]
    fn kconfig_values() {
        let t = "# comment\nCONFIG_INTEL_IOMMU=y\n# CONFIG_INTEL_IOMMU_DEFAULT_ON is not set\nCONFIG_VFIO_PCI=m\nCONFIG_LOCALVERSION=\"-arch1\"\n";
        let m = parse_kconfig(t);
        assert_eq!(m.get("CONFIG_INTEL_IOMMU"), Some(&Kconfig::Yes));
        assert_eq!(
            m.get("CONFIG_INTEL_IOMMU_DEFAULT_ON"),
            Some(&Kconfig::NotSet)
        );
        assert_eq!(m.get("CONFIG_VFIO_PCI"), Some(&Kconfig::Module));
        assert_eq!(
            m.get("CONFIG_LOCALVERSION"),
            Some(&Kconfig::Value("-arch1".into()))
        );
        assert_eq!(
            trim_kconfig(t, &["CONFIG_VFIO_PCI", "CONFIG_INTEL_IOMMU_DEFAULT_ON"]),
            "# CONFIG_INTEL_IOMMU_DEFAULT_ON is not set\nCONFIG_VFIO_PCI=m\n"
        );
    }

    #[test]
    fn module_paths() {
        assert_eq!(
            module_name_from_path("kernel/drivers/vfio/pci/vfio-pci.ko.zst").as_deref(),
            Some("vfio_pci")
        );
        assert_eq!(
            module_name_from_path("kernel/drivers/vfio/vfio_iommu_type1.ko.xz").as_deref(),
            Some("vfio_iommu_type1")
        );
        assert_eq!(
            module_name_from_path("kernel/drivers/vfio/vfio.ko").as_deref(),
            Some("vfio")
        );
        assert_eq!(module_name_from_path("README"), None);
        let dep = "kernel/drivers/vfio/pci/vfio-pci.ko.zst: kernel/drivers/vfio/pci/vfio-pci-core.ko.zst kernel/drivers/vfio/vfio.ko.zst\nkernel/drivers/vfio/vfio.ko.zst: kernel/virt/lib/irqbypass.ko.zst\n";
        let m = parse_module_list(dep);
        assert!(m.contains_key("vfio_pci") && m.contains_key("vfio"));
        assert!(!m.contains_key("irqbypass"), "dependencies are not entries");
        assert_eq!(
            trim_module_list(dep, &["vfio-pci"]),
            "kernel/drivers/vfio/pci/vfio-pci.ko.zst: kernel/drivers/vfio/pci/vfio-pci-core.ko.zst kernel/drivers/vfio/vfio.ko.zst\n"
        );
    }

    #[test]
    fn versions_and_flags() {
        assert_eq!(kernel_version("6.1.0-27-amd64"), Some((6, 1, 0)));
        assert_eq!(kernel_version("6.18.44-fc-v445\n"), Some((6, 18, 44)));
        assert_eq!(kernel_version("6.10"), Some((6, 10, 0)));
        assert_eq!(kernel_version("garbage"), None);
        let f =
            cpu_flags("processor : 0\nflags\t\t: fpu vmx pdpe1gb\n\nprocessor : 1\nflags : fpu\n");
        assert!(f.contains("vmx") && f.contains("pdpe1gb"));
    }

    #[test]
    fn efivars() {
        let sb = [0x06, 0, 0, 0, 1];
        assert_eq!(efivar_bool(&sb), Some(true));
        assert_eq!(efivar_bool(&[6, 0, 0, 0]), None);
        let mut li = vec![6, 0, 0, 0];
        for u in "systemd-boot 256.7".encode_utf16().chain([0]) {
            li.extend(u.to_le_bytes());
        }
        assert_eq!(efivar_utf16(&li).as_deref(), Some("systemd-boot 256.7"));
    }

    #[test]
    fn interrupt_chips() {
        let t = "           CPU0       CPU1\n  0:         44          0   IO-APIC   2-edge      timer\n 24:          0          0  IR-PCI-MSIX-0000:01:00.0    0-edge      vfio\n 25:          1          0  IR-PCI-MSIX-0000:02:00.0    0-edge      nvme\n";
        let c = irq_chips(t);
        assert_eq!(
            c.into_iter().collect::<Vec<_>>(),
            ["IO-APIC", "IR-PCI-MSIX"]
        );
        let trimmed = trim_interrupts(t);
        assert_eq!(trimmed.lines().count(), 3);
        assert_eq!(irq_chips(&trimmed), irq_chips(t));
    }

    #[test]
    fn user_and_groups() {
        let s = "Name:\tcat\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t24 27 108 1000 \n";
        let u = proc_status_user(s).expect("user");
        assert_eq!((u.uid, u.groups.len()), (1000, 4));
        let g = "root:x:0:\nlibvirt:x:108:alice,bob\nkvm:x:104:\n";
        assert_eq!(
            group_entry(g, "libvirt"),
            Some((108, vec!["alice".into(), "bob".into()]))
        );
        assert_eq!(trim_groups(g, &["kvm"]), "kvm:x:104:\n");
    }

    #[test]
    fn config_file_values() {
        let grub = "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n#GRUB_CMDLINE_LINUX_DEFAULT=\"x\"\nGRUB_DISTRIBUTOR='Garuda'\nGRUB_TIMEOUT=5\nGRUB_TIMEOUT=7\n";
        assert_eq!(
            shell_value(grub, "GRUB_CMDLINE_LINUX_DEFAULT").as_deref(),
            Some("quiet")
        );
        assert_eq!(
            shell_value(grub, "GRUB_DISTRIBUTOR").as_deref(),
            Some("Garuda")
        );
        assert_eq!(shell_value(grub, "GRUB_TIMEOUT").as_deref(), Some("7"));
        let entry =
            "title\tArch\noptions\troot=/dev/x intel_iommu=on\noptions  iommu=pt\n#options nope\n";
        assert_eq!(
            bls_values(entry, "options"),
            ["root=/dev/x intel_iommu=on", "iommu=pt"]
        );
        let lim = "/Arch\n    protocol: linux\n    CMDLINE: quiet iommu=pt\n# cmdline: no\n";
        assert_eq!(limine_cmdlines(lim), ["quiet iommu=pt"]);
        let refind = "# c\n\"Boot with standard options\"  \"ro root=UUID=x quiet\"\n\"Single\" \"ro single\"\n";
        assert_eq!(
            refind_default_options(refind).as_deref(),
            Some("ro root=UUID=x quiet")
        );
        assert_eq!(
            kernelstub_options("{\"user\":{\"kernel_options\":[\"quiet\",\"splash\"]}}"),
            Ok(vec!["quiet".to_string(), "splash".to_string()])
        );
        assert_eq!(
            kernelstub_options("{\"user\":{\"kernel_options\":\"quiet splash\"}}"),
            Ok(vec!["quiet".to_string(), "splash".to_string()])
        );
        assert!(kernelstub_options("{\"user\":{},}").is_err());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC{0,64}", b in proptest::collection::vec(any::<u8>(), 0..24)) {
            let _ = Cmdline::parse(&s);
            let _ = parse_kconfig(&s);
            let _ = parse_module_list(&s);
            let _ = kernel_version(&s);
            let _ = irq_chips(&s);
            let _ = trim_interrupts(&s);
            let _ = proc_status_user(&s);
            let _ = group_entry(&s, "kvm");
            let _ = shell_value(&s, "GRUB_CMDLINE_LINUX");
            let _ = bls_values(&s, "options");
            let _ = limine_cmdlines(&s);
            let _ = refind_default_options(&s);
            let _ = kernelstub_options(&s);
            let _ = efivar_utf16(&b);
            let _ = efivar_bool(&b);
        }
    }
}
