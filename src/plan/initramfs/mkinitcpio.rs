//! `/etc/mkinitcpio.conf` (bash): the vfio modules go first in `MODULES`,
//! the `modconf` hook must be in `HOOKS` (it carries `/etc/modprobe.d` into
//! the image), and the early-bind script goes into `FILES`.
//!
//! The arrays are edited in place, keeping the user's items, their order,
//! quoting and spacing (`MODULES=( a b )`, multi-line arrays, the old string
//! form `MODULES="a b"`). The last plain assignment is the one that counts
//! (a later `MODULES+=(...)` appends to it). The original statement is kept
//! above the edited one in `# exliar was: ` lines, which is what `remove`
//! puts back.

use std::collections::BTreeSet;

use serde::Serialize;

use super::{VFIO_MODULES_ANY, is_claiming, normalize_module};
use crate::plan::editors::{
    ADDED, EditError, Finding, Mark, append_lines, check_token, lines, removal_range,
    remove_all_marks, replace_ranges, was_lines,
};
use crate::plan::shell::{self, Assignment, Item, Value};

pub const CONF: &str = "/etc/mkinitcpio.conf";
pub const DROPIN_DIR: &str = "/etc/mkinitcpio.conf.d";

/// Where exliar's files live: `FILES` entries under it are exliar's.
const EXLIAR_PREFIX: &str = "/usr/lib/exliar/";

/// What `/etc/mkinitcpio.conf` must contain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MkinitcpioEdit {
    /// vfio modules, loaded before any GPU or HDMI-audio driver in `MODULES`.
    pub modules: Vec<String>,
    /// Hooks that must be in `HOOKS` (`modconf`).
    pub hooks: Vec<String>,
    /// Files to put into the image (the early-bind script).
    pub files: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Modules,
    Hooks,
    Files,
}

impl Var {
    const ALL: [Var; 3] = [Var::Modules, Var::Hooks, Var::Files];

    fn name(self) -> &'static str {
        match self {
            Var::Modules => "MODULES",
            Var::Hooks => "HOOKS",
            Var::Files => "FILES",
        }
    }

    fn of(name: &str) -> Option<Var> {
        Var::ALL.into_iter().find(|v| v.name() == name)
    }

    fn key(self, text: &str) -> String {
        match self {
            Var::Modules => normalize_module(text),
            _ => text.to_string(),
        }
    }

    /// Could exliar have added this item?
    fn managed(self, key: &str) -> bool {
        match self {
            Var::Modules => VFIO_MODULES_ANY.contains(&key),
            Var::Hooks => key == "modconf",
            Var::Files => key.starts_with(EXLIAR_PREFIX),
        }
    }
}

impl MkinitcpioEdit {
    fn required(&self, var: Var) -> &[String] {
        match var {
            Var::Modules => &self.modules,
            Var::Hooks => &self.hooks,
            Var::Files => &self.files,
        }
    }

    /// The configuration with exliar's change (idempotent).
    pub fn apply(&self, text: &str) -> Result<String, EditError> {
        let clean = self.remove(text)?;
        self.edit_clean(&clean)
    }

    /// The configuration without exliar's change.
    pub fn remove(&self, text: &str) -> Result<String, EditError> {
        remove(text)
    }

    pub fn is_applied(&self, text: &str) -> Result<bool, EditError> {
        Ok(self.apply(text)? == text)
    }

    fn check(&self) -> Result<(), EditError> {
        for var in Var::ALL {
            for r in self.required(var) {
                check_token(r)?;
                if !var.managed(&var.key(r)) {
                    return Err(EditError::new(
                        0,
                        format!("`{r}` is not something exliar manages in {}", var.name()),
                    ));
                }
            }
        }
        Ok(())
    }

