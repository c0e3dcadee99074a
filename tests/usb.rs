//! `exliar usb list` on the USB fixture hosts (tests/fixtures/usb, built by
//! tests/fixtures/make-usb-hosts.py from public lsusb listings), and
//! `exliar snapshot` of them.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn usb_host(name: &str) -> PathBuf {
    manifest_dir().join("tests/fixtures/usb").join(name)
}

const HOSTS: &[&str] = &[
    "desktop-xhci-kbd-mouse-headset",
    "laptop-webcam-bt-fingerprint",
    "storage-boot-stick-hub",
    "qemu-l1-xhci-kbd-tablet",
];

fn list_json(root: &Path) -> Value {
    let out = exliar()
        .args(["usb", "list", "--json", "--root"])
        .arg(root)
        .output()
        .expect("run exliar");
    assert_success(&out, &format!("usb list --json --root {}", root.display()));
    json(&out)
}

fn list_text(root: &Path) -> String {
    let out = exliar()
        .args(["usb", "list", "--root"])
        .arg(root)
        .output()
        .expect("run exliar");
    assert_success(&out, &format!("usb list --root {}", root.display()));
    stdout(&out)
}

fn device<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["devices"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["id"] == id))
        .unwrap_or_else(|| panic!("no device {id} in {doc:#}"))
}

