//! `exliar plugin list|show|run|new`.

use std::path::Path;

use clap::{Args, Subcommand};

use super::{exit, term};
use crate::plugin::{self, Config, Found};

#[derive(Debug, Args)]
pub struct PluginCmd {
    #[command(subcommand)]
    pub command: PluginSub,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum PluginSub {
    /// The plugins under the root (/usr/lib/exliar/plugins, /etc/exliar/plugins), whether each may run and why not, and what each asks for
    List {
        /// Print the versioned JSON document (exliar.plugin-list/1)
        #[arg(long)]
        json: bool,
    },
    /// One plugin's `describe` answer
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Send one plugin an event (`test`, `vm-started`, …) with the fields given, and print its answer
    Run {
        name: String,
        /// The event kind (one of: inventory, check-finished, vm-started, vm-stopped, vm-failed, gpu-bound, gpu-unbound, txn-applied, txn-rolled-back, test)
        event: String,
        /// An event field, `KEY=VALUE` (a string), repeatable
        #[arg(long = "field", value_name = "KEY=VALUE")]
        fields: Vec<String>,
    },
    /// Print a minimal plugin in POSIX sh to start from
    New { name: String },
}

fn find(root: &Path) -> anyhow::Result<(Config, Vec<Found>)> {
    let cfg = Config::read(root).map_err(anyhow::Error::msg)?;
    let found = plugin::find(root, &cfg);
    Ok((cfg, found))
}

fn named<'a>(found: &'a [Found], name: &str) -> anyhow::Result<&'a Found> {
    found
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| plugin::RunError::NoSuch(name.to_string()).into())
}

pub fn run(root: &Path, cmd: &PluginCmd) -> anyhow::Result<u8> {
    match &cmd.command {
        PluginSub::List { json } => list(root, *json),
        PluginSub::Show { name, json } => {
            let (cfg, found) = find(root)?;
            let p = named(&found, name)?;
            let d = plugin::describe(root, &cfg, p)?;
            if *json {
                term::out(&format!("{}\n", serde_json::to_string_pretty(&d)?))?;
            } else {
                term::out(&format!(
                    "{} {} ({})\n  {}\n  events: {}\n  proposes plan steps: {}\n",
                    d.name,
                    d.version,
                    p.path,
                    d.description,
                    if d.events.is_empty() {
                        "none".into()
                    } else {
                        d.events.join(", ")
                    },
                    if d.propose { "yes" } else { "no" }
                ))?;
                for o in &d.options {
                    term::out(&format!("  option: {o}\n"))?;
                }
            }
            Ok(exit::OK)
        }
        PluginSub::Run {
            name,
            event,
            fields,
        } => {
            if !plugin::EVENTS.contains(&event.as_str()) {
                anyhow::bail!(
                    "{event}: not an event (one of: {})",
                    plugin::EVENTS.join(", ")
                );
            }
            let mut f = serde_json::Map::new();
            for kv in fields {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--field {kv}: not KEY=VALUE"))?;
                f.insert(k.to_string(), serde_json::Value::String(v.to_string()));
            }
            let (cfg, found) = find(root)?;
            let p = named(&found, name)?;
            let ev = plugin::event(event, serde_json::Value::Object(f));
            let req =
                serde_json::json!({"schema": plugin::SCHEMA, "request": "event", "event": ev});
            let ans = plugin::run(root, &cfg, p, &req)?;
            term::out(&format!("{}\n", serde_json::to_string_pretty(&ans)?))?;
            Ok(if ans.get("ok").and_then(|o| o.as_bool()) == Some(false) {
                exit::FINDINGS
            } else {
                exit::OK
            })
        }
        PluginSub::New { name } => {
            if !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
                || name.is_empty()
            {
                anyhow::bail!("{name}: a plugin name is [a-z0-9_-]+");
            }
            term::out(&plugin::skeleton(name))?;
            Ok(exit::OK)
        }
    }
}

fn list(root: &Path, json: bool) -> anyhow::Result<u8> {
    let (cfg, found) = find(root)?;
    let mut rows = Vec::new();
    for p in &found {
        let d = if p.usable() {
            Some(plugin::describe(root, &cfg, p).map_err(|e| e.to_string()))
        } else {
            None
        };
        rows.push((p, d));
    }
    if json {
        let plugins: Vec<serde_json::Value> = rows
            .iter()
            .map(|(p, d)| {
                serde_json::json!({
                    "name": p.name,
                    "path": p.path,
                    "usable": p.usable() && matches!(d, Some(Ok(_))),
                    "refused": p.refused,
                    "describe": d.as_ref().and_then(|d| d.as_ref().ok()),
                    "error": d.as_ref().and_then(|d| d.as_ref().err()),
                })
            })
            .collect();
        term::out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&serde_json::json!({
                "schema": "exliar.plugin-list/1",
                "dirs": plugin::DIRS.iter().map(|d| format!("/{d}")).collect::<Vec<_>>(),
                "user": cfg.user,
                "timeout_s": cfg.timeout_s,
                "plugins": plugins,
            }))?
        ))?;
        return Ok(exit::OK);
    }
    if rows.is_empty() {
        term::out(&format!(
            "No plugins (looked in {}).\n",
            plugin::DIRS.map(|d| format!("/{d}")).join(" and ")
        ))?;
        return Ok(exit::OK);
    }
    let mut s = String::new();
    for (p, d) in &rows {
        match d {
            Some(Ok(d)) => s.push_str(&format!(
                "{:<16} {:<10} {}  events: {}{}\n  {}\n",
                p.name,
                d.version,
                p.path,
                if d.events.is_empty() {
                    "none".into()
                } else {
                    d.events.join(",")
                },
                if d.propose {
                    "  proposes plan steps"
                } else {
                    ""
                },
                d.description
            )),
            Some(Err(e)) => s.push_str(&format!("{:<16} BROKEN     {}  {e}\n", p.name, p.path)),
            None => s.push_str(&format!(
                "{:<16} REFUSED    {}  {}\n",
                p.name,
                p.path,
                p.refused.join("; ")
            )),
        }
    }
    s.push_str(&format!(
        "Plugins run as `{}`, {} s at most each.\n",
        cfg.user, cfg.timeout_s
    ));
    term::out(&s)?;
    Ok(exit::OK)
}
