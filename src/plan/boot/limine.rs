//! Limine: `limine.conf` (the format of Limine ≥ 8: `key: value`, entries
//! opened by `/Title`) and `/etc/default/limine` (bash, read by
//! limine-entry-tool / limine-mkinitcpio-hook, which generate limine.conf).

use super::bls::{finish, insert_line_after};
use super::params::{check_params, decide, lint, spans};
use super::region::{TextEdit, Tokens, edits_for};
use super::shellvar::{NewLine, edit_var_in};
use super::{EditError, Edited, line_ranges};

/// Said with every change to limine.conf.
pub const ENROLLED_CHECKSUM_WARNING: &str = "if a BLAKE2B checksum of limine.conf is enrolled in Limine's EFI binary (`limine enroll-config`, used with Secure Boot), the edited file no longer matches it and Limine refuses to boot: enroll the new checksum (`limine enroll-config <EFI binary> <b2sum of limine.conf>`) and re-sign the binary before rebooting";

/// Which syntax a Limine configuration uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimineFormat {
    /// `key: value`, `/Entry` (Limine ≥ 8, `limine.conf`).
    New,
    /// `KEY=VALUE`, `:Entry` (Limine ≤ 7, `limine.cfg`).
    Old,
    /// Nothing that tells (comments, macros only).
    Unknown,
}

struct Line<'a> {
    n: usize,
    start: usize,
    end: usize,
    end_nl: usize,
    /// Leading blanks.
    indent: &'a str,
    /// Without the indent.
    body: &'a str,
}

fn lines(text: &str) -> Vec<Line<'_>> {
    line_ranges(text)
        .into_iter()
        .enumerate()
        .map(|(i, (s, e, enl))| {
            let raw = &text[s..e];
            let body = raw.trim_start_matches([' ', '\t']);
            Line {
                n: i + 1,
                start: s,
                end: e,
                end_nl: enl,
                indent: &raw[..raw.len() - body.len()],
                body,
            }
        })
        .collect()
}

fn is_old_line(body: &str) -> bool {
    if body.starts_with(':') {
        return true;
    }
    // KEY=VALUE with an upper-case key (macros are `${X}=`).
    match body.split_once('=') {
        Some((k, _)) => {
            !k.is_empty()
                && k.bytes()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
        }
        None => false,
    }
}

fn is_new_line(body: &str) -> bool {
    if body.starts_with('/') {
        return true;
    }
    match body.split_once(':') {
        Some((k, _)) => !k.is_empty() && k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'),
        None => false,
    }
}

/// Detect the format; a file with lines of both is an error naming one of
/// each (the formats must not be mixed).
pub fn limine_format(text: &str) -> Result<LimineFormat, EditError> {
    let mut old = None;
    let mut new = None;
    for l in lines(text) {
        if l.body.is_empty() || l.body.starts_with('#') || l.body.starts_with("${") {
            continue;
        }
        if is_new_line(l.body) {
            new.get_or_insert(l.n);
        } else if is_old_line(l.body) {
            old.get_or_insert(l.n);
        }
    }
    match (old, new) {
        (Some(o), Some(n)) => Err(EditError::new(
            o.max(n),
            format!(
                "mixes the old limine.cfg syntax (line {o}) with the new limine.conf syntax (line {n}); Limine reads one format per file"
            ),
        )),
        (Some(_), None) => Ok(LimineFormat::Old),
        (None, Some(_)) => Ok(LimineFormat::New),
        (None, None) => Ok(LimineFormat::Unknown),
    }
}

/// Whether a config checksum is enrolled in a Limine EFI binary: the 128
/// characters after `++CONFIG_B2SUM_SIGNATURE++` are all `0` until
/// `limine enroll-config` writes the hash there. `None`: not a Limine
/// binary with that marker.
pub fn config_checksum_enrolled(efi_binary: &[u8]) -> Option<bool> {
    const SIG: &[u8] = b"++CONFIG_B2SUM_SIGNATURE++";
    let at = memchr::memmem::find(efi_binary, SIG)? + SIG.len();
    let slot = efi_binary.get(at..at + 128)?;
    Some(slot.iter().any(|&c| c != b'0'))
}

