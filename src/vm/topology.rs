//! Host CPU topology (read through the host root) and the choice of host
//! CPUs to pin a VM's vCPUs to. So far: the cpulist parser.

/// Parses a kernel cpulist string ("0-3,8,10-11", may be empty or end in a
/// newline) into sorted, deduplicated CPU numbers. `None` on a malformed
/// list (a descending range, a non-number, an empty item).
pub fn parse_cpulist(s: &str) -> Option<Vec<u32>> {
    let s = s.trim();
    let mut out = Vec::new();
    if s.is_empty() {
        return Some(out);
    }
    for item in s.split(',') {
        let item = item.trim();
        match item.split_once('-') {
            Some((a, b)) => {
                let a: u32 = a.parse().ok()?;
                let b: u32 = b.parse().ok()?;
                if a > b || b - a > 65_535 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(item.parse().ok()?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::parse_cpulist;

    #[test]
    fn cpulist() {
        assert_eq!(
            parse_cpulist("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpulist(""), Some(vec![]));
        assert_eq!(parse_cpulist("5"), Some(vec![5]));
        assert_eq!(parse_cpulist("3-1"), None);
        assert_eq!(parse_cpulist("1,,2"), None);
        assert_eq!(parse_cpulist("a"), None);
    }
}
