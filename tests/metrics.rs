//! `exliar metrics`: the Prometheus text on every fixture host passes
//! `promtool check metrics` (lint included), the values the sensors and
//! exliar's state files hold, the VM series over libvirt's test driver, and
//! the `--listen` server scraped over loopback.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{assert_success, exliar, fixture_hosts, host, stdout, tool_or_skip};

/// A host with an amdgpu card (0000:03:00.0) and a vfio-pci one (04:00.0).
const AMD_HOST: &str = "hw17-alderlake-asus-rx6700xt-rx550-vfio";
/// A connection that never answers (a test-driver file that is not there).
const NO_LIBVIRT: &str = "test:///nonexistent/exliar-metrics-test.xml";

fn metrics(root: &Path, connect: &str) -> String {
    let o = exliar()
        .args(["metrics", "--root"])
        .arg(root)
        .args(["--connect", connect])
        .output()
        .expect("run exliar");
    assert_success(&o, &format!("exliar metrics --root {}", root.display()));
    stdout(&o)
}

fn promtool_check(promtool: &Path, text: &str, what: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let o = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.status.success() && said.trim().is_empty(),
        "{what}: promtool check metrics: exit {:?}\n{said}\n--- the text:\n{text}",
        o.status.code()
    );
}

/// The value of the series whose line starts with `series ` (name and
/// labels exactly as printed).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[test]
fn every_fixture_host_passes_promtool() {
    let Some(promtool) = tool_or_skip("/usr/bin/promtool", "prometheus") else {
        return;
    };
    let hosts = fixture_hosts();
    assert!(hosts.len() > 10);
    for h in &hosts {
        let text = metrics(h, NO_LIBVIRT);
        assert!(text.contains("\nexliar_libvirt_up 0\n"), "{}", h.display());
        assert!(
            text.contains("# TYPE exliar_check_ready gauge"),
            "{}",
            h.display()
        );
        promtool_check(&promtool, &text, &h.display().to_string());
    }
}

