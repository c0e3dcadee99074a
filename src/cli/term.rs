//! What reaches a terminal. Host strings (device and driver names from sysfs
//! or pci.ids, pasted listings, file names and contents) may hold control
//! characters; printed raw, `ESC ]0;…` retitles the terminal and `ESC [`
//! rewrites what was printed. Every human output goes through [`safe`]:
//! control characters are shown escaped (`\u{1b}`), except the newline and
//! tab that lay the text out. JSON output needs none of this (serde escapes).

use std::borrow::Cow;
use std::io::Write;

/// A character a terminal would act on rather than show: C0 (but newline
/// and tab), DEL and C1.
fn is_unsafe(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// `s` with every control character except `\n` and `\t` escaped.
pub fn safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes human text to standard output, escaped.
pub fn out(text: &str) -> std::io::Result<()> {
    let mut o = std::io::stdout().lock();
    o.write_all(safe(text).as_bytes())?;
    o.flush()
}

/// Writes human text to standard error, escaped.
pub fn err(text: &str) {
    let _ = std::io::stderr().lock().write_all(safe(text).as_bytes());
}

/// An error and its causes, each once: `{:#}` shows every cause after the
/// message, but a message that already ends with its cause (`path: {source}`
/// with the source also marked as such) would show it twice.
pub fn chain(e: &anyhow::Error) -> String {
    let mut s = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if s.ends_with(&c) {
            continue;
        }
        if !s.is_empty() {
            s.push_str(": ");
        }
        s.push_str(&c);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_c0_del_c1_but_not_layout() {
        assert_eq!(safe("a\tb\nc"), "a\tb\nc");
        assert_eq!(safe("\x1b]0;pwned\x07x"), "\\u{1b}]0;pwned\\u{7}x");
        assert_eq!(safe("\r\x7f\u{9b}"), "\\u{d}\\u{7f}\\u{9b}");
        assert_eq!(safe("GeForce ü"), "GeForce ü");
    }

    #[test]
    fn chain_shows_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("/x: {source}")]
        struct Outer {
            #[source]
            source: std::io::Error,
        }
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let text = io.to_string();
        let e = anyhow::Error::new(Outer { source: io }).context("reading");
        assert_eq!(chain(&e), format!("reading: /x: {text}"));
    }
}
