//! Pop!_OS kernelstub: `/etc/kernelstub/configuration` is read (strict
//! JSON, as Python's `json.load` reads it) to know what is there; changes go
//! through the `kernelstub` command, never by writing the JSON.

use super::EditError;
use super::params::{Decision, Existing, decide, split};

/// What `/etc/kernelstub/configuration` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelstubConfig {
    /// `config_rev` of the section read (3: `kernel_options` is a list;
    /// ≤ 2: one space-separated string, which kernelstub converts on load).
    pub config_rev: Option<u64>,
    /// The section the options came from: `user` (what kernelstub uses and
    /// changes), or `default` when there is no `user` section yet.
    pub section: String,
    pub kernel_options: Vec<String>,
    pub esp_path: Option<String>,
}

/// Read `/etc/kernelstub/configuration`. A syntax error (comments, the
/// trailing `},` of the upstream SAMPLE) is an error naming its line.
pub fn read_config(text: &str) -> Result<KernelstubConfig, EditError> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        EditError::new(
            e.line(),
            {
                let msg = e.to_string();
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                format!(
                    "not valid JSON (column {}): {msg}; kernelstub reads this file with Python's json.load",
                    e.column()
                )
            },
        )
    })?;
    let obj = v
        .as_object()
        .ok_or_else(|| EditError::new(1, "the configuration is not a JSON object"))?;
    let (section, sec) = match (obj.get("user"), obj.get("default")) {
        (Some(u), _) => ("user", u),
        (None, Some(d)) => ("default", d),
        (None, None) => {
            return Err(EditError::new(1, "no \"user\" or \"default\" section"));
        }
    };
    let line_of_key = |k: &str| {
        text.lines()
            .position(|l| l.contains(&format!("\"{k}\"")))
            .map(|i| i + 1)
            .unwrap_or(0)
    };
    let config_rev = sec.get("config_rev").and_then(|r| r.as_u64());
    let kernel_options = match sec.get("kernel_options") {
        None => Vec::new(),
        Some(serde_json::Value::String(s)) => split(s).map_err(|e| {
            EditError::new(
                line_of_key("kernel_options"),
                format!("kernel_options: {}", e.message),
            )
        })?,
        Some(serde_json::Value::Array(a)) => {
            let mut out = Vec::new();
            for x in a {
                match x.as_str() {
                    Some(s) => out.push(s.to_string()),
                    None => {
                        return Err(EditError::new(
                            line_of_key("kernel_options"),
                            format!("kernel_options holds a non-string: {x}"),
                        ));
                    }
                }
            }
            out
        }
        Some(other) => {
            return Err(EditError::new(
                line_of_key("kernel_options"),
                format!("kernel_options is neither a list nor a string: {other}"),
            ));
        }
    };
    Ok(KernelstubConfig {
        config_rev,
        section: section.to_string(),
        kernel_options,
        esp_path: sec
            .get("esp_path")
            .and_then(|p| p.as_str())
            .map(str::to_string),
    })
}

/// The `kernelstub` commands (argv) that add and remove parameters:
/// `kernelstub -d "…"` for what exliar removes (its own older values
/// included), then `kernelstub -a "…"`. kernelstub then rewrites the
/// systemd-boot entry on the ESP itself. Conflicts with the user's options
/// become warnings in the decision.
pub fn kernelstub_argv(
    existing: &[String],
    add: &[String],
    remove: &[String],
) -> (Vec<Vec<String>>, Decision) {
    let ex: Vec<Existing> = existing
        .iter()
        .map(|t| Existing::here(t, "/etc/kernelstub/configuration".into()))
        .collect();
    let d = decide(&ex, add, remove);
    let mut cmds = Vec::new();
    if !d.removed.is_empty() {
        cmds.push(vec!["kernelstub".into(), "-d".into(), d.removed.join(" ")]);
    }
    if !d.added.is_empty() {
        cmds.push(vec!["kernelstub".into(), "-a".into(), d.added.join(" ")]);
    }
    (cmds, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rev2_string_and_rev3_list() {
        let c = read_config(r#"{"user": {"kernel_options": "quiet splash", "config_rev": 2}}"#)
            .unwrap();
        assert_eq!(c.kernel_options, vec!["quiet", "splash"]);
        let c =
            read_config("{\"default\": {\"kernel_options\": [\"a\"], \"config_rev\": 3}}").unwrap();
        assert_eq!((c.section.as_str(), c.kernel_options.len()), ("default", 1));
        let e = read_config("{\n \"user\": {},\n}").unwrap_err();
        assert_eq!(e.line, 3);
    }

    #[test]
    fn commands() {
        let ex = vec!["quiet".to_string(), "vfio-pci.ids=1:2".to_string()];
        let (c, _) = kernelstub_argv(
            &ex,
            &[
                "vfio-pci.ids=1:2,3:4".into(),
                "iommu=pt".into(),
                "quiet".into(),
            ],
            &["vfio-pci.ids=1:2".into()],
        );
        assert_eq!(
            c,
            vec![
                vec![
                    "kernelstub".to_string(),
                    "-d".into(),
                    "vfio-pci.ids=1:2".into()
                ],
                vec![
                    "kernelstub".to_string(),
                    "-a".into(),
                    "vfio-pci.ids=1:2,3:4 iommu=pt".into()
                ],
            ]
        );
    }
}
