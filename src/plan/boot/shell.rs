//! Just enough POSIX shell to find and edit `NAME="value"` assignments in
//! sourced configuration files (`/etc/default/grub`, `grub.d/*.cfg`,
//! `/etc/default/limine`): quotes (also across lines), escapes, `$( )`,
//! backticks and `${ }` are skipped correctly; comments and everything else
//! are left as they are.

use super::{EditError, MARK, line_of};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegKind {
    /// Unquoted text (may hold `\x` escapes and `$name` expansions).
    Plain,
    /// `"..."`: start/end are the content, inside the quotes.
    Double,
    /// `'...'`.
    Single,
    /// `$( )`, backticks, `${ }`, `$'...'`: not decoded.
    Opaque,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub kind: SegKind,
    pub start: usize,
    pub end: usize,
}

/// One `NAME=value` / `NAME+=value` at the start of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assignment {
    /// `GRUB_CMDLINE_LINUX`, `KERNEL_CMDLINE[default]`.
    pub name: String,
    pub plus: bool,
    /// 1-based line of the name.
    pub line: usize,
    pub line_start: usize,
    pub value_start: usize,
    pub value_end: usize,
    pub segments: Vec<Segment>,
    /// End of the statement's last line (without / with its newline).
    pub stmt_end: usize,
    pub stmt_end_nl: usize,
    /// Text after the value up to the end of the statement (`# comment`).
    pub trailing: String,
}

impl Assignment {
    /// The value refers to the variable itself (`X="$X more"`) or uses
    /// `+=`: it extends what came before instead of replacing it.
    pub fn extends(&self, text: &str) -> bool {
        self.plus || refers_to(&text[self.value_start..self.value_end], &self.name)
    }

    /// A single `"..."` or `'...'` (the common, editable-in-place form).
    pub fn simple_kind(&self) -> Option<SegKind> {
        match self.segments.as_slice() {
            [s] if matches!(s.kind, SegKind::Double | SegKind::Single) => Some(s.kind),
            _ => None,
        }
    }

    pub fn marked(&self) -> bool {
        self.trailing.contains(MARK)
    }
}

fn refers_to(value: &str, name: &str) -> bool {
    let base = name.split('[').next().unwrap_or(name);
    let b = value.as_bytes();
    let mut i = 0;
    while let Some(p) = value[i..].find('$') {
        let at = i + p + 1;
        let rest = &value[at..];
        if let Some(r) = rest.strip_prefix('{') {
            if r.starts_with(base) && r[base.len()..].starts_with(['}', '[', ':', '-', '+', '=']) {
                return true;
            }
        } else if rest.starts_with(base) {
            let after = at + base.len();
            if after >= b.len() || !(b[after].is_ascii_alphanumeric() || b[after] == b'_') {
                return true;
            }
        }
        i = at;
    }
    false
}

struct Lexer<'a> {
    t: &'a str,
    b: &'a [u8],
}

fn err_at(t: &str, at: usize, what: &str) -> EditError {
    EditError::new(line_of(t, at), format!("unterminated {what} (opened here)"))
}

impl<'a> Lexer<'a> {
    /// Past the closing `'` of a single-quoted string starting at `i` (the quote).
    fn single(&self, i: usize) -> Result<usize, EditError> {
        match memchr::memchr(b'\'', &self.b[i + 1..]) {
            Some(p) => Ok(i + 1 + p + 1),
            None => Err(err_at(self.t, i, "single quote")),
        }
    }

    /// Past the closing `"`.
    fn double(&self, i: usize) -> Result<usize, EditError> {
        let mut j = i + 1;
        while j < self.b.len() {
            match self.b[j] {
                b'\\' => j += 2,
                b'"' => return Ok(j + 1),
                b'$' if self.b.get(j + 1) == Some(&b'(') => j = self.paren(j + 1)?,
                b'$' if self.b.get(j + 1) == Some(&b'{') => j = self.brace(j + 1)?,
                b'`' => j = self.backtick(j)?,
                _ => j += 1,
            }
        }
        Err(err_at(self.t, i, "double quote"))
    }

