//! Container engines under a host root: which of Podman, Docker and
//! containerd are installed, in which version, whether that version can
//! inject CDI devices and the newest `cdiVersion` it accepts, and whether
//! its configuration turns CDI on ([`configure`] plans the change).
//!
//! Detection reads package databases under the root (dpkg's status file,
//! pacman's local database) and never runs an engine; only on the live root
//! (`/`), for an engine no package database knows (an rpm system, a static
//! binary), it runs `podman --version`, `dockerd --version` or
//! `containerd --version` (argv, no shell, bounded in time and output).
//! rpm's database (sqlite or Berkeley DB) is not read.

pub mod configure;
pub mod containerd;
pub mod docker;
pub mod jsonedit;
pub mod podman;

use std::path::Path;

use serde::Serialize;

use crate::host::HostRoot;

/// The engines exliar knows how to configure for CDI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    Podman,
    Docker,
    Containerd,
}

impl EngineKind {
    pub const ALL: [EngineKind; 3] = [
        EngineKind::Podman,
        EngineKind::Docker,
        EngineKind::Containerd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Podman => "podman",
            EngineKind::Docker => "docker",
            EngineKind::Containerd => "containerd",
        }
    }

    /// Package names (dpkg, pacman) that install this engine.
    fn packages(self) -> &'static [&'static str] {
        match self {
            EngineKind::Podman => &["podman"],
            EngineKind::Docker => &["docker.io", "docker-ce", "moby-engine", "docker"],
            EngineKind::Containerd => &["containerd", "containerd.io"],
        }
    }

    /// The daemon or program whose `--version` names the engine's version.
    fn binary(self) -> &'static str {
        match self {
            EngineKind::Podman => "podman",
            EngineKind::Docker => "dockerd",
            EngineKind::Containerd => "containerd",
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether an engine version can inject CDI devices, and the newest spec
/// version it loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "support", rename_all = "kebab-case")]
pub enum CdiSupport {
    /// This version cannot do CDI at all.
    Unsupported { reason: String },
    /// It loads specs up to `max_cdi_version` (a spec declaring a newer
    /// version is dropped by the engine: "invalid version").
    Supported {
        max_cdi_version: String,
        /// Where the number comes from (measured, vendored library, …).
        basis: String,
    },
}

impl CdiSupport {
    pub fn max_cdi_version(&self) -> Option<&str> {
        match self {
            CdiSupport::Supported {
                max_cdi_version, ..
            } => Some(max_cdi_version),
            CdiSupport::Unsupported { .. } => None,
        }
    }
}

/// One engine found under the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Engine {
    pub name: EngineKind,
    /// The upstream version (`4.3.1`), without a distribution's suffix.
    pub version: String,
    /// Where it was found: `dpkg: podman 4.3.1+ds1-8+deb12u1+b3`,
    /// `pacman: podman 5.2.3-1`, `podman --version`.
    pub source: String,
    /// The CDI library the package was built with, when the package says
    /// (Debian's `Built-Using`): more exact than the engine's version.
    pub cdi_library: Option<String>,
    pub cdi: CdiSupport,
}

impl Engine {
    /// Whether this engine loads a spec declaring `cdi_version`; `Err`
    /// says why not, in words fit for a refusal (`podman 4.3.1 loads CDI
    /// specs up to cdiVersion 0.5.0, this one declares 0.6.0`).
    pub fn accepts(&self, cdi_version: &str) -> Result<(), String> {
        let max = match &self.cdi {
            CdiSupport::Unsupported { reason } => return Err(reason.clone()),
            CdiSupport::Supported {
                max_cdi_version,
                basis,
            } => (max_cdi_version, basis),
        };
        match (parse_version(cdi_version), parse_version(max.0)) {
            (Some(want), Some(have)) if want <= have => Ok(()),
            (Some(_), Some(_)) => Err(format!(
                "{} {} loads CDI specs up to cdiVersion {} ({}), this one declares {cdi_version}",
                self.name, self.version, max.0, max.1
            )),
            _ => Err(format!("{cdi_version:?} is not a CDI version")),
        }
    }
}

