//! exliar's plugin protocol (`exliar.plugin/1`): one JSON request on
//! stdin, one JSON response on stdout.

use serde_json::{Value, json};

pub const SCHEMA: &str = "exliar.plugin/1";

/// The event kinds the plugin asks exliar for.
pub const EVENTS: [&str; 8] = [
    "vm-started",
    "vm-stopped",
    "vm-failed",
    "gpu-bound",
    "gpu-unbound",
    "check-finished",
    "txn-applied",
    "txn-rolled-back",
];

/// The `describe` answer.
pub fn describe() -> Value {
    json!({
        "schema": SCHEMA,
        "name": "discord",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "Posts exliar's events (VMs started and stopped, GPUs handed over, checks, transactions) to a Discord webhook; `exliar-discord serve` answers Discord slash commands",
        "events": EVENTS,
        "options": [
            {"name": "webhook_url", "description": "the channel's webhook URL (a secret), in /etc/exliar/discord.toml"},
            {"name": "public_key", "description": "the Discord application's public key (hex), for `serve`"},
            {"name": "allowed_users", "description": "Discord user ids that may run slash commands"},
            {"name": "exliar", "description": "the exliar program `serve` runs (default /usr/bin/exliar)"},
            {"name": "connect", "description": "the libvirt URI for the VM commands (default qemu:///system)"},
            {"name": "rate_limit", "description": "max_retries (3) and max_wait_secs (8) for the webhook's 429 and 5xx answers"},
        ],
        "propose": false,
    })
}

/// What a request asks for.
#[derive(Debug)]
pub enum Request {
    Describe,
    Event(Value),
    Propose,
    Unknown,
}

/// Parses stdin. Err: not a request at all (garbage, wrong schema).
pub fn parse(input: &str) -> Result<Request, String> {
    let v: Value =
        serde_json::from_str(input.trim()).map_err(|e| format!("stdin is not JSON: {e}"))?;
    let Some(obj) = v.as_object() else {
        return Err("stdin is not a JSON object".into());
    };
    match obj.get("schema").and_then(Value::as_str) {
        Some(SCHEMA) => {}
        Some(other) => return Err(format!("unsupported schema {other:?} (expected {SCHEMA})")),
        None => return Err("the request has no \"schema\"".into()),
    }
    Ok(match obj.get("request").and_then(Value::as_str) {
        Some("describe") => Request::Describe,
        Some("propose") => Request::Propose,
        Some("event") => Request::Event(obj.get("event").cloned().unwrap_or(Value::Null)),
        _ => Request::Unknown,
    })
}

pub fn ok() -> Value {
    json!({"schema": SCHEMA, "ok": true})
}

pub fn failed(error: &str) -> Value {
    json!({"schema": SCHEMA, "ok": false, "error": error})
}

pub fn propose() -> Value {
    json!({"schema": SCHEMA, "steps": []})
}

fn s<'a>(ev: &'a Value, key: &str) -> Result<&'a str, String> {
    ev.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the event has no string \"{key}\""))
}

fn list(ev: &Value, key: &str) -> Result<Vec<String>, String> {
    let a = ev
        .get(key)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("the event has no list \"{key}\""))?;
    Ok(a.iter()
        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
        .collect())
}

fn flag(ev: &Value, key: &str) -> Result<bool, String> {
    ev.get(key)
        .and_then(Value::as_bool)
        .ok_or_else(|| format!("the event has no boolean \"{key}\""))
}

/// Markdown that Discord would render is shown as typed.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '*' | '_' | '~' | '`' | '|' | '>' | '#' | '[' | ']'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn gpus(devices: &[String]) -> String {
    let d: Vec<String> = devices.iter().map(|d| esc(d)).collect();
    match d.len() {
        0 => "GPU (no devices)".to_string(),
        _ => format!("GPU {}", d.join(", ")),
    }
}

/// The message for an event.
pub fn message(ev: &Value) -> Result<String, String> {
    if !ev.is_object() {
        return Err("the request has no \"event\" object".into());
    }
    let kind = s(ev, "kind")?;
    let host = esc(ev.get("host").and_then(Value::as_str).unwrap_or("the host"));
    Ok(match kind {
        "vm-started" => format!("🟢 VM {} started on {host}", esc(s(ev, "vm")?)),
        "vm-stopped" => format!("⚪ VM {} stopped on {host}", esc(s(ev, "vm")?)),
        "vm-failed" => {
            let err = ev
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no reason given");
            format!("🔴 VM {} failed on {host}: {}", esc(s(ev, "vm")?), esc(err))
        }
        "gpu-bound" => {
            let d = gpus(&list(ev, "devices")?);
            if flag(ev, "ok")? {
                format!("🎮 {d} handed to vfio-pci on {host}")
            } else {
                format!("⚠️ {d}: handing to vfio-pci failed on {host} (undone)")
            }
        }
        "gpu-unbound" => {
            let d = gpus(&list(ev, "devices")?);
            if flag(ev, "ok")? {
                format!("🖥️ {d} given back to the host's drivers on {host}")
            } else {
                format!("⚠️ {d}: giving back to the host's drivers failed on {host}")
            }
        }
        "check-finished" => {
            if flag(ev, "ready")? {
                format!("✅ check: ready on {host}")
            } else {
                let failing: Vec<String> = list(ev, "failing")?.iter().map(|f| esc(f)).collect();
                if failing.is_empty() {
                    format!("❌ check: not ready on {host}")
                } else {
                    format!("❌ check: not ready on {host} ({})", failing.join(", "))
                }
            }
        }
        "txn-applied" | "txn-rolled-back" => {
            let t = esc(s(ev, "transaction")?);
            let subject = ev
                .get("subject")
                .and_then(Value::as_str)
                .map(|x| format!(" ({})", esc(x)))
                .unwrap_or_default();
            if kind == "txn-applied" {
                format!("📝 transaction {t}{subject} applied on {host}")
            } else {
                format!("↩️ transaction {t}{subject} rolled back on {host}")
            }
        }
        other => return Err(format!("unknown event kind {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let m = |v: Value| message(&v).unwrap_or_else(|e| e);
        assert_eq!(
            m(json!({"kind":"vm-started","vm":"win11","host":"h"})),
            "🟢 VM win11 started on h"
        );
        assert_eq!(
            m(
                json!({"kind":"check-finished","ready":false,"failing":["iommu.cmdline"],"host":"h"})
            ),
            "❌ check: not ready on h (iommu.cmdline)"
        );
        assert_eq!(
            m(json!({"kind":"vm-started"})),
            "the event has no string \"vm\""
        );
        assert_eq!(m(json!({"kind":"x"})), "unknown event kind \"x\"");
        assert_eq!(esc("a_b*c"), "a\\_b\\*c");
    }

    #[test]
    fn parses() {
        assert!(matches!(
            parse(r#"{"schema":"exliar.plugin/1","request":"describe"}"#),
            Ok(Request::Describe)
        ));
        assert!(matches!(
            parse(r#"{"schema":"exliar.plugin/1","request":"x"}"#),
            Ok(Request::Unknown)
        ));
        assert!(parse("garbage").is_err());
        assert!(parse(r#"{"schema":"other/1"}"#).is_err());
    }
}