    fn edit_clean(&self, text: &str) -> Result<String, EditError> {
        self.check()?;
        let assigns = shell::assignments(text)?;
        let ls = lines(text);
        // Per edited assignment: the replacement of part of its value.
        let mut changes: Vec<(usize, (usize, usize, String))> = Vec::new();
        let mut added_before: Vec<(usize, String)> = Vec::new();
        let mut added_end: Vec<String> = Vec::new();
        for var in Var::ALL {
            let req = self.required(var);
            if req.is_empty() {
                continue;
            }
            let idxs: Vec<usize> = (0..assigns.len())
                .filter(|&i| assigns[i].name == var.name())
                .collect();
            let last_plain = idxs.iter().rposition(|&i| !assigns[i].append);
            let effective: Vec<String> = idxs[last_plain.unwrap_or(0)..]
                .iter()
                .flat_map(|&i| assigns[i].value.items().iter())
                .map(|it| var.key(&it.text))
                .collect();
            if satisfied(var, req, &effective) {
                continue;
            }
            match last_plain.map(|p| idxs[p]) {
                Some(p) => {
                    let a = &assigns[p];
                    if let Value::Scalar { simple: false, .. } = a.value {
                        return Err(EditError::new(
                            a.first_line + 1,
                            format!(
                                "{} is not a plain list; add {} to it by hand",
                                var.name(),
                                req.join(" ")
                            ),
                        ));
                    }
                    let ops = plan_ops(var, req, a);
                    changes.push((p, render_ops(text, a, &ops)));
                }
                None if var == Var::Hooks => {
                    return Err(EditError::new(
                        0,
                        "no HOOKS=(...) assignment to add modconf to",
                    ));
                }
                None => {
                    let stmt = format!("{}=({})", var.name(), req.join(" "));
                    match idxs.first() {
                        Some(&i) => {
                            let at = ls
                                .get(assigns[i].stmt_first_line)
                                .map_or(text.len(), |l| l.start);
                            added_before.push((at, stmt));
                        }
                        None => added_end.push(stmt),
                    }
                }
            }
        }
        if changes.is_empty() && added_before.is_empty() && added_end.is_empty() {
            return Ok(text.to_string());
        }

        // Group the changed assignments by the lines they sit on; each group
        // gets its `# exliar was:` lines.
        let mut edits: Vec<(usize, usize, String)> = Vec::new();
        let mut done: BTreeSet<usize> = BTreeSet::new();
        for &(p, _) in &changes {
            let a = &assigns[p];
            let (f, l) = span_of(&assigns, a.first_line, a.last_line);
            if !done.insert(f) {
                continue;
            }
            let (Some(first), Some(last)) = (ls.get(f), ls.get(l)) else {
                continue;
            };
            let (start, end) = (first.start, last.end);
            let inner: Vec<(usize, usize, String)> = changes
                .iter()
                .filter(|(q, _)| {
                    let b = &assigns[*q];
                    b.first_line >= f && b.last_line <= l
                })
                .map(|(_, (s, e, r))| (s - start, e - start, r.clone()))
                .collect();
            let original = &text[start..end];
            let edited = replace_ranges(original, inner);
            edits.push((start, end, format!("{}{edited}", was_lines(original))));
        }
        for (at, stmt) in added_before {
            edits.push((at, at, format!("{ADDED}\n{stmt}\n")));
        }
        let out = replace_ranges(text, edits);
        if added_end.is_empty() {
            return Ok(out);
        }
        let chunk: Vec<String> = added_end.iter().map(|s| format!("{ADDED}\n{s}")).collect();
        Ok(append_lines(&out, &chunk.join("\n")))
    }
}

