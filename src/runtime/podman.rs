//! Podman (≥ 4.1) reads CDI specs with no setting to turn on: from
//! `/etc/cdi` and `/var/run/cdi`, or from `cdi_spec_dirs` in the `[engine]`
//! table of containers.conf (the last file that sets it wins:
//! `/usr/share/containers/containers.conf`, `/etc/containers/containers.conf`,
//! then `/etc/containers/containers.conf.d/*.conf` in name order). Rootless
//! users' own files under `~/.config/containers` are not read.

use std::path::PathBuf;

use crate::host::HostRoot;

/// The spec directories Podman reads, and which file said so (`None`:
/// Podman's defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodmanDirs {
    pub dirs: Vec<String>,
    pub from: Option<String>,
    /// containers.conf files that could not be read or parsed.
    pub problems: Vec<String>,
}

/// `[engine] cdi_spec_dirs` of one containers.conf text: `Ok(None)` when
/// unset.
pub fn parse_conf(text: &str) -> Result<Option<Vec<String>>, String> {
    let t: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("not valid TOML: {}", e.message()))?;
    let Some(v) = t
        .get("engine")
        .and_then(|e| e.as_table())
        .and_then(|e| e.get("cdi_spec_dirs"))
    else {
        return Ok(None);
    };
    v.as_array()
        .and_then(|a| a.iter().map(|s| s.as_str().map(String::from)).collect())
        .map(Some)
        .ok_or_else(|| "engine.cdi_spec_dirs is not a list of strings".to_string())
}

/// The directories Podman reads specs from under `host`.
pub fn spec_dirs(host: &HostRoot) -> PodmanDirs {
    let mut files: Vec<PathBuf> = vec![
        "usr/share/containers/containers.conf".into(),
        "etc/containers/containers.conf".into(),
    ];
    if let Ok(names) = host.list_dir("etc/containers/containers.conf.d") {
        files.extend(
            names
                .iter()
                .filter(|n| n.ends_with(".conf"))
                .map(|n| PathBuf::from("etc/containers/containers.conf.d").join(n)),
        );
    }
    let mut out = PodmanDirs {
        dirs: super::configure::DEFAULT_DIRS.map(String::from).to_vec(),
        from: None,
        problems: Vec::new(),
    };
    for f in files {
        match host.read_optional(&f) {
            Ok(None) => {}
            Ok(Some(text)) => match parse_conf(&text) {
                Ok(Some(d)) => {
                    out.dirs = d;
                    out.from = Some(format!("/{}", f.display()));
                }
                Ok(None) => {}
                Err(e) => out.problems.push(format!("/{}: {e}", f.display())),
            },
            Err(e) => out.problems.push(e.to_string()),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn conf() {
        assert_eq!(parse_conf("[containers]\nx = 1\n"), Ok(None));
        assert_eq!(
            parse_conf("[engine]\ncdi_spec_dirs = [\"/opt/cdi\"]\n"),
            Ok(Some(vec!["/opt/cdi".to_string()]))
        );
        assert!(parse_conf("[engine]\ncdi_spec_dirs = 3\n").is_err());
        assert!(parse_conf("[engine\n").is_err());
    }
}