/// `major.minor.patch` of a version string: a Debian epoch (`5:`) and a
/// leading `v` are skipped; what follows the numbers (`+ds1-8`, `~ds1`,
/// `-1~debian.12`) is ignored. `None` without at least `major.minor`.
pub fn parse_version(s: &str) -> Option<(u32, u32, u32)> {
    let s = s.trim();
    let s = match s.split_once(':') {
        Some((epoch, rest)) if !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()) => {
            rest
        }
        _ => s,
    };
    let s = s.strip_prefix('v').unwrap_or(s);
    let mut nums = [0u32; 3];
    let mut parts = 0;
    let mut rest = s;
    while parts < 3 {
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        nums[parts] = rest[..end].parse().ok()?;
        parts += 1;
        rest = &rest[end..];
        match rest.strip_prefix('.') {
            Some(r) if parts < 3 => rest = r,
            _ => break,
        }
    }
    (parts >= 2).then_some((nums[0], nums[1], nums[2]))
}

fn supported(v: &str, basis: impl Into<String>) -> CdiSupport {
    CdiSupport::Supported {
        max_cdi_version: v.to_string(),
        basis: basis.into(),
    }
}

/// The newest `cdiVersion` an engine version accepts, from its version
/// alone.
///
/// Measured on Debian (see the probe, `shared/reference/containers`):
/// Podman 4.3.1 loads 0.1.0–0.5.0 (vendored CDI library v0.5.x); Docker
/// 26.1.5 loads ≤ 0.7.0 (vendored v0.7.x); Debian's containerd 1.7.24 loads
/// ≤ 0.8.0, but that build uses Debian's CDI library 0.8.0 (`Built-Using`),
/// which [`cdi_support`] reads; Docker 20.10 and containerd 1.6.20 cannot
/// do CDI at all.
///
/// The other rows are the upstream projects' vendored libraries as far as
/// known, rounded **down** where unsure, so that exliar never writes a spec
/// an engine drops (a spec at an older version than needed is only refused
/// by exliar, with the reason, and `--cdi-version` can override):
/// - Podman 4.1–4.2: library v0.3/v0.4 → 0.3.0 (unsure; 0.3.0 loads in
///   both); 4.3–4.7: v0.5.x → 0.5.0 (4.5 vendors v0.5.4); 4.8–5.1:
///   tags.cncf.io v0.6.x → 0.6.0 (5.0/5.1 may carry v0.7: unsure); 5.2 and
///   later: v0.8.x → 0.8.0 (Debian's 5.4.2 is built with 0.8.0; 5.5+ may
///   load 1.0.0: unsure, kept at 0.8.0).
/// - Docker 25: v0.6.x → 0.6.0; 26.0 → 0.6.0 (unsure whether 26.0 already
///   had v0.7); 26.1–27: → 0.7.0 (27 may carry v0.8: unsure); 28 and later:
///   → 0.8.0 (may load 1.0.0: unsure).
/// - containerd 1.7.x: 1.7.0 vendors v0.5.4 → 0.5.0 (later 1.7 patch
///   releases may carry newer libraries: unsure, so 0.5.0 unless the
///   package says which library it was built with); 2.x: v0.8.x → 0.8.0.
pub fn max_cdi_version(engine: EngineKind, version: &str) -> CdiSupport {
    let Some((ma, mi, pa)) = parse_version(version) else {
        return CdiSupport::Unsupported {
            reason: format!("unreadable {engine} version {version:?}"),
        };
    };
    let v = (ma, mi);
    let version = format!("{ma}.{mi}.{pa}");
    match engine {
        EngineKind::Podman => match v {
            _ if v < (4, 1) => CdiSupport::Unsupported {
                reason: format!(
                    "Podman {version} cannot inject CDI devices (Podman gained CDI in 4.1)"
                ),
            },
            _ if v < (4, 3) => supported(
                "0.3.0",
                "Podman 4.1–4.2 vendor CDI library v0.3/v0.4 (conservative)",
            ),
            _ if v < (4, 8) => supported(
                "0.5.0",
                "Podman 4.3–4.7 vendor CDI library v0.5.x (4.3.1 measured: 0.1.0–0.5.0)",
            ),
            _ if v < (5, 2) => supported(
                "0.6.0",
                "Podman 4.8–5.1 vendor CDI library v0.6 or newer (conservative)",
            ),
            _ => supported(
                "0.8.0",
                "Podman 5.2 and later vendor CDI library v0.8 or newer (conservative)",
            ),
        },
        EngineKind::Docker => match v {
            _ if v < (25, 0) => CdiSupport::Unsupported {
                reason: format!(
                    "Docker {version} cannot inject CDI devices (Docker gained CDI in 25.0; 20.10 says: could not select device driver \"cdi\")"
                ),
            },
            _ if v < (26, 1) => supported(
                "0.6.0",
                "Docker 25–26.0 vendor CDI library v0.6 or newer (conservative)",
            ),
            _ if v < (28, 0) => supported(
                "0.7.0",
                "Docker 26.1–27 vendor CDI library v0.7 or newer (26.1.5 measured: ≤ 0.7.0)",
            ),
            _ => supported(
                "0.8.0",
                "Docker 28 and later vendor CDI library v0.8 or newer (conservative)",
            ),
        },
        EngineKind::Containerd => match v {
            _ if v < (1, 7) => CdiSupport::Unsupported {
                reason: format!(
                    "containerd {version} cannot inject CDI devices (enable_cdi came in 1.7)"
                ),
            },
            _ if v < (2, 0) => supported(
                "0.5.0",
                "containerd 1.7.0 vendors CDI library v0.5.4; later 1.7 releases may load newer specs (conservative)",
            ),
            _ => supported(
                "0.8.0",
                "containerd 2.x vendors CDI library v0.8 or newer (conservative)",
            ),
        },
    }
}