/// Are the required items in the effective list (modules: ahead of every
/// GPU/audio driver)?
fn satisfied(var: Var, req: &[String], effective: &[String]) -> bool {
    let first_claiming = match var {
        Var::Modules => effective
            .iter()
            .position(|k| is_claiming(k))
            .unwrap_or(effective.len()),
        _ => effective.len(),
    };
    req.iter().all(|r| {
        let k = var.key(r);
        effective
            .iter()
            .position(|e| *e == k)
            .is_some_and(|i| i < first_claiming || var != Var::Modules)
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    /// Insert tokens before item `before` (`== items.len()`: after the last).
    Insert {
        before: usize,
        tokens: Vec<String>,
    },
    Delete(usize),
}

fn plan_ops(var: Var, req: &[String], a: &Assignment) -> Vec<Op> {
    let items = a.value.items();
    let keys: Vec<String> = items.iter().map(|i| var.key(&i.text)).collect();
    let quote = match a.value {
        Value::Array { .. } => items.iter().find_map(|i| i.quote),
        Value::Scalar { .. } => None,
    };
    let q = |t: &String| match quote {
        Some(c) => format!("{}{t}{}", c as char, c as char),
        None => t.clone(),
    };
    let mut ops = Vec::new();
    match var {
        Var::Modules => {
            let claiming = keys
                .iter()
                .position(|k| is_claiming(k))
                .unwrap_or(keys.len());
            let ok: BTreeSet<&String> = keys[..claiming].iter().collect();
            let missing: Vec<&String> = req.iter().filter(|r| !ok.contains(&var.key(r))).collect();
            let missing_keys: BTreeSet<String> = missing.iter().map(|r| var.key(r)).collect();
            ops.push(Op::Insert {
                before: 0,
                tokens: missing.iter().map(|t| q(t)).collect(),
            });
            for (i, k) in keys.iter().enumerate().skip(claiming) {
                if missing_keys.contains(k) {
                    ops.push(Op::Delete(i));
                }
            }
        }
        Var::Hooks => {
            let missing: Vec<String> = req.iter().filter(|r| !keys.contains(r)).map(q).collect();
            ops.push(Op::Insert {
                before: hook_position(&keys),
                tokens: missing,
            });
        }
        Var::Files => {
            let missing: Vec<String> = req.iter().filter(|r| !keys.contains(r)).map(q).collect();
            ops.push(Op::Insert {
                before: items.len(),
                tokens: missing,
            });
        }
    }
    ops
}

/// Where `modconf` goes: after the early hooks (`base`, `udev`/`systemd`,
/// `autodetect`, `microcode`), as in the stock configuration; else before
/// `block`; else at the end.
fn hook_position(keys: &[String]) -> usize {
    const AFTER: &[&str] = &["base", "udev", "systemd", "autodetect", "microcode"];
    if let Some(i) = keys.iter().rposition(|k| AFTER.contains(&k.as_str())) {
        return i + 1;
    }
    keys.iter().position(|k| k == "block").unwrap_or(keys.len())
}

/// The byte range of `a`'s value to replace, and its replacement.
fn render_ops(text: &str, a: &Assignment, ops: &[Op]) -> (usize, usize, String) {
    match &a.value {
        Value::Array { open, close, items } => {
            let inner = (open + 1, *close);
            (inner.0, inner.1, edit_words(text, inner, items, ops))
        }
        Value::Scalar {
            quote: Some(_),
            inner,
            items,
            ..
        } => (inner.0, inner.1, edit_words(text, *inner, items, ops)),
        Value::Scalar {
            start, end, items, ..
        } => {
            // An unquoted word: more than one item needs quotes.
            let tokens = final_tokens(text, items, ops);
            let v = match tokens.len() {
                0 | 1 => tokens.concat(),
                _ => format!("\"{}\"", tokens.join(" ")),
            };
            (*start, *end, v)
        }
    }
}

fn final_tokens(text: &str, items: &[Item], ops: &[Op]) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..=items.len() {
        for op in ops {
            if let Op::Insert { before, tokens } = op
                && *before == i
            {
                out.extend(tokens.iter().cloned());
            }
        }
        if i < items.len() && !ops.contains(&Op::Delete(i)) {
            out.push(text[items[i].start..items[i].end].to_string());
        }
    }
    out
}

/// Edit the words in `text[inner]`, touching only the bytes the operations
/// are about: separators, comments and quoting elsewhere stay as they are.
fn edit_words(text: &str, inner: (usize, usize), items: &[Item], ops: &[Op]) -> String {
    let local = |o: usize| o - inner.0;
    let body = &text[inner.0..inner.1];
    let inserts: Vec<(usize, &Vec<String>)> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Insert { before, tokens } if !tokens.is_empty() => Some((*before, tokens)),
            _ => None,
        })
        .collect();
    if items.is_empty() {
        let joined: Vec<&String> = inserts.iter().flat_map(|(_, t)| t.iter()).collect();
        if joined.is_empty() {
            return body.to_string();
        }
        let j = joined
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        return if body.is_empty() {
            j
        } else if !body.contains('\n') && !body.contains('#') {
            format!("{body}{j}{body}")
        } else if body.starts_with('\n') {
            format!("\n{j}{body}")
        } else {
            format!("{j} {body}")
        };
    }
    let sep_between = |i: usize| &text[items[i].end..items[i + 1].start];
    let lead = &text[inner.0..items[0].start];
    let default_sep: String = (0..items.len() - 1)
        .map(sep_between)
        .find(|s| !s.contains('#'))
        .map(str::to_string)
        .unwrap_or_else(|| match lead.rfind('\n') {
            Some(p) => lead[p..].to_string(),
            None => " ".to_string(),
        });
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for (before, tokens) in inserts {
        let joined = tokens.join(&default_sep);
        if before < items.len() {
            let at = local(items[before].start);
            edits.push((at, at, format!("{joined}{default_sep}")));
        } else {
            let at = local(items[items.len() - 1].end);
            edits.push((at, at, format!("{default_sep}{joined}")));
        }
    }
    // Deletions, in runs of neighbouring items; a run takes one plain
    // separator with it, never a comment.
    let deleted: Vec<usize> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Delete(i) if *i < items.len() => Some(*i),
            _ => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let plain = |i: usize| !sep_between(i).contains('#');
    let mut k = 0;
    while k < deleted.len() {
        let a = deleted[k];
        let mut b = a;
        while k + 1 < deleted.len() && deleted[k + 1] == b + 1 && plain(b) {
            k += 1;
            b += 1;
        }
        k += 1;
        let range = if b + 1 < items.len() && plain(b) && !deleted.contains(&(b + 1)) {
            (items[a].start, items[b + 1].start)
        } else if a > 0 && plain(a - 1) && !deleted.contains(&(a - 1)) {
            (items[a - 1].end, items[b].end)
        } else {
            (items[a].start, items[b].end)
        };
        edits.push((local(range.0), local(range.1), String::new()));
    }
    replace_ranges(body, edits)
}