fn controller<'a>(doc: &'a Value, addr: &str) -> &'a Value {
    doc["controllers"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["address"] == addr))
        .unwrap_or_else(|| panic!("no controller {addr} in {doc:#}"))
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or("<null>").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn drivers(d: &Value) -> Vec<String> {
    d["interfaces"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| i["driver"].as_str().unwrap_or("<none>").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn golden_output_and_schema() {
    let schema = schema("usb-1.schema.json");
    for name in HOSTS {
        let h = usb_host(name);
        let out = exliar()
            .args(["usb", "list", "--json", "--root"])
            .arg(&h)
            .output()
            .expect("run exliar");
        assert_success(&out, name);
        assert_valid(&schema, &json(&out), &format!("{name}: usb list --json"));
        let text = stdout(&out);
        insta::assert_snapshot!(format!("usb-json-{name}"), redact(&text, &h));
        insta::assert_snapshot!(format!("usb-{name}"), redact(&list_text(&h), &h));
    }
}

#[test]
fn desktop_kinds_names_drivers_and_controllers() {
    let doc = list_json(&usb_host("desktop-xhci-kbd-mouse-headset"));
    let kinds = |id: &str| strs(&device(&doc, id)["kind"]);
    assert_eq!(kinds("1-3.2"), ["keyboard"]);
    assert_eq!(kinds("1-3.1"), ["mouse"]);
    assert_eq!(kinds("1-3"), ["hub"]);
    assert_eq!(kinds("1-6"), ["bluetooth"]);
    assert_eq!(kinds("1-7"), ["video"]);
    assert_eq!(kinds("1-2"), ["printer"]);
    assert_eq!(kinds("3-1"), ["audio"]);
    // Behind the hub: the parent chain and the controller.
    assert_eq!(device(&doc, "1-3.2")["parent"], "1-3");
    assert_eq!(device(&doc, "1-3")["parent"], "usb1");
    assert_eq!(device(&doc, "1-3.2")["controller"], "0000:00:14.0");
    assert_eq!(device(&doc, "1-3.2")["speed"], "1.5");
    // The headset hangs from the AMD controller behind a bridge.
    assert_eq!(device(&doc, "3-1")["controller"], "0000:0b:00.3");
    assert_eq!(device(&doc, "usb4")["controller"], "0000:0b:00.3");
    assert_eq!(device(&doc, "usb4")["root_hub"], true);
    // Names: root hubs carry their own strings; the rest come from usb.ids;
    // a vendor usb.ids does not know has none (never a guess).
    let usb1 = device(&doc, "usb1");
    assert_eq!(usb1["product_name"], "xHCI Host Controller");
    assert_eq!(usb1["product_name_source"], "sysfs");
    assert_eq!(usb1["serial"], "0000:00:14.0");
    let kbd = device(&doc, "1-3.2");
    assert_eq!(kbd["vendor_name"], "SiGma Micro");
    assert_eq!(kbd["vendor_name_source"], "usb.ids");
    assert_eq!(kbd["product_name"], "Keyboard TRACER Gamma Ivory");
    let printer = device(&doc, "1-2");
    assert_eq!(printer["vendor_name"], Value::Null);
    assert_eq!(printer["vendor_name_source"], Value::Null);
    // Interfaces and their drivers (an unbound one has none).
    assert_eq!(drivers(device(&doc, "1-6")), ["btusb", "btusb"]);
    assert_eq!(drivers(kbd), ["usbhid", "usbhid"]);
    assert_eq!(drivers(printer), ["<none>"]);
    assert_eq!(drivers(device(&doc, "3-1")).len(), 3);
    assert_eq!(kbd["interfaces"][0]["protocol"], "01");
    assert_eq!(kbd["interfaces"][1]["protocol"], "00");
    // The chipset controller holds the only keyboard; the headset's is free.
    let needs = strs(&controller(&doc, "0000:00:14.0")["host_needs"]);
    assert_eq!(needs.len(), 1, "{needs:?}");
    assert!(needs[0].contains("1-3.2") && needs[0].contains("keyboard"));
    assert!(needs[0].contains("no other USB keyboard"));
    assert_eq!(
        strs(&controller(&doc, "0000:0b:00.3")["host_needs"]).len(),
        0
    );
    assert_eq!(
        strs(&controller(&doc, "0000:0b:00.3")["devices"]),
        ["usb3", "3-1", "usb4"]
    );
    // evdev names from /dev/input/by-id.
    let ev: Vec<(String, String)> = doc["evdev"]
        .as_array()
        .expect("evdev")
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap_or("").into(),
                e["kind"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(ev.contains(&(
        "/dev/input/by-id/usb-1c4f_0002-event-kbd".into(),
        "keyboard".into()
    )));
    assert!(ev.contains(&(
        "/dev/input/by-id/usb-1ea7_0064-event-mouse".into(),
        "mouse".into()
    )));
    assert_eq!(ev.len(), 3);
}

#[test]
fn laptop_kinds_and_name_sources() {
    let doc = list_json(&usb_host("laptop-webcam-bt-fingerprint"));
    assert_eq!(doc["usb_ids"], "/usr/share/hwdata/usb.ids");
    let cam = device(&doc, "1-5");
    assert_eq!(strs(&cam["kind"]), ["video"]);
    // The webcam's product string wins; its vendor comes from usb.ids.
    assert_eq!(cam["product_name"], "Integrated_Webcam_HD");
    assert_eq!(cam["product_name_source"], "sysfs");
    assert_eq!(cam["vendor_name_source"], "usb.ids");
    assert_eq!(strs(&device(&doc, "1-14")["kind"]), ["bluetooth"]);
    // The fingerprint reader: vendor-specific, no driver bound.
    let fp = device(&doc, "1-8");
    assert_eq!(strs(&fp["kind"]), ["vendor-specific"]);
    assert_eq!(fp["product_name"], "Fingerprint Reader");
    assert_eq!(drivers(fp), ["<none>"]);
    assert_eq!(drivers(device(&doc, "1-7")), ["rtsx_usb"]);
    assert_eq!(strs(&device(&doc, "1-1")["kind"]), ["keyboard"]);
    assert_eq!(
        device(&doc, "1-1")["product_name"],
        "Lenovo Traditional USB Keyboard"
    );
    assert_eq!(device(&doc, "1-1")["vendor_name"], "Lenovo");
    let needs = strs(&controller(&doc, "0000:00:14.0")["host_needs"]);
    assert_eq!(needs.len(), 1, "{needs:?}");
    // The card reader's SD card belongs to the reader, not the root hub
    // above it.
    assert_eq!(strs(&device(&doc, "1-7")["block_devices"]), ["mmcblk0"]);
    assert_eq!(
        strs(&device(&doc, "usb1")["block_devices"]),
        Vec::<String>::new()
    );
}

/// An SD card in a USB card reader (a vendor-specific device, not mass
/// storage) holding /boot makes the controller the host's.
#[test]
fn boot_from_a_card_reader_counts() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("host");
    copy_tree(&usb_host("laptop-webcam-bt-fingerprint"), &dir);
    put(
        &dir,
        "proc/self/mountinfo",
        "24 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw\n\
         25 24 179:1 / /boot rw,relatime shared:2 - ext4 /dev/mmcblk0p1 rw\n",
    );
    let doc = list_json(&dir);
    let needs = strs(&controller(&doc, "0000:00:14.0")["host_needs"]);
    assert_eq!(needs.len(), 2, "{needs:?}");
    assert!(needs[1].contains("boot disk mmcblk0") && needs[1].contains("mmcblk0p1 on /boot"));
}

#[test]
fn laptop_without_usb_ids_names_from_the_devices_only() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("host");
    copy_tree(&usb_host("laptop-webcam-bt-fingerprint"), &dir);
    std::fs::remove_file(dir.join("usr/share/hwdata/usb.ids")).expect("rm usb.ids");
    let doc = list_json(&dir);
    assert_eq!(doc["usb_ids"], Value::Null);
    let fp = device(&doc, "1-8");
    assert_eq!(fp["vendor_name"], Value::Null);
    assert_eq!(fp["product_name"], Value::Null);
    assert_eq!(device(&doc, "1-5")["product_name"], "Integrated_Webcam_HD");
    assert_eq!(device(&doc, "1-5")["vendor_name"], Value::Null);
    assert!(list_text(&dir).contains("no usb.ids found"));
}

#[test]
fn storage_boot_stick_and_keyboard_behind_a_hub() {
    let doc = list_json(&usb_host("storage-boot-stick-hub"));
    let stick = device(&doc, "1-2");
    assert_eq!(strs(&stick["kind"]), ["storage"]);
    // Only the stick's disk: the SATA disk sda is under no USB device.
    assert_eq!(strs(&stick["block_devices"]), ["sdb"]);
    assert_eq!(drivers(stick), ["usb-storage"]);
    let hub = device(&doc, "3-1");
    assert_eq!(hub["hub"], true);
    assert_eq!(hub["root_hub"], false);
    assert_eq!(hub["product_name"], "USB2.0 Hub");
    assert_eq!(hub["product_name_source"], "sysfs");
    assert_eq!(hub["vendor_name"], "Genesys Logic, Inc.");
    assert_eq!(hub["vendor_name_source"], "usb.ids");
    assert_eq!(device(&doc, "3-1.3")["vendor_name"], "PixArt");
    assert_eq!(device(&doc, "3-1.3")["vendor_name_source"], "sysfs");
    assert_eq!(strs(&device(&doc, "3-1.1")["kind"]), ["keyboard"]);
    assert_eq!(device(&doc, "3-1.1")["controller"], "0000:05:00.0");
    let boot = strs(&controller(&doc, "0000:00:14.0")["host_needs"]);
    assert_eq!(boot.len(), 1, "{boot:?}");
    assert!(boot[0].contains("boot disk sdb"), "{boot:?}");
    assert!(boot[0].contains("sdb1 on /") && boot[0].contains("sdb2 on /boot/efi"));
    assert!(!boot[0].contains("sda"), "{boot:?}");
    let input = strs(&controller(&doc, "0000:05:00.0")["host_needs"]);
    assert_eq!(input.len(), 1, "{input:?}");
    assert!(input[0].contains("3-1.1") && input[0].contains("keyboard"));
}

/// The stick no longer holds / (the host booted from its SATA disk): the
/// controller is free. And a root on LUKS on the stick still counts.
#[test]
fn boot_disk_follows_the_mounts() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("host");
    copy_tree(&usb_host("storage-boot-stick-hub"), &dir);
    put(
        &dir,
        "proc/self/mountinfo",
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
         23 22 8:17 / /mnt rw,relatime shared:2 - ext4 /dev/sdb1 rw\n",
    );
    let doc = list_json(&dir);
    assert_eq!(
        strs(&controller(&doc, "0000:00:14.0")["host_needs"]),
        Vec::<String>::new()
    );

    // sdb2 → dm-0 (LUKS) mounted on /.
    put(&dir, "sys/class/block/sdb2/holders/dm-0", "");
    put(&dir, "sys/class/block/dm-0/dev", "254:0\n");
    put(
        &dir,
        "sys/class/block/dm-0/dm/uuid",
        "CRYPT-LUKS2-abc-root\n",
    );
    put(
        &dir,
        "proc/self/mountinfo",
        "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/mapper/root rw\n",
    );
    let doc = list_json(&dir);
    let needs = strs(&controller(&doc, "0000:00:14.0")["host_needs"]);
    assert_eq!(needs.len(), 1, "{needs:?}");
    assert!(needs[0].contains("dm-0 on /"), "{needs:?}");
}

