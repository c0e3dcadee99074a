//! Kernel parameters in a shell variable (`GRUB_CMDLINE_LINUX_DEFAULT` in
//! `/etc/default/grub`, `KERNEL_CMDLINE[default]` in `/etc/default/limine`):
//! the parameters an assignment's value holds, located in the file, and the
//! editor that adds and removes them keeping the file's quoting. The shell
//! itself is read by [`crate::plan::shell`].

use super::params::{Existing, TokenizeError, check_params, decide, lint, spans};
use super::region::{TextEdit, Then, Tokens, edits_for};
use super::{EditError, Edited, MARK, line_of, line_ranges};
use crate::plan::shell::{self, Assignment, SegKind, decode, escape_double};

/// A line exliar added: its comment is [`MARK`].
fn marked(text: &str, a: &Assignment) -> bool {
    a.trailing(text).contains(MARK)
}

/// Kernel parameters in an assignment's value, located in the file
/// `tokens` is of: added to its last group.
pub(crate) fn value_tokens(
    text: &str,
    a: &Assignment,
    tokens: &mut Tokens<'_>,
) -> Result<(), EditError> {
    let d = decode(text, a.segments());
    let bad = |e: TokenizeError| {
        EditError::new(
            a.line(),
            format!("{} (in the value of {})", e.message, a.name),
        )
    };
    // Never for what the lexer cuts out (see `decode`).
    let lost = || {
        EditError::new(
            a.line(),
            format!("the value of {} cannot be located in the file", a.name),
        )
    };
    tokens.reserve_for(&d.text);
    // No backslash in an unquoted token's source: it is as the kernel
    // sees it (and may be edited as text).
    let no_backslash = |start: usize, end: usize| {
        text.as_bytes()
            .get(start..end)
            .is_some_and(|t| !t.contains(&b'\\'))
    };
    if let Some((offset, seg)) = d.as_written() {
        // The common value: what follows, with nothing to look up per token.
        let kind = a.segments().get(seg).ok_or_else(lost)?.kind;
        for s in spans(&d.text) {
            let s = s.map_err(bad)?;
            let (start, end) = (offset + s.start, offset + s.end);
            let opaque = d.expands(s.start, s.end) || kind == SegKind::Opaque;
            let editable = !opaque
                && (matches!(kind, SegKind::Double | SegKind::Single)
                    || (kind == SegKind::Plain && no_backslash(start, end)));
            tokens.push(start, end, opaque, editable);
        }
        return Ok(());
    }
    for s in spans(&d.text) {
        let s = s.map_err(bad)?;
        let o = d.locate(s.start, s.end).ok_or_else(lost)?;
        let (start, end) = (o.start, o.end);
        let kind = a.segments().get(o.seg).ok_or_else(lost)?.kind;
        let opaque = d.expands(s.start, s.end) || kind == SegKind::Opaque;
        let editable = !opaque
            && o.one_seg
            && (matches!(kind, SegKind::Double | SegKind::Single)
                || (kind == SegKind::Plain && no_backslash(start, end)));
        // The text is the file's own unless quotes or escapes were taken
        // out.
        if o.verbatim {
            tokens.push(start, end, opaque, editable);
        } else {
            let t = d.text.get(s.start..s.end).ok_or_else(lost)?.to_string();
            tokens.push_decoded(start, end, t, opaque, editable);
        }
    }
    Ok(())
}

/// The words of an assignment's value as the kernel will see them, each
/// with whether it is an expansion (opaque).
pub(crate) fn value_words(text: &str, a: &Assignment) -> Result<Vec<(String, bool)>, EditError> {
    let mut tokens = Tokens::new(text)?;
    value_tokens(text, a, &mut tokens)?;
    Ok((0..tokens.len())
        .map(|i| (tokens.text(i).to_string(), tokens.opaque(i)))
        .collect())
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
    // One group per assignment.
    let mut tokens = Tokens::new(text)?;
    for a in &assigns {
        tokens.begin_group();
        value_tokens(text, a, &mut tokens)?;
    }
    let existing = tokens.all();
    let mut warnings = lint(&existing);
    let add: &[String] = if may_add { add } else { &[] };
    // The inherited ones after the file's own.
    let d = decide(
        &Then {
            first: &existing,
            then: inherited,
        },
        add,
        remove,
    );
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
            edits = edits_for(&existing, &d, Some((g, start)), enc);
        }
        None => {
            edits = edits_for(&existing, &d, None, &|p| p.to_string());
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
    let mut gone = d.delete.clone();
    gone.sort_unstable();
    gone.dedup();
    let mut cuts = Vec::new();
    for (g, a) in assigns.iter().enumerate() {
        if !marked(text, a) {
            continue;
        }
        // Its parameters (the expansions stay) are all deleted: as many
        // as are deleted in it (only parameters are).
        let r = tokens.group(g);
        let mine = r.clone().filter(|&j| !tokens.opaque(j)).count();
        let deleted = gone.partition_point(|&j| j < r.end) - gone.partition_point(|&j| j < r.start);
        let all_gone = mine > 0 && deleted == mine;
        let appended_here = matches!(in_place, Some((tg, _, _)) if tg == g) && !d.append.is_empty();
        if all_gone && !appended_here {
            cuts.push((a.line_start, a.stmt_end, a.stmt_end_nl));
        }
    }
    super::bls::cut_lines(text, &mut edits, &cuts);
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