/// Lines `f..=l` grown until no assignment straddles their edges.
fn span_of(assigns: &[Assignment], mut f: usize, mut l: usize) -> (usize, usize) {
    loop {
        let mut changed = false;
        for a in assigns {
            let (af, al) = (a.stmt_first_line, a.stmt_last_line);
            if af <= l && al >= f {
                if af < f {
                    f = af;
                    changed = true;
                }
                if al > l {
                    l = al;
                    changed = true;
                }
            }
        }
        if !changed {
            return (f, l);
        }
    }
}

/// The configuration without exliar's change: every `# exliar was:`
/// statement put back (or, where the user has changed it since, only the
/// items exliar added taken out), every `# exliar added` statement deleted.
pub fn remove(text: &str) -> Result<String, EditError> {
    remove_all_marks(text, remove_mark)
}

fn remove_mark(text: &str, mark: &Mark) -> Result<String, EditError> {
    let ls = lines(text);
    let assigns = shell::assignments(text)?;
    let first = mark.first_line();
    let marker_start = ls.get(first).map_or(text.len(), |l| l.start);
    let target = mark.target();
    let own: Vec<&Assignment> = assigns
        .iter()
        .filter(|a| a.stmt_first_line == target && Var::of(&a.name).is_some())
        .collect();
    // The statement is gone (or unreadable): drop the marker lines only.
    let drop_markers = || {
        let last = target.saturating_sub(1);
        let end = ls.get(last).map_or(text.len(), |l| l.end_nl());
        let (s, e) = removal_range(text, marker_start, end);
        format!("{}{}", &text[..s], &text[e..])
    };
    let Some(head) = own.first() else {
        return Ok(drop_markers());
    };
    let (f, l) = span_of(&assigns, head.first_line, head.last_line);
    let (Some(fl), Some(ll)) = (ls.get(f), ls.get(l)) else {
        return Ok(drop_markers());
    };
    if f < target {
        return Ok(drop_markers());
    }
    let current = &text[fl.start..ll.end];
    match mark {
        Mark::Was { saved, .. } => {
            let restored = restore(saved, current);
            Ok(format!(
                "{}{restored}{}",
                &text[..marker_start],
                &text[ll.end..]
            ))
        }
        Mark::Added { .. } => {
            let local = shell::assignments_in_piece(current);
            let only_ours = local.iter().all(|a| match Var::of(&a.name) {
                Some(v) => a.value.items().iter().all(|i| v.managed(&v.key(&i.text))),
                None => false,
            });
            if only_ours {
                let (s, e) = removal_range(text, marker_start, ll.end_nl());
                Ok(format!("{}{}", &text[..s], &text[e..]))
            } else {
                let kept = subtract(current, &local, &[]);
                Ok(format!(
                    "{}{kept}{}",
                    &text[..marker_start],
                    &text[ll.end..]
                ))
            }
        }
    }
}

/// Put `saved` back if `current` differs from it only by items exliar adds;
/// otherwise take exliar's items out of `current` and keep the rest.
fn restore(saved: &str, current: &str) -> String {
    let (was, now) = (
        shell::assignments_in_piece(saved),
        shell::assignments_in_piece(current),
    );
    let skeleton = |text: &str, assigns: &[Assignment]| {
        let cuts = assigns
            .iter()
            .filter(|a| Var::of(&a.name).is_some())
            .map(|a| match &a.value {
                Value::Array { open, close, .. } => (open + 1, *close, String::new()),
                Value::Scalar { start, end, .. } => (*start, *end, String::new()),
            })
            .collect();
        replace_ranges(text, cuts)
    };
    let mut clean = skeleton(saved, &was) == skeleton(current, &now);
    if clean {
        for (a, b) in pair_up(&now, &was) {
            let Some(var) = Var::of(&a.name) else {
                continue;
            };
            let cur: BTreeSet<String> = a.value.items().iter().map(|i| var.key(&i.text)).collect();
            let old: BTreeSet<String> = b
                .map(|b| b.value.items().iter().map(|i| var.key(&i.text)).collect())
                .unwrap_or_default();
            if !old.is_subset(&cur) || cur.difference(&old).any(|k| !var.managed(k)) {
                clean = false;
            }
        }
    }
    if clean {
        saved.to_string()
    } else {
        subtract(current, &now, &was)
    }
}

