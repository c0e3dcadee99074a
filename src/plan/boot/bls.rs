//! Boot Loader Specification type #1 entries (systemd-boot, and the
//! Fedora/RHEL snippets grub2 reads), `/etc/kernel/cmdline`
//! (kernel-install, UKIs, Proxmox), and the commands that apply them:
//! `kernel-install add`, `proxmox-boot-tool refresh`, `grubby`.

use super::params::{Decision, TokenizeError, check_params, decide, lint, spans};
use super::region::{TextEdit, Tokens, apply, edits_for};
use super::{EditError, Edited, line_of, line_ranges};

// ---------------------------------------------------------------------------
// /etc/kernel/cmdline

/// Edit `/etc/kernel/cmdline`. The whole file is the command line (there is
/// no comment syntax; systemd's 90-loaderentry.install reads it with
/// `tr -s "$IFS" ' '`, so newlines are blanks too). New parameters go after
/// the last one, before any trailing newline.
pub fn edit_kernel_cmdline(
    text: &str,
    add: &[String],
    remove: &[String],
) -> Result<Edited, EditError> {
    check_params(add)?;
    let mut tokens = Tokens::new(text)?;
    tokens.begin_group();
    tokens.reserve_for(text);
    for s in spans(text) {
        let s = s.map_err(|e| EditError::new(line_of(text, e.offset), e.message))?;
        tokens.push(s.start, s.end, false, true);
    }
    let existing = tokens.all();
    let mut warnings = lint(&existing);
    // A token starting with `#` has `#` as its initial.
    if let Some(i) = (0..tokens.len())
        .find(|&i| tokens.initial(i) == Some(b'#') && tokens.text(i).starts_with('#'))
    {
        warnings.push(format!(
            "line {}: `{}` looks like a comment, but /etc/kernel/cmdline has no comment syntax: it is passed to the kernel as a parameter",
            tokens.line(i),
            tokens.text(i)
        ));
    }
    let d = decide(&existing, add, remove);
    let edits = edits_for(&existing, &d, Some((0, 0)), &|p| p.to_string());
    Ok(finish(text, edits, d, warnings))
}

/// The content for a new `/etc/kernel/cmdline` when there is none: what
/// kernel-install would have used (`/proc/cmdline` without the boot
/// loader's `BOOT_IMAGE=` and `initrd=`, as 90-loaderentry.install does)
/// plus the new parameters, on one line.
pub fn kernel_cmdline_from_proc(proc_cmdline: &str, add: &[String]) -> String {
    let mut v = running_params(proc_cmdline);
    for a in add {
        if !v.iter().any(|t| super::params::same_param(t, a)) {
            v.push(a.clone());
        }
    }
    format!("{}\n", v.join(" "))
}

/// The running kernel's parameters as a boot loader entry would give them:
/// `/proc/cmdline` without the boot loader's own `BOOT_IMAGE=` and
/// `initrd=` (as systemd's 90-loaderentry.install does).
pub fn running_params(proc_cmdline: &str) -> Vec<String> {
    super::params::split(proc_cmdline)
        .unwrap_or_else(|_| {
            proc_cmdline
                .split_ascii_whitespace()
                .map(str::to_string)
                .collect()
        })
        .into_iter()
        .filter(|t| !t.starts_with("BOOT_IMAGE=") && !t.starts_with("initrd="))
        .collect()
}

/// Who reads `/etc/kernel/cmdline` on this host, hence what makes an edit
/// take effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdlineConsumer {
    /// Proxmox VE with proxmox-boot-tool (systemd-boot or GRUB on ZFS/ESP
    /// sync).
    Proxmox,
    /// kernel-install writes the loader entries: re-run it for every
    /// installed kernel, `(version, image path)`.
    KernelInstall { kernels: Vec<(String, String)> },
    /// mkinitcpio presets building UKIs (the command line is embedded).
    MkinitcpioUki,
}

