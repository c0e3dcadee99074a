//! Docker's `/etc/docker/daemon.json`: CDI is on with `"features": {"cdi":
//! true}`, and dockerd reads specs from `cdi-spec-dirs` (default `/etc/cdi`
//! and `/var/run/cdi`). The merge edits the user's text in place
//! ([`super::jsonedit`]): every other key, its order and its formatting
//! stay. Proven with Debian 13's dockerd 26.1.5 by the probe, and by
//! `dockerd --validate` in tests/runtime.rs.
//!
//! Only an explicit `features.cdi: true` counts as configured: newer Docker
//! releases may turn CDI on by default, but exliar does not rely on a
//! default it has not measured, and writing it explicitly is harmless.

use super::jsonedit::{self, Object, ScanError};

/// The file, relative to the root.
pub const DAEMON_JSON: &str = "etc/docker/daemon.json";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DockerError {
    #[error("{0}")]
    Scan(#[from] ScanError),
    #[error("{0}")]
    Shape(String),
}

/// What daemon.json says about CDI.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DockerCdi {
    /// `features.cdi` as written (`None`: absent).
    pub cdi: Option<bool>,
    /// `cdi-spec-dirs` as written (`None`: absent: dockerd's defaults).
    pub spec_dirs: Option<Vec<String>>,
}

impl DockerCdi {
    /// The directories dockerd reads specs from.
    pub fn effective_dirs(&self) -> Vec<String> {
        self.spec_dirs
            .clone()
            .unwrap_or_else(|| super::configure::DEFAULT_DIRS.map(String::from).to_vec())
    }
}

fn object_of(
    text: &str,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>, DockerError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    match jsonedit::validate(text)? {
        serde_json::Value::Object(m) => Ok(Some(m)),
        _ => Err(ScanError::NotObject.into()),
    }
}

fn no_duplicates(o: &Object, what: &str) -> Result<(), DockerError> {
    let mut seen = std::collections::BTreeSet::new();
    for m in &o.members {
        if !seen.insert(m.key.as_str()) {
            return Err(DockerError::Shape(format!(
                "key {:?} appears twice{what}; dockerd would take the last one: fix it by hand",
                m.key
            )));
        }
    }
    Ok(())
}

/// Read what daemon.json's text says about CDI (an empty file is `{}`, as
/// dockerd treats it).
pub fn read(text: &str) -> Result<DockerCdi, DockerError> {
    let Some(m) = object_of(text)? else {
        return Ok(DockerCdi::default());
    };
    let cdi = match m.get("features") {
        None => None,
        Some(serde_json::Value::Object(f)) => match f.get("cdi") {
            None => None,
            Some(serde_json::Value::Bool(b)) => Some(*b),
            Some(_) => {
                return Err(DockerError::Shape(
                    "features.cdi is not true or false".into(),
                ));
            }
        },
        Some(_) => return Err(DockerError::Shape("\"features\" is not an object".into())),
    };
    let spec_dirs = match m.get("cdi-spec-dirs") {
        None => None,
        Some(serde_json::Value::Array(a)) => Some(
            a.iter()
                .map(|v| v.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    DockerError::Shape("cdi-spec-dirs holds something other than strings".into())
                })?,
        ),
        Some(_) => return Err(DockerError::Shape("cdi-spec-dirs is not a list".into())),
    };
    Ok(DockerCdi { cdi, spec_dirs })
}

fn array(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| serde_json::Value::String(s.clone()).to_string())
        .collect();
    format!("[{}]", quoted.join(", "))
}

fn fresh(dirs: &[String]) -> String {
    format!(
        "{{\n  \"features\": {{\n    \"cdi\": true\n  }},\n  \"cdi-spec-dirs\": {}\n}}\n",
        array(dirs)
    )
}

