//! The one reader of shell text behind every editor of a file that a shell
//! sources: `/etc/default/grub` and `grub.d/*.cfg` (POSIX sh),
//! `/etc/default/limine`, `mkinitcpio.conf` and its presets, `dracut.conf`
//! (bash).
//!
//! It lexes what is needed to know where each word ends and what it says:
//! quotes (`'…'`, `"…"`, `$'…'`, also across lines), backslash escapes and
//! line continuations, `$( )`, `${ }`, backticks, comments and operators.
//! On that it finds the assignments at the start of commands (`NAME=value`,
//! `NAME+=value`, `NAME[sub]=value`, arrays `NAME=( … )`, also as arguments
//! of `export`, `readonly`, `declare`, `typeset`, `local`), with the byte
//! range of every value, quoted segment and array item, so that an editor
//! can change one item and leave every other byte alone. Expansions are
//! never evaluated: they are kept as written.
//!
//! Unterminated quotes, substitutions, arrays and parentheses are errors
//! naming the line they open on ([`assignments`]), or run to the end of the
//! text ([`assignments_in_piece`], for a piece cut out of a file).

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

/// A construct that must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Construct {
    SingleQuote,
    DoubleQuote,
    /// `$'…'`.
    AnsiQuote,
    Backtick,
    /// `$( )`, `$(( ))`.
    CommandSubst,
    /// `${ }`.
    ParamExpansion,
    /// `NAME=( … )`.
    Array,
    /// A subshell `( … )`.
    Subshell,
}

impl fmt::Display for Construct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Construct::SingleQuote => "single quote",
            Construct::DoubleQuote => "double quote",
            Construct::AnsiQuote => "`$'` string",
            Construct::Backtick => "backtick command substitution",
            Construct::CommandSubst => "`$(`",
            Construct::ParamExpansion => "`${`",
            Construct::Array => "array `(`",
            Construct::Subshell => "`(`",
        })
    }
}

/// Why a text cannot be read as shell. Every error names a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ShellError {
    #[error("unterminated {what} (opened here)")]
    Unterminated { what: Construct, line: usize },
    /// A double quote left open on `line` that the shell closes with the
    /// next line's opening quote: what it reports comes lines later.
    #[error(
        "unterminated double quote: the quote opened on this line is not closed on it (the shell reads on to line {reads_to})"
    )]
    QuoteReadsOn { line: usize, reads_to: usize },
    /// An array interrupted by an operator: most likely it was never closed.
    #[error("array `(` is not closed before the `{found}` on line {found_line}")]
    ArrayInterrupted {
        line: usize,
        found: char,
        found_line: usize,
    },
}

impl ShellError {
    /// The 1-based line the error is about.
    pub fn line(&self) -> usize {
        match self {
            ShellError::Unterminated { line, .. }
            | ShellError::QuoteReadsOn { line, .. }
            | ShellError::ArrayInterrupted { line, .. } => *line,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegKind {
    /// Unquoted text (may hold `\x` escapes and `$name` expansions).
    Plain,
    /// `"..."`: start/end are the content, inside the quotes.
    Double,
    /// `'...'`: the content, inside the quotes.
    Single,
    /// `$( )`, backticks, `${ }`, `$'...'`, as written: not decoded.
    /// (`$'…'` means one thing to bash and another to dash, whose
    /// `$'a'` is `$a`; exliar reads neither.)
    Opaque,
}

/// A stretch of one word: the word is its segments, side by side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub kind: SegKind,
    pub start: usize,
    pub end: usize,
}

/// One shell word.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Word {
    start: usize,
    end: usize,
    segments: Vec<Segment>,
}

/// One word of a value: an array item, or a word of a plain or wholly
/// quoted string value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub start: usize,
    pub end: usize,
    /// The word with quotes and backslashes taken out (expansions kept), as
    /// [`decode`] gives it.
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
    /// mixing quoted and unquoted parts, or holding escapes or expansions
    /// outside quotes, is not `simple`: no items.
    Scalar {
        start: usize,
        end: usize,
        segments: Vec<Segment>,
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

/// One assignment at the start of a command (or an argument of `export`
/// and the other declaration builtins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assignment {
    /// `GRUB_CMDLINE_LINUX`, `KERNEL_CMDLINE[default]`.
    pub name: String,
    /// `+=`.
    pub append: bool,
    /// Offset of the name.
    pub start: usize,
    /// Offset just past the value (past the `)` of an array).
    pub end: usize,
    /// 0-based lines of the name and of the value's last byte.
    pub first_line: usize,
    pub last_line: usize,
    pub value: Value,
    /// Start of the line holding the name.
    pub line_start: usize,
    /// 0-based first and last lines of the whole statement: from the line
    /// after the last unquoted newline before the name (a quoted newline or
    /// a line continuation of an earlier word on the line joins lines) to
    /// the line of `stmt_end`. An editor replacing whole lines must replace
    /// at least these, or it cuts into another word.
    pub stmt_first_line: usize,
    pub stmt_last_line: usize,
    /// End of the statement's last line, the first unquoted newline after
    /// the value (without / with that newline; the end of the text when
    /// there is none).
    pub stmt_end: usize,
    pub stmt_end_nl: usize,
}

impl Assignment {
    /// 1-based line of the name.
    pub fn line(&self) -> usize {
        self.first_line + 1
    }

    /// The segments of a scalar value (none for an array).
    pub fn segments(&self) -> &[Segment] {
        match &self.value {
            Value::Scalar { segments, .. } => segments,
            Value::Array { .. } => &[],
        }
    }

