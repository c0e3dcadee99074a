//! rEFInd `refind_linux.conf`: one entry per line, `"Label" "options"`, both
//! fields double-quoted, a literal quote doubled (`""`). The first line is
//! the default; parameters are added to every line.

use super::bls::finish;
use super::params::{check_params, decide, lint, tokenize};
use super::region::{Located, edits_for, existing_of};
use super::{EditError, Edited, line_ranges};

/// A quoted field from `i` (at the opening quote): decoded text, source
/// range of each decoded byte, and the end past the closing quote.
type Field = (String, Vec<(usize, usize)>, usize);

fn field(line: &str, i: usize) -> Option<Field> {
    let b = line.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut out = Vec::new();
    let mut src = Vec::new();
    let mut j = i + 1;
    while j < b.len() {
        if b[j] == b'"' {
            if b.get(j + 1) == Some(&b'"') {
                out.push(b'"');
                src.push((j, j + 2));
                j += 2;
                continue;
            }
            return Some((String::from_utf8_lossy(&out).into_owned(), src, j + 1));
        }
        out.push(b[j]);
        src.push((j, j + 1));
        j += 1;
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
        let Some((label, _, after_label)) = field(line, lead) else {
            continue;
        };
        let rest = &line[after_label..];
        let opts_at = after_label + (rest.len() - rest.trim_start_matches([' ', '\t']).len());
        let Some((opts, _, _)) = field(line, opts_at) else {
            continue;
        };
        let tokens = super::params::split(&opts).map_err(|er| EditError::new(n + 1, er.message))?;
        v.push((n + 1, label, tokens));
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
    let mut tokens: Vec<Located> = Vec::new();
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
        let (_, _, after_label) = field(line, lead).ok_or_else(|| {
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
        let (dec, src, end) = field(line, opts_at).ok_or_else(|| {
            if line[opts_at..].starts_with('"') {
                bad("unterminated quote in the options")
            } else {
                bad("the options are not quoted")
            }
        })?;
        if !line[end..].trim().is_empty() {
            return Err(bad("text after the options field"));
        }
        let g = groups.len();
        groups.push(s + opts_at + 1);
        let spans = tokenize(&dec).map_err(|er| EditError::new(ln, er.message))?;
        for sp in spans {
            tokens.push(Located {
                text: dec[sp.start..sp.end].to_string(),
                start: s + src[sp.start].0,
                end: s + src[sp.end - 1].1,
                group: g,
                opaque: false,
                editable: true,
                line: ln,
            });
        }
    }
    let (existing, map) = existing_of(&tokens, "");
    let mut warnings = lint(&existing);
    let (add, more) = super::params::not_anywhere(
        &existing,
        &map.iter().map(|&i| tokens[i].group).collect::<Vec<_>>(),
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
        let idx: Vec<usize> = (0..existing.len())
            .filter(|&i| tokens[map[i]].group == g)
            .collect();
        let ex: Vec<_> = idx.iter().map(|&i| existing[i].clone()).collect();
        let sub_map: Vec<usize> = idx.iter().map(|&i| map[i]).collect();
        let d = decide(&ex, add, remove);
        all_edits.extend(edits_for(
            text,
            &tokens,
            &sub_map,
            &d,
            Some((g, start)),
            &|p| p.replace('"', "\"\""),
        ));
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
