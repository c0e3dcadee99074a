//! booster: `/etc/booster.yaml`. Its list-like keys are comma-separated
//! strings (`modules_force_load: vfio_pci,vfio,vfio_iommu_type1`), so the
//! edit is line-based, without a YAML library: only top-level `key: value`
//! lines are touched; a missing key is added at the end.
//!
//! - `modules_force_load`: the vfio modules (loaded at boot, put in the image).
//! - `modules`: `-driver` entries keep the guest card's drivers out of the
//!   image when the card is bound by address: booster's init runs no
//!   modprobe `install` command, so the early-bind step must happen in the
//!   real root, before those drivers are first loaded there.
//!
//! A changed line keeps its original above it in a `# exliar was: ` line.

use serde::Serialize;

use super::{CLAIMING_DRIVERS, VFIO_MODULES_ANY, normalize_module};
use crate::plan::editors::{
    ADDED, EditError, Mark, append_lines, check_token, lines, removal_range, remove_all_marks,
    replace_ranges, was_lines,
};

pub const CONF: &str = "/etc/booster.yaml";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BoosterEdit {
    /// Modules for `modules_force_load:`.
    pub modules_force_load: Vec<String>,
    /// Modules to keep out of the image (written `-name` in `modules:`).
    pub modules_exclude: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    ForceLoad,
    Modules,
}

impl Key {
    const ALL: [Key; 2] = [Key::ForceLoad, Key::Modules];
    fn name(self) -> &'static str {
        match self {
            Key::ForceLoad => "modules_force_load",
            Key::Modules => "modules",
        }
    }
    fn of(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.name() == name)
    }
    fn item_key(self, s: &str) -> String {
        match s.strip_prefix('-') {
            Some(rest) => format!("-{}", normalize_module(rest)),
            None => normalize_module(s),
        }
    }
    fn managed(self, key: &str) -> bool {
        match self {
            Key::ForceLoad => VFIO_MODULES_ANY.contains(&key),
            Key::Modules => key
                .strip_prefix('-')
                .is_some_and(|m| CLAIMING_DRIVERS.contains(&m) || EXTRA_EXCLUDES.contains(&m)),
        }
    }
}

/// Drivers of guest-card functions beyond the GPU and HDMI audio ones.
const EXTRA_EXCLUDES: &[&str] = &["xhci_pci", "i2c_nvidia_gpu"];

/// A top-level `key: value` line whose value is a comma list.
#[derive(Debug, Clone)]
struct KeyLine {
    line: usize,
    name: String,
    /// Where the list lives (inside quotes for a quoted value); an empty
    /// value is an empty range just after the colon.
    inner: (usize, usize),
    empty: bool,
    /// `(start, end)` of every non-empty item.
    items: Vec<(usize, usize)>,
}