#[test]
fn gpu_series_of_a_fixture() {
    let text = metrics(&host(AMD_HOST), NO_LIBVIRT);
    let amd = r#"address="0000:03:00.0",vendor="0x1002",device="0x73df""#;
    let vfio = r#"address="0000:04:00.0",vendor="0x1002",device="0x67ff""#;
    assert!(text.contains(&format!("exliar_gpu_info{{{amd},name=")));
    assert!(text.contains(r#"driver="amdgpu"} 1"#));
    assert_eq!(
        value(&text, &format!("exliar_gpu_vfio_bound{{{amd}}}")),
        Some(0.0)
    );
    assert_eq!(
        value(&text, &format!("exliar_gpu_vfio_bound{{{vfio}}}")),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "exliar_gpu_boot_display{address=\"0000:00:02.0\",vendor=\"0x8086\",device=\"0x4680\"}"
        ),
        Some(1.0)
    );
    // the fixture has no sensors
    assert!(!text.contains("exliar_gpu_temperature_celsius"));
    assert_eq!(value(&text, "exliar_runtime_bound_devices"), Some(0.0));
    assert_eq!(
        value(&text, r#"exliar_transactions{status="applied"}"#),
        Some(0.0)
    );
}

/// A copy of the AMD host with amdgpu's sensors, a runtime binding and two
/// recorded hook runs.
fn amd_host_with_state() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("root");
    let st = Command::new("cp")
        .arg("-a")
        .arg(host(AMD_HOST))
        .arg(&root)
        .status()
        .expect("cp");
    assert!(st.success());
    let dev = root.join("sys/devices/pci0000:00/0000:03:00.0");
    std::fs::write(dev.join("gpu_busy_percent"), "37\n").expect("write");
    let hw = dev.join("hwmon/hwmon4");
    std::fs::create_dir_all(&hw).expect("mkdir");
    std::fs::write(hw.join("temp1_input"), "54250\n").expect("write");
    std::fs::write(hw.join("power1_average"), "123456000\n").expect("write");
    std::fs::write(hw.join("name"), "amdgpu\n").expect("write");
    let run = root.join("run/exliar");
    std::fs::create_dir_all(&run).expect("mkdir");
    std::fs::write(
        run.join("bindings.json"),
        r#"{"schema":"exliar.bindings/1","bindings":[{"address":"0000:04:00.0","original_driver":"amdgpu","original_override":null,"group":22},{"address":"0000:04:00.1","original_driver":"snd_hda_intel","original_override":null,"group":22}]}"#,
    )
    .expect("write");
    let hooks = root.join("var/lib/exliar/hooks");
    std::fs::create_dir_all(&hooks).expect("mkdir");
    let old = r#"{"at":1700000000,"domain":"win\"11","phase":"prepare begin","mode":"single-gpu","outcome":"failed","message":"x","steps":[{"what":"stop display manager","secs":9.0}],"secs":9.5}"#;
    let new = r#"{"at":1700000100,"domain":"win\"11","phase":"prepare begin","mode":"single-gpu","outcome":"ok","message":null,"steps":[{"what":"stop display manager","secs":1.5},{"what":"unbind","secs":0.25},{"what":"unbind","secs":0.25}],"secs":2.25}"#;
    let rel = r#"{"at":1700000200,"domain":"win\"11","phase":"release end","mode":"single-gpu","outcome":"nothing-to-do","message":null,"steps":[],"secs":0.01}"#;
    std::fs::write(
        hooks.join("runs.jsonl"),
        format!("{old}\n{new}\n{rel}\nnot json\n"),
    )
    .expect("write");
    (dir, root)
}

#[test]
fn sensor_and_state_values() {
    let (_dir, root) = amd_host_with_state();
    let text = metrics(&root, NO_LIBVIRT);
    let amd = r#"{address="0000:03:00.0",vendor="0x1002",device="0x73df"}"#;
    assert_eq!(
        value(&text, &format!("exliar_gpu_temperature_celsius{amd}")),
        Some(54.25)
    );
    assert_eq!(
        value(&text, &format!("exliar_gpu_power_watts{amd}")),
        Some(123.456)
    );
    assert_eq!(
        value(&text, &format!("exliar_gpu_busy_ratio{amd}")),
        Some(0.37)
    );
    assert_eq!(value(&text, "exliar_runtime_bound_devices"), Some(2.0));
    let prep = r#"vm="win\"11",phase="prepare begin""#;
    assert_eq!(
        value(
            &text,
            &format!("exliar_handover_last_duration_seconds{{{prep}}}")
        ),
        Some(2.25)
    );
    assert_eq!(
        value(
            &text,
            &format!("exliar_handover_last_timestamp_seconds{{{prep}}}")
        ),
        Some(1_700_000_100.0)
    );
    assert_eq!(
        value(&text, &format!("exliar_handover_last_success{{{prep}}}")),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            &format!(
                "exliar_handover_last_step_duration_seconds{{{prep},step=\"stop display manager\"}}"
            )
        ),
        Some(1.5)
    );
    // a step named twice: summed
    assert_eq!(
        value(
            &text,
            &format!("exliar_handover_last_step_duration_seconds{{{prep},step=\"unbind\"}}")
        ),
        Some(0.5)
    );
    assert_eq!(
        value(
            &text,
            r#"exliar_handover_last_success{vm="win\"11",phase="release end"}"#
        ),
        Some(1.0)
    );
    if let Some(promtool) = tool_or_skip("/usr/bin/promtool", "prometheus") {
        promtool_check(&promtool, &text, "the host with sensors and state");
    }
}

#[test]
fn libvirt_down_is_not_an_error() {
    let text = metrics(&host(AMD_HOST), NO_LIBVIRT);
    assert_eq!(value(&text, "exliar_libvirt_up"), Some(0.0));
    assert!(!text.contains("exliar_vm_"));
    assert!(!text.contains("exliar_libvirt_domains"));
}