/// Control characters in a device's strings are escaped in the table (and
/// kept, escaped by serde, in JSON).
#[test]
fn host_strings_are_escaped() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("host");
    copy_tree(&usb_host("storage-boot-stick-hub"), &dir);
    put(
        &dir,
        "sys/devices/pci0000:00/0000:00:1c.4/0000:05:00.0/usb3/3-1/3-1.3/product",
        "Mouse\x1b]0;pwned\x07\n",
    );
    let text = list_text(&dir);
    assert!(!text.contains('\x1b'), "{text}");
    assert!(text.contains("Mouse\\u{1b}]0;pwned"), "{text}");
    let doc = list_json(&dir);
    assert_eq!(
        device(&doc, "3-1.3")["product_name"],
        "Mouse\x1b]0;pwned\x07"
    );
}

/// `exliar snapshot` of a fixture, read back with --root, lists the same.
#[test]
fn snapshot_round_trips() {
    for name in HOSTS {
        let h = usb_host(name);
        let tmp = tempfile::tempdir().expect("tempdir");
        let snap = tmp.path().join("snap");
        exliar()
            .args(["snapshot", "--root"])
            .arg(&h)
            .arg(&snap)
            .assert()
            .success();
        let mut a = list_json(&h);
        let mut b = list_json(&snap);
        a["root"] = Value::Null;
        b["root"] = Value::Null;
        assert_eq!(a, b, "{name}: snapshot lists differently");
        assert_eq!(
            redact(&list_text(&h), &h),
            redact(&list_text(&snap), &snap),
            "{name}"
        );
        // usb.ids is cut down to the entries used (the L1 had none).
        let Some(ids_path) = a["usb_ids"].as_str() else {
            assert_eq!(name, &"qemu-l1-xhci-kbd-tablet", "{name}: no usb.ids");
            continue;
        };
        let ids_path = ids_path.trim_start_matches('/');
        let full = std::fs::read_to_string(h.join(ids_path)).expect("fixture usb.ids");
        let cut = std::fs::read_to_string(snap.join(ids_path)).expect("snapshot usb.ids");
        assert!(cut.len() < full.len(), "{name}: usb.ids not trimmed");
        assert!(!cut.contains("C 03"), "{name}");
    }
}

