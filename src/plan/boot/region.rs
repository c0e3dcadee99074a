//! The tokens an editor found in its file, and applying a [`Decision`] to
//! them: byte-range edits that delete a parameter with one neighbouring
//! blank, replace one in place, or insert new ones after the last parameter
//! of a region.

use std::borrow::Cow;
use std::cell::{Cell, OnceCell};
use std::ops::Range;

use super::EditError;
use super::params::{
    Decision, Existing, Present, about_tokens, is_kernel_space, key_initial, key_initial_of,
};
use crate::plan::shell::seek;

/// Not a parameter exliar can judge (a shell expansion such as `$X`): kept,
/// never removed, not compared.
const OPAQUE: u8 = 1;
/// May not be deleted or replaced by this edit.
const FIXED: u8 = 2;
/// Its text is not the file's bytes as they are (quotes or escapes taken
/// out): it is in [`Tokens::texts`].
const DECODED: u8 = 4;
/// Its key is empty (`=x`): it has no [`key_initial`].
const NO_INITIAL: u8 = 8;

/// The tokens an editor found in its file, group after group (a value, a
/// line, an entry: neighbours are looked for only in the same group), in
/// file order.
///
/// Ten bytes a token: its byte range, its flags and the first byte of its
/// key (passes looking for a parameter read only these two bytes of the
/// others). The text is the
/// file's own bytes there, or for the few tokens written otherwise (an
/// escape, a doubled quote) a decoded copy; the line is counted only for a
/// message. A command line of megabytes has millions of tokens, and every
/// pass over them reads this.
pub(crate) struct Tokens<'t> {
    src: &'t str,
    spans: Vec<(u32, u32)>,
    flags: Vec<u8>,
    /// [`key_initial`] of each token.
    initials: Vec<u8>,
    /// The text of each token marked [`DECODED`], by index.
    texts: Vec<(usize, String)>,
    /// Where the last look-up in `texts` ended (passes go in order).
    text_hint: Cell<usize>,
    /// The first token of each group.
    groups: Vec<usize>,
    /// The offsets of the line starts, made for the first message that
    /// names a line.
    lines: OnceCell<Vec<usize>>,
}

impl<'t> Tokens<'t> {
    /// No tokens yet, of `src`: the whole file (offsets are in it).
    pub(crate) fn new(src: &'t str) -> Result<Self, EditError> {
        if u32::try_from(src.len()).is_err() {
            return Err(EditError::new(
                0,
                "the file is too large to edit (4 GiB or more)",
            ));
        }
        Ok(Self {
            src,
            spans: Vec::new(),
            flags: Vec::new(),
            initials: Vec::new(),
            texts: Vec::new(),
            text_hint: Cell::new(0),
            groups: Vec::new(),
            lines: OnceCell::new(),
        })
    }

    /// Open the next group: groups are numbered from 0 in the order they
    /// are opened, and tokens go to the last one.
    pub(crate) fn begin_group(&mut self) -> usize {
        self.groups.push(self.spans.len());
        self.groups.len() - 1
    }

    /// Make room for the tokens of `cmdline` at once (a list grown step
    /// by step copies itself over and over).
    pub(crate) fn reserve_for(&mut self, cmdline: &str) {
        let n = about_tokens(cmdline);
        self.spans.reserve(n);
        self.flags.reserve(n);
        self.initials.reserve(n);
    }

    /// Add a token at `start..end` of the file, written as it is (its text
    /// is the bytes there), to the last group.
    #[inline(always)]
    pub(crate) fn push(&mut self, start: usize, end: usize, opaque: bool, editable: bool) {
        let initial = key_initial_of(self.src.as_bytes().get(start..end).unwrap_or_default());
        self.push_raw(start, end, initial, flags(opaque, editable));
    }

    /// [`Tokens::push`] for a token written otherwise (quotes or escapes
    /// taken out): `text` is what the kernel sees.
    pub(crate) fn push_decoded(
        &mut self,
        start: usize,
        end: usize,
        text: String,
        opaque: bool,
        editable: bool,
    ) {
        let initial = key_initial(&text);
        self.texts.push((self.flags.len(), text));
        self.push_raw(start, end, initial, flags(opaque, editable) | DECODED);
    }

