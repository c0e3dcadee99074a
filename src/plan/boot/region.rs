//! Applying a [`Decision`] to parameters located in a file: byte-range
//! edits that delete a parameter with one neighbouring blank, replace one in
//! place, or insert new ones after the last parameter of a region.

use std::borrow::Cow;
use std::ops::Range;

use super::params::{Decision, Existing, Present, is_kernel_space};

/// A token found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Located<'t> {
    /// The parameter as the kernel will see it (decoded from the file's
    /// quoting): borrowed from the file when it is written as it is.
    pub text: Cow<'t, str>,
    /// Byte range in the file.
    pub start: usize,
    pub end: usize,
    /// Which region (value, line) it is in; neighbours are looked for only
    /// in the same region.
    pub group: usize,
    /// Not a parameter exliar can judge (a shell expansion such as `$X`):
    /// kept, never removed, not compared.
    pub opaque: bool,
    /// May be deleted or replaced by this edit.
    pub editable: bool,
    /// 1-based line, for messages.
    pub line: usize,
}

impl Present for Located<'_> {
    fn text(&self) -> &str {
        &self.text
    }
    fn editable(&self) -> bool {
        self.editable
    }
    fn place(&self) -> Cow<'_, str> {
        Cow::Owned(format!("line {}", self.line))
    }
}

/// A parameter for [`super::params::decide`]: a token of the file being
/// edited, or one the caller knows of from elsewhere.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Param<'a, 't> {
    Token(&'a Located<'t>),
    Given(&'a Existing),
}

impl Present for Param<'_, '_> {
    fn text(&self) -> &str {
        match self {
            Param::Token(t) => &t.text,
            Param::Given(e) => &e.text,
        }
    }
    fn editable(&self) -> bool {
        match self {
            Param::Token(t) => t.editable,
            Param::Given(e) => e.editable,
        }
    }
    fn place(&self) -> Cow<'_, str> {
        match self {
            Param::Token(t) => t.place(),
            Param::Given(e) => e.place(),
        }
    }
}

/// A byte-range replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TextEdit {
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// Apply non-overlapping edits.
pub(crate) fn apply(src: &str, mut edits: Vec<TextEdit>) -> String {
    edits.sort_by_key(|e| (e.start, e.end));
    let mut out = String::with_capacity(src.len() + 64);
    let mut pos = 0;
    for e in edits {
        if e.start < pos {
            // Overlap: cannot happen with the ranges made here; keep the
            // earlier edit.
            continue;
        }
        out.push_str(&src[pos..e.start]);
        out.push_str(&e.text);
        pos = e.end;
    }
    out.push_str(&src[pos..]);
    out
}

/// The parameters among `tokens` for [`super::params::decide`] (read in
/// place, not copied), with the index of each in `tokens`.
pub(crate) fn existing_of<'a, 't>(tokens: &'a [Located<'t>]) -> (Vec<Param<'a, 't>>, Vec<usize>) {
    let mut ex = Vec::with_capacity(tokens.len());
    let mut map = Vec::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        if t.opaque {
            continue;
        }
        ex.push(Param::Token(t));
        map.push(i);
    }
    (ex, map)
}

/// The range of `tokens` in each of the groups `0..groups`, for tokens in
/// group order (as every editor makes them: group after group, in file
/// order), so that work per group looks at its own tokens only.
pub(crate) fn group_ranges(tokens: &[Located<'_>], groups: usize) -> Vec<Range<usize>> {
    debug_assert!(tokens.windows(2).all(|w| w[0].group <= w[1].group));
    let mut v = Vec::with_capacity(groups);
    let mut i = 0;
    for g in 0..groups {
        let s = i;
        while i < tokens.len() && tokens[i].group == g {
            i += 1;
        }
        v.push(s..i);
    }
    v
}

/// The entries of `map` (indexes into `tokens`, increasing) that point into
/// the `tokens` range `r`.
pub(crate) fn map_range(map: &[usize], r: &Range<usize>) -> Range<usize> {
    map.partition_point(|&t| t < r.start)..map.partition_point(|&t| t < r.end)
}

/// Edits for a decision. Deleted tokens take one blank with them: the one
/// before when a surviving token precedes in the same group, else the one
/// after when a surviving token follows (the exact inverse of how appends
/// are inserted). Appends go after the last surviving token of
/// `target_group`, or at `group_start` when it has none, through `encode`
/// (the file's quoting).
pub(crate) fn edits_for(
    src: &str,
    tokens: &[Located<'_>],
    map: &[usize],
    d: &Decision,
    target: Option<(usize, usize)>,
    encode: &dyn Fn(&str) -> String,
) -> Vec<TextEdit> {
    let b = src.as_bytes();
    let mut deleted = vec![false; tokens.len()];
    for &i in &d.delete {
        deleted[map[i]] = true;
    }
    let mut edits = Vec::new();
    // Runs of consecutive deleted tokens of one group go together, with the
    // blanks between them.
    let mut ti = 0;
    while ti < tokens.len() {
        if !deleted[ti] {
            ti += 1;
            continue;
        }
        let g = tokens[ti].group;
        let first = ti;
        let mut last = ti;
        while last + 1 < tokens.len() && deleted[last + 1] && tokens[last + 1].group == g {
            last += 1;
        }
        ti = last + 1;
        let prev = (0..first)
            .rev()
            .find(|&j| tokens[j].group == g && !deleted[j]);
        let next = (last + 1..tokens.len()).find(|&j| tokens[j].group == g && !deleted[j]);
        let (mut s, mut e) = (tokens[first].start, tokens[last].end);
        if prev.is_some() && s > 0 && is_kernel_space(b[s - 1]) {
            s -= 1;
        } else if next.is_some() && e < b.len() && is_kernel_space(b[e]) {
            e += 1;
        }
        edits.push(TextEdit {
            start: s,
            end: e,
            text: String::new(),
        });
    }
    for (i, new) in &d.replace {
        let t = &tokens[map[*i]];
        edits.push(TextEdit {
            start: t.start,
            end: t.end,
            text: encode(new),
        });
    }
    if !d.append.is_empty()
        && let Some((group, group_start)) = target
    {
        let last = (0..tokens.len())
            .rev()
            .find(|&j| tokens[j].group == group && !deleted[j]);
        let body: Vec<String> = d.append.iter().map(|p| encode(p)).collect();
        let body = body.join(" ");
        match last {
            Some(j) => edits.push(TextEdit {
                start: tokens[j].end,
                end: tokens[j].end,
                text: format!(" {body}"),
            }),
            None => edits.push(TextEdit {
                start: group_start,
                end: group_start,
                text: body,
            }),
        }
    }
    edits
}