/// A FIFO in an attribute's place, a link loop and names that are no USB
/// device: read without hanging, the rest listed.
#[test]
fn hostile_tree_is_read_without_hanging() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("host");
    copy_tree(&usb_host("storage-boot-stick-hub"), &dir);
    let product = dir.join("sys/devices/pci0000:00/0000:00:1c.4/0000:05:00.0/usb3/3-1/product");
    std::fs::remove_file(&product).expect("rm product");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &product,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .expect("mkfifo");
    let devs = dir.join("sys/bus/usb/devices");
    std::os::unix::fs::symlink("9-9", devs.join("9-8")).expect("link");
    std::os::unix::fs::symlink("9-8", devs.join("9-9")).expect("link");
    std::fs::write(devs.join("not-a-device"), "").expect("write");
    let doc = list_json(&dir);
    // The hub lost its product string to the FIFO: usb.ids names it.
    assert_eq!(device(&doc, "3-1")["product_name"], "Hub");
    assert_eq!(device(&doc, "3-1")["product_name_source"], "usb.ids");
    // The looping entries are no devices: skipped, with a warning.
    let ids = strs(
        &doc["devices"]
            .as_array()
            .expect("devices")
            .iter()
            .map(|d| d["id"].clone())
            .collect(),
    );
    assert!(!ids.iter().any(|i| i.starts_with("9-")), "{ids:?}");
    assert_eq!(ids.len(), 8, "{ids:?}");
    let out = exliar()
        .args(["usb", "list", "--root"])
        .arg(&dir)
        .output()
        .expect("run exliar");
    assert!(
        stderr(&out).contains("9-8: no readable idVendor"),
        "{}",
        stderr(&out)
    );
    assert_eq!(device(&doc, "1-2")["kind"][0], "storage");
}

/// The one tree a real kernel wrote: `exliar snapshot` of the real-tools
/// tier's L1 (Debian's kernel, QEMU's xHCI with a keyboard and a Wacom
/// tablet, usbhid bound).
#[test]
fn a_real_kernels_tree_reads_back() {
    let doc = list_json(&usb_host("qemu-l1-xhci-kbd-tablet"));
    let devs = doc["devices"].as_array().expect("devices");
    let kbd = devs
        .iter()
        .find(|d| d["vendor"] == "0627" && d["product"] == "0001")
        .expect("QEMU's keyboard");
    assert_eq!(kbd["controller"], "0000:04:00.0");
    assert_eq!(kbd["interfaces"][0]["driver"], "usbhid");
    assert_eq!(kbd["product_name_source"], "sysfs");
    assert!(
        kbd["kind"]
            .as_array()
            .expect("kind")
            .iter()
            .any(|k| k == "keyboard")
    );
    let roots = devs.iter().filter(|d| d["root_hub"] == true).count();
    assert_eq!(roots, 2, "xHCI has a USB 2 and a USB 3 root hub");
}
