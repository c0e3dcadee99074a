//! initramfs-tools: `/etc/initramfs-tools/modules`, one module per line
//! (`name [args]`), loaded in file order early in the initramfs. The vfio
//! modules that are not already loaded ahead of every GPU driver go in a
//! block, just before the first GPU-driver line (or at the end); every other
//! byte of the file stays as it is. The same format serves `/etc/modules`.

use serde::Serialize;

use super::{is_claiming, normalize_module};
use crate::plan::editors::{EditError, Finding, check_token, insert_block, lines, strip_block};

pub const MODULES_FILE: &str = "/etc/initramfs-tools/modules";
const TAG: &str = "vfio";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModulesEdit {
    pub modules: Vec<String>,
}

impl ModulesEdit {
    pub fn apply(&self, text: &str) -> Result<String, EditError> {
        for m in &self.modules {
            check_token(m)?;
        }
        let clean = self.remove(text)?;
        let mut before: Vec<String> = Vec::new();
        let mut at: Option<usize> = None;
        for l in lines(&clean) {
            let t = l.text.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let name = t.split_whitespace().next().unwrap_or_default();
            if is_claiming(name) {
                at = Some(l.start);
                break;
            }
            before.push(normalize_module(name));
        }
        let missing: Vec<String> = self
            .modules
            .iter()
            .filter(|m| !before.contains(&normalize_module(m)))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(clean);
        }
        Ok(insert_block(&clean, at, TAG, &missing))
    }

    pub fn remove(&self, text: &str) -> Result<String, EditError> {
        strip_block(text, TAG)
    }

    pub fn is_applied(&self, text: &str) -> Result<bool, EditError> {
        Ok(self.apply(text)? == text)
    }
}

/// Lines naming a module the kernel `(major, minor)` does not have
/// (`vfio_virqfd` from 6.2 on): mkinitramfs warns and skips it.
pub fn obsolete_modules(text: &str, kernel: (u32, u32)) -> Vec<Finding> {
    if kernel < (6, 2) {
        return Vec::new();
    }
    lines(text)
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.text.trim_start();
            !t.starts_with('#')
                && t.split_whitespace().next().map(normalize_module).as_deref()
                    == Some("vfio_virqfd")
        })
        .map(|(n, _)| {
            Finding::new(
                MODULES_FILE,
                n + 1,
                "vfio_virqfd is part of vfio since Linux 6.2: this line can go",
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vfio() -> ModulesEdit {
        ModulesEdit {
            modules: vec!["vfio".into(), "vfio_iommu_type1".into(), "vfio_pci".into()],
        }
    }

    fn check(input: &str, expected: &str) {
        let e = vfio();
        let out = e.apply(input).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(out, expected);
        assert_eq!(e.apply(&out).ok().as_deref(), Some(out.as_str()));
        assert_eq!(e.remove(&out).ok().as_deref(), Some(input));
    }

    #[test]
    fn appends_missing_modules() {
        check(
            "# comment\nraid1\n",
            "# comment\nraid1\n# BEGIN exliar vfio\nvfio\nvfio_iommu_type1\nvfio_pci\n# END exliar vfio\n",
        );
        check(
            "vfio\nvfio-pci ids=1002:67df\naufs",
            "vfio\nvfio-pci ids=1002:67df\naufs\n# BEGIN exliar vfio\nvfio_iommu_type1\n# END exliar vfio",
        );
        check(
            "",
            "# BEGIN exliar vfio\nvfio\nvfio_iommu_type1\nvfio_pci\n# END exliar vfio\n",
        );
    }

    #[test]
    fn goes_before_gpu_drivers() {
        check(
            "raid1\namdgpu\nvfio_pci\n",
            "raid1\n# BEGIN exliar vfio\nvfio\nvfio_iommu_type1\nvfio_pci\n# END exliar vfio\namdgpu\nvfio_pci\n",
        );
    }

    #[test]
    fn obsolete_virqfd() {
        let f = obsolete_modules("vfio\n# vfio_virqfd\n vfio-virqfd\n", (6, 2));
        assert_eq!(f.iter().map(|f| f.line).collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn nothing_to_do() {
        let t = "  vfio\nvfio_iommu_type1\n#x\nvfio_pci\namdgpu\n";
        assert_eq!(vfio().apply(t).ok().as_deref(), Some(t));
    }
}