    fn backtick(&self, i: usize) -> Result<usize, EditError> {
        let mut j = i + 1;
        while j < self.b.len() {
            match self.b[j] {
                b'\\' => j += 2,
                b'`' => return Ok(j + 1),
                _ => j += 1,
            }
        }
        Err(err_at(self.t, i, "backtick command substitution"))
    }

    /// `i` at `(`: past the matching `)`.
    fn paren(&self, i: usize) -> Result<usize, EditError> {
        self.nested(i, b'(', b')', "`$(`")
    }

    fn brace(&self, i: usize) -> Result<usize, EditError> {
        self.nested(i, b'{', b'}', "`${`")
    }

    fn nested(&self, i: usize, open: u8, close: u8, what: &str) -> Result<usize, EditError> {
        let mut depth = 0usize;
        let mut j = i;
        while j < self.b.len() {
            let c = self.b[j];
            if c == open {
                depth += 1;
                j += 1;
            } else if c == close {
                depth -= 1;
                j += 1;
                if depth == 0 {
                    return Ok(j);
                }
            } else {
                match c {
                    b'\\' => j += 2,
                    b'\'' => j = self.single(j)?,
                    b'"' => j = self.double(j)?,
                    b'`' => j = self.backtick(j)?,
                    _ => j += 1,
                }
            }
        }
        Err(err_at(self.t, i, what))
    }

    fn is_break(c: u8) -> bool {
        matches!(
            c,
            b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'(' | b')' | b'<' | b'>'
        )
    }

    /// One shell word from `i`: its segments and its end.
    fn word(&self, i: usize) -> Result<(Vec<Segment>, usize), EditError> {
        let mut segs: Vec<Segment> = Vec::new();
        let mut j = i;
        let push_plain = |segs: &mut Vec<Segment>, s: usize, e: usize| {
            if let Some(last) = segs.last_mut()
                && last.kind == SegKind::Plain
                && last.end == s
            {
                last.end = e;
                return;
            }
            segs.push(Segment {
                kind: SegKind::Plain,
                start: s,
                end: e,
            });
        };
        while j < self.b.len() && !Self::is_break(self.b[j]) {
            match self.b[j] {
                b'\\' => {
                    let e = (j + 2).min(self.b.len());
                    push_plain(&mut segs, j, e);
                    j = e;
                }
                b'"' => {
                    let e = self.double(j)?;
                    segs.push(Segment {
                        kind: SegKind::Double,
                        start: j + 1,
                        end: e - 1,
                    });
                    j = e;
                }
                b'\'' => {
                    let e = self.single(j)?;
                    segs.push(Segment {
                        kind: SegKind::Single,
                        start: j + 1,
                        end: e - 1,
                    });
                    j = e;
                }
                b'`' => {
                    let e = self.backtick(j)?;
                    segs.push(Segment {
                        kind: SegKind::Opaque,
                        start: j,
                        end: e,
                    });
                    j = e;
                }
                b'$' => {
                    let e = match self.b.get(j + 1) {
                        Some(b'(') => self.paren(j + 1)?,
                        Some(b'{') => self.brace(j + 1)?,
                        Some(b'\'') => {
                            let mut k = j + 2;
                            loop {
                                match self.b.get(k) {
                                    None => return Err(err_at(self.t, j, "`$'` string")),
                                    Some(b'\\') => k += 2,
                                    Some(b'\'') => break k + 1,
                                    _ => k += 1,
                                }
                            }
                        }
                        _ => {
                            push_plain(&mut segs, j, j + 1);
                            j += 1;
                            continue;
                        }
                    };
                    segs.push(Segment {
                        kind: SegKind::Opaque,
                        start: j,
                        end: e,
                    });
                    j = e;
                }
                _ => {
                    push_plain(&mut segs, j, j + 1);
                    j += 1;
                }
            }
        }
        Ok((segs, j))
    }