    /// The value as written (an array with its parentheses).
    pub fn value_text<'t>(&self, text: &'t str) -> &'t str {
        let start = match self.value {
            Value::Scalar { start, .. } => start,
            Value::Array { open, .. } => open,
        };
        text.get(start..self.end).unwrap_or("")
    }

    /// What follows the value up to the end of the statement (`# comment`).
    pub fn trailing<'t>(&self, text: &'t str) -> &'t str {
        text.get(self.end..self.stmt_end).unwrap_or("")
    }

    /// The value refers to the variable itself (`X="$X more"`) or uses
    /// `+=`: it extends what came before instead of replacing it.
    pub fn extends(&self, text: &str) -> bool {
        self.append || refers_to(self.value_text(text), &self.name)
    }

    /// A single `"..."` or `'...'` (the common, editable-in-place form).
    pub fn sole_quote(&self) -> Option<SegKind> {
        match self.segments() {
            [s] if matches!(s.kind, SegKind::Double | SegKind::Single) => Some(s.kind),
            _ => None,
        }
    }

    /// The value the shell assigns, expansions left as written; an array's
    /// items joined with spaces.
    pub fn decoded(&self, text: &str) -> String {
        match &self.value {
            Value::Scalar { segments, .. } => decode(text, segments).text.into_owned(),
            Value::Array { items, .. } => items
                .iter()
                .map(|i| i.text.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// Every assignment at the start of a command, in file order. An
/// unterminated quote, substitution, array or parenthesis anywhere is an
/// error naming the line it opens on.
pub(crate) fn assignments(text: &str) -> Result<Vec<Assignment>, ShellError> {
    let lx = Lexer::new(text, false);
    lx.run().map_err(|s| better_quote_error(text, lx.error(s)))
}

/// [`assignments`] without splitting scalar values into words: their
/// `items` are empty (an array's are not). For readers that split a value
/// themselves (the kernel-command-line editors, with [`decode`]), which
/// then pay nothing for words they do not read.
pub(crate) fn assignments_unsplit(text: &str) -> Result<Vec<Assignment>, ShellError> {
    let mut lx = Lexer::new(text, false);
    lx.split = false;
    lx.run().map_err(|s| better_quote_error(text, lx.error(s)))
}

/// [`assignments`] for a piece cut out of a file (one statement's lines): a
/// quote or array that the rest of the file would close runs to the end
/// instead. A text that is no shell at all gives none.
pub(crate) fn assignments_in_piece(text: &str) -> Vec<Assignment> {
    Lexer::new(text, true).run().unwrap_or_default()
}

/// Why the lexer stopped, by offset (turned into a [`ShellError`] with
/// lines at the end).
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// The construct opened at the offset is not closed.
    Unclosed(Construct, usize),
    Interrupted {
        open: usize,
        found: u8,
        at: usize,
    },
}

/// Bytes that end an unquoted word.
fn is_meta(c: u8) -> bool {
    matches!(
        c,
        b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'(' | b')' | b'<' | b'>'
    )
}

/// Words after which the next word starts a command.
const RESERVED: &[&str] = &[
    "if", "then", "else", "elif", "do", "while", "until", "{", "!", "time",
];

/// Builtins whose `NAME=value` arguments are assignments.
const DECLARATIONS: &[&str] = &["export", "readonly", "declare", "typeset", "local"];

struct Lexer<'a> {
    t: &'a str,
    b: &'a [u8],
    lenient: bool,
    /// Split scalar values into words ([`Value::Scalar`]'s `items`).
    split: bool,
    /// Offsets of the line starts.
    starts: Vec<usize>,
    /// The line [`Lexer::line0`] answered last.
    last_line: Cell<usize>,
}

impl<'a> Lexer<'a> {
    fn new(t: &'a str, lenient: bool) -> Self {
        let mut starts = vec![0];
        starts.extend(memchr::memchr_iter(b'\n', t.as_bytes()).map(|p| p + 1));
        Self {
            t,
            b: t.as_bytes(),
            lenient,
            split: true,
            starts,
            last_line: Cell::new(0),
        }
    }

    /// 0-based line of an offset. The lexer asks in file order, mostly
    /// about the line it is on or one just after: those are looked at
    /// first, from the line of the last answer, before a binary search
    /// (a file of many lines would otherwise cost one per statement).
    fn line0(&self, off: usize) -> usize {
        let s = &self.starts;
        let mut k = self.last_line.get().min(s.len().saturating_sub(1));
        if s.get(k).is_some_and(|&st| st <= off) {
            for _ in 0..4 {
                if s.get(k + 1).is_none_or(|&next| next > off) {
                    self.last_line.set(k);
                    return k;
                }
                k += 1;
            }
        }
        let k = match s.binary_search(&off) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        self.last_line.set(k);
        k
    }

    fn error(&self, s: Stop) -> ShellError {
        match s {
            Stop::Unclosed(what, at) => ShellError::Unterminated {
                what,
                line: self.line0(at) + 1,
            },
            Stop::Interrupted { open, found, at } => ShellError::ArrayInterrupted {
                line: self.line0(open) + 1,
                found: found as char,
                found_line: self.line0(at) + 1,
            },
        }
    }

    /// A construct's end, or (lenient) the end of the text when it is not
    /// closed; with whether it was closed.
    fn settle(&self, r: Result<usize, Stop>) -> Result<(usize, bool), Stop> {
        match r {
            Ok(e) => Ok((e, true)),
            Err(Stop::Unclosed(..)) if self.lenient => Ok((self.b.len(), false)),
            Err(s) => Err(s),
        }
    }

    /// Past the closing `'` of a single-quoted string starting at `i` (the
    /// quote).
    fn single(&self, i: usize) -> Result<usize, Stop> {
        match memchr::memchr(b'\'', &self.b[i + 1..]) {
            Some(p) => Ok(i + 1 + p + 1),
            None => Err(Stop::Unclosed(Construct::SingleQuote, i)),
        }
    }

    /// `$'...'` with `i` at the `$`, or a backtick substitution with `i` at
    /// the backtick: past the closing `'`/backtick (backslash escapes).
    fn escaped(&self, i: usize, what: Construct) -> Result<usize, Stop> {
        let (mut j, close) = match what {
            Construct::AnsiQuote => (i + 2, b'\''),
            _ => (i + 1, b'`'),
        };
        while j < self.b.len() {
            match self.b[j] {
                b'\\' => j += 2,
                c if c == close => return Ok(j + 1),
                _ => j += 1,
            }
        }
        Err(Stop::Unclosed(what, i))
    }

    /// Past the closing `"`.
    fn double(&self, i: usize) -> Result<usize, Stop> {
        let b = self.b;
        let mut j = i + 1;
        // The bytes between the ones that matter are skipped with memchr,
        // not looked at one by one. `next`: the next `\`, `"` or `$` at or
        // after `j` (`b.len()`: none); `tick`: the next backtick before
        // `next`, else `next`. Each is looked for again only once `j` is
        // past it, and never past the closing quote: no byte is looked at
        // twice, nor any after the string.
        let mut next = 0;
        let mut tick = 0;
        while j < b.len() {
            if next < j {
                next = memchr::memchr3(b'\\', b'"', b'$', &b[j..]).map_or(b.len(), |p| j + p);
            }
            if tick < j || tick > next {
                tick = memchr::memchr(b'`', &b[j..next]).map_or(next, |p| j + p);
            }
            let k = tick;
            let Some(&c) = b.get(k) else { break };
            match c {
                b'\\' => j = k + 2,
                b'"' => return Ok(k + 1),
                b'$' if b.get(k + 1) == Some(&b'(') => j = self.subst(k + 1)?,
                b'$' if b.get(k + 1) == Some(&b'{') => j = self.brace(k + 1)?,
                b'`' => j = self.backtick(k)?,
                _ => j = k + 1,
            }
        }
        Err(Stop::Unclosed(Construct::DoubleQuote, i))
    }

    fn backtick(&self, i: usize) -> Result<usize, Stop> {
        self.escaped(i, Construct::Backtick)
    }

    /// `$( )` or `$(( ))`, `i` at the `(`: past the matching `)`.
    fn subst(&self, i: usize) -> Result<usize, Stop> {
        self.nested(i, b'(', b')', Construct::CommandSubst)
    }

    /// `${ }`, `i` at the `{`: past the matching `}`.
    fn brace(&self, i: usize) -> Result<usize, Stop> {
        self.nested(i, b'{', b'}', Construct::ParamExpansion)
    }

    fn nested(&self, i: usize, open: u8, close: u8, what: Construct) -> Result<usize, Stop> {
        let mut depth = 0usize;
        let mut j = i;
        while j < self.b.len() {
            match self.b[j] {
                c if c == open => {
                    depth += 1;
                    j += 1;
                }
                c if c == close => {
                    depth = depth.saturating_sub(1);
                    j += 1;
                    if depth == 0 {
                        return Ok(j);
                    }
                }
                b'\\' => j += 2,
                b'\'' => j = self.single(j)?,
                b'"' => j = self.double(j)?,
                b'`' => j = self.backtick(j)?,
                // In `${ }`, a `$( )` is one unit: its `}` closes nothing.
                b'$' if open == b'{' && self.b.get(j + 1) == Some(&b'(') => {
                    j = self.subst(j + 1)?;
                }
                _ => j += 1,
            }
        }
        Err(Stop::Unclosed(what, i))
    }

    /// One shell word from `i`: its segments and its end.
    fn word(&self, i: usize) -> Result<Word, Stop> {
        let b = self.b;
        let mut segs: Vec<Segment> = Vec::new();
        let mut j = i;
        let push = |segs: &mut Vec<Segment>, kind: SegKind, start: usize, end: usize| {
            if kind == SegKind::Plain
                && let Some(last) = segs.last_mut()
                && last.kind == SegKind::Plain
                && last.end == start
            {
                last.end = end;
                return;
            }
            segs.push(Segment { kind, start, end });
        };
        while j < b.len() && !is_meta(b[j]) {
            match b[j] {
                b'\\' => {
                    let e = (j + 2).min(b.len());
                    push(&mut segs, SegKind::Plain, j, e);
                    j = e;
                }
                q @ (b'"' | b'\'') => {
                    let r = if q == b'"' {
                        self.double(j)
                    } else {
                        self.single(j)
                    };
                    let (e, closed) = self.settle(r)?;
                    let kind = if q == b'"' {
                        SegKind::Double
                    } else {
                        SegKind::Single
                    };
                    let inner_end = if closed { e - 1 } else { e };
                    push(&mut segs, kind, j + 1, inner_end);
                    j = e;
                }
                b'`' => {
                    let (e, _) = self.settle(self.backtick(j))?;
                    push(&mut segs, SegKind::Opaque, j, e);
                    j = e;
                }
                b'$' if matches!(b.get(j + 1), Some(b'(' | b'{' | b'\'')) => {
                    let r = match b.get(j + 1) {
                        Some(b'(') => self.subst(j + 1),
                        Some(b'{') => self.brace(j + 1),
                        _ => self.escaped(j, Construct::AnsiQuote),
                    };
                    let (e, _) = self.settle(r)?;
                    push(&mut segs, SegKind::Opaque, j, e);
                    j = e;
                }
                _ => {
                    push(&mut segs, SegKind::Plain, j, j + 1);
                    j += 1;
                }
            }
        }
        Ok(Word {
            start: i,
            end: j,
            segments: segs,
        })
    }

    /// From a `#` to its line's newline (not included).
    fn comment_end(&self, i: usize) -> usize {
        memchr::memchr(b'\n', &self.b[i..]).map_or(self.b.len(), |p| i + p)
    }

    fn run(&self) -> Result<Vec<Assignment>, Stop> {
        let b = self.b;
        let mut out: Vec<Assignment> = Vec::new();
        // `out[open..]` wait for the end of their statement.
        let mut open = 0;
        let mut i = 0;
        // At the start of a command; among the arguments of `export` & co.
        let mut cmd_start = true;
        let mut decl = false;
        let mut parens: Vec<usize> = Vec::new();
        // Just past the last unquoted newline: where the statement's lines begin.
        let mut line_begin = 0;
        while i < b.len() {
            match b[i] {
                b' ' | b'\t' => i += 1,
                b'\\' if b.get(i + 1) == Some(&b'\n') => i += 2,
                b'\n' => {
                    for a in &mut out[open..] {
                        a.stmt_end = i;
                        a.stmt_end_nl = i + 1;
                        a.stmt_last_line = self.line0(i);
                    }
                    open = out.len();
                    i += 1;
                    line_begin = i;
                    cmd_start = true;
                    decl = false;
                }
                b'#' => i = self.comment_end(i),
                c @ (b';' | b'&' | b'|' | b'(' | b')') => {
                    if c == b'(' {
                        parens.push(i);
                    } else if c == b')' {
                        // A stray `)` (a `case` pattern) is not ours to judge.
                        parens.pop();
                    }
                    i += 1;
                    cmd_start = true;
                    decl = false;
                }
                b'<' | b'>' => {
                    i += 1;
                    cmd_start = false;
                    decl = false;
                }
                _ => {
                    if (cmd_start || decl)
                        && let Some((name, append, vstart)) = assignment_head(self.t, i)
                    {
                        let mut a = self.assignment(i, name, append, vstart)?;
                        a.stmt_first_line = self.line0(line_begin);
                        i = a.end.max(i + 1);
                        out.push(a);
                        continue;
                    }
                    let e = self.word(i)?.end.max(i + 1);
                    let w = self.t.get(i..e).unwrap_or("");
                    if cmd_start && DECLARATIONS.contains(&w) {
                        decl = true;
                        cmd_start = false;
                    } else if cmd_start {
                        cmd_start = RESERVED.contains(&w);
                    }
                    i = e;
                }
            }
        }
        for a in &mut out[open..] {
            a.stmt_end = b.len();
            a.stmt_end_nl = b.len();
            a.stmt_last_line = self.line0(b.len().saturating_sub(1)).max(a.last_line);
        }
        if let Some(&p) = parens.last()
            && !self.lenient
        {
            return Err(Stop::Unclosed(Construct::Subshell, p));
        }
        Ok(out)
    }

    fn assignment(
        &self,
        start: usize,
        name: String,
        append: bool,
        vstart: usize,
    ) -> Result<Assignment, Stop> {
        let len = self.b.len();
        let w = self.word(vstart)?;
        let (value, end, last) = if w.end == vstart && self.b.get(vstart) == Some(&b'(') {
            let (items, close) = self.array(vstart)?;
            let end = (close + 1).min(len);
            // `A=(x)y` is no array to bash but the string `(x)y`: kept as
            // written.
            let mut k = end;
            while self.b.get(k..k + 2) == Some(&b"\\\n"[..]) {
                k += 2;
            }
            if close < len && k < len && !is_meta(self.b[k]) {
                let end = self.word(k)?.end;
                let opaque = Segment {
                    kind: SegKind::Opaque,
                    start: vstart,
                    end,
                };
                (
                    Value::Scalar {
                        start: vstart,
                        end,
                        segments: vec![opaque],
                        inner: (vstart, end),
                        quote: None,
                        items: Vec::new(),
                        simple: false,
                    },
                    end,
                    end - 1,
                )
            } else {
                let value = Value::Array {
                    open: vstart,
                    close,
                    items,
                };
                (value, end, close.min(len.saturating_sub(1)))
            }
        } else {
            let end = w.end;
            (self.scalar(w), end, end.saturating_sub(1).max(start))
        };
        let first_line = self.line0(start);
        Ok(Assignment {
            name,
            append,
            start,
            end,
            first_line,
            last_line: self.line0(last),
            value,
            line_start: self.starts.get(first_line).copied().unwrap_or(0),
            stmt_first_line: first_line,
            stmt_last_line: self.line0(last),
            stmt_end: len,
            stmt_end_nl: len,
        })
    }

    /// The items of `( ... )` with `open` at the `(`, and the `)` offset
    /// (lenient and never closed: the end of the text).
    fn array(&self, open: usize) -> Result<(Vec<Item>, usize), Stop> {
        let b = self.b;
        let mut items = Vec::new();
        let mut i = open + 1;
        loop {
            while i < b.len() {
                match b[i] {
                    b' ' | b'\t' | b'\n' => i += 1,
                    b'\\' if b.get(i + 1) == Some(&b'\n') => i += 2,
                    _ => break,
                }
            }
            if i >= b.len() {
                let (end, _) = self.settle(Err(Stop::Unclosed(Construct::Array, open)))?;
                return Ok((items, end));
            }
            match b[i] {
                b')' => return Ok((items, i)),
                b'#' => i = self.comment_end(i),
                c @ (b'(' | b';' | b'&' | b'|' | b'<' | b'>') => {
                    // Most likely the array was never closed: name the line
                    // it opens on.
                    return Err(Stop::Interrupted {
                        open,
                        found: c,
                        at: i,
                    });
                }
                _ => {
                    let w = self.word(i)?;
                    i = w.end.max(i + 1);
                    let raw = self.t.get(w.start..w.end).unwrap_or("");
                    items.push(Item {
                        start: w.start,
                        end: w.end,
                        text: decode(self.t, &w.segments).text.into_owned(),
                        quote: raw.bytes().find(|c| matches!(c, b'\'' | b'"')),
                    });
                }
            }
        }
    }

    fn scalar(&self, w: Word) -> Value {
        let raw = self.t.get(w.start..w.end).unwrap_or("");
        let (inner, quote, simple) = match w.segments.as_slice() {
            [] => ((w.start, w.end), None, true),
            [s] if s.kind == SegKind::Double => ((s.start, s.end), Some(b'"'), true),
            [s] if s.kind == SegKind::Single => ((s.start, s.end), Some(b'\''), true),
            _ => {
                let plain = !raw
                    .bytes()
                    .any(|c| matches!(c, b'\'' | b'"' | b'\\' | b'`' | b'$'));
                ((w.start, w.end), None, plain)
            }
        };
        let items = if simple && self.split {
            split_words(&decode(self.t, &w.segments))
        } else {
            Vec::new()
        };
        Value::Scalar {
            start: w.start,
            end: w.end,
            segments: w.segments,
            inner,
            quote,
            items,
            simple,
        }
    }
}

/// The whitespace-separated words of a decoded string, located in the file.
fn split_words(d: &Decoded<'_>) -> Vec<Item> {
    let s = d.text.as_bytes();
    let mut out = Vec::new();
    if !d.located() {
        return out;
    }
    let mut i = 0;
    while i < s.len() {
        if s[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let b = i;
        while i < s.len() && !s[i].is_ascii_whitespace() {
            i += 1;
        }
        let (Some((start, _)), Some((_, end))) = (d.src(b), d.src(i - 1)) else {
            return Vec::new();
        };
        out.push(Item {
            start,
            end,
            text: d.text[b..i].to_string(),
            quote: None,
        });
    }
    out
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

/// A missing closing quote makes the shell read on: the quote is "closed"
/// by the next line's opening quote, and the error shows up lines later.
/// Name the first line whose double quotes do not pair up instead.
fn better_quote_error(text: &str, e: ShellError) -> ShellError {
    let ShellError::Unterminated {
        what: Construct::DoubleQuote,
        line: at,
    } = e
    else {
        return e;
    };
    for (n, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with('#') || n + 1 >= at {
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
            return ShellError::QuoteReadsOn {
                line: n + 1,
                reads_to: at,
            };
        }
    }
    e
}

/// The decoded text of a word (what the shell makes of it, with expansions
/// left as written) and where each decoded byte comes from: its source
/// range, its segment and whether it is an expansion.
///
/// Kept as runs of bytes copied one for one (an escape `\x` is a run of
/// its own) and as ranges of expansions, not as a record per byte: a value
/// of megabytes is a handful of runs, and finding a byte's origin is a
/// binary search among them.
pub(crate) struct Decoded<'t> {
    /// Borrowed from the source when it is one stretch of it as it is (a
    /// value without escapes: nearly every one).
    pub text: Cow<'t, str>,
    runs: Vec<Run>,
    /// Decoded ranges that are expansions: an unescaped `$` or backtick,
    /// or an opaque segment. In order, apart from each other.
    expansions: Vec<(usize, usize)>,
    /// How many bytes were decoded: the length of `text` unless a segment
    /// cut a character in two (no segment the lexer makes does), which the
    /// lossy conversion to `text` changed.
    len: usize,
    /// Where the last look-ups ended ([`seek`]).
    run_hint: Cell<usize>,
    expansion_hint: Cell<usize>,
}

/// `v.partition_point(before)`, looked for first at `hint` and just after
/// it (where the last answer was: the tokens of a value are located in
/// order), then by binary search; `hint` is set to the answer.
pub(crate) fn seek<T>(v: &[T], hint: &Cell<usize>, before: impl Fn(&T) -> bool) -> usize {
    let mut k = hint.get().min(v.len());
    if k == 0 || before(&v[k - 1]) {
        for _ in 0..4 {
            if v.get(k).is_none_or(|x| !before(x)) {
                hint.set(k);
                return k;
            }
            k += 1;
        }
    }
    let k = v.partition_point(before);
    hint.set(k);
    k
}

/// Decoded bytes `at..at + len`, of segment `seg`: from the source bytes
/// `src..src + len`, or (`escape`, then `len` is 1) from the two bytes
/// `src..src + 2` of a `\x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    at: usize,
    len: usize,
    src: usize,
    seg: usize,
    escape: bool,
}

impl Decoded<'_> {
    /// Every decoded byte of `text` has its source ([`Decoded::src`]).
    pub fn located(&self) -> bool {
        self.text.len() == self.len
    }

    fn run(&self, i: usize) -> Option<&Run> {
        let k = seek(&self.runs, &self.run_hint, |r| r.at + r.len <= i);
        self.runs.get(k).filter(|r| r.at <= i)
    }

    /// The source range of decoded byte `i`.
    pub fn src(&self, i: usize) -> Option<(usize, usize)> {
        let r = self.run(i)?;
        Some(if r.escape {
            (r.src, r.src + 2)
        } else {
            let s = r.src + (i - r.at);
            (s, s + 1)
        })
    }

    /// One of the decoded bytes `a..b` is an expansion.
    pub fn expands(&self, a: usize, b: usize) -> bool {
        let k = seek(&self.expansions, &self.expansion_hint, |e| e.1 <= a);
        self.expansions.get(k).is_some_and(|e| e.0 < b)
    }

    /// The decoded text is the source from an offset on, byte for byte,
    /// all of one segment (no escape, no line continuation: nearly every
    /// value): that offset and the segment. Then [`Decoded::locate`] of
    /// `a..b` is `offset + a..offset + b`, verbatim, of that segment.
    pub fn as_written(&self) -> Option<(usize, usize)> {
        match self.runs.as_slice() {
            [r] if !r.escape && self.located() => Some((r.src, r.seg)),
            _ => None,
        }
    }

    /// Where the decoded bytes `a..b` (not empty) come from.
    pub fn locate(&self, a: usize, b: usize) -> Option<Origin> {
        if b <= a {
            return None;
        }
        let first = self.run(a)?;
        let last = self.run(b - 1)?;
        let start = if first.escape {
            first.src
        } else {
            first.src + (a - first.at)
        };
        let end = if last.escape {
            last.src + 2
        } else {
            last.src + (b - 1 - last.at) + 1
        };
        Some(Origin {
            start,
            end,
            seg: first.seg,
            // Segments follow each other: the first and the last byte tell.
            one_seg: first.seg == last.seg,
            verbatim: std::ptr::eq(first, last) && !first.escape,
        })
    }
}

