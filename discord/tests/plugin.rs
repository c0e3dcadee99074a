//! The plugin binary over stdin/stdout as exliar runs it, against a
//! loopback server standing in for the Discord webhook.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{FakeDiscord, answer, is_root, plugin, root_with_config};
use serde_json::{Value, json};

const SECRET: &str = "T0KEN-s3cret";

fn event_request(event: Value) -> String {
    json!({"schema":"exliar.plugin/1","request":"event","event":event}).to_string()
}

fn config_for(fake: &FakeDiscord) -> String {
    format!(
        "webhook_url = \"{}\"\n[rate_limit]\nmax_retries = 3\nmax_wait_secs = 8.0\n",
        fake.url(&format!("/api/webhooks/1/{SECRET}"))
    )
}

fn no_secret(out: &std::process::Output) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains(SECRET), "the webhook token leaked: {all}");
}

#[test]
fn describe_propose_unknown_garbage() {
    let tmp = tempfile::tempdir().unwrap();
    let d = answer(&plugin(
        tmp.path(),
        r#"{"schema":"exliar.plugin/1","request":"describe"}"#,
    ));
    assert_eq!(d["schema"], "exliar.plugin/1");
    assert_eq!(d["name"], "discord");
    assert_eq!(d["propose"], false);
    assert_eq!(
        d["events"],
        json!([
            "vm-started",
            "vm-stopped",
            "vm-failed",
            "gpu-bound",
            "gpu-unbound",
            "check-finished",
            "txn-applied",
            "txn-rolled-back"
        ])
    );
    assert!(d["version"].is_string() && d["description"].is_string());
    assert!(
        d["options"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["name"].is_string() && o["description"].is_string())
    );

    let p = plugin(
        tmp.path(),
        r#"{"schema":"exliar.plugin/1","request":"propose","host":{}}"#,
    );
    assert!(p.status.success());
    assert_eq!(answer(&p), json!({"schema":"exliar.plugin/1","steps":[]}));

    let u = plugin(
        tmp.path(),
        r#"{"schema":"exliar.plugin/1","request":"frobnicate"}"#,
    );
    assert_eq!(u.status.code(), Some(0));
    assert_eq!(
        answer(&u),
        json!({"schema":"exliar.plugin/1","ok":false,"error":"unknown request"})
    );

    for garbage in [
        "not json",
        "",
        "[1,2]",
        r#"{"schema":"exliar.plugin/9","request":"describe"}"#,
    ] {
        let g = plugin(tmp.path(), garbage);
        assert_eq!(g.status.code(), Some(2), "{garbage:?}");
        assert!(g.stdout.is_empty());
        assert!(!g.stderr.is_empty());
    }
}

