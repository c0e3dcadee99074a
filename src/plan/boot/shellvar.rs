//! Kernel parameters in a shell variable (`GRUB_CMDLINE_LINUX_DEFAULT` in
//! `/etc/default/grub`, `KERNEL_CMDLINE[default]` in `/etc/default/limine`):
//! the parameters an assignment's value holds, located in the file, and the
//! editor that adds and removes them keeping the file's quoting. The shell
//! itself is read by [`crate::plan::shell`].

use std::borrow::Cow;

use super::params::{Existing, check_params, decide, lint, tokenize};
use super::region::{Located, Param, TextEdit, edits_for, existing_of, group_ranges};
use super::{EditError, Edited, LineCursor, MARK, line_of, line_ranges};
use crate::plan::shell::{self, Assignment, SegKind, decode, escape_double};

/// A line exliar added: its comment is [`MARK`].
fn marked(text: &str, a: &Assignment) -> bool {
    a.trailing(text).contains(MARK)
}

/// Kernel parameters in an assignment's value, located in the file.
pub(crate) fn value_tokens<'t>(
    text: &'t str,
    a: &Assignment,
    group: usize,
) -> Result<Vec<Located<'t>>, EditError> {
    let d = decode(text, a.segments());
    let spans = tokenize(&d.text).map_err(|e| {
        EditError::new(
            a.line(),
            format!("{} (in the value of {})", e.message, a.name),
        )
    })?;
    // Never for what the lexer cuts out (see `decode`).
    let lost = || {
        EditError::new(
            a.line(),
            format!("the value of {} cannot be located in the file", a.name),
        )
    };
    let mut v = Vec::with_capacity(spans.len());
    let mut lines = LineCursor::new(text);
    for s in spans {
        let (start, _) = d.src(s.start).ok_or_else(lost)?;
        let (_, end) = d.src(s.end - 1).ok_or_else(lost)?;
        let first_seg = d.seg(s.start).ok_or_else(lost)?;
        let one_seg = d.one_seg(s.start, s.end);
        let kind = a.segments().get(first_seg).ok_or_else(lost)?.kind;
        let opaque = d.expands(s.start, s.end) || kind == SegKind::Opaque;
        let editable = !opaque
            && one_seg
            && (matches!(kind, SegKind::Double | SegKind::Single)
                || (kind == SegKind::Plain
                    && text
                        .as_bytes()
                        .get(start..end)
                        .is_some_and(|t| !t.contains(&b'\\'))));
        let t = match d.verbatim(s.start, s.end).and_then(|(a, b)| text.get(a..b)) {
            Some(t) => Cow::Borrowed(t),
            None => Cow::Owned(d.text.get(s.start..s.end).ok_or_else(lost)?.to_string()),
        };
        v.push(Located {
            text: t,
            start,
            end,
            group,
            opaque,
            editable,
            line: lines.line_of(start),
        });
    }
    Ok(v)
}

/// How a new line for a variable is written when the file has no
/// assignment exliar can extend in place.
pub(crate) struct NewLine<'a> {
    /// Put it after the last assignment of this variable, if the file has
    /// none of `var` (GRUB: `GRUB_CMDLINE_LINUX_DEFAULT` after
    /// `GRUB_CMDLINE_LINUX`).
    pub after_var: Option<&'a str>,
    /// Use `VAR+=" p"` (bash arrays, `/etc/default/limine`) rather than
    /// `VAR="$VAR p"`.
    pub plus: bool,
}

/// Edit the value of `var` in a shell file. `inherited` are parameters
/// that reach the same setting from other files (they count as present but
/// are not touched); with `may_add` false only removal happens.
pub(crate) fn edit_var(
    text: &str,
    var: &str,
    add: &[String],
    remove: &[String],
    inherited: &[Existing],
    may_add: bool,
    new_line: &NewLine<'_>,
) -> Result<Edited, EditError> {
    check_params(add)?;
    let all = shell::assignments_unsplit(text)?;
    edit_var_in(text, &all, var, add, remove, inherited, may_add, new_line)
}