/// Each assignment of `now` with its counterpart in `was` (same name, same
/// `=`/`+=`, same rank among those).
fn pair_up<'a>(
    now: &'a [Assignment],
    was: &'a [Assignment],
) -> Vec<(&'a Assignment, Option<&'a Assignment>)> {
    let mut out = Vec::new();
    for (i, a) in now.iter().enumerate() {
        let rank = now[..i]
            .iter()
            .filter(|b| b.name == a.name && b.append == a.append)
            .count();
        let b = was
            .iter()
            .filter(|b| b.name == a.name && b.append == a.append)
            .nth(rank);
        out.push((a, b));
    }
    out
}

/// `current` without the managed items that `was` did not have.
fn subtract(current: &str, now: &[Assignment], was: &[Assignment]) -> String {
    let mut edits = Vec::new();
    for (a, b) in pair_up(now, was) {
        let Some(var) = Var::of(&a.name) else {
            continue;
        };
        let old: BTreeSet<String> = b
            .map(|b| b.value.items().iter().map(|i| var.key(&i.text)).collect())
            .unwrap_or_default();
        let ops: Vec<Op> = a
            .value
            .items()
            .iter()
            .enumerate()
            .filter(|(_, i)| {
                let k = var.key(&i.text);
                var.managed(&k) && !old.contains(&k)
            })
            .map(|(n, _)| Op::Delete(n))
            .collect();
        if !ops.is_empty() {
            edits.push(render_ops(current, a, &ops));
        }
    }
    replace_ranges(current, edits)
}

// ---------------------------------------------------------------------------
// Drop-ins and presets
// ---------------------------------------------------------------------------

/// What `/etc/mkinitcpio.conf.d/*.conf` drop-ins (sourced after the main
/// file, in name order) do to the edit: a drop-in that re-assigns `MODULES`,
/// `HOOKS` or `FILES` without what exliar needs undoes it. `main` is the
/// main file as it will be (after the edit); `dropins` are `(path, text)`.
pub fn check_dropins(main: &str, dropins: &[(&str, &str)], edit: &MkinitcpioEdit) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut files: Vec<(&str, &str)> = dropins
        .iter()
        .copied()
        .filter(|(n, _)| n.ends_with(".conf"))
        .collect();
    files.sort_by(|a, b| basename(a.0).cmp(basename(b.0)));
    let mut parsed: Vec<(&str, Vec<Assignment>)> = Vec::new();
    match shell::assignments(main) {
        Ok(a) => parsed.push((CONF, a)),
        Err(e) => findings.push(Finding::new(CONF, e.line(), e.to_string())),
    }
    for (name, text) in &files {
        match shell::assignments(text) {
            Ok(a) => parsed.push((name, a)),
            Err(e) => findings.push(Finding::new(
                *name,
                e.line(),
                format!("mkinitcpio cannot source it: {e}"),
            )),
        }
    }
    for var in Var::ALL {
        let req = edit.required(var);
        if req.is_empty() {
            continue;
        }
        let mut list: Vec<String> = Vec::new();
        let mut last_plain: Option<(&str, usize)> = None;
        for (name, assigns) in &parsed {
            for a in assigns.iter().filter(|a| a.name == var.name()) {
                if !a.append {
                    list.clear();
                    last_plain = Some((name, a.first_line + 1));
                }
                list.extend(a.value.items().iter().map(|i| var.key(&i.text)));
            }
        }
        if satisfied(var, req, &list) {
            continue;
        }
        if let Some((name, line)) = last_plain.filter(|(n, _)| *n != CONF) {
            findings.push(Finding::new(
                name,
                line,
                format!(
                    "re-assigns {} after {CONF}, so {} {} not in effect: add {} here",
                    var.name(),
                    req.join(" "),
                    if req.len() > 1 { "are" } else { "is" },
                    if req.len() > 1 { "them" } else { "it" },
                ),
            ));
        }
    }
    findings
}

/// `MODULES` entries the kernel `(major, minor)` does not have:
/// `vfio_virqfd` from 6.2 on (merged into `vfio`). mkinitcpio reports
/// "module not found" for them; exliar leaves the user's entries alone and
/// says so.
pub fn obsolete_modules(text: &str, kernel: (u32, u32)) -> Result<Vec<Finding>, EditError> {
    let mut out = Vec::new();
    if kernel < (6, 2) {
        return Ok(out);
    }
    for a in shell::assignments(text)?
        .iter()
        .filter(|a| a.name == "MODULES")
    {
        for i in a.value.items() {
            if normalize_module(&i.text) == "vfio_virqfd" && !i.text.ends_with('?') {
                let line = text[..i.start].matches('\n').count() + 1;
                out.push(Finding::new(
                    CONF,
                    line,
                    "vfio_virqfd is part of vfio since Linux 6.2: mkinitcpio reports it as not found \
                     (drop it, or write `vfio_virqfd?`)",
                ));
            }
        }
    }
    Ok(out)
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// What a preset (`/etc/mkinitcpio.d/<kernel>.preset`) builds and from
/// which configuration: the engine edits every configuration a preset uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PresetInfo {
    pub presets: Vec<String>,
    /// `(preset, configuration file)` for every preset in `PRESETS`.
    pub configs: Vec<(String, String)>,
    /// `(preset, options)` where a preset passes options (`-S autodetect`).
    pub options: Vec<(String, String)>,
    /// `(preset, uki path)`: UKIs embed the kernel command line.
    pub ukis: Vec<(String, String)>,
}