/// The top-level keys; a managed key with a value booster would not read
/// as a comma list is an error, as is a key given twice.
fn parse(text: &str) -> Result<Vec<KeyLine>, EditError> {
    let ls = lines(text);
    let mut out: Vec<KeyLine> = Vec::new();
    for (n, l) in ls.iter().enumerate() {
        let t = l.text;
        let Some(first) = t.bytes().next() else {
            continue;
        };
        if !(first.is_ascii_alphabetic() || first == b'_') {
            continue;
        }
        let Some(colon) = t.find(':') else {
            continue;
        };
        let name = &t[..colon];
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            continue;
        }
        let rest = &t[colon + 1..];
        if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
            continue;
        }
        if let Some(prev) = out.iter().find(|k| k.name == name) {
            return Err(EditError::new(
                n + 1,
                format!("`{name}` is given twice (first on line {})", prev.line + 1),
            ));
        }
        let Some(key) = Key::of(name) else {
            out.push(KeyLine {
                line: n,
                name: name.to_string(),
                inner: (0, 0),
                empty: true,
                items: Vec::new(),
            });
            continue;
        };
        let base = l.start + colon + 1;
        let value_end = comment_start(rest).unwrap_or(rest.len());
        let value = rest[..value_end].trim_end();
        let lead = value.len() - value.trim_start().len();
        let value = value.trim_start();
        let vstart = base + lead;
        let not_list = || {
            EditError::new(
                n + 1,
                format!(
                    "`{}` must be a comma-separated string (a,b,c) for booster",
                    key.name()
                ),
            )
        };
        let (inner, empty) = if value.is_empty() {
            // A nested block below the key is a YAML list or mapping.
            let nested = ls[n + 1..]
                .iter()
                .map(|l| l.text)
                .find(|t| !t.trim().is_empty() && !t.trim_start().starts_with('#'))
                .is_some_and(|t| t.starts_with([' ', '\t', '-']));
            if nested {
                return Err(not_list());
            }
            ((base, base), true)
        } else if let Some(q) = value.chars().next().filter(|c| *c == '"' || *c == '\'') {
            if value.len() < 2 || !value.ends_with(q) || value[1..value.len() - 1].contains(q) {
                return Err(EditError::new(
                    n + 1,
                    format!("quote {q} is not closed where booster expects"),
                ));
            }
            ((vstart + 1, vstart + value.len() - 1), false)
        } else if value.starts_with(['[', '{', '|', '>', '&', '*', '!', '%', '@', '`']) {
            return Err(not_list());
        } else {
            ((vstart, vstart + value.len()), false)
        };
        let mut items = Vec::new();
        let mut s = inner.0;
        for piece in text[inner.0..inner.1].split(',') {
            let e = s + piece.len();
            let lead = piece.len() - piece.trim_start().len();
            let body = piece.trim();
            if !body.is_empty() {
                items.push((s + lead, s + lead + body.len()));
            }
            s = e + 1;
        }
        out.push(KeyLine {
            line: n,
            name: name.to_string(),
            inner,
            empty,
            items,
        });
    }
    Ok(out)
}

/// Where a YAML comment starts in a plain value: `#` after a blank.
fn comment_start(rest: &str) -> Option<usize> {
    let b = rest.as_bytes();
    (0..b.len()).find(|&i| b[i] == b'#' && (i == 0 || b[i - 1] == b' ' || b[i - 1] == b'\t'))
}

impl BoosterEdit {
    fn required(&self, key: Key) -> Vec<String> {
        match key {
            Key::ForceLoad => self.modules_force_load.clone(),
            Key::Modules => self
                .modules_exclude
                .iter()
                .map(|m| format!("-{m}"))
                .collect(),
        }
    }

    pub fn apply(&self, text: &str) -> Result<String, EditError> {
        let clean = self.remove(text)?;
        self.edit_clean(&clean)
    }

    pub fn remove(&self, text: &str) -> Result<String, EditError> {
        remove(text)
    }

    pub fn is_applied(&self, text: &str) -> Result<bool, EditError> {
        Ok(self.apply(text)? == text)
    }

    fn edit_clean(&self, text: &str) -> Result<String, EditError> {
        let keys = parse(text)?;
        let ls = lines(text);
        let mut edits = Vec::new();
        let mut added = Vec::new();
        for key in Key::ALL {
            let req = self.required(key);
            for r in &req {
                check_token(r)?;
                if !key.managed(&key.item_key(r)) {
                    return Err(EditError::new(
                        0,
                        format!("`{r}` is not something exliar manages in {}", key.name()),
                    ));
                }
            }
            if req.is_empty() {
                continue;
            }
            match keys.iter().find(|k| k.name == key.name()) {
                Some(k) => {
                    let have: Vec<String> = k
                        .items
                        .iter()
                        .map(|(s, e)| key.item_key(&text[*s..*e]))
                        .collect();
                    let missing: Vec<String> = req
                        .iter()
                        .filter(|r| !have.contains(&key.item_key(r)))
                        .cloned()
                        .collect();
                    if missing.is_empty() {
                        continue;
                    }
                    let Some(l) = ls.get(k.line) else {
                        continue;
                    };
                    let (at, ins) = append_items(text, k, &missing);
                    let original = l.text;
                    let edited = replace_ranges(original, vec![(at - l.start, at - l.start, ins)]);
                    edits.push((l.start, l.end, format!("{}{edited}", was_lines(original))));
                }
                None => added.push(format!("{ADDED}\n{}: {}", key.name(), req.join(","))),
            }
        }
        let out = replace_ranges(text, edits);
        if added.is_empty() {
            Ok(out)
        } else {
            Ok(append_lines(&out, &added.join("\n")))
        }
    }
}