/// daemon.json's text with CDI on and `dirs` among `cdi-spec-dirs` (added
/// after the user's own, which stay); `Ok(None)` when it has both already.
/// Refuses a text that is not a JSON object, has `features` or
/// `cdi-spec-dirs` of another shape, or a duplicate key where it would edit.
pub fn merge(text: Option<&str>, dirs: &[String]) -> Result<Option<String>, DockerError> {
    let text = text.unwrap_or("");
    let before = read(text)?;
    let Some(orig) = object_of(text)? else {
        return Ok(Some(fresh(dirs)));
    };
    let top = jsonedit::top(text)?;
    if top.members.is_empty() {
        return Ok(Some(fresh(dirs)));
    }
    no_duplicates(&top, "")?;
    let indent = top
        .members
        .first()
        .and_then(|m| jsonedit::line_indent(text, m.key_start))
        .map(str::to_string);
    let mut out = text.to_string();
    if before.cdi != Some(true) {
        match top.members.iter().find(|m| m.key == "features") {
            Some(f) => {
                let fo = jsonedit::object(&out, f.value.0)?;
                no_duplicates(&fo, " in \"features\"")?;
                out = match fo.members.iter().find(|m| m.key == "cdi") {
                    Some(c) => jsonedit::replace(&out, c.value, "true"),
                    None => jsonedit::insert_member(&out, &fo, "cdi", "true"),
                };
            }
            None => {
                let value = match &indent {
                    Some(i) => format!("{{\n{i}{i}\"cdi\": true\n{i}}}"),
                    None => "{\"cdi\": true}".to_string(),
                };
                out = jsonedit::insert_member(&out, &top, "features", &value);
            }
        }
    }
    let top = jsonedit::top(&out)?;
    match (
        &before.spec_dirs,
        top.members.iter().find(|m| m.key == "cdi-spec-dirs"),
    ) {
        (Some(have), Some(m)) => {
            let missing: Vec<String> = dirs.iter().filter(|d| !have.contains(d)).cloned().collect();
            if !missing.is_empty() {
                let all: Vec<String> = have.iter().cloned().chain(missing).collect();
                out = jsonedit::replace(&out, m.value, &array(&all));
            }
        }
        _ => out = jsonedit::insert_member(&out, &top, "cdi-spec-dirs", &array(dirs)),
    }
    if out == text {
        return Ok(None);
    }
    // The edit must change nothing but these two settings.
    let after = object_of(&out)?.unwrap_or_default();
    let strip = |m: &serde_json::Map<String, serde_json::Value>| {
        let mut m = m.clone();
        m.remove("cdi-spec-dirs");
        if let Some(serde_json::Value::Object(f)) = m.get_mut("features") {
            f.remove("cdi");
        }
        if m.get("features")
            .is_some_and(|f| f.as_object().is_some_and(|f| f.is_empty()))
        {
            m.remove("features");
        }
        m
    };
    let now = read(&out)?;
    if strip(&orig) != strip(&after)
        || now.cdi != Some(true)
        || !dirs.iter().all(|d| now.effective_dirs().contains(d))
    {
        return Err(DockerError::Shape(
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
    fn absent_or_empty_gets_a_fresh_file() {
        let want = "{\n  \"features\": {\n    \"cdi\": true\n  },\n  \"cdi-spec-dirs\": [\"/etc/cdi\", \"/var/run/cdi\"]\n}\n";
        assert_eq!(merge(None, &dirs()).unwrap().as_deref(), Some(want));
        assert_eq!(merge(Some(" \n"), &dirs()).unwrap().as_deref(), Some(want));
        assert_eq!(merge(Some("{}\n"), &dirs()).unwrap().as_deref(), Some(want));
        // Idempotent.
        assert_eq!(merge(Some(want), &dirs()).unwrap(), None);
    }

    #[test]
    fn keeps_every_other_key_in_order() {
        let t = "{\n    \"log-driver\": \"journald\",\n    \"features\": {\"buildkit\": true},\n    \"storage-driver\": \"overlay2\"\n}\n";
        let out = merge(Some(t), &dirs()).unwrap().unwrap();
        assert_eq!(
            out,
            "{\n    \"log-driver\": \"journald\",\n    \"features\": {\"buildkit\": true, \"cdi\": true},\n    \"storage-driver\": \"overlay2\",\n    \"cdi-spec-dirs\": [\"/etc/cdi\", \"/var/run/cdi\"]\n}\n"
        );
        assert_eq!(merge(Some(&out), &dirs()).unwrap(), None);
    }

    #[test]
    fn turns_false_on_and_adds_missing_dirs_after_the_users() {
        let t = "{\"features\":{\"cdi\":false},\"cdi-spec-dirs\":[\"/opt/cdi\",\"/etc/cdi\"]}";
        let out = merge(Some(t), &dirs()).unwrap().unwrap();
        assert_eq!(
            out,
            "{\"features\":{\"cdi\":true},\"cdi-spec-dirs\":[\"/opt/cdi\", \"/etc/cdi\", \"/var/run/cdi\"]}"
        );
        assert_eq!(merge(Some(&out), &dirs()).unwrap(), None);
        let t = "{\"debug\": true}";
        assert_eq!(
            merge(Some(t), &dirs()).unwrap().as_deref(),
            Some(
                "{\"debug\": true, \"features\": {\"cdi\": true}, \"cdi-spec-dirs\": [\"/etc/cdi\", \"/var/run/cdi\"]}"
            )
        );
    }

    #[test]
    fn refuses_what_it_cannot_edit_exactly() {
        for (t, why) in [
            ("{\"debug\": true,", "not valid JSON"),
            ("not json", "not valid JSON"),
            ("[1, 2]", "not a JSON object"),
            ("{\"features\": true}", "not an object"),
            ("{\"features\": {\"cdi\": \"yes\"}}", "not true or false"),
            ("{\"cdi-spec-dirs\": \"/etc/cdi\"}", "not a list"),
            ("{\"cdi-spec-dirs\": [1]}", "other than strings"),
            ("{\"a\": 1, \"a\": 2}", "appears twice"),
            (
                "{\"features\": {\"cdi\": false, \"cdi\": false}}",
                "appears twice",
            ),
        ] {
            let e = merge(Some(t), &dirs()).unwrap_err().to_string();
            assert!(e.contains(why), "{t}: {e}");
        }
    }

    /// Every one-byte deletion or change of a real-looking file: never a
    /// panic; an edit, when made, is complete and the next finds nothing.
    #[test]
    fn mutations_never_panic_and_edits_are_idempotent() {
        let base = "{\n  \"log-opts\": {\"max-size\": \"10m\"},\n  \"features\": {\"cdi\": false},\n  \"cdi-spec-dirs\": [\"/opt/cdi\"],\n  \"x\\\"y\": [1, -2.5e3, null, true]\n}\n";
        let mut edited = 0;
        for i in 0..base.len() {
            let mut variants = vec![format!("{}{}", &base[..i], &base[i + 1..])];
            for c in ['{', '}', '"', ',', ':', '[', ']', '\\', '1', ' '] {
                variants.push(format!("{}{c}{}", &base[..i], &base[i + 1..]));
            }
            for t in variants {
                if let Ok(Some(out)) = merge(Some(&t), &dirs()) {
                    edited += 1;
                    assert_eq!(read(&out).unwrap().cdi, Some(true), "{t}");
                    assert_eq!(merge(Some(&out), &dirs()).unwrap(), None, "{t}");
                }
            }
        }
        assert!(edited > 50, "{edited}");
    }

    #[test]
    fn reads_state() {
        assert_eq!(read("").unwrap(), DockerCdi::default());
        let s = read("{\"features\":{\"cdi\":true}}").unwrap();
        assert_eq!(s.cdi, Some(true));
        assert_eq!(s.effective_dirs(), dirs());
    }
}