/// Where some decoded bytes come from ([`Decoded::locate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    /// The source range from the first byte's start to the last one's end.
    pub start: usize,
    pub end: usize,
    /// The segment of the first byte.
    pub seg: usize,
    /// All of them come from that segment.
    pub one_seg: bool,
    /// They are the source bytes `start..end` as they are (no escape, no
    /// line continuation in between).
    pub verbatim: bool,
}

/// Builds a [`Decoded`]: the runs first, the text at the end.
#[derive(Default)]
struct Decoder {
    /// Decoded bytes so far.
    len: usize,
    runs: Vec<Run>,
    expansions: Vec<(usize, usize)>,
}

impl Decoder {
    /// The source bytes `from..to` as they are.
    fn copy(&mut self, from: usize, to: usize, seg: usize) {
        if from >= to {
            return;
        }
        let at = self.len;
        let len = to - from;
        self.len += len;
        if let Some(r) = self.runs.last_mut()
            && !r.escape
            && r.seg == seg
            && r.src + r.len == from
        {
            r.len += len;
            return;
        }
        self.runs.push(Run {
            at,
            len,
            src: from,
            seg,
            escape: false,
        });
    }

    /// The escaped byte of the `\x` at `src`.
    fn escape(&mut self, src: usize, seg: usize) {
        self.runs.push(Run {
            at: self.len,
            len: 1,
            src,
            seg,
            escape: true,
        });
        self.len += 1;
    }