    #[inline(always)]
    fn push_raw(&mut self, start: usize, end: usize, initial: Option<u8>, mut f: u8) {
        if self.groups.is_empty() {
            self.begin_group();
        }
        // Within the file, whose length fits (see `new`).
        let off = |o: usize| u32::try_from(o.min(self.src.len())).unwrap_or(u32::MAX);
        self.spans.push((off(start), off(end)));
        if initial.is_none() {
            f |= NO_INITIAL;
        }
        self.initials.push(initial.unwrap_or(0));
        self.flags.push(f);
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Byte range in the file.
    #[inline]
    pub(crate) fn start(&self, i: usize) -> usize {
        self.spans[i].0 as usize
    }

    #[inline]
    pub(crate) fn end(&self, i: usize) -> usize {
        self.spans[i].1 as usize
    }

    /// The parameter as the kernel will see it (decoded from the file's
    /// quoting).
    #[inline]
    pub(crate) fn text(&self, i: usize) -> &str {
        if self.flags[i] & DECODED != 0 {
            return self.decoded(i);
        }
        self.src.get(self.start(i)..self.end(i)).unwrap_or("")
    }

    #[cold]
    fn decoded(&self, i: usize) -> &str {
        let k = seek(&self.texts, &self.text_hint, |(j, _)| *j < i);
        self.texts.get(k).map_or("", |(_, t)| t.as_str())
    }

    /// [`key_initial`] of the token's text.
    #[inline]
    pub(crate) fn initial(&self, i: usize) -> Option<u8> {
        (self.flags[i] & NO_INITIAL == 0).then(|| self.initials[i])
    }

    #[inline]
    pub(crate) fn opaque(&self, i: usize) -> bool {
        self.flags[i] & OPAQUE != 0
    }

    #[inline]
    pub(crate) fn editable(&self, i: usize) -> bool {
        self.flags[i] & FIXED == 0
    }

    /// 1-based line of the token's start, for messages.
    pub(crate) fn line(&self, i: usize) -> usize {
        let starts = self.lines.get_or_init(|| {
            let mut v = vec![0];
            v.extend(memchr::memchr_iter(b'\n', self.src.as_bytes()).map(|p| p + 1));
            v
        });
        starts.partition_point(|&s| s <= self.start(i))
    }

    /// The tokens of group `g`.
    pub(crate) fn group(&self, g: usize) -> Range<usize> {
        let start = self.groups.get(g).copied().unwrap_or(self.len());
        let end = self.groups.get(g + 1).copied().unwrap_or(self.len());
        start..end.max(start)
    }

    /// The group of token `i`.
    pub(crate) fn group_of(&self, i: usize) -> usize {
        self.groups.partition_point(|&s| s <= i).saturating_sub(1)
    }

    /// The tokens `r`, as parameters for [`super::params::decide`] (by
    /// index from `r.start`).
    pub(crate) fn view(&self, r: Range<usize>) -> View<'_, 't> {
        View { tokens: self, r }
    }

    /// All the tokens.
    pub(crate) fn all(&self) -> View<'_, 't> {
        self.view(0..self.len())
    }
}

/// The flags of a token.
#[inline(always)]
fn flags(opaque: bool, editable: bool) -> u8 {
    let mut f = 0;
    if opaque {
        f |= OPAQUE;
    }
    if !editable {
        f |= FIXED;
    }
    f
}

/// Some of the [`Tokens`], as [`Present`] parameters: opaque tokens are
/// none.
pub(crate) struct View<'a, 't> {
    tokens: &'a Tokens<'t>,
    r: Range<usize>,
}

impl Present for View<'_, '_> {
    #[inline]
    fn len(&self) -> usize {
        self.r.len()
    }
    #[inline]
    fn text(&self, i: usize) -> &str {
        self.tokens.text(self.r.start + i)
    }
    #[inline]
    fn editable(&self, i: usize) -> bool {
        self.tokens.editable(self.r.start + i)
    }
    fn place(&self, i: usize) -> Cow<'_, str> {
        Cow::Owned(format!("line {}", self.tokens.line(self.r.start + i)))
    }
    #[inline]
    fn initial(&self, i: usize) -> Option<u8> {
        self.tokens.initial(self.r.start + i)
    }
    #[inline]
    fn is_param(&self, i: usize) -> bool {
        !self.tokens.opaque(self.r.start + i)
    }
}

/// Parameters of `first`, then `then` (known from elsewhere), by index on.
pub(crate) struct Then<'a, P: ?Sized> {
    pub first: &'a P,
    pub then: &'a [Existing],
}

