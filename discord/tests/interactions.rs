//! `exliar-discord serve` as Discord sees it: signed requests over
//! loopback, slash commands that reach the real `exliar` binary
//! (`target/debug/exliar` of the workspace, built if absent;
//! `EXLIAR_BIN` overrides) on libvirt's test driver.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{FakeDiscord, is_root, root_with_config};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};

const ALLOWED: &str = "111111111111111111";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Serve {
    child: Child,
    port: u16,
    _tmp: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts serve with `config` (the public key comes from the
/// environment) and waits until it listens.
fn serve(config: &str, extra: &[&str]) -> Serve {
    let tmp = tempfile::tempdir().unwrap();
    let root = root_with_config(tmp.path(), config);
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_exliar-discord"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--config",
        ])
        .arg(root.join("etc/exliar/discord.toml"))
        .args(extra)
        .env(
            "EXLIAR_DISCORD_PUBLIC_KEY",
            hex(key().verifying_key().as_bytes()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(20), "serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Serve {
        child,
        port,
        _tmp: tmp,
    }
}

fn config() -> String {
    format!(
        "allowed_users = [\"{ALLOWED}\"]\nexliar = \"{}\"\nconnect = \"test:///default\"\n",
        common::exliar().display()
    )
}

/// POSTs `body` with `headers`; the status and the body.
fn post(port: u16, headers: &[(&str, String)], body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "POST /interactions HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

fn now() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string()
}

fn signed(port: u16, v: &Value) -> (u16, String) {
    let body = v.to_string();
    let ts = now();
    let sig = key().sign(format!("{ts}{body}").as_bytes());
    post(
        port,
        &[
            ("X-Signature-Ed25519", hex(&sig.to_bytes())),
            ("X-Signature-Timestamp", ts),
        ],
        body.as_bytes(),
    )
}

fn vm_command(user: &str, sub: &str, name: Option<&str>) -> Value {
    let mut opt = json!({"name": sub, "type": 1});
    if let Some(n) = name {
        opt["options"] = json!([{"name":"name","type":3,"value":n}]);
    }
    json!({
        "type": 2, "id": "1", "application_id": "42", "token": "tok",
        "member": {"user": {"id": user}},
        "data": {"name": "vm", "type": 1, "options": [opt]},
    })
}

fn content(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["type"], 4, "{v}");
    assert_eq!(v["data"]["flags"], 64);
    v["data"]["content"].as_str().unwrap().to_string()
}

#[test]
fn signatures_ping_and_refusals() {
    if !is_root() {
        eprintln!("skipped: the config file must be root's; run as root");
        return;
    }
    let s = serve(&config(), &[]);
    let ping = json!({"type": 1, "id": "1", "application_id": "42", "token": "t"});
    let (st, body) = signed(s.port, &ping);
    assert_eq!(
        (st, serde_json::from_str::<Value>(&body).unwrap()),
        (200, json!({"type":1}))
    );

    // Missing headers.
    assert_eq!(post(s.port, &[], ping.to_string().as_bytes()).0, 401);
    assert_eq!(
        post(
            s.port,
            &[("X-Signature-Timestamp", now())],
            ping.to_string().as_bytes()
        )
        .0,
        401
    );
    // A signature over another body, a garbled one, another key's.
    let ts = now();
    let other = key().sign(format!("{ts}{{}}").as_bytes());
    let body = ping.to_string();
    for sig in [
        hex(&other.to_bytes()),
        "zz".repeat(64),
        hex(&SigningKey::from_bytes(&[9; 32])
            .sign(format!("{ts}{body}").as_bytes())
            .to_bytes()),
    ] {
        let (st, _) = post(
            s.port,
            &[
                ("X-Signature-Ed25519", sig),
                ("X-Signature-Timestamp", ts.clone()),
            ],
            body.as_bytes(),
        );
        assert_eq!(st, 401);
    }
    // A stale timestamp, signed correctly: a replay.
    let old = "1000000000";
    let sig = key().sign(format!("{old}{body}").as_bytes());
    let (st, _) = post(
        s.port,
        &[
            ("X-Signature-Ed25519", hex(&sig.to_bytes())),
            ("X-Signature-Timestamp", old.into()),
        ],
        body.as_bytes(),
    );
    assert_eq!(st, 401);

    // Too large a body.
    let big = vec![b' '; 70 * 1024];
    let ts = now();
    let mut msg = ts.clone().into_bytes();
    msg.extend_from_slice(&big);
    let (st, _) = post(
        s.port,
        &[
            ("X-Signature-Ed25519", hex(&key().sign(&msg).to_bytes())),
            ("X-Signature-Timestamp", ts),
        ],
        &big,
    );
    assert_eq!(st, 413);

    // A user not allowed (in a server, then in a DM).
    let (st, body) = signed(s.port, &vm_command("222", "list", None));
    assert_eq!((st, content(&body)), (200, "not allowed".to_string()));
    let mut dm = vm_command("222", "list", None);
    dm.as_object_mut().unwrap().remove("member");
    dm["user"] = json!({"id": "222"});
    assert_eq!(content(&signed(s.port, &dm).1), "not allowed");

    // A name that is not one: refused before exliar runs.
    let c = content(&signed(s.port, &vm_command(ALLOWED, "start", Some("--help"))).1);
    assert!(c.starts_with("not a VM name"), "{c}");
    let c = content(&signed(s.port, &vm_command(ALLOWED, "start", None)).1);
    assert!(c.contains("needs name:NAME"), "{c}");
}