impl PresetInfo {
    /// The configuration files the presets use, each once.
    pub fn config_files(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for (_, c) in &self.configs {
            if !v.contains(c) {
                v.push(c.clone());
            }
        }
        v
    }
}

pub fn preset_info(text: &str) -> Result<PresetInfo, EditError> {
    let assigns = shell::assignments(text)?;
    let get = |name: &str| {
        assigns
            .iter()
            .rev()
            .find(|a| a.name == name && !a.append)
            .map(|a| a.decoded(text))
    };
    let presets: Vec<String> = assigns
        .iter()
        .rev()
        .find(|a| a.name == "PRESETS")
        .map(|a| a.value.items().iter().map(|i| i.text.clone()).collect())
        .unwrap_or_default();
    let all_config = get("ALL_config").unwrap_or_else(|| CONF.to_string());
    let mut info = PresetInfo {
        presets: presets.clone(),
        ..Default::default()
    };
    for p in presets {
        let config = get(&format!("{p}_config")).unwrap_or_else(|| all_config.clone());
        info.configs.push((p.clone(), config));
        if let Some(o) = get(&format!("{p}_options")) {
            info.options.push((p.clone(), o));
        }
        if let Some(u) = get(&format!("{p}_uki")) {
            info.ukis.push((p.clone(), u));
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(modules: &[&str], hooks: &[&str], files: &[&str]) -> MkinitcpioEdit {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        MkinitcpioEdit {
            modules: v(modules),
            hooks: v(hooks),
            files: v(files),
        }
    }

    fn vfio() -> MkinitcpioEdit {
        edit(&["vfio", "vfio_iommu_type1", "vfio_pci"], &["modconf"], &[])
    }

    fn check(e: &MkinitcpioEdit, input: &str, expected: &str) {
        let out = e
            .apply(input)
            .unwrap_or_else(|err| panic!("{input:?}: {err}"));
        assert_eq!(out, expected, "apply({input:?})");
        assert_eq!(
            e.apply(&out).ok().as_deref(),
            Some(out.as_str()),
            "idempotent"
        );
        assert_eq!(e.is_applied(&out).ok(), Some(true));
        assert_eq!(e.remove(&out).ok().as_deref(), Some(input), "remove");
    }

    #[test]
    fn modules_go_first_keeping_style() {
        let e = vfio();
        check(
            &e,
            "MODULES=(amdgpu iwlmvm vfio_pci vfio vfio_iommu_type1)\nHOOKS=(base modconf)\n",
            "# exliar was: MODULES=(amdgpu iwlmvm vfio_pci vfio vfio_iommu_type1)\n\
             MODULES=(vfio vfio_iommu_type1 vfio_pci amdgpu iwlmvm)\nHOOKS=(base modconf)\n",
        );
        check(
            &e,
            "MODULES=( kvm_amd )\nHOOKS=(base modconf)\n",
            "# exliar was: MODULES=( kvm_amd )\nMODULES=( vfio vfio_iommu_type1 vfio_pci kvm_amd )\nHOOKS=(base modconf)\n",
        );
        check(
            &e,
            "MODULES=()\nHOOKS=(base modconf)",
            "# exliar was: MODULES=()\nMODULES=(vfio vfio_iommu_type1 vfio_pci)\nHOOKS=(base modconf)",
        );
        check(
            &e,
            "MODULES=('nvme')\nHOOKS=(base modconf)\n",
            "# exliar was: MODULES=('nvme')\nMODULES=('vfio' 'vfio_iommu_type1' 'vfio_pci' 'nvme')\nHOOKS=(base modconf)\n",
        );
        check(
            &e,
            "MODULES=\"nvme amdgpu\"\nHOOKS=(base modconf)\n",
            "# exliar was: MODULES=\"nvme amdgpu\"\nMODULES=\"vfio vfio_iommu_type1 vfio_pci nvme amdgpu\"\nHOOKS=(base modconf)\n",
        );
        check(
            &e,
            "MODULES=nvme\nHOOKS=(base modconf)\n",
            "# exliar was: MODULES=nvme\nMODULES=\"vfio vfio_iommu_type1 vfio_pci nvme\"\nHOOKS=(base modconf)\n",
        );
        check(
            &e,
            "MODULES=(\n  nvme\n  amdgpu # host\n)\nHOOKS=(base modconf)\n",
            "# exliar was: MODULES=(\n# exliar was:   nvme\n# exliar was:   amdgpu # host\n# exliar was: )\n\
             MODULES=(\n  vfio\n  vfio_iommu_type1\n  vfio_pci\n  nvme\n  amdgpu # host\n)\nHOOKS=(base modconf)\n",
        );
    }

    #[test]
    fn already_right_is_left_alone() {
        let e = vfio();
        for t in [
            "MODULES=( kvm_amd vfio_pci vfio vfio_iommu_type1 vfio_virqfd )\nHOOKS=(base modconf)\n",
            "MODULES=(vfio-pci vfio vfio_iommu_type1 amdgpu)\nHOOKS=(modconf)",
            "MODULES=(a)\nMODULES+=(vfio vfio_iommu_type1 vfio_pci)\nHOOKS=(modconf)\n",
        ] {
            assert_eq!(e.apply(t).ok().as_deref(), Some(t));
            assert_eq!(e.is_applied(t).ok(), Some(true));
        }
    }

    #[test]
    fn last_assignment_wins() {
        let e = vfio();
        check(
            &e,
            "MODULES=(vfio vfio_iommu_type1 vfio_pci)\nMODULES=(amdgpu)\nHOOKS=(modconf)\n",
            "MODULES=(vfio vfio_iommu_type1 vfio_pci)\n# exliar was: MODULES=(amdgpu)\n\
             MODULES=(vfio vfio_iommu_type1 vfio_pci amdgpu)\nHOOKS=(modconf)\n",
        );
        check(
            &e,
            "HOOKS=(modconf)\nMODULES+=(amdgpu)\n",
            "HOOKS=(modconf)\n# exliar added\nMODULES=(vfio vfio_iommu_type1 vfio_pci)\nMODULES+=(amdgpu)\n",
        );
        check(
            &e,
            "HOOKS=(modconf)",
            "HOOKS=(modconf)\n# exliar added\nMODULES=(vfio vfio_iommu_type1 vfio_pci)",
        );
    }

    #[test]
    fn modconf_is_inserted_sensibly() {
        let e = edit(&[], &["modconf"], &[]);
        check(
            &e,
            "HOOKS=(base udev autodetect microcode kms keyboard block filesystems fsck)\n",
            "# exliar was: HOOKS=(base udev autodetect microcode kms keyboard block filesystems fsck)\n\
             HOOKS=(base udev autodetect microcode modconf kms keyboard block filesystems fsck)\n",
        );
        check(
            &e,
            "HOOKS=(base systemd autodetect sd-vconsole block)\n",
            "# exliar was: HOOKS=(base systemd autodetect sd-vconsole block)\n\
             HOOKS=(base systemd autodetect modconf sd-vconsole block)\n",
        );
        check(
            &e,
            "HOOKS=(keyboard block)\n",
            "# exliar was: HOOKS=(keyboard block)\nHOOKS=(keyboard modconf block)\n",
        );
        assert_eq!(e.apply("MODULES=()\n").err().map(|e| e.line), Some(0));
    }

    #[test]
    fn files_get_the_script() {
        let e = edit(&[], &[], &["/usr/lib/exliar/vfio-early-bind"]);
        check(
            &e,
            "FILES=(/etc/foo)\n",
            "# exliar was: FILES=(/etc/foo)\nFILES=(/etc/foo /usr/lib/exliar/vfio-early-bind)\n",
        );
        check(
            &e,
            "HOOKS=(base)\n",
            "HOOKS=(base)\n# exliar added\nFILES=(/usr/lib/exliar/vfio-early-bind)\n",
        );
    }

    #[test]
    fn one_line_two_statements() {
        let e = vfio();
        check(
            &e,
            "MODULES=(amdgpu); HOOKS=(base block)\n",
            "# exliar was: MODULES=(amdgpu); HOOKS=(base block)\n\
             MODULES=(vfio vfio_iommu_type1 vfio_pci amdgpu); HOOKS=(base modconf block)\n",
        );
    }

    #[test]
    fn statement_line_opening_a_multiline_string() {
        // Found by fuzzing: the edited line also opens a string that the
        // next line closes; its saved copy must still be put back exactly.
        // The whole statement (both lines) is saved.
        let e = edit(&[], &["modconf"], &[]);
        check(
            &e,
            "HOOKS=(base) x\"\ny\"\n",
            "# exliar was: HOOKS=(base) x\"\n# exliar was: y\"\nHOOKS=(base modconf) x\"\ny\"\n",
        );
    }

    #[test]
    fn statement_after_another_commands_multiline_string() {
        // The assignment starts on the line that closes another command's
        // quoted word: the saved lines and the added statement go above
        // that command, never inside its string.
        let e = vfio();
        check(
            &e,
            "echo \"a\nb\"|HOOKS=(base)\n",
            "# exliar was: echo \"a\n# exliar was: b\"|HOOKS=(base)\n\
             echo \"a\nb\"|HOOKS=(base modconf)\n\
             # exliar added\nMODULES=(vfio vfio_iommu_type1 vfio_pci)\n",
        );
        check(
            &e,
            "X='a\nb';HOOKS=(base)\n",
            "# exliar was: X='a\n# exliar was: b';HOOKS=(base)\n\
             X='a\nb';HOOKS=(base modconf)\n\
             # exliar added\nMODULES=(vfio vfio_iommu_type1 vfio_pci)\n",
        );
        check(
            &e,
            "HOOKS=(base modconf)\necho \"a\nb\"; MODULES+=(x)\n",
            "HOOKS=(base modconf)\n# exliar added\nMODULES=(vfio vfio_iommu_type1 vfio_pci)\n\
             echo \"a\nb\"; MODULES+=(x)\n",
        );
    }

    #[test]
    fn saved_line_with_an_open_quote() {
        // The old reader cut an unterminated quote one byte short, which
        // panicked inside a multi-byte character.
        let t = "# exliar was: X=\"é\nMODULES=(vfio)\n";
        assert_eq!(remove(t).ok().as_deref(), Some("MODULES=()\n"));
    }

    #[test]
    fn remove_after_user_changes_takes_out_only_exliar_items() {
        let e = vfio();
        let applied = e
            .apply("MODULES=(amdgpu)\nHOOKS=(base block)\n")
            .unwrap_or_default();
        let changed = applied.replace(
            "MODULES=(vfio vfio_iommu_type1 vfio_pci amdgpu)",
            "MODULES=(vfio vfio_iommu_type1 vfio_pci amdgpu nvme)",
        );
        assert_eq!(
            e.remove(&changed).ok().as_deref(),
            Some("MODULES=(amdgpu nvme)\nHOOKS=(base block)\n")
        );
    }

    #[test]
    fn bad_input_is_an_error_with_its_line() {
        let e = vfio();
        for (t, line) in [
            ("# x\nMODULES=(vfio\nHOOKS=(base)\n", 2),
            ("MODULES=\"a\nHOOKS=(base)\n", 1),
            ("HOOKS=(base)\nMODULES=$(x)y\n", 2),
        ] {
            let err = e.apply(t).err();
            assert_eq!(err.as_ref().map(|e| e.line), Some(line), "{t:?}: {err:?}");
        }
        assert!(edit(&["amdgpu"], &[], &[]).apply("").is_err());
    }

    #[test]
    fn dropins_that_reassign_are_reported() {
        let e = vfio();
        let main = "MODULES=(vfio vfio_iommu_type1 vfio_pci)\nHOOKS=(base modconf)\n";
        let found = check_dropins(
            main,
            &[
                ("/etc/mkinitcpio.conf.d/b.conf", "MODULES=(amdgpu)\n"),
                ("/etc/mkinitcpio.conf.d/a.conf", "MODULES+=(nvme)\n"),
                ("/etc/mkinitcpio.conf.d/c.txt", "HOOKS=(base)\n"),
            ],
            &e,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].file, "/etc/mkinitcpio.conf.d/b.conf");
        assert_eq!(found[0].line, 1);
        assert!(check_dropins(main, &[("x/a.conf", "MODULES+=(amdgpu)\n")], &e).is_empty());
    }

    #[test]
    fn obsolete_virqfd() {
        let t = "MODULES=(vfio\n  vfio_virqfd)\nMODULES+=(vfio-virqfd?)\n";
        let f = obsolete_modules(t, (6, 6)).unwrap_or_default();
        assert_eq!(f.iter().map(|f| f.line).collect::<Vec<_>>(), [2]);
        assert!(obsolete_modules(t, (6, 1)).unwrap_or_default().is_empty());
    }

    #[test]
    fn presets() {
        let t = "ALL_config=\"/etc/mkinitcpio.conf\"\nPRESETS=('default' 'fallback')\n\
                 fallback_config=/etc/other.conf\nfallback_options=\"-S autodetect\"\n";
        let info = preset_info(t).unwrap_or_default();
        assert_eq!(info.presets, ["default", "fallback"]);
        assert_eq!(
            info.config_files(),
            ["/etc/mkinitcpio.conf", "/etc/other.conf"]
        );
        assert_eq!(
            info.options,
            [("fallback".to_string(), "-S autodetect".to_string())]
        );
    }
}