/// The commands (argv) that make an edited `/etc/kernel/cmdline` effective.
pub fn kernel_cmdline_apply(consumer: &CmdlineConsumer) -> Vec<Vec<String>> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match consumer {
        CmdlineConsumer::Proxmox => vec![v(&["proxmox-boot-tool", "refresh"])],
        CmdlineConsumer::KernelInstall { kernels } => kernels
            .iter()
            .map(|(kver, image)| v(&["kernel-install", "add", kver, image]))
            .collect(),
        CmdlineConsumer::MkinitcpioUki => vec![v(&["mkinitcpio", "-P"])],
    }
}

// ---------------------------------------------------------------------------
// grubby

/// `grubby --update-kernel=ALL` adding `args` and removing `remove`;
/// `None` when there is nothing to do. A key being replaced belongs in
/// `args` only (grubby changes the value of a key it already has).
pub fn grubby_update(args: &[&str], remove: &[&str]) -> Option<Vec<String>> {
    let mut argv = vec!["grubby".to_string(), "--update-kernel=ALL".to_string()];
    if !args.is_empty() {
        argv.push(format!("--args={}", args.join(" ")));
    }
    if !remove.is_empty() {
        argv.push(format!("--remove-args={}", remove.join(" ")));
    }
    (argv.len() > 2).then_some(argv)
}

/// What undoes a grubby run that added `added` and took the user's
/// `removed` out: exliar's own parameters out (one whose key the user had
/// is put back by value instead), the user's back.
pub fn grubby_undo(added: &[String], removed: &[String]) -> Option<Vec<String>> {
    let back: Vec<&str> = removed.iter().map(String::as_str).collect();
    let out: Vec<&str> = added
        .iter()
        .filter(|a| {
            !back
                .iter()
                .any(|r| super::params::identity(r) == super::params::identity(a))
        })
        .map(String::as_str)
        .collect();
    grubby_update(&back, &out)
}

/// `grubby --update-kernel=ALL --args=… --remove-args=…` for BLS systems
/// (Fedora, RHEL, CentOS Stream), as argv. `existing` is the current
/// command line of the entries (e.g. `options` of one BLS snippet, or
/// `/etc/kernel/cmdline`): grubby would overwrite a user's conflicting
/// value, so the decision is taken here first and conflicts become
/// warnings. `None` when there is nothing to do.
pub fn grubby_argv(
    existing: &[String],
    add: &[String],
    remove: &[String],
) -> (Option<Vec<String>>, Decision) {
    let ex: Vec<super::params::Existing> = existing
        .iter()
        .map(|t| super::params::Existing::here(t, "the current command line".into()))
        .collect();
    let d = decide(&ex, add, remove);
    if d.added.is_empty() && d.removed.is_empty() {
        return (None, d);
    }
    // A replaced value is updated by --args; only pure removals go to
    // --remove-args.
    let replaced_ids: Vec<String> = d.added.iter().map(|a| super::params::identity(a)).collect();
    let pure_removed: Vec<&str> = d
        .removed
        .iter()
        .filter(|r| !replaced_ids.contains(&super::params::identity(r)))
        .map(String::as_str)
        .collect();
    let added: Vec<&str> = d.added.iter().map(String::as_str).collect();
    (grubby_update(&added, &pure_removed), d)
}

/// The BLS entries grubby edits (`/boot/loader/entries/*.conf`), as
/// `(path, command-line tokens)`: what [`grubby_plan`] decides from.
pub type BlsCmdlines = [(String, Vec<String>)];

/// What `grubby --update-kernel=ALL` must do so that every entry has the
/// parameters, and what undoes only exliar's part of it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GrubbyPlan {
    pub argv: Option<Vec<String>>,
    /// `--remove-args=` of the parameters no entry had before.
    pub undo: Option<Vec<String>>,
    /// The parameters no entry had (the ones rollback removes).
    pub added: Vec<String>,
    pub warnings: Vec<String>,
}

