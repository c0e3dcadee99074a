//! rEFInd `refind_linux.conf`: one entry per line, `"Label" "options"`, both
//! fields double-quoted, a literal quote doubled (`""`). The first line is
//! the default; parameters are added to every line.

use std::borrow::Cow;

use super::bls::finish;
use super::params::{check_params, decide, lint, spans};
use super::region::{Tokens, edits_for};
use super::{EditError, Edited, line_ranges};

/// A quoted field: its decoded text (borrowed from the line when no quote
/// is doubled), the decoded offsets of its doubled quotes (each one `"`
/// from two bytes), where its content starts in the line, and its end past
/// the closing quote.
struct Field<'a> {
    text: Cow<'a, str>,
    doubled: Vec<usize>,
    start: usize,
    end: usize,
}

impl Field<'_> {
    /// The source range (in the line) of the decoded bytes `a..b` (not
    /// empty), and whether they are written as they are (no doubled quote).
    fn src(&self, a: usize, b: usize) -> (usize, usize, bool) {
        // Each doubled quote before a decoded byte moves it one byte on.
        let before = |i: usize| self.doubled.partition_point(|&q| q < i);
        let (da, db) = (before(a), before(b));
        (self.start + a + da, self.start + b + db, da == db)
    }
}

/// The quoted field from `i` (at the opening quote), `""` read as `"`.
fn field(line: &str, i: usize) -> Option<Field<'_>> {
    let b = line.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    let mut doubled = Vec::new();
    let mut j = start;
    while let Some(p) = memchr::memchr(b'"', &b[j..]) {
        j += p;
        if b.get(j + 1) == Some(&b'"') {
            // Decoded so far: the bytes read less one per doubled quote.
            doubled.push(j - start - doubled.len());
            j += 2;
            continue;
        }
        let raw = line.get(start..j)?;
        // Every quote inside is one of a pair, read from the left.
        let text = if doubled.is_empty() {
            Cow::Borrowed(raw)
        } else {
            Cow::Owned(raw.replace("\"\"", "\""))
        };
        return Some(Field {
            text,
            doubled,
            start,
            end: j + 1,
        });
    }
    None
}

/// The entries of `refind_linux.conf`: per line, its number, its label and
/// the kernel parameters it passes (malformed lines refused as the editor
/// refuses them).
pub fn refind_entries(text: &str) -> Result<Vec<(usize, String, Vec<String>)>, EditError> {
    edit_refind_linux_conf(text, &[], &[])?;
    let mut v = Vec::new();
    for (n, (s, e, _)) in line_ranges(text).into_iter().enumerate() {
        let line = &text[s..e];
        let t = line.trim_start_matches([' ', '\t']);
        if t.trim().is_empty() || t.starts_with('#') {
            continue;
        }
        let lead = line.len() - t.len();
        let Some(Field {
            text: label,
            end: after_label,
            ..
        }) = field(line, lead)
        else {
            continue;
        };
        let rest = &line[after_label..];
        let opts_at = after_label + (rest.len() - rest.trim_start_matches([' ', '\t']).len());
        let Some(Field { text: opts, .. }) = field(line, opts_at) else {
            continue;
        };
        let tokens = super::params::split(&opts).map_err(|er| EditError::new(n + 1, er.message))?;
        v.push((n + 1, label.into_owned(), tokens));
    }
    Ok(v)
}

