//! Fuzz what `exliar runtime configure` edits and reads: a user's
//! daemon.json (the in-place JSON editor), config.toml (toml_edit), a dpkg
//! status file and an engine's `--version` line. Any bytes: never a panic;
//! an edit, when made, turns CDI on and a second edit finds nothing to do.
#![no_main]

use exliar::runtime::{self, containerd, docker};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let dirs = vec!["/etc/cdi".to_string(), "/var/run/cdi".to_string()];
    if let Ok(Some(out)) = docker::merge(Some(&text), &dirs) {
        assert_eq!(docker::read(&out).ok().and_then(|s| s.cdi), Some(true));
        assert_eq!(docker::merge(Some(&out), &dirs), Ok(None));
    }
    for v in [2, 3] {
        if let Ok(Some(out)) = containerd::merge(Some(&text), v, &dirs) {
            assert_eq!(containerd::merge(Some(&out), v, &dirs), Ok(None));
        }
    }
    let _ = runtime::parse_dpkg_status(&text);
    let _ = runtime::parse_pacman_desc(&text);
    let _ = runtime::parse_version_output(&text);
    let _ = runtime::built_using_cdi(&text);
});