#[test]
fn commands_reach_exliar() {
    if !is_root() {
        eprintln!("skipped: run as root");
        return;
    }
    if Command::new("virsh").arg("--version").output().is_err() {
        eprintln!("skipped: virsh is not installed");
        return;
    }
    let s = serve(&config(), &[]);
    let c = content(&signed(s.port, &vm_command(ALLOWED, "list", None)).1);
    assert_eq!(c, "VMs on test:///default (1):\n• test — running");

    // In a DM (user.id) too. The test driver's state is per process, so
    // `test` is always running: exliar's refusal comes through.
    let mut dm = vm_command(ALLOWED, "start", Some("test"));
    dm.as_object_mut().unwrap().remove("member");
    dm["user"] = json!({"id": ALLOWED});
    let c = content(&signed(s.port, &dm).1);
    assert_eq!(
        c,
        "VM test: start refused (now running)\n• test is running already"
    );

    let c = content(&signed(s.port, &vm_command(ALLOWED, "start", Some("nosuch"))).1);
    assert!(
        c.starts_with("VM nosuch: start refused\n• no VM named nosuch on test:///default"),
        "{c}"
    );

    let c = content(&signed(s.port, &vm_command(ALLOWED, "stop", Some("test"))).1);
    assert!(c.starts_with("VM test: stop "), "{c}");

    let status =
        json!({"type":2,"member":{"user":{"id":ALLOWED}},"data":{"name":"status","type":1}});
    let c = content(&signed(s.port, &status).1);
    assert!(c.starts_with("on vfio-pci: "), "{c}");
    assert!(c.contains("boot isolation: "), "{c}");
}

#[test]
fn a_slow_command_is_deferred_and_edited_in() {
    if !is_root() {
        eprintln!("skipped: run as root");
        return;
    }
    let fake = FakeDiscord::start(vec![(200, vec![], "{}".into())]);
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("slow-exliar");
    std::fs::write(
        &script,
        "#!/bin/sh\nsleep 1\necho '{\"schema\":\"exliar.vm-list/1\",\"connect\":\"test:///default\",\"vms\":[]}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = format!(
        "allowed_users = [\"{ALLOWED}\"]\nexliar = \"{}\"\nconnect = \"test:///default\"\ndiscord_api = \"{}\"\n",
        script.display(),
        fake.url("/api/v10")
    );
    let s = serve(&cfg, &["--defer-after-ms", "200"]);
    let mut req = vm_command(ALLOWED, "list", None);
    req["application_id"] = json!("42");
    req["token"] = json!("aW50ZXJhY3Rpb24");
    let (st, body) = signed(s.port, &req);
    assert_eq!(st, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v, json!({"type":5,"data":{"flags":64}}));
    let t = Instant::now();
    while fake.seen().is_empty() {
        assert!(t.elapsed() < Duration::from_secs(10), "no follow-up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = fake.seen();
    assert_eq!(seen[0].method, "PATCH");
    assert_eq!(
        seen[0].path,
        "/api/v10/webhooks/42/aW50ZXJhY3Rpb24/messages/@original"
    );
    let b: Value = serde_json::from_str(&seen[0].body).unwrap();
    assert_eq!(b["content"], "VMs on test:///default (0):");
}

#[test]
fn serve_refuses_a_bad_config() {
    if !is_root() {
        eprintln!("skipped: run as root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = root_with_config(tmp.path(), "allowed_users = []\n");
    let f = root.join("etc/exliar/discord.toml");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o604)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_exliar-discord"))
        .args(["serve", "--listen", "127.0.0.1:0", "--root"])
        .arg(&root)
        .env(
            "EXLIAR_DISCORD_PUBLIC_KEY",
            hex(key().verifying_key().as_bytes()),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mode 0604") && err.contains(&f.display().to_string()),
        "{err}"
    );

    // No public key anywhere.
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_exliar-discord"))
        .args(["serve", "--listen", "127.0.0.1:0", "--root"])
        .arg(&root)
        .env_remove("EXLIAR_DISCORD_PUBLIC_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no public_key"));
}
