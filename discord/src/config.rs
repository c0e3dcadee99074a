//! `/etc/exliar/discord.toml`: read under the root, refused unless root
//! owns it and no one else may write it or read it (0600 or 0640 at
//! most), then overridden by `EXLIAR_DISCORD_WEBHOOK_URL` and
//! `EXLIAR_DISCORD_PUBLIC_KEY`. The webhook URL (its token) is a secret:
//! the Debug impl redacts it and no message prints it.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The config file, relative to the root.
pub const CONFIG_PATH: &str = "etc/exliar/discord.toml";
/// Variables that override the file's secrets (for `serve`; a plugin
/// run gets a cleared environment, so there the file is what counts).
pub const ENV_WEBHOOK: &str = "EXLIAR_DISCORD_WEBHOOK_URL";
pub const ENV_PUBLIC_KEY: &str = "EXLIAR_DISCORD_PUBLIC_KEY";
/// The most `rate_limit.max_wait_secs` may be: exliar's plugin timeout is
/// 10 s, and the answer must be written before it.
pub const MAX_WAIT_SECS: f64 = 9.0;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    webhook_url: Option<String>,
    public_key: Option<String>,
    #[serde(default)]
    allowed_users: Vec<String>,
    exliar: Option<PathBuf>,
    connect: Option<String>,
    discord_api: Option<String>,
    #[serde(default)]
    rate_limit: RateLimit,
}

/// How the webhook's refusals are retried. Discord's own limit (HTTP 429
/// with `retry_after`) is the limiter: one plugin run sends one message,
/// so nothing is kept between runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    /// Retries after a 429 or a 5xx (not counting the first try).
    pub max_retries: u32,
    /// All tries together end by then, seconds (exliar's plugin timeout
    /// is 10 s).
    pub max_wait_secs: f64,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            max_retries: 3,
            max_wait_secs: 8.0,
        }
    }
}

/// The configuration in force.
#[derive(Clone)]
pub struct Config {
    /// Where it came from (None: no file, the environment only).
    pub file: Option<PathBuf>,
    pub webhook_url: Option<String>,
    /// The application's public key (32 bytes from hex).
    pub public_key: Option<[u8; 32]>,
    pub allowed_users: Vec<String>,
    pub exliar: PathBuf,
    pub connect: String,
    /// Discord's API base, for the follow-up of a slow command.
    pub discord_api: String,
    pub rate_limit: RateLimit,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("file", &self.file)
            .field(
                "webhook_url",
                &self.webhook_url.as_ref().map(|_| "<redacted>"),
            )
            .field("public_key", &self.public_key.map(|_| "<set>"))
            .field("allowed_users", &self.allowed_users)
            .field("exliar", &self.exliar)
            .field("connect", &self.connect)
            .field("discord_api", &self.discord_api)
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

/// Decodes a 64-digit hex public key.
pub fn parse_public_key(hex: &str) -> Result<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        bail!(
            "public_key must be 64 hex digits (32 bytes), not {} characters",
            hex.len()
        );
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("zz"), 16)
            .map_err(|_| anyhow::anyhow!("public_key is not hex"))?;
    }
    Ok(out)
}

