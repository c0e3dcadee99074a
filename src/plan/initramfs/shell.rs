//! A small reader for the bash files mkinitcpio and dracut source: it finds
//! variable assignments (`NAME=value`, `NAME+=value`, `NAME=(array)`) at the
//! start of commands, with the byte position of every value and array item,
//! so that an editor can change one item and leave every other byte alone.
//!
//! It understands what is needed to find where a value ends: quotes
//! (`'...'`, `"..."`, `$'...'`), backslash escapes and line continuations,
//! `$( )`, `${ }`, backticks, comments, multi-line arrays. Unterminated
//! quotes, arrays and parentheses are errors naming the line they open on.

use crate::plan::editors::EditError;

/// One word of a value: an array item, or a word of a quoted string value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub start: usize,
    pub end: usize,
    /// The word with quotes and backslashes taken out (expansions kept).
    pub text: String,
    /// The first quote character the word uses, if any.
    pub quote: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// `NAME=( ... )`; `open`/`close` are the parentheses' offsets.
    Array {
        open: usize,
        close: usize,
        items: Vec<Item>,
    },
    /// `NAME=word`. `inner` is where the items live: inside the quotes of a
    /// wholly quoted word (`"a b"`, `'a b'`), else the word itself. A word
    /// mixing quoted and unquoted parts is not `simple`: no items.
    Scalar {
        start: usize,
        end: usize,
        inner: (usize, usize),
        quote: Option<u8>,
        items: Vec<Item>,
        simple: bool,
    },
}

