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
    /// Comment out lines of modprobe.d syntax (`options …`, `softdep …`):
    /// initramfs-tools would try to load their first word as a module.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fix_misplaced: bool,
    /// Take the arguments off `vfio_pci`/`vfio-pci` lines (they are passed
    /// after every modprobe.d option and would replace exliar's `ids=`);
    /// the planner moves them to [`IDS_CONF`](crate::plan::modprobe::IDS_CONF).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub move_vfio_args: bool,
}

/// The note above a line exliar commented out or changed, the prefix of the
/// commented-out original, and of an original exliar replaced (the next line).
const NOTE: &str = "# exliar: ";
const OFF: &str = "# exliar off: ";
const WAS: &str = "# exliar was: ";

impl ModulesEdit {
    /// The lines to comment out or change: `(line piece, replacement)`.
    fn fix_lines(&self, text: &str) -> String {
        if !self.fix_misplaced && !self.move_vfio_args {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len() + 128);
        for piece in text.split_inclusive('\n') {
            let (body, term) = match piece.strip_suffix('\n') {
                Some(b) => (b, "\n"),
                None => (piece, ""),
            };
            let t = body.trim();
            let mut words = t.split_whitespace();
            let first = words.next().unwrap_or_default();
            let has_args = words.next().is_some();
            if t.starts_with('#') || first.is_empty() {
                out.push_str(piece);
            } else if self.fix_misplaced
                && crate::plan::effective::MODPROBE_COMMANDS.contains(&first)
            {
                out.push_str(&format!(
                    "{NOTE}modprobe.d syntax, not a module name (initramfs-tools would try to load `{first}`); it belongs in /etc/modprobe.d\n{OFF}{body}{term}"
                ));
            } else if self.move_vfio_args && normalize_module(first) == "vfio_pci" && has_args {
                out.push_str(&format!(
                    "{NOTE}arguments moved to {} (given here, they are passed after it and replace its ids=)\n{WAS}{body}\n{first}{term}",
                    crate::plan::modprobe::IDS_CONF
                ));
            } else {
                out.push_str(piece);
            }
        }
        out
    }

    /// Undo [`Self::fix_lines`]: notes dropped, originals restored. Only
    /// exliar's own groups are undone (a note followed by the line it
    /// explains); a lone line that looks like one is the user's.
    fn unfix_lines(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut pieces = text.split_inclusive('\n').peekable();
        while let Some(piece) = pieces.next() {
            let next = pieces.peek().copied();
            let ours = piece.starts_with(NOTE)
                && next.is_some_and(|n| n.starts_with(OFF) || n.starts_with(WAS));
            if !ours {
                out.push_str(piece);
                continue;
            }
            let Some(marked) = pieces.next() else {
                continue;
            };
            if let Some(orig) = marked.strip_prefix(OFF) {
                out.push_str(orig);
            } else if let Some(orig) = marked.strip_prefix(WAS) {
                let body = orig.strip_suffix('\n').unwrap_or(orig);
                out.push_str(body);
                match pieces.next() {
                    Some(next) if next.ends_with('\n') => out.push('\n'),
                    Some(_) => {}
                    None => out.push_str(&orig[body.len()..]),
                }
            }
        }
        out
    }

    /// A line of `clean` (the file without exliar's changes) that starts
    /// like exliar's own notes: exliar's next edit would take it for one of
    /// its own, so it refuses instead of guessing.
    fn check_no_markers(clean: &str) -> Result<(), EditError> {
        for (i, l) in clean.lines().enumerate() {
            if [NOTE, OFF, WAS].iter().any(|m| l.starts_with(m)) {
                return Err(EditError::new(
                    i + 1,
                    "a line that starts like exliar's own notes (`# exliar: `, `# exliar off: `, `# exliar was: `) but is not one of its changes; edit or remove it by hand",
                ));
            }
        }
        Ok(())
    }

    pub fn apply(&self, text: &str) -> Result<String, EditError> {
        for m in &self.modules {
            check_token(m)?;
        }
        let without = self.remove(text)?;
        Self::check_no_markers(&without)?;
        let clean = self.fix_lines(&without);
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
        Ok(Self::unfix_lines(&strip_block(text, TAG)?))
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
    /// Found by fuzzing: a line of the user's nesting exliar's markers
    /// (`# exliar off: # exliar was: …`) was unwrapped one level per edit,
    /// so a second apply changed the file again. Now only exliar's own
    /// groups (note + line) are undone and a lookalike line is refused.
    #[test]
    fn nested_marker_lookalikes_are_refused_not_unwrapped() {
        let e = ModulesEdit {
            modules: vec!["vfio_pci".to_string()],
            fix_misplaced: true,
            move_vfio_args: true,
        };
        let text = "# exliar off: # exliar was: root=UUID=x iommu=pt\n";
        let err = e.apply(text).expect_err("refused");
        assert_eq!(err.line, 1);
        assert_eq!(
            e.remove(text).expect("remove"),
            text,
            "a lone lookalike is the user's"
        );
        // exliar's own groups still round-trip
        let user = "softdep amdgpu pre: vfio-pci\nvfio-pci ids=1002:67df\n";
        let out = e.apply(user).expect("apply");
        assert_eq!(e.apply(&out).expect("apply again"), out);
        assert_eq!(e.remove(&out).expect("remove"), user);
    }

    use super::*;

    fn vfio() -> ModulesEdit {
        ModulesEdit {
            modules: vec!["vfio".into(), "vfio_iommu_type1".into(), "vfio_pci".into()],
            ..ModulesEdit::default()
        }
    }

    #[test]
    fn misplaced_lines_and_vfio_arguments() {
        let e = ModulesEdit {
            fix_misplaced: true,
            move_vfio_args: true,
            ..vfio()
        };
        let input = "# modules\nsoftdep amdgpu pre: vfio-pci\nvfio\nvfio-pci ids=1002:67df disable_vga=1\noptions vfio_pci ids=1:2";
        let out = e.apply(input).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(
            out,
            "# modules\n\
             # exliar: modprobe.d syntax, not a module name (initramfs-tools would try to load `softdep`); it belongs in /etc/modprobe.d\n\
             # exliar off: softdep amdgpu pre: vfio-pci\n\
             vfio\n\
             # exliar: arguments moved to /etc/modprobe.d/zz-exliar-vfio-ids.conf (given here, they are passed after it and replace its ids=)\n\
             # exliar was: vfio-pci ids=1002:67df disable_vga=1\n\
             vfio-pci\n\
             # exliar: modprobe.d syntax, not a module name (initramfs-tools would try to load `options`); it belongs in /etc/modprobe.d\n\
             # exliar off: options vfio_pci ids=1:2\n\
             # BEGIN exliar vfio\nvfio_iommu_type1\n# END exliar vfio"
        );
        assert_eq!(e.apply(&out).ok().as_deref(), Some(out.as_str()));
        assert_eq!(e.remove(&out).ok().as_deref(), Some(input));
        // The plain editor leaves them alone.
        assert!(
            !vfio()
                .apply(input)
                .unwrap_or_default()
                .contains("exliar off")
        );
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