/// Decide the grubby call from the entries grubby edits (not from the
/// running kernel's command line, which is stale until the next boot): a
/// parameter every entry has is not passed; one no entry has is added and
/// undone by rollback; one only some entries have is added (grubby does not
/// repeat it where it is) but left by rollback, which cannot tell whose it
/// was (a warning names the entries). A user's conflicting value in any
/// entry is a warning, never overwritten. `entries` must not be empty.
pub fn grubby_plan(entries: &BlsCmdlines, add: &[String], remove: &[String]) -> GrubbyPlan {
    let mut args: Vec<String> = Vec::new();
    let mut plan = GrubbyPlan::default();
    // The user's parameters the plan takes out (a `vfio-pci.ids=` replaced
    // by the merged list): a value being replaced is no conflict, and
    // rollback puts it back.
    let removed: Vec<&String> = remove
        .iter()
        .filter(|r| entries.iter().any(|(_, t)| t.contains(r)))
        .collect();
    let names = |v: &[&(String, Vec<String>)]| {
        v.iter()
            .map(|(p, _)| format!("/{}", p.trim_start_matches('/')))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for a in add {
        let conflicting: Vec<&(String, Vec<String>)> = entries
            .iter()
            .filter(|(_, t)| {
                t.iter()
                    .any(|x| super::params::conflicts(x, a) && !remove.contains(x))
            })
            .collect();
        if !conflicting.is_empty() {
            plan.warnings.push(format!(
                "`{a}` is not added: {} set{} a conflicting value (change it by hand if `{a}` is what you want)",
                names(&conflicting),
                if conflicting.len() == 1 { "s" } else { "" }
            ));
            continue;
        }
        let (with, without): (Vec<_>, Vec<_>) = entries
            .iter()
            .partition(|(_, t)| t.iter().any(|x| super::params::same_param(x, a)));
        if without.is_empty() {
            continue;
        }
        args.push(a.clone());
        if with.is_empty() {
            plan.added.push(a.clone());
        } else {
            plan.warnings.push(format!(
                "`{a}` is already in {} but not in {}: grubby adds it there; rollback leaves it in every entry (it cannot tell whose it was)",
                names(&with),
                names(&without)
            ));
        }
    }
    // A replaced value is updated by --args (grubby changes the value of a
    // key it already has); only pure removals go to --remove-args.
    let replaced = |r: &str| {
        args.iter()
            .any(|a| super::params::identity(a) == super::params::identity(r))
    };
    let pure_removed: Vec<&str> = removed
        .iter()
        .filter(|r| !replaced(r))
        .map(|r| r.as_str())
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    plan.argv = grubby_update(&args, &pure_removed);
    let removed: Vec<String> = removed.into_iter().cloned().collect();
    plan.undo = grubby_undo(&plan.added, &removed);
    plan
}

/// A variable of a GRUB environment block (`/boot/grub2/grubenv`:
/// `name=value` lines, `#` padding): older Fedora/RHEL BLS entries say
/// `options $kernelopts` and keep the command line there.
pub fn grubenv_var(text: &str, name: &str) -> Option<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .rfind(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The command line an entry passes: its `options` tokens, with
/// `$kernelopts` / `${kernelopts}` replaced by grubenv's value.
pub fn expand_kernelopts(tokens: &[String], kernelopts: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for t in tokens {
        if t == "$kernelopts" || t == "${kernelopts}" {
            if let Some(k) = kernelopts {
                out.extend(
                    super::params::split(k).unwrap_or_else(|_| {
                        k.split_ascii_whitespace().map(str::to_string).collect()
                    }),
                );
            }
        } else {
            out.push(t.clone());
        }
    }
    out
}

/// What a type #1 entry boots and the command line it passes: the tokens
/// of its `options` lines in order (`None`: no `options` line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryCmdline {
    pub kind: EntryKind,
    pub options: Option<Vec<String>>,
}

/// Read an entry's command line (see [`EntryCmdline`]).
pub fn entry_cmdline(text: &str) -> Result<EntryCmdline, EditError> {
    let lines = parse_lines(text);
    let kind = match lines
        .iter()
        .find(|l| matches!(l.key, "linux" | "efi" | "uki"))
        .map(|l| l.key)
    {
        Some("linux") => EntryKind::Linux,
        Some("efi") => EntryKind::Efi,
        Some(_) => EntryKind::Uki,
        None => {
            return Err(EditError::new(
                lines.first().map(|l| l.line).unwrap_or(1),
                "not a boot loader entry: no `linux`, `efi` or `uki` key",
            ));
        }
    };
    let mut options: Option<Vec<String>> = None;
    for l in lines.iter().filter(|l| l.key == "options") {
        let t = super::params::split(l.value).map_err(|e| EditError::new(l.line, e.message))?;
        options.get_or_insert_with(Vec::new).extend(t);
    }
    Ok(EntryCmdline { kind, options })
}

// ---------------------------------------------------------------------------
// Type #1 entries

/// What an entry boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// `linux` + `initrd` + `options`: edited.
    Linux,
    /// `efi` (Windows, a shell): left alone.
    Efi,
    /// `uki`: the command line is inside the image; left alone.
    Uki,
}

