//! Discord's interactions: the signature check, the slash commands and
//! what each runs (exliar with argv, never a shell), and the summaries.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{Value, json};

/// How far a request's timestamp may be from now, seconds (replays).
pub const MAX_SKEW_SECS: i64 = 300;

/// Checks `X-Signature-Ed25519` (hex) over timestamp + body.
pub fn verify(
    key: &[u8; 32],
    signature_hex: &str,
    timestamp: &str,
    body: &[u8],
    now_unix: i64,
) -> Result<(), &'static str> {
    let vk = VerifyingKey::from_bytes(key).map_err(|_| "the configured public key is not valid")?;
    let sig = hex64(signature_hex).ok_or("the signature is not 64 bytes of hex")?;
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| "the timestamp is not a number")?;
    let mut msg = Vec::with_capacity(timestamp.len() + body.len());
    msg.extend_from_slice(timestamp.as_bytes());
    msg.extend_from_slice(body);
    vk.verify_strict(&msg, &Signature::from_bytes(&sig))
        .map_err(|_| "bad signature")?;
    if (now_unix - ts).abs() > MAX_SKEW_SECS {
        return Err("the timestamp is too old or in the future");
    }
    Ok(())
}

fn hex64(s: &str) -> Option<[u8; 64]> {
    let s = s.trim();
    if s.len() != 128 {
        return None;
    }
    let mut out = [0u8; 64];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A slash command, validated.
#[derive(Debug, PartialEq)]
pub enum Command {
    VmList,
    VmStart(String),
    VmStop(String),
    Status,
}

/// A name libvirt and exliar take: letters, digits, `._+-`, not starting
/// with `-` or `.` (never an option), at most 64 characters.
pub fn valid_vm_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'+' | b'-'))
}

fn option<'a>(opts: &'a Value, name: &str) -> Option<&'a Value> {
    opts.as_array()?
        .iter()
        .find(|o| o.get("name").and_then(Value::as_str) == Some(name))
}

/// The command in an APPLICATION_COMMAND's `data`. Err: what to tell the
/// user.
pub fn command(data: &Value) -> Result<Command, String> {
    match data.get("name").and_then(Value::as_str) {
        Some("status") => Ok(Command::Status),
        Some("vm") => {
            let opts = data.get("options").unwrap_or(&Value::Null);
            let sub = opts
                .as_array()
                .and_then(|a| a.first())
                .ok_or("/vm needs a subcommand: list, start or stop")?;
            let sub_name = sub.get("name").and_then(Value::as_str).unwrap_or("");
            let vm_name = || -> Result<String, String> {
                let n = option(sub.get("options").unwrap_or(&Value::Null), "name")
                    .and_then(|o| o.get("value"))
                    .and_then(Value::as_str)
                    .ok_or(format!("/vm {sub_name} needs name:NAME"))?;
                if valid_vm_name(n) {
                    Ok(n.to_string())
                } else {
                    Err("not a VM name (letters, digits, . _ + -; at most 64)".to_string())
                }
            };
            match sub_name {
                "list" => Ok(Command::VmList),
                "start" => Ok(Command::VmStart(vm_name()?)),
                "stop" => Ok(Command::VmStop(vm_name()?)),
                other => Err(format!("unknown subcommand /vm {other}")),
            }
        }
        Some(other) => Err(format!("unknown command /{other}")),
        None => Err("no command".to_string()),
    }
}

/// The user who sent it: `member.user.id` in a server, `user.id` in a DM.
pub fn user_id(interaction: &Value) -> Option<&str> {
    interaction
        .pointer("/member/user/id")
        .or_else(|| interaction.pointer("/user/id"))
        .and_then(Value::as_str)
}

/// exliar's argv (after the program) for a command.
pub fn argv(cmd: &Command, root: &Path, connect: &str) -> Vec<String> {
    let mut v = Vec::new();
    if root != Path::new("/") {
        v.push("--root".to_string());
        v.push(root.display().to_string());
    }
    let s = |x: &str| x.to_string();
    match cmd {
        Command::VmList => v.extend([s("vm"), s("list"), s("--json"), s("--connect"), s(connect)]),
        Command::VmStart(n) | Command::VmStop(n) => {
            let action = if matches!(cmd, Command::VmStart(_)) {
                "start"
            } else {
                "stop"
            };
            v.extend([
                s("vm"),
                s(action),
                n.clone(),
                s("--json"),
                s("--connect"),
                s(connect),
            ]);
        }
        Command::Status => v.extend([s("status"), s("--json")]),
    }
    v
}

/// What exliar printed and how it exited.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs exliar (argv, no shell, environment kept as small as a plugin's).
pub async fn run(exliar: &PathBuf, args: &[String]) -> Run {
    let out = tokio::process::Command::new(exliar)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    match out {
        Ok(o) => Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        },
        Err(e) => Run {
            code: None,
            stdout: String::new(),
            stderr: format!("cannot run {}: {e}", exliar.display()),
        },
    }
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("?")
}