/// Add and remove parameters in every entry of `refind_linux.conf`.
pub fn edit_refind_linux_conf(
    text: &str,
    add: &[String],
    remove: &[String],
) -> Result<Edited, EditError> {
    check_params(add)?;
    // One group per entry.
    let mut tokens = Tokens::new(text)?;
    let mut groups: Vec<usize> = Vec::new(); // options content start per entry
    for (n, (s, e, _)) in line_ranges(text).into_iter().enumerate() {
        let line = &text[s..e];
        let ln = n + 1;
        let t = line.trim_start_matches([' ', '\t']);
        if t.trim().is_empty() || t.starts_with('#') {
            continue;
        }
        let lead = line.len() - t.len();
        let bad = |what: &str| {
            EditError::new(
                ln,
                format!("{what}; expected `\"Label\" \"kernel options\"`, both double-quoted"),
            )
        };
        let after_label = field(line, lead).map(|f| f.end).ok_or_else(|| {
            if t.starts_with('"') {
                bad("unterminated quote in the label")
            } else {
                bad("the label is not quoted")
            }
        })?;
        let rest = &line[after_label..];
        let opts_at = after_label + (rest.len() - rest.trim_start_matches([' ', '\t']).len());
        if opts_at == line.len() {
            return Err(bad("no options field"));
        }
        if opts_at == after_label {
            return Err(bad("no blank between the label and the options"));
        }
        let opts = field(line, opts_at).ok_or_else(|| {
            if line[opts_at..].starts_with('"') {
                bad("unterminated quote in the options")
            } else {
                bad("the options are not quoted")
            }
        })?;
        if !line[opts.end..].trim().is_empty() {
            return Err(bad("text after the options field"));
        }
        tokens.begin_group();
        groups.push(s + opts_at + 1);
        tokens.reserve_for(&opts.text);
        for sp in spans(&opts.text) {
            let sp = sp.map_err(|er| EditError::new(ln, er.message))?;
            let (start, end, verbatim) = opts.src(sp.start, sp.end);
            let (start, end) = (s + start, s + end);
            if verbatim {
                tokens.push(start, end, false, true);
            } else {
                let t = opts.text[sp.start..sp.end].to_string();
                tokens.push_decoded(start, end, t, false, true);
            }
        }
    }
    let mut warnings = lint(&tokens.all());
    let (add, more) = super::params::not_anywhere(
        &tokens.all(),
        &|i| Some(tokens.group_of(i)),
        groups.len(),
        add,
        "entries",
    );
    warnings.extend(more);
    let add = add.as_slice();
    // Decide per entry: every line gets the parameters it lacks.
    let mut all_edits = Vec::new();
    let mut added: Vec<String> = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    let mut dwarn: Vec<String> = Vec::new();
    for (g, &start) in groups.iter().enumerate() {
        // The entry's own tokens.
        let own = tokens.view(tokens.group(g));
        let d = decide(&own, add, remove);
        all_edits.extend(edits_for(&own, &d, Some((g, start)), &|p| {
            p.replace('"', "\"\"")
        }));
        super::push_unique(&mut added, d.added);
        super::push_unique(&mut removed, d.removed);
        super::push_unique(&mut dwarn, d.warnings);
    }
    let d = super::params::Decision {
        added,
        removed,
        warnings: dwarn,
        ..Default::default()
    };
    Ok(finish(text, all_edits, d, warnings))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_line_and_doubled_quotes() {
        let t = "\"A\"  \"root=/x quiet \"\n# c\n\"B\"\t\"\"\n";
        let add = vec!["iommu=pt".to_string(), "x=\"a b\"".to_string()];
        let e = edit_refind_linux_conf(t, &add, &[]).unwrap();
        assert_eq!(
            e.text,
            "\"A\"  \"root=/x quiet iommu=pt x=\"\"a b\"\" \"\n# c\n\"B\"\t\"iommu=pt x=\"\"a b\"\"\"\n"
        );
        assert_eq!(
            edit_refind_linux_conf(&e.text, &add, &[]).unwrap().text,
            e.text
        );
        assert_eq!(edit_refind_linux_conf(&e.text, &[], &add).unwrap().text, t);
    }

    #[test]
    fn errors() {
        let e =
            edit_refind_linux_conf("\"A\" \"x\"\n\"B\" \"unterminated\n", &[], &[]).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.message.contains("unterminated quote in the options"),
            "{e}"
        );
        let e = edit_refind_linux_conf("\"A\" ro quiet\n", &[], &[]).unwrap_err();
        assert!(e.message.contains("not quoted"));
        let e = edit_refind_linux_conf("\"A\"\n", &[], &[]).unwrap_err();
        assert!(e.message.contains("no options"));
    }
}
