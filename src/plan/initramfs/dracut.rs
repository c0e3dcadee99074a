//! dracut: a drop-in `/etc/dracut.conf.d/zz-exliar-vfio.conf` with
//! `force_drivers+=" ... "` (loaded early, not just put in the image) and
//! `install_items+=" ... "` (the early-bind script and exliar's modprobe.d
//! files, which a non-hostonly image would otherwise lack).
//!
//! The editor is a block editor: applied to an empty text it gives the
//! drop-in; applied to an existing configuration it appends the same block.
//! Only `*.conf` files are read by dracut: [`evaluate`] says what the
//! configuration amounts to and what in it undoes exliar's lines.

use serde::Serialize;

use super::VFIO_MODULES_ANY;
use crate::plan::editors::{EditError, Finding, check_token, insert_block, strip_block};
use crate::plan::shell::{self, Value};

/// Named to sort after the usual drop-ins (dracut reads them in name order,
/// `/etc` and `/usr/lib` together): a later plain `force_drivers=` or
/// `install_items=` would replace the lists exliar appends to. The planner
/// evaluates the combined configuration and refuses when one still does.
pub const DROPIN: &str = "/etc/dracut.conf.d/zz-exliar-vfio.conf";
const TAG: &str = "vfio";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DracutEdit {
    /// Modules loaded early (`force_drivers+=`).
    pub force_drivers: Vec<String>,
    /// Files put into the image (`install_items+=`).
    pub install_items: Vec<String>,
}

impl DracutEdit {
    fn body(&self) -> Result<Vec<String>, EditError> {
        let mut body = Vec::new();
        let list = |key: &str, items: &[String]| -> Result<Option<String>, EditError> {
            if items.is_empty() {
                return Ok(None);
            }
            for i in items {
                check_token(i)?;
            }
            // Spaces inside both ends: two drop-ins appending to the same
            // list must not glue their words together.
            Ok(Some(format!("{key}+=\" {} \"", items.join(" "))))
        };
        if let Some(l) = list("force_drivers", &self.force_drivers)? {
            body.push("# vfio modules load first, before any GPU driver.".to_string());
            body.push(l);
        }
        if let Some(l) = list("install_items", &self.install_items)? {
            body.push(l);
        }
        Ok(body)
    }

    pub fn apply(&self, text: &str) -> Result<String, EditError> {
        let body = self.body()?;
        let clean = self.remove(text)?;
        shell::assignments(&clean)?;
        if body.is_empty() {
            return Ok(clean);
        }
        Ok(insert_block(&clean, None, TAG, &body))
    }

    pub fn remove(&self, text: &str) -> Result<String, EditError> {
        strip_block(text, TAG)
    }

    pub fn is_applied(&self, text: &str) -> Result<bool, EditError> {
        Ok(self.apply(text)? == text)
    }
}

/// What a set of dracut configuration files amounts to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DracutSummary {
    /// The files dracut reads, in the order it reads them.
    pub read: Vec<String>,
    pub force_drivers: Vec<String>,
    pub add_drivers: Vec<String>,
    pub omit_drivers: Vec<String>,
    pub install_items: Vec<String>,
    pub hostonly: Option<String>,
    pub findings: Vec<Finding>,
}

const LISTS: &[&str] = &[
    "force_drivers",
    "add_drivers",
    "omit_drivers",
    "install_items",
];