#[test]
fn every_event_kind_becomes_a_message() {
    if !is_root() {
        eprintln!("skipped: the config file must be root's; run as root");
        return;
    }
    let fake = FakeDiscord::start(vec![]);
    let tmp = tempfile::tempdir().unwrap();
    let root = root_with_config(tmp.path(), &config_for(&fake));
    let base = |kind: &str| json!({"kind": kind, "time_unix": 1764980000, "host": "box"});
    let with = |kind: &str, extra: Value| {
        let mut v = base(kind);
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let cases = [
        (
            with("vm-started", json!({"vm":"win11"})),
            "🟢 VM win11 started on box",
        ),
        (
            with("vm-stopped", json!({"vm":"win11"})),
            "⚪ VM win11 stopped on box",
        ),
        (
            with("vm-failed", json!({"vm":"win11","error":"no /dev/vfio/1"})),
            "🔴 VM win11 failed on box: no /dev/vfio/1",
        ),
        (
            with(
                "gpu-bound",
                json!({"devices":["0000:01:00.0","0000:01:00.1"],"ok":true}),
            ),
            "🎮 GPU 0000:01:00.0, 0000:01:00.1 handed to vfio-pci on box",
        ),
        (
            with("gpu-bound", json!({"devices":["0000:01:00.0"],"ok":false})),
            "⚠️ GPU 0000:01:00.0: handing to vfio-pci failed on box (undone)",
        ),
        (
            with("gpu-unbound", json!({"devices":["0000:01:00.0"],"ok":true})),
            "🖥️ GPU 0000:01:00.0 given back to the host's drivers on box",
        ),
        (
            with(
                "check-finished",
                json!({"ready":false,"failing":["iommu.cmdline","vfio.modules"]}),
            ),
            "❌ check: not ready on box (iommu.cmdline, vfio.modules)",
        ),
        (
            with("check-finished", json!({"ready":true,"failing":[]})),
            "✅ check: ready on box",
        ),
        (
            with(
                "txn-applied",
                json!({"transaction":"20261204T150000Z","subject":"gpu-isolation"}),
            ),
            "📝 transaction 20261204T150000Z (gpu-isolation) applied on box",
        ),
        (
            with(
                "txn-rolled-back",
                json!({"transaction":"20261204T150000Z","subject":"vm"}),
            ),
            "↩️ transaction 20261204T150000Z (vm) rolled back on box",
        ),
    ];
    for (ev, _) in &cases {
        let out = plugin(&root, &event_request(ev.clone()));
        assert!(out.status.success());
        assert_eq!(
            answer(&out),
            json!({"schema":"exliar.plugin/1","ok":true}),
            "{ev}"
        );
        no_secret(&out);
    }
    let seen = fake.seen();
    assert_eq!(seen.len(), cases.len());
    for (s, (_, text)) in seen.iter().zip(&cases) {
        assert_eq!(s.method, "POST");
        assert_eq!(s.path, format!("/api/webhooks/1/{SECRET}"));
        let body: Value = serde_json::from_str(&s.body).unwrap();
        assert_eq!(body["content"], *text);
        assert_eq!(body["allowed_mentions"], json!({"parse": []}));
    }

    // An event the plugin cannot word: ok false, nothing sent.
    let bad = plugin(
        &root,
        &event_request(json!({"kind":"vm-started","host":"box"})),
    );
    assert_eq!(answer(&bad)["ok"], false);
    let other = plugin(&root, &event_request(json!({"kind":"moon-landed"})));
    assert_eq!(
        answer(&other)["error"],
        "unknown event kind \"moon-landed\""
    );
    assert_eq!(fake.seen().len(), cases.len());
}

#[test]
fn a_429_is_waited_out_and_retried_once() {
    if !is_root() {
        eprintln!("skipped: run as root");
        return;
    }
    let fake = FakeDiscord::start(vec![
        (
            429,
            vec![("retry-after".into(), "5".into())],
            r#"{"message":"You are being rate limited.","retry_after":0.2,"global":false}"#.into(),
        ),
        (200, vec![], "{}".into()),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let root = root_with_config(tmp.path(), &config_for(&fake));
    let started = Instant::now();
    let out = plugin(
        &root,
        &event_request(json!({"kind":"vm-started","vm":"win11","host":"box","time_unix":1})),
    );
    assert_eq!(
        answer(&out)["ok"],
        true,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at - seen[0].at;
    assert!(gap >= Duration::from_millis(200), "retried after {gap:?}");
    // The body's retry_after (0.2 s) wins over the header's 5 s.
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(seen[0].body, seen[1].body);
    no_secret(&out);
}

#[test]
fn a_400_is_not_retried_and_a_500_is_retried_within_bounds() {
    if !is_root() {
        eprintln!("skipped: run as root");
        return;
    }
    let fake = FakeDiscord::start(vec![(
        400,
        vec![],
        r#"{"message":"Cannot send an empty message","code":50006}"#.into(),
    )]);
    let tmp = tempfile::tempdir().unwrap();
    let root = root_with_config(tmp.path(), &config_for(&fake));
    let ev = event_request(json!({"kind":"vm-stopped","vm":"win11","host":"box"}));
    let out = plugin(&root, &ev);
    assert!(out.status.success());
    let a = answer(&out);
    assert_eq!(a["ok"], false);
    let err = a["error"].as_str().unwrap();
    assert!(err.contains("HTTP 400"), "{err}");
    assert_eq!(fake.seen().len(), 1);
    no_secret(&out);

    // 5xx: retried, at most max_retries (here 2) times.
    let fake = FakeDiscord::start(vec![
        (502, vec![], "bad gateway".into()),
        (503, vec![], "".into()),
        (500, vec![], "".into()),
        (200, vec![], "{}".into()),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let root = root_with_config(
        tmp.path(),
        &format!(
            "webhook_url = \"{}\"\n[rate_limit]\nmax_retries = 2\n",
            fake.url(&format!("/api/webhooks/1/{SECRET}"))
        ),
    );
    let out = plugin(&root, &ev);
    let a = answer(&out);
    assert_eq!(a["ok"], false);
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .contains("gave up after 3 tries"),
        "{a}"
    );
    assert_eq!(fake.seen().len(), 3);

    // A 429 asking for longer than the time left: not waited for.
    let fake = FakeDiscord::start(vec![(429, vec![], r#"{"retry_after":30}"#.into())]);
    let tmp = tempfile::tempdir().unwrap();
    let root = root_with_config(tmp.path(), &config_for(&fake));
    let t = Instant::now();
    let a = answer(&plugin(&root, &ev));
    assert_eq!(a["ok"], false);
    assert!(a["error"].as_str().unwrap().contains("HTTP 429"), "{a}");
    assert!(t.elapsed() < Duration::from_secs(5));

    // Nothing listening: ok false, the token not in the message.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = root_with_config(
        tmp.path(),
        &format!(
            "webhook_url = \"http://127.0.0.1:{port}/api/webhooks/1/{SECRET}\"\n[rate_limit]\nmax_retries = 1\nmax_wait_secs = 3\n"
        ),
    );
    let out = plugin(&root, &ev);
    assert_eq!(answer(&out)["ok"], false);
    no_secret(&out);
}

#[test]
fn config_refusals() {
    if !is_root() {
        eprintln!("skipped: run as root");
        return;
    }
    let fake = FakeDiscord::start(vec![]);
    let ev = event_request(json!({"kind":"vm-started","vm":"win11","host":"box"}));

    // No file at all: ok false, says where the webhook was looked for.
    let tmp = tempfile::tempdir().unwrap();
    let a = answer(&plugin(tmp.path(), &ev));
    assert_eq!(a["ok"], false);
    assert!(
        a["error"]
            .as_str()
            .unwrap()
            .contains("etc/exliar/discord.toml"),
        "{a}"
    );

    // Readable by others.
    let tmp = tempfile::tempdir().unwrap();
    let root = root_with_config(tmp.path(), &config_for(&fake));
    let f = root.join("etc/exliar/discord.toml");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = plugin(&root, &ev);
    let err = answer(&out)["error"].as_str().unwrap().to_string();
    assert!(
        err.contains("mode 0644") && err.contains(&f.display().to_string()),
        "{err}"
    );
    no_secret(&out);

    // 0640 is fine (a group such as adm may read it).
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(answer(&plugin(&root, &ev))["ok"], true);

    // Group-writable.
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o660)).unwrap();
    assert!(
        answer(&plugin(&root, &ev))["error"]
            .as_str()
            .unwrap()
            .contains("mode 0660")
    );

    // Not root's.
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&f, Some(1000), Some(1000)).unwrap();
    let err = answer(&plugin(&root, &ev))["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(err.contains("owned by uid 1000, not root"), "{err}");

    // A link to a good file.
    let tmp2 = tempfile::tempdir().unwrap();
    let real = root_with_config(tmp2.path(), &config_for(&fake)).join("etc/exliar/discord.toml");
    std::fs::remove_file(&f).unwrap();
    std::os::unix::fs::symlink(&real, &f).unwrap();
    assert!(
        answer(&plugin(&root, &ev))["error"]
            .as_str()
            .unwrap()
            .contains("symbolic link")
    );

    // Unknown keys and bad values, with the file named.
    for (text, want) in [
        ("webhok_url = \"http://x\"\n", "unknown field"),
        ("webhook_url = \"ftp://x\"\n", "must be an http(s) URL"),
        ("public_key = \"abc\"\n", "64 hex digits"),
        ("allowed_users = [\"bob\"]\n", "not a Discord user id"),
        ("[rate_limit]\nmax_wait_secs = 30\n", "between 0 and 9"),
    ] {
        std::fs::remove_file(&f).unwrap();
        let root = root_with_config(&root, text);
        let err = answer(&plugin(&root, &ev))["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            err.contains(want) && err.contains("discord.toml"),
            "{text}: {err}"
        );
    }
    assert!(fake.seen().len() == 1, "only the 0640 run sent");
}
