//! A minimal span scanner for JSON text, so that a user's file can be edited
//! in place (its key order, whitespace and every other key kept): serde_json
//! here is built without `preserve_order` (its maps sort keys), and turning
//! that feature on would reorder every JSON document exliar prints.
//!
//! The scanner only finds where values begin and end; the text is first
//! checked with serde_json ([`validate`]), so the scanner need not judge
//! validity, but it never panics on any input either.

/// Where one member of an object is in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub key: String,
    /// Byte offset of the key's opening quote.
    pub key_start: usize,
    /// Byte range of the value.
    pub value: (usize, usize),
}

/// A JSON object's members and the offset of its closing brace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub open: usize,
    pub close: usize,
    pub members: Vec<Member>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScanError {
    #[error("not valid JSON: {0}")]
    Invalid(String),
    #[error("not a JSON object")]
    NotObject,
}

/// Checks that `text` is valid JSON (serde_json's rules, depth ≤ 128).
pub fn validate(text: &str) -> Result<serde_json::Value, ScanError> {
    serde_json::from_str(text).map_err(|e| ScanError::Invalid(e.to_string()))
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

fn bad(at: usize) -> ScanError {
    ScanError::Invalid(format!("unexpected input at byte {at}"))
}

/// The end (exclusive) of the string starting at `i` (a quote).
fn string_end(b: &[u8], i: usize) -> Result<usize, ScanError> {
    if b.get(i) != Some(&b'"') {
        return Err(bad(i));
    }
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Ok(j + 1),
            _ => j += 1,
        }
    }
    Err(bad(i))
}

/// The end (exclusive) of the value starting at `i` (after whitespace).
pub fn value_end(b: &[u8], i: usize, depth: usize) -> Result<usize, ScanError> {
    if depth > 128 {
        return Err(ScanError::Invalid("nested too deeply".into()));
    }
    match b.get(i) {
        Some(b'"') => string_end(b, i),
        Some(b'{') => Ok(object_at(b, i, depth)?.close + 1),
        Some(b'[') => {
            let mut j = ws(b, i + 1);
            if b.get(j) == Some(&b']') {
                return Ok(j + 1);
            }
            loop {
                j = ws(b, value_end(b, j, depth + 1)?);
                match b.get(j) {
                    Some(b',') => j = ws(b, j + 1),
                    Some(b']') => return Ok(j + 1),
                    _ => return Err(bad(j)),
                }
            }
        }
        Some(c) if c.is_ascii_alphanumeric() || *c == b'-' => {
            let mut j = i;
            while j < b.len()
                && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'-' | b'+' | b'.'))
            {
                j += 1;
            }
            Ok(j)
        }
        _ => Err(bad(i)),
    }
}

fn object_at(b: &[u8], i: usize, depth: usize) -> Result<Object, ScanError> {
    if b.get(i) != Some(&b'{') {
        return Err(ScanError::NotObject);
    }
    let mut members = Vec::new();
    let mut j = ws(b, i + 1);
    if b.get(j) == Some(&b'}') {
        return Ok(Object {
            open: i,
            close: j,
            members,
        });
    }
    loop {
        let key_end = string_end(b, j)?;
        let key_text = std::str::from_utf8(&b[j..key_end]).map_err(|_| bad(j))?;
        let key: String = serde_json::from_str(key_text).map_err(|_| bad(j))?;
        let k = ws(b, key_end);
        if b.get(k) != Some(&b':') {
            return Err(bad(k));
        }
        let vs = ws(b, k + 1);
        let ve = value_end(b, vs, depth + 1)?;
        members.push(Member {
            key,
            key_start: j,
            value: (vs, ve),
        });
        let n = ws(b, ve);
        match b.get(n) {
            Some(b',') => j = ws(b, n + 1),
            Some(b'}') => {
                return Ok(Object {
                    open: i,
                    close: n,
                    members,
                });
            }
            _ => return Err(bad(n)),
        }
    }
}

/// The object whose `{` is at `at` (after whitespace).
pub fn object(text: &str, at: usize) -> Result<Object, ScanError> {
    object_at(text.as_bytes(), at, 0)
}

/// The top-level object of a document.
pub fn top(text: &str) -> Result<Object, ScanError> {
    let b = text.as_bytes();
    object_at(b, ws(b, 0), 0)
}

/// The whitespace before `at` on its line, when only whitespace precedes
/// it there; `None` when something else does (a one-line object).
pub fn line_indent(text: &str, at: usize) -> Option<&str> {
    let start = text[..at].rfind('\n').map_or(0, |n| n + 1);
    let pre = &text[start..at];
    (text[..at].contains('\n') && pre.bytes().all(|c| c == b' ' || c == b'\t')).then_some(pre)
}

/// `text` with a new member `"key": value` appended to `obj` (`value` is
/// rendered already), on its own line when the object's members are.
pub fn insert_member(text: &str, obj: &Object, key: &str, value: &str) -> String {
    let key = serde_json::Value::String(key.to_string()).to_string();
    let mut out = String::with_capacity(text.len() + key.len() + value.len() + 8);
    match obj.members.last() {
        Some(last) => {
            let member = match obj
                .members
                .first()
                .and_then(|m| line_indent(text, m.key_start))
            {
                Some(indent) => format!(",\n{indent}{key}: {value}"),
                None => format!(", {key}: {value}"),
            };
            out.push_str(&text[..last.value.1]);
            out.push_str(&member);
            out.push_str(&text[last.value.1..]);
        }
        None => {
            out.push_str(&text[..obj.open + 1]);
            out.push_str(&format!("{key}: {value}"));
            out.push_str(&text[obj.close..]);
        }
    }
    out
}

/// `text` with the value span `span` replaced by `value`.
pub fn replace(text: &str, span: (usize, usize), value: &str) -> String {
    format!("{}{value}{}", &text[..span.0], &text[span.1..])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        let t = "{\n  \"a\": [1, {\"x\": \"}\"}],\n  \"b\\u0041\": -1.5e3, \"c\": null\n}\n";
        let o = top(t).unwrap();
        let keys: Vec<&str> = o.members.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, ["a", "bA", "c"]);
        let (s, e) = o.members[0].value;
        assert_eq!(&t[s..e], "[1, {\"x\": \"}\"}]");
        assert_eq!(&t[o.members[1].value.0..o.members[1].value.1], "-1.5e3");
        assert_eq!(t.as_bytes()[o.close], b'}');
    }

    #[test]
    fn inserts_keep_style() {
        let t = "{\n\t\"a\": 1\n}\n";
        let o = top(t).unwrap();
        assert_eq!(
            insert_member(t, &o, "b", "2"),
            "{\n\t\"a\": 1,\n\t\"b\": 2\n}\n"
        );
        let t = "{\"a\": 1}";
        let o = top(t).unwrap();
        assert_eq!(insert_member(t, &o, "b", "2"), "{\"a\": 1, \"b\": 2}");
        let t = "{ }";
        let o = top(t).unwrap();
        assert_eq!(insert_member(t, &o, "b", "2"), "{\"b\": 2}");
    }

    #[test]
    fn never_panics_on_garbage() {
        for t in [
            "",
            "{",
            "{\"a\"",
            "{\"a\":",
            "{\"a\":1,",
            "[",
            "\"",
            "{\"\\",
            "{\"a\":[1,",
        ] {
            assert!(top(t).is_err(), "{t}");
        }
        assert_eq!(top("[1]"), Err(ScanError::NotObject));
    }
}