    /// Skip the rest of a statement from `i` to past its unquoted newline.
    fn rest_of_statement(&self, mut i: usize) -> Result<usize, EditError> {
        let mut word_start = true;
        while i < self.b.len() {
            let c = self.b[i];
            match c {
                b'\n' => return Ok(i + 1),
                b'#' if word_start => {
                    return Ok(memchr::memchr(b'\n', &self.b[i..])
                        .map(|p| i + p + 1)
                        .unwrap_or(self.b.len()));
                }
                _ if Self::is_break(c) => {
                    word_start = true;
                    i += 1;
                }
                _ => {
                    let (_, e) = self.word(i)?;
                    // `\` + newline inside a word continues the line.
                    i = e.max(i + 1);
                    word_start = false;
                }
            }
        }
        Ok(i)
    }
}

/// All assignments at the start of a statement line, in order. An
/// unterminated quote anywhere is an error naming the line it opens on.
pub(crate) fn scan(text: &str) -> Result<Vec<Assignment>, EditError> {
    scan_inner(text).map_err(|e| better_quote_error(text, e))
}

/// A missing closing quote makes the shell read on: the quote is "closed"
/// by the next line's opening quote, and the error shows up lines later.
/// Name the first line whose double quotes do not pair up instead.
fn better_quote_error(text: &str, e: EditError) -> EditError {
    if !e.message.contains("double quote") {
        return e;
    }
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with('#') || n + 1 >= e.line {
            continue;
        }
        let b = t.as_bytes();
        let mut count = 0;
        let mut i = 0;
        let mut in_single = false;
        while i < b.len() {
            match b[i] {
                b'\\' if !in_single => i += 1,
                b'\'' if count % 2 == 0 => in_single = !in_single,
                b'"' if !in_single => count += 1,
                _ => {}
            }
            i += 1;
        }
        if count % 2 == 1 {
            return EditError::new(
                n + 1,
                format!(
                    "unterminated double quote: the quote opened on this line is not closed on it (the shell reads on to line {})",
                    e.line
                ),
            );
        }
    }
    e
}

fn scan_inner(text: &str) -> Result<Vec<Assignment>, EditError> {
    let lx = Lexer {
        t: text,
        b: text.as_bytes(),
    };
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let line_start = i;
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        if b[i] == b'\n' {
            i += 1;
            continue;
        }
        if b[i] == b'#' {
            i = memchr::memchr(b'\n', &b[i..])
                .map(|p| i + p + 1)
                .unwrap_or(b.len());
            continue;
        }
        let mut name_at = i;
        if text[i..].starts_with("export ") {
            name_at = i + 7;
            while name_at < b.len() && b[name_at] == b' ' {
                name_at += 1;
            }
        }
        if let Some((name, plus, vstart)) = assignment_head(text, name_at) {
            let (segments, vend) = lx.word(vstart)?;
            let after = lx.rest_of_statement(vend)?;
            // (A newline escaped by the value's last `\` is part of the word.)
            let (stmt_end, stmt_end_nl) = if after > vend && b[after - 1] == b'\n' {
                (after - 1, after)
            } else {
                (after, after)
            };
            out.push(Assignment {
                name,
                plus,
                line: line_of(text, name_at),
                line_start,
                value_start: vstart,
                value_end: vend,
                segments,
                stmt_end,
                stmt_end_nl,
                trailing: text[vend..stmt_end].to_string(),
            });
            i = after;
        } else {
            i = lx.rest_of_statement(i)?;
        }
    }
    Ok(out)
}