fn value_of<'a>(l: &Line<'a>) -> (usize, &'a str) {
    let colon = l.body.find(':').unwrap_or(0);
    let after = &l.body[colon + 1..];
    let v = after.trim_start_matches([' ', '\t']);
    (l.end - v.len(), v)
}

type Target = (usize, Option<(usize, usize)>, usize);

struct Entry {
    /// Indexes into `lines` of its option lines.
    opts: Vec<usize>,
    header: usize,
}

/// Edit `limine.conf`: the `cmdline:` (alias `kernel_cmdline:`; keys are
/// case-insensitive) of every entry with `protocol: linux`. Values run to the
/// end of the line, unquoted; comments are only whole lines and stay. A
/// Linux entry without a command line gets one after its `path:` line. The
/// old format (`limine.cfg`) is refused.
pub fn edit_limine_conf(
    text: &str,
    add: &[String],
    remove: &[String],
) -> Result<Edited, EditError> {
    check_params(add)?;
    match limine_format(text)? {
        LimineFormat::Old => {
            let n = lines(text)
                .iter()
                .find(|l| is_old_line(l.body))
                .map(|l| l.n)
                .unwrap_or(1);
            return Err(EditError::new(
                n,
                "old-format Limine configuration (limine.cfg, Limine ≤ 7: `:Entry`, `KEY=VALUE`); exliar edits only limine.conf (Limine ≥ 8)",
            ));
        }
        LimineFormat::New | LimineFormat::Unknown => {}
    }
    let ls = lines(text);
    let mut entries: Vec<Entry> = Vec::new();
    for (i, l) in ls.iter().enumerate() {
        if l.body.starts_with('/') {
            entries.push(Entry {
                opts: Vec::new(),
                header: i,
            });
        } else if !l.body.is_empty()
            && !l.body.starts_with('#')
            && l.body.contains(':')
            && let Some(e) = entries.last_mut()
        {
            e.opts.push(i);
        }
    }
    let key_of = |l: &Line<'_>| -> String {
        l.body
            .split_once(':')
            .map(|(k, _)| k.trim().to_ascii_lowercase())
            .unwrap_or_default()
    };
    // One group per Linux entry.
    let mut tokens = Tokens::new(text)?;
    // (entry, (group, value start) of its command line, anchor line)
    let mut targets: Vec<Target> = Vec::new();
    for (ei, e) in entries.iter().enumerate() {
        let linux = e.opts.iter().any(|&i| {
            key_of(&ls[i]) == "protocol" && value_of(&ls[i]).1.trim().eq_ignore_ascii_case("linux")
        });
        if !linux {
            continue;
        }
        let cmdlines: Vec<usize> = e
            .opts
            .iter()
            .copied()
            .filter(|&i| matches!(key_of(&ls[i]).as_str(), "cmdline" | "kernel_cmdline"))
            .collect();
        if cmdlines.len() > 1 {
            return Err(EditError::new(
                ls[cmdlines[1]].n,
                format!(
                    "a second command line in entry `{}` (the first is on line {}); Limine uses only one",
                    ls[e.header].body.trim_start_matches(['/', '+']).trim(),
                    ls[cmdlines[0]].n
                ),
            ));
        }
        let group = tokens.begin_group();
        match cmdlines.first() {
            Some(&i) => {
                let (vstart, v) = value_of(&ls[i]);
                tokens.reserve_for(v);
                for s in spans(v) {
                    let s = s.map_err(|er| EditError::new(ls[i].n, er.message))?;
                    let t = &v[s.start..s.end];
                    tokens.push(
                        vstart + s.start,
                        vstart + s.end,
                        t.as_bytes().windows(2).any(|w| w == b"${"),
                        true,
                    );
                }
                targets.push((ei, Some((group, vstart)), i));
            }
            None => {
                let anchor = e
                    .opts
                    .iter()
                    .copied()
                    .rfind(|&i| matches!(key_of(&ls[i]).as_str(), "path" | "kernel_path"))
                    .or_else(|| e.opts.last().copied())
                    .unwrap_or(e.header);
                targets.push((ei, None, anchor));
            }
        }
    }
    let mut warnings = lint(&tokens.all());
    let (add, more) = super::params::not_anywhere(
        &tokens.all(),
        &|i| Some(tokens.group_of(i)),
        targets.len(),
        add,
        "Linux entries",
    );
    warnings.extend(more);
    let add = add.as_slice();
    let mut edits: Vec<TextEdit> = Vec::new();
    let mut added = Vec::new();
    let mut removed = Vec::new();
    let mut dwarn = Vec::new();
    let mut new_lines = 0;
    let mut emptied: Vec<usize> = Vec::new();
    for (ei, tgt, anchor) in &targets {
        // The entry's own tokens (none without a command line).
        let r = tgt.map_or(0..0, |(g, _)| tokens.group(g));
        let own = tokens.view(r.clone());
        let d = decide(&own, add, remove);
        if tgt.is_some() {
            let in_line = r.len();
            if in_line > 0
                && d.delete.len() == in_line
                && d.append.is_empty()
                && d.replace.is_empty()
            {
                emptied.push(*anchor);
            }
        }
        match tgt {
            Some(t) => {
                let mut es = edits_for(&own, &d, Some(*t), &|p| p.to_string());
                // `cmdline:` with no blank after the colon.
                let l = &ls[*anchor];
                if t.1 == l.end && !l.body.ends_with([' ', '\t']) {
                    for e in es.iter_mut() {
                        if e.start == t.1 && e.start == e.end && !e.text.starts_with(' ') {
                            e.text.insert(0, ' ');
                        }
                    }
                }
                edits.extend(es);
            }
            None => {
                if !d.append.is_empty() {
                    let a = &ls[*anchor];
                    let indent = if *anchor == entries[*ei].header {
                        "    ".to_string()
                    } else {
                        a.indent.to_string()
                    };
                    let line = format!(
                        "{indent}{}\n{indent}cmdline: {}",
                        super::MARK,
                        d.append.join(" ")
                    );
                    edits.push(insert_line_after(text, a.end, a.end_nl, &line));
                    new_lines += 1;
                }
            }
        }
        super::push_unique(&mut added, d.added);
        super::push_unique(&mut removed, d.removed);
        super::push_unique(&mut dwarn, d.warnings);
    }
    // A `cmdline:` line left empty by the removal goes (exliar made it).
    // Only a line exliar made (marked by the comment line above it) goes;
    // a user's `cmdline:` stays, empty.
    let mut cuts = Vec::new();
    for &anchor in &emptied {
        let l = &ls[anchor];
        if anchor > 0 && ls[anchor - 1].body.trim_end() == super::MARK {
            let m = &ls[anchor - 1];
            cuts.push((m.start, l.end, l.end_nl));
        }
    }
    super::bls::cut_lines(text, &mut edits, &cuts);
    if targets.is_empty() && !add.is_empty() {
        warnings.push(
            "no Linux entry (`protocol: linux`) in this file: nothing to add the parameters to"
                .to_string(),
        );
    }
    if new_lines > 0 {
        warnings.push(format!(
            "{new_lines} Linux entr{} had no `cmdline:`; one is added",
            if new_lines == 1 { "y" } else { "ies" }
        ));
    }
    let d = super::params::Decision {
        added,
        removed,
        warnings: dwarn,
        ..Default::default()
    };
    let mut out = finish(text, edits, d, warnings);
    if out.text != text {
        out.warnings.push(ENROLLED_CHECKSUM_WARNING.to_string());
    }
    Ok(out)
}