    /// The decoded bytes from `from` to the end so far are an expansion.
    fn expansion(&mut self, from: usize) {
        let to = self.len;
        if from >= to {
            return;
        }
        match self.expansions.last_mut() {
            Some(last) if last.1 == from => last.1 = to,
            _ => self.expansions.push((from, to)),
        }
    }

    fn finish(self, text: &str) -> Decoded<'_> {
        let b = text.as_bytes();
        let borrowed = match self.runs.as_slice() {
            [] => Some(""),
            [r] if !r.escape => text.get(r.src..r.src + r.len),
            _ => None,
        };
        let text = match borrowed {
            Some(t) => Cow::Borrowed(t),
            None => {
                let mut out = Vec::with_capacity(self.len);
                for r in &self.runs {
                    if r.escape {
                        out.extend_from_slice(&b[r.src + 1..r.src + 2]);
                    } else {
                        out.extend_from_slice(&b[r.src..r.src + r.len]);
                    }
                }
                Cow::Owned(match String::from_utf8(out) {
                    Ok(s) => s,
                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                })
            }
        };
        Decoded {
            text,
            runs: self.runs,
            expansions: self.expansions,
            len: self.len,
            run_hint: Cell::new(0),
            expansion_hint: Cell::new(0),
        }
    }
}

