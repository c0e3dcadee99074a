//! containerd's `/etc/containerd/config.toml`: CDI is `enable_cdi = true`
//! (and `cdi_spec_dirs`) in the CRI plugin's table, whose name depends on
//! the file's `version`:
//! - 1 (or no `version`, containerd 1.x's oldest form): `[plugins.cri]`;
//! - 2 (containerd 1.x): `[plugins."io.containerd.grpc.v1.cri"]`;
//! - 3 (containerd 2.x): `[plugins."io.containerd.cri.v1.runtime"]`.
//!
//! A new file gets version 2 for containerd 1.7 and 3 for 2.x. The edit goes
//! through `toml_edit`, so the user's comments, order and formatting stay.
//! CDI in containerd serves CRI (the kubelet's path, proven by the probe
//! with Debian 13's containerd 1.7.24): a file that disables the CRI plugin
//! is refused. Files pulled in by `imports` are not read. Only an explicit
//! `enable_cdi = true` counts as configured (containerd 2 may default to
//! it; exliar writes it anyway).

use toml_edit::{Array, DocumentMut, Item, Table, Value};

/// The file, relative to the root.
pub const CONFIG_TOML: &str = "etc/containerd/config.toml";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContainerdError {
    #[error("not valid TOML: {0}")]
    Invalid(String),
    #[error("{0}")]
    Shape(String),
}

/// The CRI plugin table's key under `plugins` for a config version.
pub fn cri_table(version: i64) -> Option<&'static str> {
    match version {
        1 => Some("cri"),
        2 => Some("io.containerd.grpc.v1.cri"),
        3 => Some("io.containerd.cri.v1.runtime"),
        _ => None,
    }
}

/// What config.toml says about CDI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdCdi {
    pub config_version: i64,
    pub table: &'static str,
    pub enable_cdi: Option<bool>,
    pub spec_dirs: Option<Vec<String>>,
}

impl ContainerdCdi {
    pub fn effective_dirs(&self) -> Vec<String> {
        self.spec_dirs
            .clone()
            .unwrap_or_else(|| super::configure::DEFAULT_DIRS.map(String::from).to_vec())
    }
}

fn parse(text: &str) -> Result<DocumentMut, ContainerdError> {
    text.parse::<DocumentMut>()
        .map_err(|e| ContainerdError::Invalid(e.to_string().trim().replace('\n', " ")))
}

fn version_of(doc: &DocumentMut, new_version: i64) -> Result<i64, ContainerdError> {
    match doc.get("version") {
        None if doc.iter().next().is_none() => Ok(new_version),
        None => Ok(1),
        Some(v) => v
            .as_integer()
            .filter(|v| cri_table(*v).is_some())
            .ok_or_else(|| {
                ContainerdError::Shape(format!(
                    "config version {} is not one exliar knows (1, 2 or 3)",
                    v.to_string().trim()
                ))
            }),
    }
}

fn cri_disabled(doc: &DocumentMut) -> bool {
    doc.get("disabled_plugins")
        .and_then(Item::as_array)
        .is_some_and(|a| {
            a.iter().filter_map(Value::as_str).any(|p| {
                matches!(
                    p,
                    "cri" | "io.containerd.grpc.v1.cri" | "io.containerd.cri.v1.runtime"
                )
            })
        })
}