/// The result of [`edit_loader_entry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryEdit {
    pub kind: EntryKind,
    /// A fallback/rescue entry: parameters are not added (it stays a way to
    /// boot without passthrough), only removed.
    pub fallback: bool,
    pub edited: Edited,
}

/// A fallback or rescue entry (by file name, title or initrd): Arch's
/// `*-fallback.conf` / `initramfs-*-fallback.img`, Fedora's `*-0-rescue-*`.
pub fn is_fallback_entry(file_name: &str, text: &str) -> bool {
    let low = file_name.to_ascii_lowercase();
    if low.contains("fallback") || low.contains("rescue") {
        return true;
    }
    parse_lines(text).iter().any(|l| {
        matches!(l.key, "title" | "initrd" | "linux")
            && (l.value.to_ascii_lowercase().contains("fallback")
                || (l.key == "title" && l.value.to_ascii_lowercase().contains("rescue")))
    })
}

/// A `key value` line, borrowed from the file.
#[derive(Debug)]
struct KeyLine<'a> {
    key: &'a str,
    value: &'a str,
    /// 1-based.
    line: usize,
    line_start: usize,
    line_end: usize,
    line_end_nl: usize,
    value_start: usize,
    sep: &'a str,
}

fn parse_lines(text: &str) -> Vec<KeyLine<'_>> {
    let mut v = Vec::new();
    for (n, (s, e, enl)) in line_ranges(text).into_iter().enumerate() {
        let raw = &text[s..e];
        let trimmed = raw.trim_start_matches([' ', '\t']);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let lead = raw.len() - trimmed.len();
        let key_len = trimmed.find([' ', '\t']).unwrap_or(trimmed.len());
        let key = &trimmed[..key_len];
        let rest = &trimmed[key_len..];
        let value = rest.trim_start_matches([' ', '\t']);
        let sep = &rest[..rest.len() - value.len()];
        v.push(KeyLine {
            key,
            value,
            line: n + 1,
            line_start: s,
            line_end: e,
            line_end_nl: enl,
            value_start: s + lead + key_len + sep.len(),
            sep,
        });
    }
    v
}

