//! The properties every initramfs and modprobe.d editor target checks (included by
//! those targets with `#[path]`; not a target itself).

use exliar::plan::editors::InPlaceEdit;

pub fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Any text is edited or refused with an error, never a panic; what is edited is
/// idempotent and reported as applied; removing the edit gives back an input that
/// held none of it byte for byte.
pub fn round_trip(edit: &InPlaceEdit, text: &str) {
    if let Ok(out) = edit.apply(text) {
        assert_eq!(edit.apply(&out).ok().as_deref(), Some(out.as_str()));
        assert_eq!(edit.is_applied(&out).ok(), Some(true));
        if edit.remove(text).ok().as_deref() == Some(text) {
            assert_eq!(edit.remove(&out).ok().as_deref(), Some(text));
        }
    }
    let _ = edit.remove(text);
}
