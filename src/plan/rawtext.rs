//! Files as text without losing a byte.
//!
//! The editors work on `&str`, but a configuration file may hold bytes that
//! are not UTF-8 (a latin-1 comment in `/etc/default/grub`). A lossy decode
//! would replace them, so the bytes a plan records as `before` would never
//! match the file and apply would refuse forever, and the bytes written back
//! would differ from the user's. [`decode`] is reversible instead: valid
//! UTF-8 is kept, every other byte `b` becomes the private-use character
//! `U+F700 + b`, and [`encode`] maps those characters back. A file that
//! really holds one of those 128 characters has that character's own bytes
//! escaped the same way, so `encode(decode(b)) == b` for every `b`.

/// The first of the 128 characters that stand for a raw byte `0x80..=0xFF`
/// (an ASCII byte is always valid UTF-8, so never escaped).
const BASE: u32 = 0xF700;

fn escaped(c: char) -> Option<u8> {
    let v = u32::from(c);
    (BASE + 0x80..=BASE + 0xFF)
        .contains(&v)
        .then(|| (v - BASE) as u8)
}

fn escape(out: &mut String, byte: u8) {
    // BASE + 0x80..=0xFF is a valid scalar value (private use area).
    if let Some(c) = char::from_u32(BASE + u32::from(byte)) {
        out.push(c);
    }
}

/// The text of `bytes`, with every byte that is not UTF-8 kept as a
/// private-use character (see the module documentation).
pub fn decode(bytes: &[u8]) -> String {
    if let Ok(s) = std::str::from_utf8(bytes)
        && !s.chars().any(|c| escaped(c).is_some())
    {
        return s.to_string();
    }
    let mut out = String::with_capacity(bytes.len() + bytes.len() / 2);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if escaped(c).is_some() {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    escape(&mut out, b);
                }
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            escape(&mut out, b);
        }
    }
    out
}

/// The bytes of a text made by [`decode`] (and edited): every escaped byte
/// is written back as it was.
pub fn encode(text: &str) -> Vec<u8> {
    if !text.chars().any(|c| escaped(c).is_some()) {
        return text.as_bytes().to_vec();
    }
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match escaped(c) {
            Some(b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn latin1_survives_an_edit() {
        let file = b"# Einstellungen f\xfcr GRUB\nGRUB_CMDLINE_LINUX=\"\"\n";
        let text = decode(file);
        assert!(text.starts_with("# Einstellungen f"));
        let edited = text.replace("=\"\"", "=\"iommu=pt\"");
        assert_eq!(
            encode(&edited),
            b"# Einstellungen f\xfcr GRUB\nGRUB_CMDLINE_LINUX=\"iommu=pt\"\n"
        );
    }

    #[test]
    fn utf8_is_kept_as_it_is() {
        let s = "caf\u{e9} \u{1F600}\n";
        assert_eq!(decode(s.as_bytes()), s);
        assert_eq!(encode(s), s.as_bytes());
    }

    #[test]
    fn a_real_private_use_character_round_trips() {
        let s = "x\u{F7A9}y";
        assert_eq!(encode(&decode(s.as_bytes())), s.as_bytes());
        let mixed = b"\xff\xef\x9e\xa9\xfe";
        assert_eq!(encode(&decode(mixed)), mixed);
    }

    proptest! {
        #[test]
        fn every_byte_string_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            prop_assert_eq!(encode(&decode(&bytes)), bytes);
        }
    }
}