/// The newest spec version a CDI library version validates
/// (`validSpecVersions` of container-device-interface `pkg/cdi`): a
/// library `x.y.*` loads specs up to `x.y.0` (from v0.3 on). Newer
/// libraries than exliar knows are capped at 1.1.0.
pub fn library_max_spec(library: &str) -> Option<&'static str> {
    let (ma, mi, _) = parse_version(library)?;
    Some(match (ma, mi) {
        (0, 0..=2) => return None,
        (0, 3) => "0.3.0",
        (0, 4) => "0.4.0",
        (0, 5) => "0.5.0",
        (0, 6) => "0.6.0",
        (0, 7) => "0.7.0",
        (0, 8..) => "0.8.0",
        (1, 0) => "1.0.0",
        _ => "1.1.0",
    })
}

/// [`max_cdi_version`], refined by the CDI library the package was built
/// with when known (Debian's `Built-Using`): the library decides which spec
/// versions load, whatever the engine's version.
pub fn cdi_support(engine: EngineKind, version: &str, library: Option<&str>) -> CdiSupport {
    let base = max_cdi_version(engine, version);
    match (
        &base,
        library.and_then(|l| library_max_spec(l).map(|m| (l, m))),
    ) {
        (CdiSupport::Supported { .. }, Some((lib, max))) => supported(
            max,
            format!("built with CDI library {lib} (the package's Built-Using)"),
        ),
        _ => base,
    }
}

/// One package record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// The CDI library version of `Built-Using`, if listed.
    pub cdi_library: Option<String>,
}

/// The installed packages of a dpkg status file (stanzas whose `Status`
/// ends in `installed`).
pub fn parse_dpkg_status(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let (mut name, mut version, mut status, mut built) = (None, None, None, None);
        let mut last: Option<&str> = None;
        for line in stanza.lines() {
            if line.starts_with([' ', '\t']) {
                // A continuation line: only Built-Using may wrap here.
                if last == Some("Built-Using") {
                    built = Some(format!("{} {}", built.unwrap_or_default(), line.trim()));
                }
                continue;
            }
            let Some((k, v)) = line.split_once(':') else {
                last = None;
                continue;
            };
            let v = v.trim();
            last = Some(k);
            match k {
                "Package" => name = Some(v.to_string()),
                "Version" => version = Some(v.to_string()),
                "Status" => status = Some(v.to_string()),
                "Built-Using" => built = Some(v.to_string()),
                _ => {}
            }
        }
        if let (Some(name), Some(version), Some(status)) = (name, version, status)
            && status.split_whitespace().last() == Some("installed")
        {
            out.push(Package {
                name,
                version,
                cdi_library: built.as_deref().and_then(built_using_cdi),
            });
        }
    }
    out
}