/// Read config.toml's CDI settings. `new_version` is the version a new
/// (empty) file would get.
pub fn read(text: &str, new_version: i64) -> Result<ContainerdCdi, ContainerdError> {
    let doc = parse(text)?;
    let version = version_of(&doc, new_version)?;
    let table = cri_table(version).unwrap_or("cri");
    let cri = doc
        .get("plugins")
        .and_then(Item::as_table_like)
        .and_then(|p| p.get(table));
    let get = |k: &str| cri.and_then(Item::as_table_like).and_then(|t| t.get(k));
    let enable_cdi = match get("enable_cdi") {
        None => None,
        Some(i) => Some(
            i.as_bool()
                .ok_or_else(|| ContainerdError::Shape("enable_cdi is not true or false".into()))?,
        ),
    };
    let spec_dirs = match get("cdi_spec_dirs") {
        None => None,
        Some(i) => Some(
            i.as_array()
                .and_then(|a| a.iter().map(|v| v.as_str().map(String::from)).collect())
                .ok_or_else(|| {
                    ContainerdError::Shape("cdi_spec_dirs is not a list of strings".into())
                })?,
        ),
    };
    if cri.is_some_and(|c| c.as_table_like().is_none()) {
        return Err(ContainerdError::Shape(format!(
            "plugins.\"{table}\" is not a table"
        )));
    }
    Ok(ContainerdCdi {
        config_version: version,
        table,
        enable_cdi,
        spec_dirs,
    })
}

/// Set `key` to `value` in `t`: an existing key keeps its place, its
/// comments and its spacing; a new one gets `indent`.
fn set(t: &mut dyn toml_edit::TableLike, key: &str, mut value: Value, indent: Option<&str>) {
    if let Some(v) = t.get_mut(key).and_then(Item::as_value_mut) {
        *value.decor_mut() = v.decor().clone();
        *v = value;
        return;
    }
    t.insert(key, Item::Value(value.decorated(" ", "")));
    if let (Some(i), Some(mut k)) = (indent, t.key_mut(key)) {
        k.leaf_decor_mut().set_prefix(i);
    }
}