/// [`edit_var`] with the file's assignments read already
/// ([`shell::assignments_unsplit`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn edit_var_in(
    text: &str,
    all: &[Assignment],
    var: &str,
    add: &[String],
    remove: &[String],
    inherited: &[Existing],
    may_add: bool,
    new_line: &NewLine<'_>,
) -> Result<Edited, EditError> {
    check_params(add)?;
    let assigns: Vec<&Assignment> = all.iter().filter(|a| a.name == var).collect();
    let mut tokens = Vec::new();
    for (g, a) in assigns.iter().enumerate() {
        tokens.extend(value_tokens(text, a, g)?);
    }
    let (mut existing, map) = existing_of(&tokens);
    let mut warnings = lint(&existing);
    existing.extend(inherited.iter().map(Param::Given));
    let add: &[String] = if may_add { add } else { &[] };
    let d = decide(&existing, add, remove);
    // Where appends go: an exliar line, else the last assignment that sets
    // the value (not one that extends it), if it is one quoted string.
    let target = assigns
        .iter()
        .rposition(|a| marked(text, a))
        .or_else(|| assigns.iter().rposition(|a| !a.extends(text)))
        .or(if assigns.is_empty() {
            None
        } else {
            Some(assigns.len() - 1)
        });
    let in_place = target.and_then(|g| {
        let a = assigns[g];
        match a.sole_quote() {
            Some(SegKind::Double) => Some((g, a, SegKind::Double)),
            Some(SegKind::Single) if !d.append.iter().any(|p| p.contains('\'')) => {
                Some((g, a, SegKind::Single))
            }
            _ => None,
        }
    });
    let mut edits: Vec<TextEdit>;
    match in_place {
        Some((g, a, kind)) => {
            let start = a.segments()[0].start;
            let enc: &dyn Fn(&str) -> String = if kind == SegKind::Double {
                &|p: &str| escape_double(p)
            } else {
                &|p: &str| p.to_string()
            };
            edits = edits_for(text, &tokens, &map, &d, Some((g, start)), enc);
        }
        None => {
            edits = edits_for(text, &tokens, &map, &d, None, &|p| p.to_string());
            if !d.append.is_empty() {
                let body: Vec<String> = d.append.iter().map(|p| escape_double(p)).collect();
                let body = body.join(" ");
                let line = if new_line.plus {
                    format!("{var}+=\" {body}\" {MARK}")
                } else if assigns.is_empty() {
                    format!("{var}=\"{body}\" {MARK}")
                } else {
                    format!("{var}=\"${var} {body}\" {MARK}")
                };
                let anchor = match target {
                    Some(g) => Some(assigns[g]),
                    None => new_line
                        .after_var
                        .and_then(|v| all.iter().rfind(|a| a.name == v)),
                };
                let ins = match anchor {
                    Some(a) => {
                        super::bls::insert_line_after(text, a.stmt_end, a.stmt_end_nl, &line)
                    }
                    None => append_line(text, &line),
                };
                // After a last line ending in `\` the shell would join the
                // new line to it.
                let before = &text[..ins.start];
                let before = if ins.text.starts_with('\n') {
                    before
                } else {
                    before.strip_suffix('\n').unwrap_or(before)
                };
                let trailing = before.len() - before.trim_end_matches('\\').len();
                if trailing % 2 == 1 {
                    return Err(EditError::new(
                        line_of(text, ins.start),
                        "this line ends in `\\` (a line continuation) at the end of the file: a line added after it would be joined to it",
                    ));
                }
                edits.push(ins);
                if assigns.is_empty() {
                    warnings.push(format!("{var} is not set: a line setting it is added"));
                }
            }
        }
    }
    // exliar's own lines left without parameters go away.
    let mut gone = vec![false; tokens.len()];
    for &i in &d.delete {
        if let Some(&j) = map.get(i) {
            gone[j] = true;
        }
    }
    let ranges = group_ranges(&tokens, assigns.len());
    for (g, a) in assigns.iter().enumerate() {
        if !marked(text, a) {
            continue;
        }
        let mut mine = ranges[g].clone().filter(|&j| !tokens[j].opaque).peekable();
        let all_gone = mine.peek().is_some() && mine.all(|j| gone[j]);
        let appended_here = matches!(in_place, Some((tg, _, _)) if tg == g) && !d.append.is_empty();
        if all_gone && !appended_here {
            edits.retain(|e| e.end <= a.line_start || e.start >= a.stmt_end);
            edits.push(super::bls::whole_line(
                text,
                a.line_start,
                a.stmt_end,
                a.stmt_end_nl,
            ));
        }
    }
    Ok(super::bls::finish(text, edits, d, warnings))
}

/// Append a line at the end of a file, keeping whether it ends with a
/// newline.
pub(crate) fn append_line(text: &str, line: &str) -> TextEdit {
    let ranges = line_ranges(text);
    match ranges.last() {
        Some(&(_, e, enl)) => super::bls::insert_line_after(text, e, enl, line),
        None => TextEdit {
            start: 0,
            end: 0,
            text: format!("{line}\n"),
        },
    }
}