/// The CDI library version in a `Built-Using` value:
/// `golang-tags.cncf-container-device-interface (= 0.8.0-5)` → `0.8.0`.
pub fn built_using_cdi(built: &str) -> Option<String> {
    built.split(',').find_map(|entry| {
        let (name, rest) = entry.trim().split_once('(')?;
        if !name.contains("container-device-interface") {
            return None;
        }
        let v = rest
            .trim_end_matches(')')
            .trim()
            .trim_start_matches('=')
            .trim();
        // Debian revision after the last `-`.
        let v = v.rsplit_once('-').map_or(v, |(u, _)| u);
        parse_version(v).map(|_| v.to_string())
    })
}

/// A pacman `desc` file's `%NAME%` and `%VERSION%`.
pub fn parse_pacman_desc(text: &str) -> Option<Package> {
    let mut lines = text.lines();
    let (mut name, mut version) = (None, None);
    while let Some(l) = lines.next() {
        match l.trim() {
            "%NAME%" => name = lines.next().map(|s| s.trim().to_string()),
            "%VERSION%" => version = lines.next().map(|s| s.trim().to_string()),
            _ => {}
        }
    }
    Some(Package {
        name: name?,
        version: version?,
        cdi_library: None,
    })
}

/// The version in an engine's `--version` line: `podman version 4.3.1`,
/// `Docker version 26.1.5+dfsg1, build a72d7cd`, `containerd
/// github.com/containerd/containerd v1.7.24 …`: the first word that parses
/// as a version.
pub fn parse_version_output(text: &str) -> Option<String> {
    let line = text.lines().next()?;
    line.split(|c: char| c.is_whitespace() || c == ',')
        .find(|w| {
            let w = w.strip_prefix('v').unwrap_or(w);
            w.starts_with(|c: char| c.is_ascii_digit()) && parse_version(w).is_some()
        })
        .map(|w| upstream(w.strip_prefix('v').unwrap_or(w)))
}

/// `major.minor.patch` as text (`4.3.1+ds1-8` → `4.3.1`).
fn upstream(v: &str) -> String {
    match parse_version(v) {
        Some((a, b, c)) => format!("{a}.{b}.{c}"),
        None => v.to_string(),
    }
}

fn engine_from(kind: EngineKind, version: &str, source: String, lib: Option<String>) -> Engine {
    Engine {
        name: kind,
        version: upstream(version),
        source,
        cdi: cdi_support(kind, version, lib.as_deref()),
        cdi_library: lib,
    }
}