/// A few lines for the user from what exliar answered.
pub fn summary(cmd: &Command, run: &Run) -> String {
    let json: Option<Value> = serde_json::from_str(run.stdout.trim()).ok();
    let Some(j) = json else {
        let why = run
            .stderr
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no output");
        return format!(
            "exliar failed (exit {}): {why}",
            run.code.map_or("-".into(), |c| c.to_string())
        );
    };
    match cmd {
        Command::VmList => {
            let vms = j
                .get("vms")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut out = format!("VMs on {} ({}):", str_of(&j, "connect"), vms.len());
            for vm in &vms {
                out.push_str(&format!(
                    "\n• {} — {}",
                    str_of(vm, "name"),
                    str_of(vm, "state")
                ));
                if let Some(g) = vm.get("gpu").and_then(Value::as_str) {
                    out.push_str(&format!(" (GPU {g})"));
                }
            }
            out
        }
        Command::VmStart(_) | Command::VmStop(_) => {
            let mut out = format!(
                "VM {}: {} {}",
                str_of(&j, "name"),
                str_of(&j, "action"),
                str_of(&j, "result")
            );
            if let Some(s) = j.get("state").and_then(Value::as_str) {
                out.push_str(&format!(" (now {s})"));
            }
            for p in j
                .get("problems")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let text = p.as_str().map_or_else(
                    || {
                        p.get("message")
                            .or(p.get("problem"))
                            .and_then(Value::as_str)
                            .map_or_else(|| p.to_string(), str::to_string)
                    },
                    str::to_string,
                );
                out.push_str(&format!("\n• {text}"));
            }
            out
        }
        Command::Status => {
            let n = |k: &str| j.get(k).and_then(Value::as_array).map_or(0, Vec::len);
            let vfio: Vec<&str> = j
                .get("vfio_devices")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|d| {
                    d.as_str()
                        .or(d.get("address").and_then(Value::as_str))
                        .unwrap_or("?")
                })
                .collect();
            let mut out = format!(
                "on vfio-pci: {}{}\nheld by exliar: {}",
                vfio.len(),
                if vfio.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", vfio.join(", "))
                },
                n("runtime_bindings")
            );
            match j.get("boot_isolation") {
                Some(b) if b.is_object() => out.push_str(&format!(
                    "\nboot isolation: GPU {} (transaction {})",
                    str_of(b, "gpu"),
                    str_of(b, "transaction")
                )),
                _ => out.push_str("\nboot isolation: none"),
            }
            if let Some(u) = j.get("unfinished_transaction").filter(|u| u.is_object()) {
                out.push_str(&format!(
                    "\n⚠️ unfinished transaction {} ({}): run exliar recover",
                    str_of(u, "transaction"),
                    str_of(u, "status")
                ));
            }
            out
        }
    }
}

/// A type 4 answer, visible to the caller only (flag 64), with no
/// mentions.
pub fn reply(content: &str) -> Value {
    let text: String = content.chars().take(crate::webhook::MAX_CONTENT).collect();
    json!({
        "type": 4,
        "data": {"content": text, "flags": 64, "allowed_mentions": {"parse": []}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_vm_name("win11"));
        assert!(valid_vm_name("a.b_c+d-e"));
        assert!(!valid_vm_name("-x"));
        assert!(!valid_vm_name(".x"));
        assert!(!valid_vm_name("a b"));
        assert!(!valid_vm_name("a;b"));
        assert!(!valid_vm_name(""));
        assert!(!valid_vm_name(&"a".repeat(65)));
    }

    #[test]
    fn commands() {
        let c = |v: Value| command(&v);
        assert_eq!(c(json!({"name":"status"})), Ok(Command::Status));
        assert_eq!(
            c(json!({"name":"vm","options":[{"name":"list","type":1}]})),
            Ok(Command::VmList)
        );
        assert_eq!(
            c(
                json!({"name":"vm","options":[{"name":"start","type":1,"options":[{"name":"name","type":3,"value":"win11"}]}]})
            ),
            Ok(Command::VmStart("win11".into()))
        );
        assert!(c(json!({"name":"vm","options":[{"name":"stop","type":1,"options":[{"name":"name","type":3,"value":"--all"}]}]})).is_err());
        assert!(c(json!({"name":"vm","options":[{"name":"stop","type":1}]})).is_err());
        assert_eq!(
            argv(
                &Command::VmStop("t".into()),
                Path::new("/"),
                "test:///default"
            ),
            ["vm", "stop", "t", "--json", "--connect", "test:///default"]
        );
    }
}