/// One entry of `limine.conf` as Limine reads it: its title (without the
/// `/` and `+`), the line of its header, and its `protocol:`, path
/// (`path:`, `kernel_path:` or `image_path:`) and command line (`cmdline:`
/// or `kernel_cmdline:`), keys case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimineEntry {
    pub title: String,
    pub line: usize,
    pub protocol: Option<String>,
    pub path: Option<String>,
    pub cmdline: Option<String>,
}

impl LimineEntry {
    /// A Linux kernel booted directly: exliar edits its `cmdline:`.
    pub fn is_linux(&self) -> bool {
        self.protocol
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case("linux"))
    }

    /// An EFI image that is (or looks like) a unified kernel image: chain
    /// loaded (`protocol: efi`, `efi_chainload`, `uefi`) with a `cmdline:`,
    /// or from `EFI/Linux/` (where kernel-install and ukify put UKIs), or a
    /// `.efi` whose name says linux/uki. Its kernel command line is the one
    /// built into the image (systemd-stub ignores the one passed to it under
    /// Secure Boot when the image has one).
    pub fn is_uki(&self) -> bool {
        let efi = self.protocol.as_deref().is_some_and(|p| {
            matches!(
                p.to_ascii_lowercase().as_str(),
                "efi" | "efi_chainload" | "uefi" | "uefi_chainload"
            )
        });
        if !efi {
            return false;
        }
        let path = self.path.as_deref().unwrap_or("").to_ascii_lowercase();
        let name = path.rsplit(['/', ':']).next().unwrap_or("");
        self.cmdline.is_some()
            || path.contains("/efi/linux/")
            || (name.ends_with(".efi") && (name.contains("linux") || name.contains("uki")))
    }
}