/// Edit one loader entry (`$ESP/loader/entries/*.conf` or
/// `/boot/loader/entries/*.conf`): parameters are added to the last
/// `options` line (entries may have several; the loader joins them in
/// order), removed from whichever line holds them; comment lines and the
/// key/value separator (blanks or TABs) stay as they are. `efi` and `uki`
/// entries are returned unchanged. A Linux entry without `options` gets one,
/// after a `# added by exliar` comment line (a warning says so); removing
/// its last parameter removes both lines. A user's own `options` line is
/// never removed, even when left empty. Fallback entries (see [`is_fallback_entry`]) only
/// lose parameters.
pub fn edit_loader_entry(
    file_name: &str,
    text: &str,
    add: &[String],
    remove: &[String],
) -> Result<EntryEdit, EditError> {
    check_params(add)?;
    let lines = parse_lines(text);
    let first = |k: &str| lines.iter().find(|l| l.key == k);
    let mut boot_keys = lines
        .iter()
        .filter(|l| matches!(l.key, "linux" | "efi" | "uki"));
    let kind_line = boot_keys.next().ok_or_else(|| {
        EditError::new(
            lines.first().map(|l| l.line).unwrap_or(1),
            "not a boot loader entry: no `linux`, `efi` or `uki` key",
        )
    })?;
    if let Some(second) = boot_keys.next() {
        return Err(EditError::new(
            second.line,
            format!(
                "`{}` again: this entry already names what it boots with `{}` on line {}",
                second.key, kind_line.key, kind_line.line
            ),
        ));
    }
    let kind = match kind_line.key {
        "linux" => EntryKind::Linux,
        "efi" => EntryKind::Efi,
        _ => EntryKind::Uki,
    };
    let fallback = is_fallback_entry(file_name, text);
    if kind != EntryKind::Linux {
        let mut edited = Edited::unchanged(text);
        if kind == EntryKind::Uki && !add.is_empty() {
            edited.warnings.push(format!(
                "line {}: a `uki` entry: its command line is embedded in the image; change /etc/kernel/cmdline and rebuild the UKI",
                kind_line.line
            ));
        }
        return Ok(EntryEdit {
            kind,
            fallback,
            edited,
        });
    }
    let add: &[String] = if fallback { &[] } else { add };
    // Tokens of every options line, one group per line.
    let mut tokens = Tokens::new(text)?;
    let opts: Vec<&KeyLine<'_>> = lines.iter().filter(|l| l.key == "options").collect();
    for l in &opts {
        tokens.begin_group();
        let bad = |e: TokenizeError| {
            EditError::new(
                l.line,
                format!(
                    "{} in `options` (column {})",
                    e.message,
                    l.value_start - l.line_start + e.offset + 1
                ),
            )
        };
        tokens.reserve_for(l.value);
        for s in spans(l.value) {
            let s = s.map_err(bad)?;
            // The value as it is in the file.
            tokens.push(l.value_start + s.start, l.value_start + s.end, false, true);
        }
    }
    let existing = tokens.all();
    let mut warnings = lint(&existing);
    let d = decide(&existing, add, remove);
    let mut edits;
    if let Some(last) = opts.last() {
        let g = opts.len() - 1;
        let group_start = if last.sep.is_empty() {
            last.line_end
        } else {
            last.value_start
        };
        let lead = if last.sep.is_empty() { " " } else { "" };
        edits = edits_for(&existing, &d, Some((g, group_start)), &|p| p.to_string());
        if !lead.is_empty() {
            for e in edits.iter_mut() {
                if e.start == group_start && e.start == e.end && !e.text.starts_with(' ') {
                    e.text.insert_str(0, lead);
                }
            }
        }
        // An options line left without parameters by the removal is
        // deleted (exliar made it, see below).
        let mut gone = d.delete.clone();
        gone.sort_unstable();
        gone.dedup();
        let mut cuts = Vec::new();
        for (g, l) in opts.iter().enumerate() {
            let in_line = tokens.group(g);
            if in_line.is_empty() {
                continue;
            }
            let deleted = gone.partition_point(|&j| j < in_line.end)
                - gone.partition_point(|&j| j < in_line.start);
            let all_gone = deleted == in_line.len();
            let appended_here = g == opts.len() - 1 && !d.append.is_empty();
            // Only a line exliar made, marked by the comment line above it.
            let mark = text[..l.line_start].strip_suffix('\n').map(|before| {
                let s = before.rfind('\n').map_or(0, |i| i + 1);
                (s, before[s..].trim() == super::MARK)
            });
            if all_gone
                && !appended_here
                && let Some((mark_start, true)) = mark
            {
                cuts.push((mark_start, l.line_end, l.line_end_nl));
            }
        }
        cut_lines(text, &mut edits, &cuts);
    } else {
        edits = Vec::new();
        if !d.append.is_empty() {
            let anchor = lines
                .iter()
                .rfind(|l| matches!(l.key, "linux" | "initrd"))
                .unwrap_or(kind_line);
            let sep = match first("linux") {
                Some(l) if l.sep.contains('\t') => "\t".to_string(),
                Some(l) => " ".repeat((l.key.len() + l.sep.len()).saturating_sub(7).max(1)),
                None => " ".to_string(),
            };
            let new_line = format!("{}\noptions{sep}{}", super::MARK, d.append.join(" "));
            edits.push(insert_line_after(
                text,
                anchor.line_end,
                anchor.line_end_nl,
                &new_line,
            ));
            warnings.push(format!(
                "the entry has no `options` line: one is added after line {}",
                anchor.line
            ));
        }
    }
    Ok(EntryEdit {
        kind,
        fallback,
        edited: finish(text, edits, d, warnings),
    })
}