impl Value {
    pub fn items(&self) -> &[Item] {
        match self {
            Value::Array { items, .. } | Value::Scalar { items, .. } => items,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assignment {
    pub name: String,
    pub append: bool,
    /// Offset of the name.
    pub start: usize,
    /// Offset just past the value.
    pub end: usize,
    /// 0-based lines of the name and of the value's last byte.
    pub first_line: usize,
    pub last_line: usize,
    pub value: Value,
}

/// Every assignment at the start of a command, in file order.
pub(crate) fn parse(text: &str) -> Result<Vec<Assignment>, EditError> {
    Lexer::new(text, false).run()
}

/// [`parse`] for a piece cut out of a file (one statement's lines): a quote
/// or array that the rest of the file would close runs to the end instead.
pub(crate) fn parse_piece(text: &str) -> Vec<Assignment> {
    Lexer::new(text, true).run().unwrap_or_default()
}

struct Lexer<'a> {
    text: &'a str,
    lenient: bool,
    s: &'a [u8],
    starts: Vec<usize>,
}

fn is_meta(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'(' | b')' | b'<' | b'>'
    )
}

const RESERVED: &[&str] = &[
    "if", "then", "else", "elif", "do", "while", "until", "{", "!", "time",
];

impl<'a> Lexer<'a> {
    fn new(text: &'a str, lenient: bool) -> Self {
        let mut starts = vec![0];
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                starts.push(i + 1);
            }
        }
        Self {
            text,
            lenient,
            s: text.as_bytes(),
            starts,
        }
    }

    /// 0-based line of an offset.
    fn line0(&self, off: usize) -> usize {
        match self.starts.binary_search(&off) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        }
    }

    fn err(&self, off: usize, msg: impl Into<String>) -> EditError {
        EditError::new(self.line0(off) + 1, msg)
    }

    /// An unterminated construct opened at `off`: an error, or (lenient)
    /// the end of the text.
    fn unterminated(&self, off: usize, msg: &str) -> Result<usize, EditError> {
        if self.lenient {
            Ok(self.s.len())
        } else {
            Err(self.err(off, msg))
        }
    }

    fn run(&self) -> Result<Vec<Assignment>, EditError> {
        let s = self.s;
        let mut out = Vec::new();
        let mut i = 0;
        let mut cmd_start = true;
        let mut parens: Vec<usize> = Vec::new();
        while i < s.len() {
            match s[i] {
                b' ' | b'\t' | b'\r' => i += 1,
                b'\\' if s.get(i + 1) == Some(&b'\n') => i += 2,
                b'\n' => {
                    i += 1;
                    cmd_start = true;
                }
                b'#' => i = self.skip_comment(i),
                b';' | b'&' | b'|' => {
                    i += 1;
                    cmd_start = true;
                }
                b'(' => {
                    parens.push(i);
                    i += 1;
                    cmd_start = true;
                }
                b')' => {
                    // A stray `)` (a `case` pattern) is not ours to judge.
                    parens.pop();
                    i += 1;
                    cmd_start = true;
                }
                b'<' | b'>' => {
                    i += 1;
                    cmd_start = false;
                }
                _ => {
                    let e = self.word_end(i)?;
                    let word = &self.text[i..e];
                    if cmd_start && let Some((name, append, eq)) = assignment_prefix(word) {
                        let vstart = i + eq;
                        if vstart == e && s.get(e) == Some(&b'(') {
                            let (items, close) = self.array(e)?;
                            out.push(Assignment {
                                name: name.to_string(),
                                append,
                                start: i,
                                end: (close + 1).min(s.len()),
                                first_line: self.line0(i),
                                last_line: self.line0(close.min(s.len().saturating_sub(1))),
                                value: Value::Array {
                                    open: e,
                                    close,
                                    items,
                                },
                            });
                            i = close + 1;
                        } else {
                            out.push(Assignment {
                                name: name.to_string(),
                                append,
                                start: i,
                                end: e,
                                first_line: self.line0(i),
                                last_line: self.line0(e.saturating_sub(1).max(i)),
                                value: self.scalar(vstart, e)?,
                            });
                            i = e;
                        }
                        continue;
                    }
                    cmd_start = RESERVED.contains(&word);
                    i = e.max(i + 1);
                }
            }
        }
        if let Some(&p) = parens.last()
            && !self.lenient
        {
            return Err(self.err(p, "`(` is never closed"));
        }
        Ok(out)
    }

    fn skip_comment(&self, mut i: usize) -> usize {
        while i < self.s.len() && self.s[i] != b'\n' {
            i += 1;
        }
        i
    }

    /// End of the word starting at `i` (exclusive).
    fn word_end(&self, mut i: usize) -> Result<usize, EditError> {
        let s = self.s;
        while i < s.len() {
            match s[i] {
                b if is_meta(b) => break,
                b'\\' => i = (i + 2).min(s.len()),
                b'\'' => i = self.close_single(i)?,
                b'"' => i = self.close_double(i)?,
                b'`' => i = self.close_backtick(i)?,
                b'$' => match s.get(i + 1) {
                    Some(b'(') => i = self.close_subst(i + 1)?,
                    Some(b'{') => i = self.close_brace(i + 1)?,
                    Some(b'\'') => i = self.close_ansi(i + 1)?,
                    _ => i += 1,
                },
                _ => i += 1,
            }
        }
        Ok(i)
    }

    /// `'...'` starting at `i`: the offset after the closing quote.
    fn close_single(&self, i: usize) -> Result<usize, EditError> {
        match self.s[i + 1..].iter().position(|&b| b == b'\'') {
            Some(p) => Ok(i + 1 + p + 1),
            None => self.unterminated(i, "single quote `'` is never closed"),
        }
    }

    /// `$'...'` (backslash escapes) with `i` at the quote.
    fn close_ansi(&self, i: usize) -> Result<usize, EditError> {
        let s = self.s;
        let mut j = i + 1;
        while j < s.len() {
            match s[j] {
                b'\\' => j += 2,
                b'\'' => return Ok(j + 1),
                _ => j += 1,
            }
        }
        self.unterminated(i, "quote `$'` is never closed")
    }

    fn close_double(&self, i: usize) -> Result<usize, EditError> {
        let s = self.s;
        let mut j = i + 1;
        while j < s.len() {
            match s[j] {
                b'\\' => j += 2,
                b'"' => return Ok(j + 1),
                b'`' => j = self.close_backtick(j)?,
                b'$' if s.get(j + 1) == Some(&b'(') => j = self.close_subst(j + 1)?,
                b'$' if s.get(j + 1) == Some(&b'{') => j = self.close_brace(j + 1)?,
                _ => j += 1,
            }
        }
        self.unterminated(i, "double quote `\"` is never closed")
    }

    fn close_backtick(&self, i: usize) -> Result<usize, EditError> {
        let s = self.s;
        let mut j = i + 1;
        while j < s.len() {
            match s[j] {
                b'\\' => j += 2,
                b'`' => return Ok(j + 1),
                _ => j += 1,
            }
        }
        self.unterminated(i, "backquote `` ` `` is never closed")
    }

    /// `( ... )` of `$( )` or `$(( ))` with `open` at the `(`.
    fn close_subst(&self, open: usize) -> Result<usize, EditError> {
        let s = self.s;
        let mut depth = 0usize;
        let mut j = open;
        while j < s.len() {
            match s[j] {
                b'\\' => j += 2,
                b'\'' => j = self.close_single(j)?,
                b'"' => j = self.close_double(j)?,
                b'`' => j = self.close_backtick(j)?,
                b'(' => {
                    depth += 1;
                    j += 1;
                }
                b')' => {
                    depth = depth.saturating_sub(1);
                    j += 1;
                    if depth == 0 {
                        return Ok(j);
                    }
                }
                _ => j += 1,
            }
        }
        self.unterminated(open, "`$(` is never closed")
    }

    fn close_brace(&self, open: usize) -> Result<usize, EditError> {
        let s = self.s;
        let mut depth = 0usize;
        let mut j = open;
        while j < s.len() {
            match s[j] {
                b'\\' => j += 2,
                b'\'' => j = self.close_single(j)?,
                b'"' => j = self.close_double(j)?,
                b'`' => j = self.close_backtick(j)?,
                b'$' if s.get(j + 1) == Some(&b'(') => j = self.close_subst(j + 1)?,
                b'{' => {
                    depth += 1;
                    j += 1;
                }
                b'}' => {
                    depth = depth.saturating_sub(1);
                    j += 1;
                    if depth == 0 {
                        return Ok(j);
                    }
                }
                _ => j += 1,
            }
        }
        self.unterminated(open, "`${` is never closed")
    }

    /// The items of `( ... )` with `open` at the `(`, and the `)` offset.
    fn array(&self, open: usize) -> Result<(Vec<Item>, usize), EditError> {
        let s = self.s;
        let mut items = Vec::new();
        let mut i = open + 1;
        loop {
            while i < s.len() {
                match s[i] {
                    b' ' | b'\t' | b'\n' | b'\r' => i += 1,
                    b'\\' if s.get(i + 1) == Some(&b'\n') => i += 2,
                    _ => break,
                }
            }
            if i >= s.len() {
                return self
                    .unterminated(open, "array `(` is never closed")
                    .map(|end| (items, end));
            }
            match s[i] {
                b')' => return Ok((items, i)),
                b'#' => i = self.skip_comment(i),
                b'(' | b';' | b'&' | b'|' | b'<' | b'>' => {
                    // Most likely the array above was never closed: name
                    // the line it opens on.
                    return Err(self.err(
                        open,
                        format!(
                            "array `(` is not closed before the `{}` on line {}",
                            s[i] as char,
                            self.line0(i) + 1
                        ),
                    ));
                }
                _ => {
                    let e = self.word_end(i)?;
                    items.push(self.item(i, e));
                    i = e;
                }
            }
        }
    }

    fn item(&self, start: usize, end: usize) -> Item {
        let raw = &self.text[start..end];
        Item {
            start,
            end,
            text: unquote(raw),
            quote: raw.bytes().find(|b| *b == b'\'' || *b == b'"'),
        }
    }

    fn scalar(&self, start: usize, end: usize) -> Result<Value, EditError> {
        let raw = &self.text[start..end];
        let bytes = raw.as_bytes();
        let quoted = |q: u8| -> Result<bool, EditError> {
            Ok(bytes.first() == Some(&q)
                && match q {
                    b'\'' => self.close_single(start)? == end,
                    _ => self.close_double(start)? == end,
                })
        };
        let (inner, quote, simple) = if raw.is_empty() {
            ((start, end), None, true)
        } else if quoted(b'"')? {
            ((start + 1, end - 1), Some(b'"'), true)
        } else if quoted(b'\'')? {
            ((start + 1, end - 1), Some(b'\''), true)
        } else {
            let plain = !raw
                .bytes()
                .any(|b| matches!(b, b'\'' | b'"' | b'\\' | b'`' | b'$'));
            ((start, end), None, plain)
        };
        let items = if simple {
            split_words(self.text, inner.0, inner.1)
        } else {
            Vec::new()
        };
        Ok(Value::Scalar {
            start,
            end,
            inner,
            quote,
            items,
            simple,
        })
    }
}