/// config.toml's text with `enable_cdi = true` and `dirs` among
/// `cdi_spec_dirs` in the CRI table (`Ok(None)`: both there already).
/// `new_version` is the config version of a new file (2 for containerd 1.7,
/// 3 for 2.x).
pub fn merge(
    text: Option<&str>,
    new_version: i64,
    dirs: &[String],
) -> Result<Option<String>, ContainerdError> {
    let text = text.unwrap_or("");
    let before = read(text, new_version)?;
    let mut doc = parse(text)?;
    if cri_disabled(&doc) {
        return Err(ContainerdError::Shape(
            "disabled_plugins turns the CRI plugin off; containerd injects CDI devices through CRI: enable it first".into(),
        ));
    }
    let want_dirs = match &before.spec_dirs {
        Some(have) => {
            let missing: Vec<&String> = dirs.iter().filter(|d| !have.contains(d)).collect();
            (!missing.is_empty()).then(|| have.iter().chain(missing).cloned().collect::<Vec<_>>())
        }
        None => Some(dirs.to_vec()),
    };
    if before.enable_cdi == Some(true) && want_dirs.is_none() {
        return Ok(None);
    }
    if doc.iter().next().is_none() {
        doc.insert("version", toml_edit::value(new_version));
    }
    let plugins = doc
        .entry("plugins")
        .or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        })
        .as_table_like_mut()
        .ok_or_else(|| ContainerdError::Shape("\"plugins\" is not a table".into()))?;
    let cri = plugins
        .entry(before.table)
        .or_insert(Item::Table(Table::new()))
        .as_table_like_mut()
        .ok_or_else(|| {
            ContainerdError::Shape(format!("plugins.\"{}\" is not a table", before.table))
        })?;
    // The indentation of the table's keys, for a key added to it.
    let indent = cri
        .iter()
        .next()
        .and_then(|(k, _)| cri.get_key_value(k))
        .and_then(|(k, _)| k.leaf_decor().prefix().and_then(|p| p.as_str()))
        .map(|p| p.rsplit('\n').next().unwrap_or("").to_string())
        .filter(|p| p.bytes().all(|b| b == b' ' || b == b'\t'));
    if before.enable_cdi != Some(true) {
        set(cri, "enable_cdi", Value::from(true), indent.as_deref());
    }
    if let Some(d) = want_dirs {
        let arr: Array = d.iter().map(String::as_str).collect();
        set(cri, "cdi_spec_dirs", Value::Array(arr), indent.as_deref());
    }
    let out = doc.to_string();
    let now = read(&out, new_version)?;
    if now.enable_cdi != Some(true) || !dirs.iter().all(|d| now.effective_dirs().contains(d)) {
        return Err(ContainerdError::Shape(
            "exliar's edit of this file would not be exact; add the settings by hand".into(),
        ));
    }
    Ok(Some(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dirs() -> Vec<String> {
        vec!["/etc/cdi".into(), "/var/run/cdi".into()]
    }

    #[test]
    fn new_files_per_version() {
        let v2 = merge(None, 2, &dirs()).unwrap().unwrap();
        assert_eq!(
            v2,
            "version = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\"]\nenable_cdi = true\ncdi_spec_dirs = [\"/etc/cdi\", \"/var/run/cdi\"]\n"
        );
        assert_eq!(merge(Some(&v2), 2, &dirs()).unwrap(), None);
        let v3 = merge(Some(""), 3, &dirs()).unwrap().unwrap();
        assert!(
            v3.contains("[plugins.\"io.containerd.cri.v1.runtime\"]"),
            "{v3}"
        );
        assert_eq!(merge(Some(&v3), 3, &dirs()).unwrap(), None);
    }

    #[test]
    fn keeps_comments_and_order() {
        let t = "# my containerd\nversion = 2\nroot = \"/var/lib/containerd\" # keep me\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    # CDI was off\n    enable_cdi = false\n    sandbox_image = \"registry.k8s.io/pause:3.8\"\n    cdi_spec_dirs = [\"/opt/cdi\"]\n\n  [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n    snapshotter = \"overlayfs\"\n";
        let out = merge(Some(t), 2, &dirs()).unwrap().unwrap();
        assert_eq!(
            out,
            "# my containerd\nversion = 2\nroot = \"/var/lib/containerd\" # keep me\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    # CDI was off\n    enable_cdi = true\n    sandbox_image = \"registry.k8s.io/pause:3.8\"\n    cdi_spec_dirs = [\"/opt/cdi\", \"/etc/cdi\", \"/var/run/cdi\"]\n\n  [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n    snapshotter = \"overlayfs\"\n"
        );
        assert_eq!(merge(Some(&out), 2, &dirs()).unwrap(), None);
    }

    #[test]
    fn version_1_and_3_tables() {
        let t = "oom_score = 0\n";
        let out = merge(Some(t), 2, &dirs()).unwrap().unwrap();
        assert!(out.starts_with("oom_score = 0\n"), "{out}");
        assert!(out.contains("[plugins.cri]"), "{out}");
        assert_eq!(read(&out, 2).unwrap().enable_cdi, Some(true));
        let t = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n    sandbox_image = \"p\"\n";
        assert_eq!(
            merge(Some(t), 2, &dirs()).unwrap().as_deref(),
            Some(
                "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n    sandbox_image = \"p\"\n    enable_cdi = true\n    cdi_spec_dirs = [\"/etc/cdi\", \"/var/run/cdi\"]\n"
            )
        );
        let t = "version = 3\n\n[plugins.'io.containerd.cri.v1.runtime']\n  enable_cdi = true\n  cdi_spec_dirs = ['/etc/cdi', '/var/run/cdi']\n";
        assert_eq!(merge(Some(t), 3, &dirs()).unwrap(), None);
    }

    #[test]
    fn refuses() {
        for (t, why) in [
            ("version = 2\n[plugins\n", "not valid TOML"),
            ("version = 7\n", "not one exliar knows"),
            ("disabled_plugins = [\"cri\"]\n", "CRI plugin off"),
            (
                "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\nenable_cdi = \"yes\"\n",
                "not true or false",
            ),
            (
                "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\ncdi_spec_dirs = \"/etc/cdi\"\n",
                "not a list",
            ),
            ("version = 2\nplugins = 3\n", "not a table"),
        ] {
            let e = merge(Some(t), 2, &dirs()).unwrap_err().to_string();
            assert!(e.contains(why), "{t}: {e}");
        }
    }
}
