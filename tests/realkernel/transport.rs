//! Guest → host file transport.
//!
//! The guest packs `/out` as a gzipped tar and writes it, base64-encoded, to its second
//! serial port (`/dev/ttyS1`), which QEMU records in a file and nothing else writes to:
//!
//! ```text
//! EXLIAR-XFER-BEGIN <size in bytes> <sha256 hex>
//! <base64 lines>
//! EXLIAR-XFER-END
//! ```
//!
//! The host checks the size and SHA-256 and unpacks it with `tar`.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};

use super::kernel::{Tools, run};

const BEGIN: &str = "EXLIAR-XFER-BEGIN ";
const END: &str = "EXLIAR-XFER-END";

fn b64_value(c: u8) -> Option<u32> {
    Some(u32::from(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    }))
}

/// Decodes standard base64 (padding optional, whitespace ignored).
pub fn base64_decode(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        if c.is_ascii_whitespace() || c == b'=' {
            continue;
        }
        let v = b64_value(c).with_context(|| format!("invalid base64 byte {c:#04x}"))?;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).unwrap_or_default());
        }
    }
    Ok(out)
}

/// Extracts the framed payload from the recorded serial port `xfer` into `dest`
/// (which is emptied first). `tgz` is where the decoded archive is kept.
pub fn receive(tools: &Tools, xfer: &Path, tgz: &Path, dest: &Path) -> Result<()> {
    let raw = fs::read(xfer).with_context(|| format!("reading {}", xfer.display()))?;
    let text = String::from_utf8_lossy(&raw).replace('\r', "");
    let mut lines = text.lines();
    let header = lines
        .by_ref()
        .find_map(|l| l.strip_prefix(BEGIN))
        .with_context(|| format!("no `{BEGIN}` line in {}", xfer.display()))?;
    let (size, sum) = header
        .split_once(' ')
        .with_context(|| format!("bad transfer header `{header}`"))?;
    let size: usize = size.trim().parse().context("transfer size")?;
    let mut body = String::new();
    let mut ended = false;
    for l in lines {
        if l == END {
            ended = true;
            break;
        }
        body.push_str(l);
    }
    ensure!(
        ended,
        "transfer in {} has no `{END}` line (guest stopped mid-way?)",
        xfer.display()
    );
    let data = base64_decode(&body)?;
    ensure!(
        data.len() == size,
        "transfer size mismatch: header says {size}, got {}",
        data.len()
    );
    fs::write(tgz, &data).with_context(|| format!("writing {}", tgz.display()))?;
    let got = run(Command::new(&tools.sha256sum).arg(tgz))?;
    let got = got.split_whitespace().next().unwrap_or_default();
    if got != sum.trim() {
        bail!("transfer checksum mismatch: header {sum}, got {got}");
    }
    if dest.exists() {
        fs::remove_dir_all(dest).with_context(|| format!("removing {}", dest.display()))?;
    }
    fs::create_dir_all(dest)?;
    run(Command::new(&tools.tar)
        .arg("-xzf")
        .arg(tgz)
        .arg("-C")
        .arg(dest))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn base64_roundtrip_vectors() {
        assert_eq!(base64_decode("").expect("empty"), b"");
        assert_eq!(base64_decode("Zg==").expect("f"), b"f");
        assert_eq!(base64_decode("Zm8=").expect("fo"), b"fo");
        assert_eq!(base64_decode("Zm9v").expect("foo"), b"foo");
        assert_eq!(base64_decode("Zm9v\nYmFy\n").expect("foobar"), b"foobar");
        assert!(base64_decode("Zm9v!").is_err());
    }
}