/// The insertion (offset, text) that appends `new` to a key's list.
fn append_items(text: &str, k: &KeyLine, new: &[String]) -> (usize, String) {
    let sep = k
        .items
        .windows(2)
        .map(|w| &text[w[0].1..w[1].0])
        .next()
        .unwrap_or(",")
        .to_string();
    let joined = new.join(&sep);
    match k.items.last() {
        Some((_, end)) => (*end, format!("{sep}{joined}")),
        None if k.empty => (k.inner.0, format!(" {joined}")),
        None => (k.inner.0, joined),
    }
}

/// The list of `k` rebuilt without the items at `drop` (separators reused).
fn without_items(text: &str, k: &KeyLine, drop: &[usize]) -> (usize, usize, String) {
    let seps: Vec<&str> = k.items.windows(2).map(|w| &text[w[0].1..w[1].0]).collect();
    let default = seps.first().copied().unwrap_or(",");
    let kept: Vec<&str> = k
        .items
        .iter()
        .enumerate()
        .filter(|(i, _)| !drop.contains(i))
        .map(|(_, (s, e))| &text[*s..*e])
        .collect();
    let (Some(first), Some(last)) = (k.items.first(), k.items.last()) else {
        return (k.inner.0, k.inner.0, String::new());
    };
    let mut out = String::new();
    for (i, item) in kept.iter().enumerate() {
        if i > 0 {
            out.push_str(seps.get(i - 1).copied().unwrap_or(default));
        }
        out.push_str(item);
    }
    if kept.is_empty() && k.empty {
        // `key: a` exliar made from `key:`: take the blank back too.
        return (k.inner.0, last.1, String::new());
    }
    (first.0, last.1, out)
}

/// The configuration without exliar's change.
pub fn remove(text: &str) -> Result<String, EditError> {
    remove_all_marks(text, remove_mark)
}