impl<P: Present + ?Sized> Present for Then<'_, P> {
    fn len(&self) -> usize {
        self.first.len() + self.then.len()
    }
    #[inline]
    fn text(&self, i: usize) -> &str {
        match i.checked_sub(self.first.len()) {
            None => self.first.text(i),
            Some(j) => self.then.text(j),
        }
    }
    fn editable(&self, i: usize) -> bool {
        match i.checked_sub(self.first.len()) {
            None => self.first.editable(i),
            Some(j) => self.then.editable(j),
        }
    }
    fn place(&self, i: usize) -> Cow<'_, str> {
        match i.checked_sub(self.first.len()) {
            None => self.first.place(i),
            Some(j) => self.then.place(j),
        }
    }
    #[inline]
    fn initial(&self, i: usize) -> Option<u8> {
        match i.checked_sub(self.first.len()) {
            None => self.first.initial(i),
            Some(j) => self.then.initial(j),
        }
    }
    #[inline]
    fn is_param(&self, i: usize) -> bool {
        match i.checked_sub(self.first.len()) {
            None => self.first.is_param(i),
            Some(j) => self.then.is_param(j),
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

/// Edits for a decision about the parameters of `v` (indexes of `d` are
/// from its start). Deleted tokens take one blank with them: the one
/// before when a surviving token precedes in the same group, else the one
/// after when a surviving token follows (the exact inverse of how appends
/// are inserted). Appends go after the last surviving token of
/// `target_group`, or at `group_start` when it has none, through `encode`
/// (the file's quoting).
pub(crate) fn edits_for(
    v: &View<'_, '_>,
    d: &Decision,
    target: Option<(usize, usize)>,
    encode: &dyn Fn(&str) -> String,
) -> Vec<TextEdit> {
    let t = v.tokens;
    let base = v.r.start;
    let n = v.r.len();
    let b = t.src.as_bytes();
    // The tokens of group `g` in `v`, by index from its start.
    let in_view = |g: usize| {
        let r = t.group(g);
        let s = r.start.clamp(base, base + n) - base;
        let e = r.end.clamp(base, base + n) - base;
        s..e.max(s)
    };
    // The deleted tokens, in order (a few: no record per token).
    let mut del: Vec<usize> = d.delete.iter().copied().filter(|&i| i < n).collect();
    del.sort_unstable();
    del.dedup();
    let deleted = |j: usize| del.binary_search(&j).is_ok();
    let mut edits = Vec::new();
    // Runs of consecutive deleted tokens of one group go together, with the
    // blanks between them.
    let mut k = 0;
    while k < del.len() {
        let first = del[k];
        let g = t.group_of(base + first);
        let gr = in_view(g);
        let mut last = first;
        while k + 1 < del.len() && del[k + 1] == last + 1 && last + 1 < gr.end {
            last += 1;
            k += 1;
        }
        k += 1;
        let prev = (gr.start..first).rev().find(|&j| !deleted(j));
        let next = (last + 1..gr.end).find(|&j| !deleted(j));
        let (mut s, mut e) = (t.start(base + first), t.end(base + last));
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
        if *i >= n {
            continue;
        }
        edits.push(TextEdit {
            start: t.start(base + i),
            end: t.end(base + i),
            text: encode(new),
        });
    }
    if !d.append.is_empty()
        && let Some((group, group_start)) = target
    {
        let last = in_view(group).rev().find(|&j| !deleted(j));
        let body: Vec<String> = d.append.iter().map(|p| encode(p)).collect();
        let body = body.join(" ");
        match last {
            Some(j) => edits.push(TextEdit {
                start: t.end(base + j),
                end: t.end(base + j),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tokens_keep_what_they_were_given() {
        let src = "a \"b\" $X\nc";
        let mut t = Tokens::new(src).unwrap();
        assert_eq!(t.begin_group(), 0);
        t.push(0, 1, false, true);
        t.push_decoded(2, 5, "b".into(), false, false);
        assert_eq!(t.begin_group(), 1);
        assert_eq!(t.begin_group(), 2);
        t.push(6, 8, true, false);
        t.push(9, 10, false, true);
        let texts: Vec<&str> = (0..t.len()).map(|i| t.text(i)).collect();
        assert_eq!(texts, ["a", "b", "$X", "c"]);
        // Asked again, out of order.
        assert_eq!((t.text(3), t.text(1), t.text(1)), ("c", "b", "b"));
        assert_eq!((t.start(1), t.end(1)), (2, 5));
        assert!(t.editable(0) && !t.editable(1) && t.opaque(2));
        assert_eq!((t.group(0), t.group(1), t.group(2)), (0..2, 2..2, 2..4));
        let groups: Vec<usize> = (0..t.len()).map(|i| t.group_of(i)).collect();
        assert_eq!(groups, [0, 0, 2, 2]);
        assert_eq!(t.line(2), 1);
        assert_eq!(t.line(3), 2);
        let v = t.view(t.group(2));
        assert_eq!(Present::len(&v), 2);
        assert!(!v.is_param(0) && v.is_param(1));
        assert_eq!((v.text(1), v.place(1).as_ref()), ("c", "line 2"));
        assert_eq!((t.initial(1), t.initial(2)), (Some(b'b'), Some(b'$')));
    }

    proptest! {
        /// Lines are counted as [`super::super::line_of`] counts them.
        #[test]
        fn token_lines_are_line_of(text in "[a\n]{0,40}", offsets in prop::collection::vec(0usize..41, 0..20)) {
            let mut t = Tokens::new(&text).unwrap();
            for &o in &offsets {
                let o = o.min(text.len());
                t.push(o, o, false, true);
            }
            for (i, &o) in offsets.iter().enumerate() {
                prop_assert_eq!(t.line(i), super::super::line_of(&text, o.min(text.len())));
            }
        }
    }
}