/// Whitespace-separated words of `text[start..end]` (inside a string).
fn split_words(text: &str, start: usize, end: usize) -> Vec<Item> {
    let s = text.as_bytes();
    let mut out = Vec::new();
    let mut i = start;
    while i < end {
        if s[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let b = i;
        while i < end && !s[i].is_ascii_whitespace() {
            i += 1;
        }
        out.push(Item {
            start: b,
            end: i,
            text: text[b..i].to_string(),
            quote: None,
        });
    }
    out
}

/// `NAME=` or `NAME+=` at the start of a word: the name, `+=`, and the
/// offset just past `=`.
fn assignment_prefix(word: &str) -> Option<(&str, bool, usize)> {
    let b = word.as_bytes();
    if !(b.first()?.is_ascii_alphabetic() || b[0] == b'_') {
        return None;
    }
    let n = b
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))?;
    match (b.get(n), b.get(n + 1)) {
        (Some(b'='), _) => Some((&word[..n], false, n + 1)),
        (Some(b'+'), Some(b'=')) => Some((&word[..n], true, n + 2)),
        _ => None,
    }
}

/// A word without its quoting: quotes dropped, backslash escapes resolved.
pub(crate) fn unquote(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => out.push(c),
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            (_, c) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<(String, bool, Vec<String>)> {
        parse(text)
            .unwrap_or_default()
            .into_iter()
            .map(|a| {
                let items = a.value.items().iter().map(|i| i.text.clone()).collect();
                (a.name, a.append, items)
            })
            .collect()
    }

    #[test]
    fn arrays_strings_and_appends() {
        let t = "MODULES=( a 'b' \"c d\" )\nHOOKS=(base\n  udev # comment )\n  block)\nX=\"1 2\"\nY+=(z)\n";
        assert_eq!(
            names(t),
            vec![
                (
                    "MODULES".into(),
                    false,
                    vec!["a".into(), "b".into(), "c d".into()]
                ),
                (
                    "HOOKS".into(),
                    false,
                    vec!["base".into(), "udev".into(), "block".into()]
                ),
                ("X".into(), false, vec!["1".into(), "2".into()]),
                ("Y".into(), true, vec!["z".into()]),
            ]
        );
    }

    #[test]
    fn only_at_command_start() {
        assert_eq!(
            names("echo A=1\nif true; then B=2; fi\nC=3 D=4 cmd\n").len(),
            3
        );
        assert_eq!(names("# MODULES=(x)\n").len(), 0);
        assert_eq!(names("x=$(echo \")\"; echo ')') y\n").len(), 1);
    }

    #[test]
    fn lines_are_reported() {
        let a = parse("\n\nHOOKS=(a\nb\n)\n").unwrap_or_default();
        assert_eq!((a[0].first_line, a[0].last_line), (2, 4));
    }

    #[test]
    fn unterminated_things_are_errors_on_their_line() {
        for (t, line) in [
            ("A=1\nMODULES=(a b\n\n", 2),
            ("A=\"x\nB=1\n", 1),
            ("\nA='x\n", 2),
            ("A=$(x\n", 1),
            ("A=${x\n", 1),
            ("A=`x\n", 1),
            ("\n\n(\n", 3),
            ("A=(a (b))\n", 1),
            ("A=(a;b)\n", 1),
        ] {
            let e = parse(t).err();
            assert_eq!(e.as_ref().map(|e| e.line), Some(line), "{t:?}: {e:?}");
        }
    }

    #[test]
    fn unquote_words() {
        assert_eq!(unquote("'a b'"), "a b");
        assert_eq!(unquote("\"a\\\"b\""), "a\"b");
        assert_eq!(unquote("a\\ b"), "a b");
        assert_eq!(unquote("x'$y'\"z\""), "x$yz");
    }
}