fn remove_mark(text: &str, mark: &Mark) -> Result<String, EditError> {
    let ls = lines(text);
    let first = mark.first_line();
    let marker_start = ls.get(first).map_or(text.len(), |l| l.start);
    let target = mark.target();
    let keys = parse(text)?;
    let drop_markers = || {
        let end = ls
            .get(target.saturating_sub(1))
            .map_or(text.len(), |l| l.end_nl());
        let (s, e) = removal_range(text, marker_start, end);
        format!("{}{}", &text[..s], &text[e..])
    };
    let (Some(k), Some(l)) = (
        keys.iter()
            .find(|k| k.line == target && Key::of(&k.name).is_some()),
        ls.get(target),
    ) else {
        return Ok(drop_markers());
    };
    let Some(key) = Key::of(&k.name) else {
        return Ok(drop_markers());
    };
    let item_keys: Vec<String> = k
        .items
        .iter()
        .map(|(s, e)| key.item_key(&text[*s..*e]))
        .collect();
    let keep = |old: &[String]| -> Vec<usize> {
        item_keys
            .iter()
            .enumerate()
            .filter(|(_, ik)| key.managed(ik) && !old.contains(ik))
            .map(|(i, _)| i)
            .collect()
    };
    match mark {
        Mark::Was { saved, .. } => {
            let old = parse(saved)
                .ok()
                .and_then(|v| v.into_iter().find(|s| s.name == k.name));
            let old_keys: Vec<String> = old
                .as_ref()
                .map(|o| {
                    o.items
                        .iter()
                        .map(|(s, e)| key.item_key(&saved[*s..*e]))
                        .collect()
                })
                .unwrap_or_default();
            let drop = keep(&old_keys);
            let (s, e, r) = without_items(text, k, &drop);
            let current_without = replace_ranges(l.text, vec![(s - l.start, e - l.start, r)]);
            let unchanged_otherwise = old.is_some()
                && old_keys.iter().all(|o| item_keys.contains(o))
                && item_keys
                    .iter()
                    .all(|i| old_keys.contains(i) || key.managed(i));
            let restored = if unchanged_otherwise {
                saved.clone()
            } else {
                current_without
            };
            Ok(format!(
                "{}{restored}{}",
                &text[..marker_start],
                &text[l.end..]
            ))
        }
        Mark::Added { .. } => {
            if item_keys.iter().all(|i| key.managed(i)) {
                let (s, e) = removal_range(text, marker_start, l.end_nl());
                Ok(format!("{}{}", &text[..s], &text[e..]))
            } else {
                let drop = keep(&[]);
                let (s, e, r) = without_items(text, k, &drop);
                let kept = replace_ranges(l.text, vec![(s - l.start, e - l.start, r)]);
                Ok(format!("{}{kept}{}", &text[..marker_start], &text[l.end..]))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vfio() -> BoosterEdit {
        BoosterEdit {
            modules_force_load: vec!["vfio".into(), "vfio_iommu_type1".into(), "vfio_pci".into()],
            modules_exclude: Vec::new(),
        }
    }

    fn check(e: &BoosterEdit, input: &str, expected: &str) {
        let out = e
            .apply(input)
            .unwrap_or_else(|err| panic!("{input:?}: {err}"));
        assert_eq!(out, expected);
        assert_eq!(e.apply(&out).ok().as_deref(), Some(out.as_str()));
        assert_eq!(e.remove(&out).ok().as_deref(), Some(input));
    }

    #[test]
    fn adds_the_key() {
        check(
            &vfio(),
            "universal: false\n",
            "universal: false\n# exliar added\nmodules_force_load: vfio,vfio_iommu_type1,vfio_pci\n",
        );
        check(
            &vfio(),
            "serialize_tokens:\n  enabled: true",
            "serialize_tokens:\n  enabled: true\n# exliar added\nmodules_force_load: vfio,vfio_iommu_type1,vfio_pci",
        );
    }

    #[test]
    fn extends_the_list_in_its_style() {
        check(
            &vfio(),
            "modules_force_load: nvme, vfio # mine\n",
            "# exliar was: modules_force_load: nvme, vfio # mine\n\
             modules_force_load: nvme, vfio, vfio_iommu_type1, vfio_pci # mine\n",
        );
        check(
            &vfio(),
            "modules_force_load: \"vfio-pci\"\n",
            "# exliar was: modules_force_load: \"vfio-pci\"\n\
             modules_force_load: \"vfio-pci,vfio,vfio_iommu_type1\"\n",
        );
        check(
            &vfio(),
            "modules_force_load:\nuniversal: true\n",
            "# exliar was: modules_force_load:\nmodules_force_load: vfio,vfio_iommu_type1,vfio_pci\nuniversal: true\n",
        );
    }

    #[test]
    fn excludes() {
        let e = BoosterEdit {
            modules_force_load: Vec::new(),
            modules_exclude: vec!["amdgpu".into(), "snd_hda_intel".into()],
        };
        check(
            &e,
            "modules: -*,hid_apple\n",
            "# exliar was: modules: -*,hid_apple\nmodules: -*,hid_apple,-amdgpu,-snd_hda_intel\n",
        );
        assert!(
            e.is_applied("modules: -amdgpu,-snd-hda-intel\n")
                .unwrap_or(false)
        );
    }

    #[test]
    fn refuses_what_booster_would_not_read() {
        for (t, line) in [
            ("a: 1\nmodules_force_load:\n  - vfio\n", 2),
            ("modules_force_load: [vfio]\n", 1),
            ("modules_force_load: \"vfio\n", 1),
            ("modules: a\nmodules: b\n", 2),
        ] {
            assert_eq!(vfio().apply(t).err().map(|e| e.line), Some(line), "{t:?}");
        }
    }

    #[test]
    fn remove_keeps_user_additions() {
        let e = vfio();
        let out = e.apply("modules_force_load: nvme\n").unwrap_or_default();
        let changed = out.replace(
            "modules_force_load: nvme,vfio,vfio_iommu_type1,vfio_pci\n",
            "modules_force_load: nvme,vfio,vfio_iommu_type1,vfio_pci,usbhid\n",
        );
        assert_eq!(
            e.remove(&changed).ok().as_deref(),
            Some("modules_force_load: nvme,usbhid\n")
        );
    }
}