/// `NAME=`, `NAME+=`, `NAME[sub]=` at `i`: the name, `+=`, value start.
fn assignment_head(text: &str, i: usize) -> Option<(String, bool, usize)> {
    let b = text.as_bytes();
    let mut j = i;
    if j >= b.len() || !(b[j].is_ascii_alphabetic() || b[j] == b'_') {
        return None;
    }
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
        j += 1;
    }
    if j < b.len() && b[j] == b'[' {
        let close = memchr::memchr(b']', &b[j..])? + j;
        if text[j..close].contains('\n') {
            return None;
        }
        j = close + 1;
    }
    let name = text[i..j].to_string();
    if text[j..].starts_with("+=") {
        Some((name, true, j + 2))
    } else if text[j..].starts_with('=') {
        Some((name, false, j + 1))
    } else {
        None
    }
}

/// The decoded value of an assignment (what the shell would assign, with
/// expansions left as written) and, per decoded byte, its source range
/// and whether it came from a quoted segment that exliar can edit.
pub(crate) struct Decoded {
    pub text: String,
    pub src: Vec<(usize, usize)>,
    pub seg: Vec<usize>,
    /// The byte is an unescaped `$` or backtick: an expansion the shell
    /// performs, so the token holding it is not known text.
    pub expands: Vec<bool>,
}

pub(crate) fn decode(text: &str, a: &Assignment) -> Decoded {
    let b = text.as_bytes();
    let mut out: Vec<u8> = Vec::new();
    let mut src = Vec::new();
    let mut seg_of = Vec::new();
    let mut expands = Vec::new();
    for (si, s) in a.segments.iter().enumerate() {
        let mut j = s.start;
        match s.kind {
            SegKind::Single | SegKind::Opaque => {
                for (k, &c) in b.iter().enumerate().take(s.end).skip(s.start) {
                    out.push(c);
                    src.push((k, k + 1));
                    seg_of.push(si);
                    expands.push(s.kind == SegKind::Opaque);
                }
            }
            SegKind::Double | SegKind::Plain => {
                while j < s.end {
                    if b[j] == b'\\' && j + 1 < s.end {
                        let n = b[j + 1];
                        let special = s.kind == SegKind::Plain
                            || matches!(n, b'$' | b'`' | b'"' | b'\\' | b'\n');
                        if n == b'\n' {
                            j += 2;
                            continue;
                        }
                        if special {
                            out.push(n);
                            src.push((j, j + 2));
                            seg_of.push(si);
                            expands.push(false);
                            j += 2;
                            continue;
                        }
                    }
                    out.push(b[j]);
                    src.push((j, j + 1));
                    seg_of.push(si);
                    expands.push(b[j] == b'$' || b[j] == b'`');
                    j += 1;
                }
            }
        }
    }
    Decoded {
        text: String::from_utf8_lossy(&out).into_owned(),
        src,
        seg: seg_of,
        expands,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn scans_assignments_across_quotes() {
        let t = "A=1\n# B=2\nC=\"x\ny\" # c\nexport D='q'\necho \"E=3\nF=4\"\nG=`a \"b\"`$(c \")\")x\nK[d]+=\"k\"\n";
        let v = scan(t).unwrap();
        let names: Vec<(&str, usize)> = v.iter().map(|a| (a.name.as_str(), a.line)).collect();
        assert_eq!(
            names,
            vec![("A", 1), ("C", 3), ("D", 5), ("G", 8), ("K[d]", 9)]
        );
        assert!(v[4].plus);
        assert_eq!(v[1].trailing, " # c");
        let v = scan("A=\"x\"\\\n").unwrap();
        assert_eq!((v[0].value_end, v[0].stmt_end), (7, 7));
        let e = scan("A=1\nB=\"x\n\nC=2\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("double quote"));
    }

    #[test]
    fn self_reference() {
        assert!(refers_to("$X a", "X"));
        assert!(refers_to("${X} a", "X"));
        assert!(!refers_to("$XY a", "X"));
        assert!(refers_to("${K[default]}", "K[default]"));
    }

    #[test]
    fn decode_double_escapes() {
        let t = r#"X="a \"b c\" \$d \q""#;
        let a = &scan(t).unwrap()[0];
        assert_eq!(decode(t, a).text, r#"a "b c" $d \q"#);
    }
}