/// Run `binary --version` on the live host: argv, no shell, 5 s, 64 KiB.
fn run_version(binary: &str) -> Option<String> {
    use std::io::Read as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut out = Vec::new();
    child
        .stdout
        .take()?
        .take(64 << 10)
        .read_to_end(&mut out)
        .ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// The engines installed under `host`, in [`EngineKind::ALL`] order.
pub fn engines(host: &HostRoot) -> Vec<Engine> {
    let dpkg = match host.read_optional("var/lib/dpkg/status") {
        Ok(t) => t.map(|t| parse_dpkg_status(&t)).unwrap_or_default(),
        Err(e) => {
            tracing::warn!("{e}: the engines dpkg installed are not known");
            Vec::new()
        }
    };
    let pacman: Vec<Package> = host
        .list_dir("var/lib/pacman/local")
        .unwrap_or_default()
        .iter()
        .filter(|d| {
            EngineKind::ALL.iter().any(|k| {
                k.packages()
                    .iter()
                    .any(|p| d.strip_prefix(p).is_some_and(|r| r.starts_with('-')))
            })
        })
        .filter_map(|d| {
            host.read_optional(Path::new("var/lib/pacman/local").join(d).join("desc"))
                .ok()
                .flatten()
        })
        .filter_map(|t| parse_pacman_desc(&t))
        .collect();
    let mut out = Vec::new();
    for kind in EngineKind::ALL {
        let found = kind.packages().iter().find_map(|p| {
            dpkg.iter()
                .find(|d| d.name == *p)
                .map(|d| ("dpkg", d))
                .or_else(|| pacman.iter().find(|d| d.name == *p).map(|d| ("pacman", d)))
        });
        if let Some((db, p)) = found {
            out.push(engine_from(
                kind,
                &p.version,
                format!("{db}: {} {}", p.name, p.version),
                p.cdi_library.clone(),
            ));
        } else if host.is_live()
            && let Some(v) = run_version(kind.binary()).and_then(|t| parse_version_output(&t))
        {
            out.push(engine_from(
                kind,
                &v,
                format!("{} --version", kind.binary()),
                None,
            ));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn max(e: EngineKind, v: &str) -> Option<String> {
        max_cdi_version(e, v).max_cdi_version().map(String::from)
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("4.3.1+ds1-8+deb12u1+b3"), Some((4, 3, 1)));
        assert_eq!(
            parse_version("5:26.1.5-1~debian.12~bookworm"),
            Some((26, 1, 5))
        );
        assert_eq!(parse_version("1.7.24~ds1-6+deb13u1"), Some((1, 7, 24)));
        assert_eq!(parse_version("v2.0.0"), Some((2, 0, 0)));
        assert_eq!(parse_version("28.2"), Some((28, 2, 0)));
        assert_eq!(parse_version("28"), None);
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_version("abc"), None);
        assert_eq!(parse_version("99999999999.1"), None);
    }

    #[test]
    fn podman_rows() {
        assert!(matches!(
            max_cdi_version(EngineKind::Podman, "4.0.3"),
            CdiSupport::Unsupported { reason } if reason.contains("4.1")
        ));
        assert_eq!(max(EngineKind::Podman, "4.1.0").as_deref(), Some("0.3.0"));
        assert_eq!(max(EngineKind::Podman, "4.2.1").as_deref(), Some("0.3.0"));
        // Debian 12, measured by the probe.
        assert_eq!(
            max(EngineKind::Podman, "4.3.1+ds1-8+deb12u1+b3").as_deref(),
            Some("0.5.0")
        );
        assert_eq!(max(EngineKind::Podman, "4.7.2").as_deref(), Some("0.5.0"));
        assert_eq!(max(EngineKind::Podman, "4.9.3").as_deref(), Some("0.6.0"));
        assert_eq!(max(EngineKind::Podman, "5.1.0").as_deref(), Some("0.6.0"));
        assert_eq!(max(EngineKind::Podman, "5.4.2").as_deref(), Some("0.8.0"));
    }

    #[test]
    fn docker_rows() {
        // Debian 12's docker.io, measured: no CDI.
        assert!(matches!(
            max_cdi_version(EngineKind::Docker, "20.10.24+dfsg1-1+deb12u1+b6"),
            CdiSupport::Unsupported { reason } if reason.contains("25.0")
        ));
        assert_eq!(max(EngineKind::Docker, "24.0.9"), None);
        assert_eq!(max(EngineKind::Docker, "25.0.5").as_deref(), Some("0.6.0"));
        assert_eq!(max(EngineKind::Docker, "26.0.0").as_deref(), Some("0.6.0"));
        // Debian 13's docker.io, measured.
        assert_eq!(
            max(EngineKind::Docker, "26.1.5+dfsg1-9+deb13u1+b1").as_deref(),
            Some("0.7.0")
        );
        assert_eq!(max(EngineKind::Docker, "27.5.1").as_deref(), Some("0.7.0"));
        assert_eq!(
            max(EngineKind::Docker, "5:28.2.2-1~debian.12~bookworm").as_deref(),
            Some("0.8.0")
        );
    }

    #[test]
    fn containerd_rows() {
        // Debian 12's containerd, measured: no CDI.
        assert!(matches!(
            max_cdi_version(EngineKind::Containerd, "1.6.20~ds1-1+deb12u3"),
            CdiSupport::Unsupported { reason } if reason.contains("1.7")
        ));
        assert_eq!(
            max(EngineKind::Containerd, "1.7.0").as_deref(),
            Some("0.5.0")
        );
        assert_eq!(
            max(EngineKind::Containerd, "2.0.4").as_deref(),
            Some("0.8.0")
        );
        // Debian 13's containerd 1.7.24, measured at ≤ 0.8.0: its package
        // says it was built with CDI 0.8.0.
        let s = cdi_support(
            EngineKind::Containerd,
            "1.7.24~ds1-6+deb13u1",
            Some("0.8.0"),
        );
        assert_eq!(s.max_cdi_version(), Some("0.8.0"));
        // A library never makes an engine without CDI support it.
        let s = cdi_support(EngineKind::Containerd, "1.6.20", Some("0.8.0"));
        assert_eq!(s.max_cdi_version(), None);
    }

    #[test]
    fn accepts_up_to_its_max() {
        let e = |name, v: &str| Engine {
            name,
            version: v.into(),
            source: "test".into(),
            cdi_library: None,
            cdi: max_cdi_version(name, v),
        };
        let podman = e(EngineKind::Podman, "4.3.1");
        assert_eq!(podman.accepts("0.5.0"), Ok(()));
        assert_eq!(podman.accepts("0.3.0"), Ok(()));
        let no = podman.accepts("0.6.0").unwrap_err();
        assert!(
            no.contains("up to cdiVersion 0.5.0") && no.contains("declares 0.6.0"),
            "{no}"
        );
        // A spec that needs 0.6.0 (annotations): Docker 26 loads it.
        assert_eq!(e(EngineKind::Docker, "26.1.5").accepts("0.6.0"), Ok(()));
        assert!(e(EngineKind::Docker, "26.1.5").accepts("0.8.0").is_err());
        assert!(
            e(EngineKind::Docker, "20.10.24")
                .accepts("0.3.0")
                .unwrap_err()
                .contains("25.0")
        );
        assert!(podman.accepts("x").is_err());
    }

    #[test]
    fn libraries() {
        assert_eq!(library_max_spec("0.5.4"), Some("0.5.0"));
        assert_eq!(library_max_spec("0.8.1"), Some("0.8.0"));
        assert_eq!(library_max_spec("1.0.1"), Some("1.0.0"));
        assert_eq!(library_max_spec("1.1.0"), Some("1.1.0"));
        assert_eq!(library_max_spec("2.0.0"), Some("1.1.0"));
        assert_eq!(library_max_spec("0.2.0"), None);
        assert_eq!(
            built_using_cdi(
                "golang-github-opencontainers-runc (= 1.1.5+ds1-1), golang-tags.cncf-container-device-interface (= 0.8.0-5)"
            )
            .as_deref(),
            Some("0.8.0")
        );
        assert_eq!(built_using_cdi("golang-1.19 (= 1.19.8-2)"), None);
    }

    #[test]
    fn dpkg_status() {
        let text = "Package: podman\nStatus: install ok installed\nVersion: 4.3.1+ds1-8+deb12u1+b3\nDescription: x\n continued\n\n\
Package: containerd\nStatus: deinstall ok config-files\nVersion: 1.6.20~ds1-1\n\n\
Package: docker.io\nStatus: install ok installed\nBuilt-Using: golang-1.22 (= 1.22.1-1),\n golang-tags.cncf-container-device-interface (= 0.7.2-1)\nVersion: 26.1.5+dfsg1-9\n";
        let p = parse_dpkg_status(text);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].name, "podman");
        assert_eq!(p[0].cdi_library, None);
        assert_eq!(p[1].name, "docker.io");
        assert_eq!(p[1].cdi_library.as_deref(), Some("0.7.2"));
    }

    #[test]
    fn pacman_and_version_lines() {
        let p = parse_pacman_desc("%NAME%\npodman\n\n%VERSION%\n5:5.2.3-1\n\n%BASE%\npodman\n");
        assert_eq!(
            p.map(|p| (p.name, p.version)),
            Some(("podman".into(), "5:5.2.3-1".into()))
        );
        assert_eq!(parse_pacman_desc("%NAME%\npodman\n"), None);
        assert_eq!(
            parse_version_output("podman version 4.3.1\n").as_deref(),
            Some("4.3.1")
        );
        assert_eq!(
            parse_version_output("Docker version 26.1.5+dfsg1, build a72d7cd\n").as_deref(),
            Some("26.1.5")
        );
        assert_eq!(
            parse_version_output(
                "containerd github.com/containerd/containerd v1.7.24 61f9fd88f79f081d64d6fa3bb1a0dc71ec870523\n"
            )
            .as_deref(),
            Some("1.7.24")
        );
        assert_eq!(parse_version_output("nothing here"), None);
    }
}