/// Quote removal: `'…'` as it is, `\` in `"…"` only before `$`, `` ` ``,
/// `"`, `\` and newline, unquoted `\x` is `x`, `\`-newline is nothing;
/// expansions ([`SegKind::Opaque`], `$name`) as written.
pub(crate) fn decode<'t>(text: &'t str, segments: &[Segment]) -> Decoded<'t> {
    let b = text.as_bytes();
    let mut d = Decoder::default();
    for (si, s) in segments.iter().enumerate() {
        let end = s.end.min(b.len());
        match s.kind {
            SegKind::Single | SegKind::Opaque => {
                let at = d.len;
                d.copy(s.start, end, si);
                if s.kind == SegKind::Opaque {
                    d.expansion(at);
                }
            }
            SegKind::Double | SegKind::Plain => {
                let mut j = s.start;
                while j < end {
                    // Up to the next byte that is not itself.
                    let Some(p) = memchr::memchr3(b'\\', b'$', b'`', &b[j..end]) else {
                        d.copy(j, end, si);
                        break;
                    };
                    let k = j + p;
                    d.copy(j, k, si);
                    if b[k] == b'\\' && k + 1 < end {
                        let n = b[k + 1];
                        if n == b'\n' {
                            j = k + 2;
                            continue;
                        }
                        if s.kind == SegKind::Plain || matches!(n, b'$' | b'`' | b'"' | b'\\') {
                            d.escape(k, si);
                            j = k + 2;
                            continue;
                        }
                    }
                    // A `\` that stays, or a `$` or backtick: an expansion.
                    let at = d.len;
                    d.copy(k, k + 1, si);
                    if b[k] != b'\\' {
                        d.expansion(at);
                    }
                    j = k + 1;
                }
            }
        }
    }
    d.finish(text)
}