/// Refuses a file that is a link, not owned by uid 0, writable by group
/// or others, or readable by others: the webhook URL in it is a secret
/// and the allowed users decide who may start VMs.
pub fn check_owner_mode(path: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(path).with_context(|| path.display().to_string())?;
    use std::os::unix::fs::MetadataExt;
    if meta.file_type().is_symlink() {
        bail!("{}: refused: a symbolic link", path.display());
    }
    if !meta.is_file() {
        bail!("{}: refused: not a regular file", path.display());
    }
    if meta.uid() != 0 {
        bail!(
            "{}: refused: owned by uid {}, not root (chown root {})",
            path.display(),
            meta.uid(),
            path.display()
        );
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o037 != 0 {
        bail!(
            "{}: refused: mode {:04o} lets group write or others read or write it; it holds the webhook's secret (chmod 0600 {})",
            path.display(),
            mode,
            path.display()
        );
    }
    Ok(())
}

impl Config {
    /// Reads `file` (default: `ROOT/etc/exliar/discord.toml`). A missing
    /// default file is no error (the environment may say it all); a
    /// missing file named with `--config` is.
    pub fn load(
        root: &Path,
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let (path, explicit) = match file {
            Some(f) => (f.to_path_buf(), true),
            None => (root.join(CONFIG_PATH), false),
        };
        let parsed = match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => None,
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
            Ok(_) => {
                check_owner_mode(&path)?;
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                let f: File = toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
                Some(f)
            }
        };
        let from_file = parsed.is_some();
        let f = parsed.unwrap_or_default();
        let webhook_url = env(ENV_WEBHOOK).filter(|s| !s.is_empty()).or(f.webhook_url);
        if let Some(u) = &webhook_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            bail!(
                "{}: webhook_url must be an http(s) URL",
                if env(ENV_WEBHOOK).is_some() {
                    ENV_WEBHOOK.to_string()
                } else {
                    path.display().to_string()
                }
            );
        }
        let public_key = match env(ENV_PUBLIC_KEY).filter(|s| !s.is_empty()) {
            Some(k) => Some(parse_public_key(&k).with_context(|| ENV_PUBLIC_KEY)?),
            None => match f.public_key {
                Some(k) => Some(parse_public_key(&k).with_context(|| path.display().to_string())?),
                None => None,
            },
        };
        let w = f.rate_limit.max_wait_secs;
        if w.is_nan() || !(0.0..=MAX_WAIT_SECS).contains(&w) {
            bail!(
                "{}: rate_limit.max_wait_secs must be between 0 and {MAX_WAIT_SECS} (exliar stops a plugin after 10 s)",
                path.display()
            );
        }
        for u in &f.allowed_users {
            if u.is_empty() || !u.bytes().all(|b| b.is_ascii_digit()) {
                bail!(
                    "{}: allowed_users: {u:?} is not a Discord user id (digits)",
                    path.display()
                );
            }
        }
        Ok(Self {
            file: from_file.then_some(path),
            webhook_url,
            public_key,
            allowed_users: f.allowed_users,
            exliar: f.exliar.unwrap_or_else(|| PathBuf::from("/usr/bin/exliar")),
            connect: f.connect.unwrap_or_else(|| "qemu:///system".to_string()),
            discord_api: f
                .discord_api
                .unwrap_or_else(|| "https://discord.com/api/v10".to_string())
                .trim_end_matches('/')
                .to_string(),
            rate_limit: f.rate_limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_key() {
        let k = parse_public_key(&"ab".repeat(32)).ok();
        assert_eq!(k, Some([0xab; 32]));
        assert!(parse_public_key("abc").is_err());
        assert!(parse_public_key(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn environment_overrides_without_a_file() {
        let dir = std::env::temp_dir().join(format!("exliar-discord-none-{}", std::process::id()));
        let env = |k: &str| match k {
            ENV_WEBHOOK => Some("https://discord.com/api/webhooks/1/x".to_string()),
            ENV_PUBLIC_KEY => Some("01".repeat(32)),
            _ => None,
        };
        let c = Config::load(&dir, None, &env).map_err(|e| e.to_string());
        let c = c
            .as_ref()
            .map(|c| (c.file.is_none(), c.webhook_url.is_some(), c.public_key));
        assert_eq!(c, Ok((true, true, Some([1; 32]))));
        // A file named with --config must exist.
        let missing = dir.join("nope.toml");
        assert!(Config::load(&dir, Some(&missing), &env).is_err());
        // A bad key from the environment names the variable.
        let bad = |k: &str| (k == ENV_PUBLIC_KEY).then(|| "xyz".to_string());
        let e = Config::load(&dir, None, &bad).map_err(|e| format!("{e:#}"));
        assert!(
            matches!(&e, Err(m) if m.starts_with(ENV_PUBLIC_KEY)),
            "{e:?}"
        );
    }

    #[test]
    fn debug_redacts() {
        let c = Config {
            file: None,
            webhook_url: Some("https://discord.com/api/webhooks/1/SECRET".into()),
            public_key: Some([1; 32]),
            allowed_users: vec![],
            exliar: "/usr/bin/exliar".into(),
            connect: "qemu:///system".into(),
            discord_api: "x".into(),
            rate_limit: RateLimit::default(),
        };
        let d = format!("{c:?}");
        assert!(!d.contains("SECRET"), "{d}");
        assert!(d.contains("<redacted>"));
    }
}
