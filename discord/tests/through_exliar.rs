//! The plugin as exliar really runs it: installed in a root's
//! `/usr/lib/exliar/plugins/discord`, its config `root:nogroup 0640` (the
//! plugin runs as `nobody`, whose group is `nogroup`), events sent by the
//! real `exliar` binary (`exliar plugin run`, `exliar check`).
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::FakeDiscord;

#[test]
fn exliar_runs_the_installed_plugin_as_nobody_and_the_message_arrives() {
    if !common::is_root() {
        assert!(std::env::var_os("CI").is_none(), "needs root under CI");
        eprintln!("skipping: plugins and their config must be owned by root");
        return;
    }
    let fake = FakeDiscord::start(vec![]);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("root");
    // The hardware of a fixture host, so that `exliar check` has a host.
    let st = Command::new("cp")
        .arg("-a")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/hosts/hw10-ryzen5000g-cezanne-rx580-rtx3060"),
        )
        .arg(&root)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let plugins = root.join("usr/lib/exliar/plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let dest = plugins.join("discord");
    std::fs::copy(env!("CARGO_BIN_EXE_exliar-discord"), &dest).unwrap();
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755)).unwrap();
    let etc = root.join("etc/exliar");
    std::fs::create_dir_all(&etc).unwrap();
    let conf = etc.join("discord.toml");
    std::fs::write(
        &conf,
        format!(
            "webhook_url = \"{}\"\n[rate_limit]\nmax_retries = 1\nmax_wait_secs = 2.0\n",
            fake.url("/api/webhooks/1/secret-token")
        ),
    )
    .unwrap();
    std::os::unix::fs::chown(&conf, Some(0), Some(65534)).unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o640)).unwrap();

    let list = Command::new(common::exliar())
        .args(["plugin", "list", "--json", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let p = &v["plugins"][0];
    assert_eq!(p["name"], "discord", "{v}");
    assert_eq!(p["usable"], true, "{v}");
    assert!(
        p["describe"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "vm-started"),
        "{v}"
    );

    let out = Command::new(common::exliar())
        .args([
            "plugin",
            "run",
            "discord",
            "vm-started",
            "--field",
            "vm=win11",
            "--root",
        ])
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = fake.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "POST");
    assert!(seen[0].body.contains("win11"), "{}", seen[0].body);

    // A real command's event: the check (this fixture is not ready).
    let out = Command::new(common::exliar())
        .args(["check", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let seen = fake.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen[1].body.to_lowercase().contains("not ready"),
        "{}",
        seen[1].body
    );
    // The secret never reaches exliar's output.
    assert!(!String::from_utf8_lossy(&out.stderr).contains("secret-token"));
}