/// Evaluate dracut's configuration: `files` are `(path, text)`; a path
/// ending in `/dracut.conf` (or named `dracut.conf`) is the main file, read
/// first; the others are drop-ins, read in name order (the first of two
/// files with one name wins: list `/etc` before `/usr/lib`), `*.conf` only.
/// Values are concatenated the way bash does it (`+=` glues strings).
pub fn evaluate(files: &[(&str, &str)]) -> DracutSummary {
    let mut s = DracutSummary::default();
    let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
    let mut main: Vec<(&str, &str)> = Vec::new();
    let mut dropins: Vec<(&str, &str)> = Vec::new();
    for &(name, text) in files {
        if base(name) == "dracut.conf" {
            main.push((name, text));
        } else if !name.ends_with(".conf") {
            s.findings.push(Finding::new(
                name,
                0,
                "dracut reads only files ending in .conf: this one is ignored",
            ));
        } else if dropins.iter().any(|(n, _)| base(n) == base(name)) {
            s.findings.push(Finding::new(
                name,
                0,
                "a file of the same name comes first and replaces this one",
            ));
        } else {
            dropins.push((name, text));
        }
    }
    dropins.sort_by_key(|(n, _)| base(n));
    let ours = base(DROPIN);
    let mut values: Vec<(String, String)> = Vec::new();
    for (name, text) in main.into_iter().chain(dropins) {
        s.read.push(name.to_string());
        let assigns = match shell::assignments(text) {
            Ok(a) => a,
            Err(e) => {
                s.findings.push(Finding::new(
                    name,
                    e.line(),
                    format!("dracut cannot source it: {e}"),
                ));
                continue;
            }
        };
        let after_ours = base(name) > ours;
        for a in assigns {
            let Value::Scalar { segments, .. } = &a.value else {
                continue;
            };
            let v = shell::decode(text, segments).text.into_owned();
            let line = a.first_line + 1;
            if LISTS.contains(&a.name.as_str()) && a.append && !v.is_empty() {
                let (lead, trail) = (
                    v.starts_with(char::is_whitespace),
                    v.ends_with(char::is_whitespace),
                );
                if !lead || !trail {
                    s.findings.push(Finding::new(
                        name,
                        line,
                        format!(
                            "`{}+=` without a space at {} of the quotes: its words can glue to another file's",
                            a.name,
                            if lead { "the end" } else if trail { "the start" } else { "either end" }
                        ),
                    ));
                }
            }
            if !a.append
                && after_ours
                && base(name) != ours
                && matches!(a.name.as_str(), "force_drivers" | "install_items")
            {
                s.findings.push(Finding::new(
                    name,
                    line,
                    format!(
                        "`{}=` here, read after {DROPIN}, replaces the list exliar appends to",
                        a.name
                    ),
                ));
            }
            match values.iter_mut().find(|(k, _)| *k == a.name) {
                Some((_, old)) if a.append => old.push_str(&v),
                Some((_, old)) => *old = v,
                None => values.push((a.name.clone(), v)),
            }
        }
    }
    let words = |k: &str| -> Vec<String> {
        values
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    };
    s.force_drivers = words("force_drivers");
    s.add_drivers = words("add_drivers");
    s.omit_drivers = words("omit_drivers");
    s.install_items = words("install_items");
    s.hostonly = values
        .iter()
        .find(|(n, _)| n == "hostonly")
        .map(|(_, v)| v.clone());
    for m in &s.omit_drivers {
        if VFIO_MODULES_ANY.contains(&super::normalize_module(m).as_str()) {
            s.findings.push(Finding::new(
                "",
                0,
                format!("omit_drivers leaves {m} out of the image"),
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vfio() -> DracutEdit {
        DracutEdit {
            force_drivers: vec!["vfio".into(), "vfio_iommu_type1".into(), "vfio_pci".into()],
            install_items: vec!["/usr/lib/exliar/vfio-early-bind".into()],
        }
    }

    #[test]
    fn dropin_from_nothing() {
        let t = vfio().apply("").unwrap_or_default();
        assert_eq!(
            t,
            "# BEGIN exliar vfio\n# vfio modules load first, before any GPU driver.\n\
             force_drivers+=\" vfio vfio_iommu_type1 vfio_pci \"\n\
             install_items+=\" /usr/lib/exliar/vfio-early-bind \"\n# END exliar vfio\n"
        );
        assert_eq!(vfio().apply(&t).ok().as_deref(), Some(t.as_str()));
        assert_eq!(vfio().remove(&t).ok().as_deref(), Some(""));
    }

    #[test]
    fn appended_to_an_existing_file_without_final_newline() {
        let input = "hostonly=\"yes\"";
        let t = vfio().apply(input).unwrap_or_default();
        assert!(t.starts_with("hostonly=\"yes\"\n# BEGIN exliar vfio\n"));
        assert!(!t.ends_with('\n'));
        assert_eq!(vfio().remove(&t).ok().as_deref(), Some(input));
    }

    #[test]
    fn broken_shell_is_an_error() {
        assert_eq!(vfio().apply("a=1\nb=\"x\n").err().map(|e| e.line), Some(2));
    }

    #[test]
    fn evaluation_order_glue_and_overrides() {
        let ours = vfio().apply("").unwrap_or_default();
        let s = evaluate(&[
            (
                "/etc/dracut.conf.d/vfio.conf",
                "add_drivers+=\"vfio_virqfd\"\nforce_drivers=\"amdgpu\"\n",
            ),
            (DROPIN, &ours),
            ("/etc/dracut.conf", "add_drivers+=\"a\"\n"),
            ("/etc/dracut.conf.d/notes.txt", "force_drivers=\"x\"\n"),
        ]);
        assert_eq!(s.read[0], "/etc/dracut.conf");
        assert_eq!(s.add_drivers, ["avfio_virqfd"]);
        // A user's plain `force_drivers=` in `vfio.conf` sorts before
        // exliar's drop-in now: exliar's list is appended to it.
        assert_eq!(
            s.force_drivers,
            ["amdgpu", "vfio", "vfio_iommu_type1", "vfio_pci"]
        );
        assert_eq!(s.findings.len(), 3, "{:?}", s.findings);
        // One that still sorts after it replaces the list, and says so.
        let s = evaluate(&[
            (DROPIN, &ours),
            (
                "/usr/lib/dracut/dracut.conf.d/zzz-local.conf",
                "install_items=\"/usr/bin/foo\"\n",
            ),
        ]);
        assert_eq!(s.install_items, ["/usr/bin/foo"]);
        assert!(
            s.findings
                .iter()
                .any(|f| f.message.contains("replaces the list")),
            "{:?}",
            s.findings
        );
    }
}