/// `value` (as written) expands the variable `name` (`$X`, `${X}`,
/// `${X:-…}`; `name` may carry a subscript).
pub(crate) fn refers_to(value: &str, name: &str) -> bool {
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

/// Escape for the inside of a double-quoted shell string.
pub(crate) fn escape_double(p: &str) -> String {
    let mut s = String::with_capacity(p.len());
    for c in p.chars() {
        if matches!(c, '"' | '$' | '`' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(text: &str) -> Vec<(String, bool, Vec<String>)> {
        assignments(text)
            .unwrap_or_default()
            .into_iter()
            .map(|a| {
                let items = a.value.items().iter().map(|i| i.text.clone()).collect();
                (a.name, a.append, items)
            })
            .collect()
    }

    /// One word, its quotes and escapes taken out.
    fn unquote(raw: &str) -> String {
        let lx = Lexer::new(raw, true);
        let w = lx.word(0).unwrap();
        assert_eq!(w.end, raw.len(), "{raw:?} is one word");
        decode(raw, &w.segments).text.into_owned()
    }

    #[test]
    fn scans_assignments_across_quotes() {
        let t = "A=1\n# B=2\nC=\"x\ny\" # c\nexport D='q'\necho \"E=3\nF=4\"\nG=`a \"b\"`$(c \")\")x\nK[d]+=\"k\"\n";
        let v = assignments(t).unwrap();
        let names: Vec<(&str, usize)> = v.iter().map(|a| (a.name.as_str(), a.line())).collect();
        assert_eq!(
            names,
            vec![("A", 1), ("C", 3), ("D", 5), ("G", 8), ("K[d]", 9)]
        );
        assert!(v[4].append);
        assert_eq!(v[1].trailing(t), " # c");
        let v = assignments("A=\"x\"\\\n").unwrap();
        assert_eq!((v[0].end, v[0].stmt_end), (7, 7));
        let e = assignments("A=1\nB=\"x\n\nC=2\n").unwrap_err();
        assert_eq!(e.line(), 2);
        assert!(e.to_string().contains("double quote"));
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
    fn statement_ends_and_lines() {
        let a = assignments("\n\nHOOKS=(a\nb\n)\n").unwrap();
        assert_eq!((a[0].first_line, a[0].last_line), (2, 4));
        assert_eq!(
            (a[0].line_start, a[0].stmt_end, a[0].stmt_end_nl),
            (2, 14, 15)
        );
        let t = "A=1; B=(x\ny) # z\nC=2";
        let a = assignments(t).unwrap();
        let ends: Vec<(usize, usize)> = a.iter().map(|a| (a.stmt_end, a.stmt_end_nl)).collect();
        assert_eq!(ends, [(16, 17), (16, 17), (20, 20)]);
        assert_eq!(a[1].trailing(t), " # z");
    }

    #[test]
    fn statement_lines_take_in_other_words_across_lines() {
        let lines = |t: &str| -> Vec<(usize, usize)> {
            assignments(t)
                .unwrap()
                .iter()
                .map(|a| (a.stmt_first_line, a.stmt_last_line))
                .collect()
        };
        // another command's quoted word, a line continuation, a trailing word
        assert_eq!(lines("echo \"a\nb\"|X=1\n"), [(0, 1)]);
        assert_eq!(lines("echo a \\\n && X=1\nY=2"), [(0, 1), (2, 2)]);
        assert_eq!(lines("X=1 y 'a\nb'\n\nZ=(a\nb)"), [(0, 1), (3, 4)]);
        let a = assignments("echo \"a\nb\"|X=1\n").unwrap();
        assert_eq!((a[0].first_line, a[0].last_line), (1, 1));
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
            ("A=$'x\n", 1),
            ("\n\n(\n", 3),
            ("A=(a (b))\n", 1),
            ("A=(a;b)\n", 1),
        ] {
            let e = assignments(t).err();
            assert_eq!(e.as_ref().map(|e| e.line()), Some(line), "{t:?}: {e:?}");
        }
        assert_eq!(
            assignments("A=(a\nb;\n").err().map(|e| e.to_string()),
            Some("array `(` is not closed before the `;` on line 2".to_string())
        );
        assert_eq!(
            assignments("A=1\nB=\"x\nC=\"y\"\n")
                .err()
                .map(|e| (e.line(), e.to_string())),
            Some((
                2,
                "unterminated double quote: the quote opened on this line is not closed on it (the shell reads on to line 3)"
                    .to_string()
            ))
        );
    }

    #[test]
    fn pieces_run_to_the_end() {
        let t = "A=(x \"y z";
        let a = assignments_in_piece(t);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].value.items()[1].text, "y z");
        assert_eq!(a[0].end, t.len());
        let a = assignments_in_piece("A=\"a b");
        let items: Vec<&str> = a[0].value.items().iter().map(|i| i.text.as_str()).collect();
        assert_eq!(items, ["a", "b"]);
        assert!(assignments_in_piece("A=(a;b)").is_empty());
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
        let a = &assignments(t).unwrap()[0];
        assert_eq!(a.decoded(t), r#"a "b c" $d \q"#);
    }

    #[test]
    fn unquote_words() {
        assert_eq!(unquote("'a b'"), "a b");
        assert_eq!(unquote("\"a\\\"b\""), "a\"b");
        assert_eq!(unquote("a\\ b"), "a b");
        assert_eq!(unquote("x'$y'\"z\""), "x$yz");
    }

    // Where the two readers this one replaces disagreed, the shell decides.

    /// `\` in double quotes escapes only `$`, `` ` ``, `"`, `\` and newline;
    /// `\`-newline is nothing, quoted or not.
    #[test]
    fn backslashes_as_the_shell_reads_them() {
        assert_eq!(unquote("\"\\q\""), "\\q");
        assert_eq!(unquote("\"a\\\nb\""), "ab");
        assert_eq!(unquote("a\\\nb"), "ab");
        let t = "MODULES=(vf\\\nio \"\\q\")\nX=\"a\\\nb c\"\n";
        assert_eq!(
            names(t),
            vec![
                ("MODULES".into(), false, vec!["vfio".into(), "\\q".into()]),
                ("X".into(), false, vec!["ab".into(), "c".into()]),
            ]
        );
    }

    /// Expansions stay as written, their quotes included (`$'…'` is one to
    /// dash, which reads `$'a'` as `$a`).
    #[test]
    fn expansions_as_written() {
        assert_eq!(unquote("$'a b'"), "$'a b'");
        assert_eq!(unquote("\"$(echo \"a\")\""), "$(echo \"a\")");
        assert_eq!(unquote("`echo 'a'`"), "`echo 'a'`");
    }

    /// `${x:-$(echo })}`: the `}` inside `$( )` closes nothing.
    #[test]
    fn command_substitution_inside_braces() {
        let t = "A=${x:-$(echo })}b C=1\n";
        let a = assignments(t).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].value_text(t), "${x:-$(echo })}b");
    }

    /// Assignments after `;`, `&&`, reserved words and other assignments
    /// are assignments; a reserved word that is an argument is not one.
    #[test]
    fn every_command_start_counts() {
        let t = "A=1; B=2 && C=3\nif x; then D=4; fi\nE=5 F=6\necho then G=7\n(H=8)\n";
        let v: Vec<String> = names(t).into_iter().map(|n| n.0).collect();
        assert_eq!(v, ["A", "B", "C", "D", "E", "F", "H"]);
    }

    /// `export` and the other declaration builtins assign their
    /// `NAME=value` arguments, arrays included; subscripts may hold blanks.
    #[test]
    fn declarations_and_subscripts() {
        let t =
            "export\tMODULES=(a b) X=1\nreadonly -a Y=2\ndeclare Z+=\" c\"\nA[1 + 1]=x\necho B=2\n";
        let v: Vec<(String, bool, Vec<String>)> = names(t);
        let n: Vec<&str> = v.iter().map(|a| a.0.as_str()).collect();
        assert_eq!(n, ["MODULES", "X", "Y", "Z", "A[1 + 1]"]);
        assert_eq!(v[0].2, ["a", "b"]);
        assert!(v[3].1);
    }

    /// A carriage return is no blank to the shell: `\rA=1` is a command.
    #[test]
    fn carriage_return_is_not_a_blank() {
        assert!(names("\rA=1\n").is_empty());
        assert_eq!(names("MODULES=(\r\na\r\n)\n")[0].2, ["\r", "a\r"]);
        // `)\r` glues: a CRLF file's array is a string to bash.
        let t = "MODULES=(a)\r\n";
        let a = assignments(t).unwrap();
        assert_eq!(a[0].value_text(t), "(a)\r");
        assert!(a[0].value.items().is_empty());
    }

    /// The decoder as it was, with a record per decoded byte: the
    /// reference the proptests below hold [`decode`] to.
    mod before {
        use super::super::{Construct, Lexer, SegKind, Segment, Stop};

        /// A double-quoted string read byte by byte.
        pub fn double(lx: &Lexer<'_>, i: usize) -> Result<usize, Stop> {
            let mut j = i + 1;
            while j < lx.b.len() {
                match lx.b[j] {
                    b'\\' => j += 2,
                    b'"' => return Ok(j + 1),
                    b'$' if lx.b.get(j + 1) == Some(&b'(') => j = lx.subst(j + 1)?,
                    b'$' if lx.b.get(j + 1) == Some(&b'{') => j = lx.brace(j + 1)?,
                    b'`' => j = lx.backtick(j)?,
                    _ => j += 1,
                }
            }
            Err(Stop::Unclosed(Construct::DoubleQuote, i))
        }

        pub struct Decoded {
            pub text: String,
            pub src: Vec<(usize, usize)>,
            pub seg: Vec<usize>,
            pub expands: Vec<bool>,
        }

        pub fn decode(text: &str, segments: &[Segment]) -> Decoded {
            let b = text.as_bytes();
            let mut out: Vec<u8> = Vec::new();
            let mut src = Vec::new();
            let mut seg_of = Vec::new();
            let mut expands = Vec::new();
            for (si, s) in segments.iter().enumerate() {
                let end = s.end.min(b.len());
                match s.kind {
                    SegKind::Single | SegKind::Opaque => {
                        for (k, &c) in b.iter().enumerate().take(end).skip(s.start) {
                            out.push(c);
                            src.push((k, k + 1));
                            seg_of.push(si);
                            expands.push(s.kind == SegKind::Opaque);
                        }
                    }
                    SegKind::Double | SegKind::Plain => {
                        let mut j = s.start;
                        while j < end {
                            if b[j] == b'\\' && j + 1 < end {
                                let n = b[j + 1];
                                if n == b'\n' {
                                    j += 2;
                                    continue;
                                }
                                if s.kind == SegKind::Plain
                                    || matches!(n, b'$' | b'`' | b'"' | b'\\')
                                {
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
    }

    /// [`decode`] says of every decoded byte, and of every range of them,
    /// what the decoder with a record per byte said.
    fn same_as_before(text: &str, segments: &[Segment]) -> Result<(), TestCaseError> {
        let new = decode(text, segments);
        let old = before::decode(text, segments);
        prop_assert_eq!(&new.text, &old.text);
        prop_assert_eq!(new.located(), old.text.len() == old.src.len());
        let n = old.src.len();
        prop_assert_eq!(new.src(n), None);
        if let Some((offset, seg)) = new.as_written() {
            for i in 0..n {
                prop_assert_eq!(old.src[i], (offset + i, offset + i + 1));
                prop_assert_eq!(old.seg[i], seg);
            }
        }
        for i in 0..n {
            prop_assert_eq!(new.src(i), Some(old.src[i]), "byte {}", i);
        }
        for a in 0..n {
            prop_assert_eq!(new.locate(a, a), None);
            for b in a + 1..=n.min(a + 12) {
                let o = new.locate(a, b);
                prop_assert!(o.is_some(), "{}..{}", a, b);
                let Some(o) = o else { continue };
                prop_assert_eq!(
                    (o.start, o.end),
                    (old.src[a].0, old.src[b - 1].1),
                    "{}..{}",
                    a,
                    b
                );
                prop_assert_eq!(o.seg, old.seg[a]);
                prop_assert_eq!(
                    o.one_seg,
                    old.seg[a..b].iter().all(|&x| x == old.seg[a]),
                    "{}..{}",
                    a,
                    b
                );
                prop_assert_eq!(
                    new.expands(a, b),
                    old.expands[a..b].iter().any(|&x| x),
                    "{}..{}",
                    a,
                    b
                );
                // Verbatim: the source bytes there are the decoded ones.
                let same_bytes = old.src[a..b].iter().all(|&(s, e)| e == s + 1)
                    && old.src[a..b].windows(2).all(|w| w[1].0 == w[0].1);
                if o.verbatim {
                    prop_assert!(same_bytes, "{}..{}", a, b);
                    if new.located() {
                        prop_assert_eq!(
                            &text.as_bytes()[o.start..o.end],
                            &old.text.as_bytes()[a..b]
                        );
                    }
                }
            }
        }
        Ok(())
    }

    fn seg_kind() -> impl Strategy<Value = SegKind> {
        prop::sample::select(vec![
            SegKind::Plain,
            SegKind::Double,
            SegKind::Single,
            SegKind::Opaque,
        ])
    }

    proptest! {
        /// Words as the lexer cuts them out of shell-like text.
        #[test]
        fn decode_is_what_it_was(raw in "([a-z =\"'\\\\$`(){}\n\t]|\u{e9}|\u{1F600}){0,40}") {
            let lx = Lexer::new(&raw, true);
            let mut i = 0;
            while i < raw.len() {
                let Ok(w) = lx.word(i) else { break };
                same_as_before(&raw, &w.segments)?;
                // What the lexer cuts is always located byte for byte.
                prop_assert!(decode(&raw, &w.segments).located());
                i = w.end.max(i + 1);
                while i < raw.len() && !raw.is_char_boundary(i) {
                    i += 1;
                }
            }
        }

        /// [`seek`] is `partition_point`, whatever the order asked in.
        #[test]
        fn seek_is_partition_point(mut v in prop::collection::vec(0usize..50, 0..20), qs in prop::collection::vec(0usize..55, 0..30)) {
            v.sort_unstable();
            let hint = Cell::new(0);
            for q in qs {
                prop_assert_eq!(seek(&v, &hint, |&x| x <= q), v.partition_point(|&x| x <= q));
            }
        }

        /// Lines are what a binary search says, whatever the order asked in.
        #[test]
        fn line0_in_any_order(text in "[a\n]{0,30}", offs in prop::collection::vec(0usize..32, 0..30)) {
            let lx = Lexer::new(&text, true);
            for o in offs {
                let want = match lx.starts.binary_search(&o) {
                    Ok(i) => i,
                    Err(i) => i.saturating_sub(1),
                };
                prop_assert_eq!(lx.line0(o), want, "offset {}", o);
            }
        }

        /// Double-quoted strings end where they did when read byte by byte.
        #[test]
        fn double_quotes_end_where_they_did(raw in "([a-z \"'\\\\$`(){}\n]|\u{e9}){0,60}") {
            for lenient in [false, true] {
                let lx = Lexer::new(&raw, lenient);
                for (i, c) in raw.bytes().enumerate() {
                    if c == b'"' {
                        prop_assert_eq!(
                            format!("{:?}", lx.double(i)),
                            format!("{:?}", before::double(&lx, i)),
                            "at {}",
                            i
                        );
                    }
                }
            }
        }

        /// Any segments, overlapping, out of order or cutting characters.
        #[test]
        fn decode_of_any_segments_is_what_it_was(
            raw in "([a-z \"'\\\\$`\n]|\u{e9}){0,30}",
            segs in prop::collection::vec((seg_kind(), 0usize..40, 0usize..40), 0..6),
        ) {
            let segments: Vec<Segment> = segs
                .into_iter()
                .map(|(kind, start, end)| Segment { kind, start, end })
                .collect();
            same_as_before(&raw, &segments)?;
        }
    }

    /// `A=(x)y` is the string `(x)y` to bash, not an array and another word.
    #[test]
    fn parenthesis_glued_to_a_word() {
        let t = "FILES=(/etc/foo)GRUB_ENABLE_BLSCFG=true\nA=(x)\\\n\nB=(y)#c\n";
        let a = assignments(t).unwrap();
        let v: Vec<(&str, &str)> = a
            .iter()
            .map(|a| (a.name.as_str(), a.value_text(t)))
            .collect();
        assert_eq!(
            v,
            [
                ("FILES", "(/etc/foo)GRUB_ENABLE_BLSCFG=true"),
                ("A", "(x)"),
                ("B", "(y)#c")
            ]
        );
        assert_eq!(a[0].decoded(t), "(/etc/foo)GRUB_ENABLE_BLSCFG=true");
        assert!(matches!(a[1].value, Value::Array { .. }));
        assert!(matches!(a[2].value, Value::Scalar { simple: false, .. }));
    }

    /// An array's statement ends after its `)`, not at its first line.
    #[test]
    fn arrays_end_statements_where_they_close() {
        let t = "GRUB_X=(a\nB=\"c\"\n) # m\n";
        let a = assignments(t).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!((a[0].stmt_end, a[0].trailing(t)), (t.len() - 1, " # m"));
    }
}