/// Delete a whole line: with its newline, or, for a last line without one,
/// with the newline before it.
pub(crate) fn whole_line(text: &str, start: usize, end: usize, end_nl: usize) -> TextEdit {
    if end_nl > end || start == 0 {
        TextEdit {
            start,
            end: end_nl,
            text: String::new(),
        }
    } else {
        let _ = text;
        TextEdit {
            start: start - 1,
            end,
            text: String::new(),
        }
    }
}

/// Delete whole lines ([`whole_line`]: `(start, end, end_nl)`) and, first,
/// every edit within `start..end` of one, as doing it line by line in
/// order would (a line's deletion goes too when a later line overlaps
/// it), in one pass when the lines are in file order and apart, as the
/// editors give them.
pub(crate) fn cut_lines(text: &str, edits: &mut Vec<TextEdit>, lines: &[(usize, usize, usize)]) {
    if !lines.windows(2).all(|w| w[0].1 <= w[1].0) {
        for &(s, e, enl) in lines {
            edits.retain(|x| x.end <= s || x.start >= e);
            edits.push(whole_line(text, s, e, enl));
        }
        return;
    }
    // Among `lines[from..]` (in order, apart), one overlaps `x`: the first
    // that ends after `x` starts begins before `x` ends.
    let overlaps = |x: &TextEdit, from: usize| {
        let k = lines.partition_point(|l| l.1 <= x.start).max(from);
        lines.get(k).is_some_and(|l| l.0 < x.end && l.1 > x.start)
    };
    edits.retain(|x| !overlaps(x, 0));
    for (i, &(s, e, enl)) in lines.iter().enumerate() {
        let w = whole_line(text, s, e, enl);
        if !overlaps(&w, i + 1) {
            edits.push(w);
        }
    }
}

/// Insert a line after the line ending at `end` (`end_nl` past its newline):
/// the inverse of [`whole_line`].
pub(crate) fn insert_line_after(_text: &str, end: usize, end_nl: usize, line: &str) -> TextEdit {
    if end_nl > end {
        TextEdit {
            start: end_nl,
            end: end_nl,
            text: format!("{line}\n"),
        }
    } else {
        TextEdit {
            start: end,
            end,
            text: format!("\n{line}"),
        }
    }
}

pub(crate) fn finish(
    text: &str,
    edits: Vec<TextEdit>,
    d: Decision,
    mut warnings: Vec<String>,
) -> Edited {
    warnings.extend(d.warnings);
    Edited {
        text: apply(text, edits),
        added: d.added,
        removed: d.removed,
        warnings,
    }
}