#[test]
fn libvirt_test_driver() {
    if tool_or_skip("/usr/bin/virsh", "libvirt-clients").is_none() {
        return;
    }
    // The built-in test domain is not exliar's: the connection is up, the
    // domain counted, and no VM series.
    let text = metrics(&host(AMD_HOST), "test:///default");
    assert_eq!(value(&text, "exliar_libvirt_up"), Some(1.0));
    assert_eq!(value(&text, "exliar_libvirt_domains"), Some(1.0));
    assert!(!text.contains("exliar_vm_"), "{text}");

    // A test-driver node with one exliar domain and one other.
    let dir = tempfile::tempdir().expect("temp dir");
    let node = dir.path().join("node.xml");
    std::fs::write(
        &node,
        r#"<node>
  <domain type='test'>
    <name>win11</name>
    <memory>4194304</memory>
    <vcpu>4</vcpu>
    <os><type>hvm</type></os>
    <metadata><exliar:vm xmlns:exliar="https://exliar.dev/xmlns/vm/1"><exliar:profile>windows11</exliar:profile><exliar:gpu>0000:03:00.0</exliar:gpu></exliar:vm></metadata>
  </domain>
  <domain type='test'>
    <name>other</name>
    <memory>1048576</memory>
    <vcpu>1</vcpu>
    <os><type>hvm</type></os>
  </domain>
</node>
"#,
    )
    .expect("write");
    let text = metrics(&host(AMD_HOST), &format!("test://{}", node.display()));
    assert_eq!(value(&text, "exliar_libvirt_up"), Some(1.0));
    assert_eq!(value(&text, "exliar_libvirt_domains"), Some(2.0));
    assert_eq!(
        value(&text, r#"exliar_vm_state{vm="win11",state="running"}"#),
        Some(1.0)
    );
    assert!(!text.contains(r#"vm="other""#), "{text}");
    if let Some(promtool) = tool_or_skip("/usr/bin/promtool", "prometheus") {
        promtool_check(&promtool, &text, "the test driver");
    }
}

/// Kills the server when the test ends, passing or not.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\n\r\n"
    )
    .expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let (head, body) = resp.split_once("\r\n\r\n").expect("a response head");
    (head.to_string(), body.to_string())
}

#[test]
fn listen_serves_metrics() {
    let child = Command::new(env!("CARGO_BIN_EXE_exliar"))
        .env_remove("EXLIAR_ROOT")
        .env_remove("EXLIAR_LOG")
        .args([
            "metrics",
            "--listen",
            "127.0.0.1:0",
            "--connect",
            NO_LIBVIRT,
            "--root",
        ])
        .arg(host(AMD_HOST))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start exliar metrics --listen");
    let mut server = Server(child);
    let stderr = server.0.stderr.take().expect("stderr");
    let mut line = String::new();
    let mut err = BufReader::new(stderr);
    err.read_line(&mut line).expect("read stderr");
    // keep draining stderr, so that the server's log never blocks it
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    let addr = line
        .trim()
        .strip_prefix("exliar: serving metrics on http://")
        .and_then(|r| r.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();

    let (head, body) = get(&addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.lines()
            .any(|l| l
                .eq_ignore_ascii_case("content-type: text/plain; version=0.0.4; charset=utf-8")),
        "{head}"
    );
    assert!(body.contains(
        r#"exliar_gpu_vfio_bound{address="0000:04:00.0",vendor="0x1002",device="0x67ff"} 1"#
    ));
    // a second scrape works too (one connection at a time, fresh values)
    let (head, body2) = get(&addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
    assert_eq!(body, body2);
    let (head, _) = get(&addr, "/");
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
}

#[test]
fn snapshot_of_one_host() {
    let text = metrics(&host(AMD_HOST), NO_LIBVIRT);
    let text = text.replace(
        &format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
        "version=\"[VERSION]\"",
    );
    insta::assert_snapshot!("metrics_hw17", text);
}

#[test]
fn a_root_that_is_not_a_folder_is_an_error() {
    let o = exliar()
        .args([
            "metrics",
            "--root",
            "/nonexistent/exliar-root",
            "--connect",
            NO_LIBVIRT,
        ])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/exliar-root: not a folder"));
}