/// The entries of a `limine.conf` (Limine ≥ 8 syntax; nested entries
/// `//Sub` included), in file order. The old syntax is refused as by
/// [`edit_limine_conf`].
pub fn limine_entries(text: &str) -> Result<Vec<LimineEntry>, EditError> {
    if limine_format(text)? == LimineFormat::Old {
        return Err(EditError::new(
            1,
            "old-format Limine configuration (limine.cfg, Limine ≤ 7); exliar reads only limine.conf (Limine ≥ 8)",
        ));
    }
    let mut out: Vec<LimineEntry> = Vec::new();
    for l in lines(text) {
        if l.body.starts_with('/') {
            out.push(LimineEntry {
                title: l.body.trim_start_matches(['/', '+']).trim().to_string(),
                line: l.n,
                protocol: None,
                path: None,
                cmdline: None,
            });
            continue;
        }
        if l.body.is_empty() || l.body.starts_with('#') {
            continue;
        }
        let (Some(e), Some((k, _))) = (out.last_mut(), l.body.split_once(':')) else {
            continue;
        };
        let v = value_of(&l).1.trim_end().to_string();
        match k.trim().to_ascii_lowercase().as_str() {
            "protocol" => e.protocol = Some(v),
            "path" | "kernel_path" | "image_path" => e.path = Some(v),
            "cmdline" | "kernel_cmdline" => e.cmdline = Some(v),
            _ => {}
        }
    }
    Ok(out)
}

/// Edit `/etc/default/limine`: `KERNEL_CMDLINE[default]` (bash associative
/// array; the file usually appends with `+=`). The last assignment that sets
/// it is extended in place; without one, `KERNEL_CMDLINE[default]+=" …"` is
/// added on a marked line. Other `KERNEL_CMDLINE[...]` keys are named in a
/// warning.
pub fn edit_default_limine(
    text: &str,
    add: &[String],
    remove: &[String],
) -> Result<Edited, EditError> {
    let var = "KERNEL_CMDLINE[default]";
    let file = |e: EditError| e.in_file("/etc/default/limine");
    // The file is read once, for the edit and for the warnings.
    super::params::check_params(add).map_err(file)?;
    let all = crate::plan::shell::assignments_unsplit(text).map_err(|e| file(e.into()))?;
    let mut e = edit_var_in(
        text,
        &all,
        var,
        add,
        remove,
        &[],
        true,
        &NewLine {
            after_var: None,
            plus: true,
        },
    )
    .map_err(file)?;
    for a in all
        .iter()
        .filter(|a| a.name.starts_with("KERNEL_CMDLINE[") && a.name != var)
    {
        e.warnings.push(format!(
            "line {}: {} is not changed; the parameters are added to {var} only",
            a.line(),
            a.name
        ));
    }
    Ok(e)
}

/// The kernel parameters `KERNEL_CMDLINE[default]` of `/etc/default/limine`
/// holds (`=` replaces, `+=` appends; expansions are left out: their value
/// is not known).
pub fn default_limine_cmdline(text: &str) -> Result<Vec<String>, EditError> {
    let var = "KERNEL_CMDLINE[default]";
    let all = crate::plan::shell::assignments_unsplit(text)
        .map_err(|e| EditError::from(e).in_file("/etc/default/limine"))?;
    let mut tokens = Vec::new();
    for a in all.iter().filter(|a| a.name == var) {
        if !a.extends(text) {
            tokens.clear();
        }
        let v =
            super::shellvar::value_words(text, a).map_err(|e| e.in_file("/etc/default/limine"))?;
        tokens.extend(v.into_iter().filter(|(_, opaque)| !opaque).map(|(t, _)| t));
    }
    Ok(tokens)
}