/// The `default` of `loader.conf` (a file name or glob such as `arch-*`),
/// with its line, so the planner can tell which entry boots by default.
pub fn loader_conf_default(text: &str) -> Option<(usize, String)> {
    parse_lines(text)
        .into_iter()
        .rfind(|l| l.key == "default")
        .map(|l| (l.line, l.value.trim_end().to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// [`cut_lines`] does what cutting line by line did.
        #[test]
        fn cut_lines_is_line_by_line(
            text in "[a\n]{0,30}",
            edits in prop::collection::vec((0usize..32, 0usize..4, "[xy]{0,2}"), 0..8),
            lines in prop::collection::vec((0usize..32, 0usize..6, 0usize..2), 0..5),
            sorted in any::<bool>(),
        ) {
            let edits: Vec<TextEdit> = edits
                .into_iter()
                .map(|(s, l, t)| TextEdit { start: s, end: s + l, text: t })
                .collect();
            let mut lines: Vec<(usize, usize, usize)> = lines
                .into_iter()
                .map(|(s, l, nl)| (s + 1, s + 1 + l, s + 1 + l + nl))
                .collect();
            if sorted {
                lines.sort_unstable();
                lines.dedup_by(|b, a| b.0 < a.1);
            }
            let mut want = edits.clone();
            for &(s, e, enl) in &lines {
                want.retain(|x| x.end <= s || x.start >= e);
                want.push(whole_line(&text, s, e, enl));
            }
            let mut got = edits;
            cut_lines(&text, &mut got, &lines);
            prop_assert_eq!(got, want);
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn kernel_cmdline_keeps_layout() {
        let e = edit_kernel_cmdline("root=/x quiet\n", &s(&["iommu=pt"]), &[]).unwrap();
        assert_eq!(e.text, "root=/x quiet iommu=pt\n");
        let r = edit_kernel_cmdline(&e.text, &[], &s(&["iommu=pt"])).unwrap();
        assert_eq!(r.text, "root=/x quiet\n");
        let e = edit_kernel_cmdline("", &s(&["iommu=pt"]), &[]).unwrap();
        assert_eq!(e.text, "iommu=pt");
        let e = edit_kernel_cmdline("# c\nroot=/x\n", &[], &[]).unwrap();
        assert!(
            e.warnings[0].contains("no comment syntax"),
            "{:?}",
            e.warnings
        );
        let err = edit_kernel_cmdline("root=/x\nfoo=\"bar\n", &[], &[]).unwrap_err();
        assert_eq!(err.line, 2);
    }

    #[test]
    fn from_proc() {
        assert_eq!(
            kernel_cmdline_from_proc(
                "BOOT_IMAGE=/vmlinuz root=/x initrd=\\i.img quiet\n",
                &s(&["iommu=pt", "quiet"])
            ),
            "root=/x quiet iommu=pt\n"
        );
    }

    #[test]
    fn entry_without_options_gets_one_and_loses_it() {
        let t = "title A\nlinux   /vmlinuz\ninitrd  /initrd\n# c\n";
        let e = edit_loader_entry("a.conf", t, &s(&["iommu=pt"]), &[]).unwrap();
        assert_eq!(
            e.edited.text,
            "title A\nlinux   /vmlinuz\ninitrd  /initrd\n# added by exliar\noptions iommu=pt\n# c\n"
        );
        let r = edit_loader_entry("a.conf", &e.edited.text, &[], &s(&["iommu=pt"])).unwrap();
        assert_eq!(r.edited.text, t);
    }

    #[test]
    fn repeated_options_and_errors() {
        let t = "linux /v\noptions root=/x\noptions\tquiet\n";
        let e = edit_loader_entry("a.conf", t, &s(&["iommu=pt", "quiet"]), &[]).unwrap();
        assert_eq!(
            e.edited.text,
            "linux /v\noptions root=/x\noptions\tquiet iommu=pt\n"
        );
        let err = edit_loader_entry("a.conf", "linux /a\nlinux /b\n", &[], &[]).unwrap_err();
        assert_eq!(err.line, 2);
        let err = edit_loader_entry("a.conf", "title x\n", &[], &[]).unwrap_err();
        assert!(err.message.contains("not a boot loader entry"));
        let err = edit_loader_entry("a.conf", "linux /a\noptions a=\"b\n", &[], &[]).unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(
            err.in_file("/boot/loader/entries/a.conf").to_string(),
            "/boot/loader/entries/a.conf:2: unterminated double quote in the kernel command line in `options` (column 11)"
        );
    }

    #[test]
    fn grubby_plan_from_entries() {
        let e = |p: &str, t: &[&str]| (p.to_string(), s(t));
        let entries = vec![
            e("boot/loader/entries/a.conf", &["root=/x", "iommu=pt"]),
            e(
                "boot/loader/entries/b.conf",
                &["root=/x", "intel_iommu=off"],
            ),
        ];
        let g = grubby_plan(
            &entries,
            &s(&["iommu=pt", "intel_iommu=on", "rd.driver.pre=vfio-pci"]),
            &[],
        );
        assert_eq!(
            g.argv.unwrap(),
            s(&[
                "grubby",
                "--update-kernel=ALL",
                "--args=iommu=pt rd.driver.pre=vfio-pci"
            ])
        );
        assert_eq!(
            g.undo.unwrap(),
            s(&[
                "grubby",
                "--update-kernel=ALL",
                "--remove-args=rd.driver.pre=vfio-pci"
            ])
        );
        assert_eq!(g.added, s(&["rd.driver.pre=vfio-pci"]));
        assert_eq!(g.warnings.len(), 2, "{:?}", g.warnings);
        assert!(
            g.warnings[0]
                .contains("/boot/loader/entries/a.conf but not in /boot/loader/entries/b.conf")
        );
        assert!(
            g.warnings[1]
                .contains("`intel_iommu=on` is not added: /boot/loader/entries/b.conf sets")
        );
        let g = grubby_plan(&entries[..1], &s(&["iommu=pt"]), &[]);
        assert_eq!(g, GrubbyPlan::default());
    }

    #[test]
    fn entry_cmdline_and_kernelopts() {
        let e = entry_cmdline("title F\nlinux /v\noptions $kernelopts\noptions\tquiet\n").unwrap();
        assert_eq!(e.kind, EntryKind::Linux);
        let env = "# GRUB Environment Block\nkernelopts=root=/x ro\n#####";
        let k = grubenv_var(env, "kernelopts");
        assert_eq!(k.as_deref(), Some("root=/x ro"));
        assert_eq!(
            expand_kernelopts(&e.options.unwrap(), k.as_deref()),
            s(&["root=/x", "ro", "quiet"])
        );
        assert_eq!(entry_cmdline("linux /v\n").unwrap().options, None);
        assert_eq!(entry_cmdline("uki /u.efi\n").unwrap().kind, EntryKind::Uki);
        assert!(entry_cmdline("title x\n").is_err());
    }

    #[test]
    fn grubby() {
        let (argv, _) = grubby_argv(
            &s(&["quiet", "vfio-pci.ids=1:2"]),
            &s(&["vfio-pci.ids=1:2,3:4", "iommu=pt"]),
            &s(&["vfio-pci.ids=1:2", "rd.driver.pre=vfio-pci"]),
        );
        assert_eq!(
            argv.unwrap(),
            s(&[
                "grubby",
                "--update-kernel=ALL",
                "--args=vfio-pci.ids=1:2,3:4 iommu=pt"
            ])
        );
        let (argv, _) = grubby_argv(&s(&["iommu=pt"]), &s(&["iommu=pt"]), &[]);
        assert!(argv.is_none());
    }
}