/// Regenerate limine.conf from `/etc/default/limine` (limine-entry-tool's
/// command; limine-mkinitcpio-hook installs it too). Not verified on a real
/// system here.
pub fn default_limine_update_argv() -> Vec<String> {
    vec!["limine-update".to_string()]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn linux_entries_only() {
        let t = "timeout: 3\n/Linux\n    PROTOCOL: Linux\n    path: boot():/vmlinuz\n    CMDLINE: root=/x quiet\n/Other\n    protocol: limine\n    kernel_cmdline: keep\n";
        let e = edit_limine_conf(t, &s(&["iommu=pt"]), &[]).unwrap();
        assert!(e.text.contains("    CMDLINE: root=/x quiet iommu=pt\n"));
        assert!(e.text.contains("kernel_cmdline: keep\n"));
        assert!(e.warnings.iter().any(|w| w.contains("enroll")));
        assert_eq!(
            edit_limine_conf(&e.text, &[], &s(&["iommu=pt"]))
                .unwrap()
                .text,
            t
        );
    }

    #[test]
    fn entry_without_cmdline() {
        let t =
            "/Linux\n  protocol: linux\n  path: boot():/vmlinuz\n  module_path: boot():/initrd\n";
        let e = edit_limine_conf(t, &s(&["iommu=pt"]), &[]).unwrap();
        assert_eq!(
            e.text,
            "/Linux\n  protocol: linux\n  path: boot():/vmlinuz\n  # added by exliar\n  cmdline: iommu=pt\n  module_path: boot():/initrd\n"
        );
        assert_eq!(
            edit_limine_conf(&e.text, &[], &s(&["iommu=pt"]))
                .unwrap()
                .text,
            t
        );
    }

    #[test]
    fn formats() {
        let old = "TIMEOUT=5\n:Arch\n    PROTOCOL=linux\n    CMDLINE=root=/x\n";
        assert_eq!(limine_format(old).unwrap(), LimineFormat::Old);
        let e = edit_limine_conf(old, &s(&["iommu=pt"]), &[]).unwrap_err();
        assert_eq!(e.line, 1);
        let e = limine_format("timeout: 5\n:Arch\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = edit_limine_conf("/A\nprotocol: linux\ncmdline: a\nCmdline: b\n", &[], &[])
            .unwrap_err();
        assert_eq!(e.line, 4);
    }

    #[test]
    fn enrolled() {
        let mut b = b"xx++CONFIG_B2SUM_SIGNATURE++".to_vec();
        b.extend(std::iter::repeat_n(b'0', 128));
        assert_eq!(config_checksum_enrolled(&b), Some(false));
        let n = b.len();
        b[n - 1] = b'a';
        assert_eq!(config_checksum_enrolled(&b), Some(true));
        assert_eq!(config_checksum_enrolled(b"nothing"), None);
    }

    #[test]
    fn default_limine() {
        let t = "ESP_PATH=\"/boot\"\nKERNEL_CMDLINE[default]+=\"quiet rw\"\n";
        let e = edit_default_limine(t, &s(&["iommu=pt"]), &[]).unwrap();
        assert_eq!(
            e.text,
            "ESP_PATH=\"/boot\"\nKERNEL_CMDLINE[default]+=\"quiet rw iommu=pt\"\n"
        );
        let t = "ESP_PATH=\"/boot\"\n";
        let e = edit_default_limine(t, &s(&["iommu=pt"]), &[]).unwrap();
        assert_eq!(
            e.text,
            "ESP_PATH=\"/boot\"\nKERNEL_CMDLINE[default]+=\" iommu=pt\" # added by exliar\n"
        );
        assert_eq!(
            edit_default_limine(&e.text, &[], &s(&["iommu=pt"]))
                .unwrap()
                .text,
            t
        );
    }
}
