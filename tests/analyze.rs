//! `exliar analyze` over every real machine in `shared/fixtures/hw-dumps`:
//! hand-written expectations per machine (read from each file and its
//! `# notes:` line), plus insta snapshots of the human and JSON reports.
//!
//! The dumps live beside the crate (`../shared/fixtures/hw-dumps`); when that
//! folder is absent the tests say so and pass.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

const DUMPS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/hw-dumps");

fn dumps() -> Option<PathBuf> {
    let p = Path::new(DUMPS);
    if p.is_dir() {
        Some(p.to_path_buf())
    } else {
        println!("skipped: {DUMPS} is absent (the hw-dumps fixtures are not checked out)");
        None
    }
}

/// Run `exliar analyze [--json] FILE...` in the dumps folder (so file names
/// in the output are the bare names); returns stdout.
fn analyze(dir: &Path, files: &[&str], json: bool) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_exliar"));
    cmd.current_dir(dir).arg("analyze");
    if json {
        cmd.arg("--json");
    }
    cmd.args(files);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running exliar: {e}"));
    assert!(
        out.status.success(),
        "exliar analyze {files:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One GPU as it should come out.
struct Gpu {
    address: &'static str,
    /// `vvvv:dddd`, `?` parts where the text has no number.
    ids: &'static str,
    kind: &'static str,
    vendor: &'static str,
    /// `discrete`, `integrated` or `bmc`.
    role: &'static str,
    boot_display: bool,
    driver: Option<&'static str>,
    iommu_group: Option<u64>,
    functions: &'static [&'static str],
    isolation: &'static str,
    identical_ids_with: &'static [&'static str],
    quirks: &'static [&'static str],
}

/// One machine: its files and what the report must say.
struct Machine {
    files: &'static [&'static str],
    iommu_enabled: Option<bool>,
    devices: usize,
    group_count: usize,
    /// Locations (`file:line`) of the expected warnings.
    warnings: &'static [&'static str],
    gpus: &'static [Gpu],
    mode: &'static str,
    passthrough: Option<&'static str>,
    host: Option<&'static str>,
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn opt_str(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

fn check(name: &str, m: &Machine) {
    let Some(dir) = dumps() else {
        return;
    };
    let json_text = analyze(&dir, m.files, true);
    let doc: Value =
        serde_json::from_str(&json_text).unwrap_or_else(|e| panic!("{name}: invalid JSON: {e}"));

    assert_eq!(doc["schema"], "exliar.inventory/1", "{name}");
    assert_eq!(doc["source"]["kind"], "listing", "{name}");
    assert_eq!(
        strs(&doc["source"]["files"]),
        m.files,
        "{name}: source files"
    );
    assert_eq!(
        doc["iommu"]["enabled"].as_bool(),
        m.iommu_enabled,
        "{name}: iommu.enabled"
    );
    assert_eq!(
        doc["iommu"]["group_count"].as_u64(),
        Some(m.group_count as u64),
        "{name}: group count"
    );
    let devices = doc["devices"].as_array().map_or(0, Vec::len);
    assert_eq!(devices, m.devices, "{name}: device count");
    let warnings: Vec<String> = doc["warnings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|w| w["location"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(warnings, m.warnings, "{name}: warnings {}", doc["warnings"]);

    let gpus = doc["gpus"].as_array().cloned().unwrap_or_default();
    let addresses: Vec<String> = gpus.iter().filter_map(|g| opt_str(&g["address"])).collect();
    let want: Vec<&str> = m.gpus.iter().map(|g| g.address).collect();
    assert_eq!(addresses, want, "{name}: GPU addresses");
    for (g, e) in gpus.iter().zip(m.gpus) {
        let at = format!("{name} {}", e.address);
        let ids = format!(
            "{}:{}",
            g["vendor_id"].as_str().unwrap_or("????"),
            g["device_id"].as_str().unwrap_or("????")
        );
        assert_eq!(ids, e.ids, "{at}: ids");
        assert_eq!(g["kind"], e.kind, "{at}: kind");
        assert_eq!(g["vendor"], e.vendor, "{at}: vendor");
        let role = if g["bmc"] == true {
            "bmc"
        } else if g["integrated"] == true {
            "integrated"
        } else {
            "discrete"
        };
        assert_eq!(role, e.role, "{at}: role");
        assert_eq!(g["boot_display"], e.boot_display, "{at}: boot display");
        assert_eq!(opt_str(&g["driver"]).as_deref(), e.driver, "{at}: driver");
        assert_eq!(g["iommu_group"].as_u64(), e.iommu_group, "{at}: group");
        assert_eq!(strs(&g["functions"]), e.functions, "{at}: functions");
        assert_eq!(g["isolation"], e.isolation, "{at}: isolation");
        assert_eq!(
            strs(&g["identical_ids_with"]),
            e.identical_ids_with,
            "{at}: identical ids"
        );
        assert_eq!(strs(&g["quirks"]), e.quirks, "{at}: quirks");
    }
    let r = &doc["recommendation"];
    assert_eq!(r["mode"], m.mode, "{name}: mode; reasons {}", r["reasons"]);
    assert_eq!(
        opt_str(&r["passthrough"]).as_deref(),
        m.passthrough,
        "{name}: passthrough; reasons {}",
        r["reasons"]
    );
    assert_eq!(opt_str(&r["host"]).as_deref(), m.host, "{name}: host");

    // Snapshots: the JSON document (version redacted) and the human report.
    let mut redacted = doc.clone();
    redacted["exliar_version"] = Value::String("[version]".to_string());
    let pretty = serde_json::to_string_pretty(&redacted).unwrap_or_else(|e| panic!("{name}: {e}"));
    insta::assert_snapshot!(format!("{name}.json"), pretty);
    let human = analyze(&dir, m.files, false);
    insta::assert_snapshot!(format!("{name}.txt"), human);
}

macro_rules! machines {
    ($($test:ident: $m:expr;)*) => {
        $(
            #[test]
            fn $test() {
                check(stringify!($test), &$m);
            }
        )*
    };
}

const NONE: &[&str] = &[];

machines! {
    // Skylake iGPU + GTX 960 sharing group 1 with its root port only.
    m01_z170_gtx960: Machine {
        files: &["01-asrock-z170-skylake-gtx960.txt"],
        iommu_enabled: Some(true), devices: 20, group_count: 14, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:00:02.0", ids: "8086:1912", kind: "vga", vendor: "intel", role: "integrated",
                  boot_display: true, driver: None, iommu_group: Some(2), functions: &["0000:00:02.0"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: NONE },
            Gpu { address: "0000:01:00.0", ids: "10de:1401", kind: "vga", vendor: "nvidia", role: "discrete",
                  boot_display: false, driver: None, iommu_group: Some(1),
                  functions: &["0000:01:00.0", "0000:01:00.1"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: NONE },
        ],
        mode: "split", passthrough: Some("0000:01:00.0"), host: Some("0000:00:02.0"),
    };
    // Raven Ridge APU (its HDMI audio shares dirty group 12) + RX 580 alone
    // in group 8 without its audio function.
    m02_b450m_apu_rx580: Machine {
        files: &["02-msi-b450m-mortar-ryzen-apu-rx580.txt"],
        iommu_enabled: Some(true), devices: 33, group_count: 13, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:10:00.0", ids: "1002:67df", kind: "vga", vendor: "amd", role: "discrete",
                  boot_display: false, driver: None, iommu_group: Some(8), functions: &["0000:10:00.0"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: &["amd-reset-bug"] },
            Gpu { address: "0000:38:00.0", ids: "1002:15dd", kind: "vga", vendor: "amd", role: "integrated",
                  boot_display: true, driver: None, iommu_group: Some(11),
                  functions: &["0000:38:00.0", "0000:38:00.1"],
                  isolation: "shared", identical_ids_with: NONE, quirks: &["amd-reset-bug"] },
        ],
        mode: "split", passthrough: Some("0000:10:00.0"), host: Some("0000:38:00.0"),
    };
    // HD 7450 in the dirty chipset group 11 (its audio line is truncated),
    // GTX 960 isolated in group 12.
    m03_b450m_hd7450_dirty_gtx960: Machine {
        files: &["03-msi-b450m-mortar-max-matisse-hd7450-dirty-gtx960.txt"],
        iommu_enabled: Some(true), devices: 41, group_count: 13,
        warnings: &["03-msi-b450m-mortar-max-matisse-hd7450-dirty-gtx960.txt:53"],
        gpus: &[
            Gpu { address: "0000:25:00.0", ids: "1002:677b", kind: "vga", vendor: "amd", role: "discrete",
                  boot_display: true, driver: None, iommu_group: Some(11),
                  functions: &["0000:25:00.0", "0000:25:00.1"],
                  isolation: "shared", identical_ids_with: NONE, quirks: &["legacy-vbios-no-uefi"] },
            Gpu { address: "0000:26:00.0", ids: "10de:1401", kind: "vga", vendor: "nvidia", role: "discrete",
                  boot_display: false, driver: None, iommu_group: Some(12),
                  functions: &["0000:26:00.0", "0000:26:00.1"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: NONE },
        ],
        mode: "split", passthrough: Some("0000:26:00.0"), host: Some("0000:25:00.0"),
    };
    // GT 710 in the dirty chipset group 13; RTX 2070 SUPER with 4 functions
    // alone in group 14.
    m04_b550m_gt710_dirty_rtx2070s: Machine {
        files: &["04-msi-b550m-mortar-matisse-gt710-dirty-rtx2070s.txt"],
        iommu_enabled: Some(true), devices: 38, group_count: 20, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:04:00.0", ids: "10de:128b", kind: "vga", vendor: "nvidia", role: "discrete",
                  boot_display: true, driver: None, iommu_group: Some(13),
                  functions: &["0000:04:00.0", "0000:04:00.1"],
                  isolation: "shared", identical_ids_with: NONE, quirks: &["nvidia-boot-vga-rom"] },
            Gpu { address: "0000:2b:00.0", ids: "10de:1e84", kind: "vga", vendor: "nvidia", role: "discrete",
                  boot_display: false, driver: None, iommu_group: Some(14),
                  functions: &["0000:2b:00.0", "0000:2b:00.1", "0000:2b:00.2", "0000:2b:00.3"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: &["nvidia-usb-ucsi"] },
        ],
        mode: "split", passthrough: Some("0000:2b:00.0"), host: Some("0000:04:00.0"),
    };
    // Dual Xeon, 148 functions: three NVIDIA cards each alone with its audio,
    // ASPEED BMC behind its bridge in group 24.
    m05_dual_xeon_three_nvidia_aspeed: Machine {
        files: &["05-dual-xeon-x79-c602-three-nvidia-aspeed.txt"],
        iommu_enabled: Some(true), devices: 148, group_count: 53, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:04:00.0", ids: "10de:1b81", kind: "vga", vendor: "nvidia", role: "discrete",
                  boot_display: false, driver: None, iommu_group: Some(20),
                  functions: &["0000:04:00.0", "0000:04:00.1"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: NONE },
            Gpu { address: "0000:05:00.0", ids: "10de:1184", kind: "vga", vendor: "nvidia", role: "discrete",
                  boot_display: false, driver: None, iommu_group: Some(21),
                  functions: &["0000:05:00.0", "0000:05:00.1"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: NONE },
            Gpu { address: "0000:0a:00.0", ids: "1a03:2000", kind: "vga", vendor: "aspeed", role: "bmc",
                  boot_display: true, driver: None, iommu_group: Some(24), functions: &["0000:0a:00.0"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: NONE },
            Gpu { address: "0000:82:00.0", ids: "10de:13c2", kind: "vga", vendor: "nvidia", role: "discrete",
                  boot_display: false, driver: None, iommu_group: Some(41),
                  functions: &["0000:82:00.0", "0000:82:00.1"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: NONE },
        ],
        mode: "split", passthrough: Some("0000:04:00.0"), host: Some("0000:0a:00.0"),
    };
    // Hand-edited listing (## comments, reordered groups): the RTX 4090 is
    // the only GPU.
    m06_raptorlake_rtx4090_annotated: Machine {
        files: &["06-raptorlake-rtx4090-annotated.txt"],
        iommu_enabled: Some(true), devices: 27, group_count: 22, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:01:00.0", ids: "10de:2684", kind: "vga", vendor: "nvidia", role: "discrete",
                  boot_display: true, driver: None, iommu_group: Some(16),
                  functions: &["0000:01:00.0", "0000:01:00.1"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: &["nvidia-boot-vga-rom"] },
        ],
        mode: "single-gpu", passthrough: None, host: Some("0000:01:00.0"),
    };
    // Every function in its own group: VGA and audio of both cards split.
    m08_am5_rtx3060_audio_split: Machine {
        files: &["08-ryzen7950x-am5-rtx3060-audio-split.txt"],
        iommu_enabled: Some(true), devices: 53, group_count: 45, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:01:00.0", ids: "10de:2504", kind: "vga", vendor: "nvidia", role: "discrete",
                  boot_display: false, driver: None, iommu_group: Some(12),
                  functions: &["0000:01:00.0", "0000:01:00.1"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: NONE },
            Gpu { address: "0000:15:00.0", ids: "1002:164e", kind: "vga", vendor: "amd", role: "integrated",
                  boot_display: true, driver: None, iommu_group: Some(38),
                  functions: &["0000:15:00.0", "0000:15:00.1"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: NONE },
        ],
        mode: "split", passthrough: Some("0000:01:00.0"), host: Some("0000:15:00.0"),
    };
    // One RTX 3060, no iGPU.
    m09_x570_rtx3060: Machine {
        files: &["09-ryzen-x570-rtx3060.txt"],
        iommu_enabled: Some(true), devices: 46, group_count: 32, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:2d:00.0", ids: "10de:2487", kind: "vga", vendor: "nvidia", role: "discrete",
                  boot_display: true, driver: None, iommu_group: Some(27),
                  functions: &["0000:2d:00.0", "0000:2d:00.1"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: &["nvidia-boot-vga-rom"] },
        ],
        mode: "single-gpu", passthrough: None, host: Some("0000:2d:00.0"),
    };
    // Cezanne APU with its iGPU disabled (only its audio left) + RX 580 +
    // RTX 3060, every function in its own group.
    m10_cezanne_rx580_rtx3060: Machine {
        files: &["10-ryzen5000g-cezanne-rx580-rtx3060.txt"],
        iommu_enabled: Some(true), devices: 45, group_count: 37, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:10:00.0", ids: "1002:67df", kind: "vga", vendor: "amd", role: "discrete",
                  boot_display: true, driver: None, iommu_group: Some(11),
                  functions: &["0000:10:00.0", "0000:10:00.1"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: &["amd-reset-bug"] },
            Gpu { address: "0000:12:00.0", ids: "10de:2504", kind: "vga", vendor: "nvidia", role: "discrete",
                  boot_display: false, driver: None, iommu_group: Some(13),
                  functions: &["0000:12:00.0", "0000:12:00.1"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: NONE },
        ],
        mode: "split", passthrough: Some("0000:12:00.0"), host: Some("0000:10:00.0"),
    };
    // Groups in lexicographic order; RX 580 (33/34) + GTX 1080 (35/36).
    m11_matisse_rx580_gtx1080_unsorted: Machine {
        files: &["11-ryzen-matisse-rx580-gtx1080-unsorted.txt"],
        iommu_enabled: Some(true), devices: 52, group_count: 44, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:0a:00.0", ids: "1002:67df", kind: "vga", vendor: "amd", role: "discrete",
                  boot_display: true, driver: None, iommu_group: Some(33),
                  functions: &["0000:0a:00.0", "0000:0a:00.1"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: &["amd-reset-bug"] },
            Gpu { address: "0000:0b:00.0", ids: "10de:1b80", kind: "vga", vendor: "nvidia", role: "discrete",
                  boot_display: false, driver: None, iommu_group: Some(35),
                  functions: &["0000:0b:00.0", "0000:0b:00.1"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: NONE },
        ],
        mode: "split", passthrough: Some("0000:0b:00.0"), host: Some("0000:0a:00.0"),
    };
    // RX 7800 XT behind its on-card switch + RTX 2070 SUPER with 4 functions
    // in 4 groups (20-23).
    m14_am5_rx7800xt_rtx2070s: Machine {
        files: &["14-am5-granite-ridge-rx7800xt-rtx2070super.txt"],
        iommu_enabled: Some(true), devices: 65, group_count: 57, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:03:00.0", ids: "1002:747e", kind: "vga", vendor: "amd", role: "discrete",
                  boot_display: true, driver: None, iommu_group: Some(17),
                  functions: &["0000:03:00.0", "0000:03:00.1"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: NONE },
            Gpu { address: "0000:05:00.0", ids: "10de:1e84", kind: "vga", vendor: "nvidia", role: "discrete",
                  boot_display: false, driver: None, iommu_group: Some(20),
                  functions: &["0000:05:00.0", "0000:05:00.1", "0000:05:00.2", "0000:05:00.3"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: &["nvidia-usb-ucsi"] },
        ],
        mode: "split", passthrough: Some("0000:05:00.0"), host: Some("0000:03:00.0"),
    };
    // Merged: groups from the listing, drivers from `lspci -kk` (no ids);
    // the Vega is the only GPU and already on vfio-pci.
    m15_x570_itx_vega64_merged: Machine {
        files: &[
            "15-asrock-x570-itx-tb3-vega64-proxmox.iommu.txt",
            "15-asrock-x570-itx-tb3-vega64-proxmox.lspci-kk.txt",
        ],
        iommu_enabled: Some(true), devices: 54, group_count: 39, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:2c:00.0", ids: "1002:687f", kind: "vga", vendor: "amd", role: "discrete",
                  boot_display: true, driver: Some("vfio-pci"), iommu_group: Some(32),
                  functions: &["0000:2c:00.0", "0000:2c:00.1"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: &["amd-reset-bug"] },
        ],
        mode: "single-gpu", passthrough: None, host: Some("0000:2c:00.0"),
    };
    // The listing alone: same groups, no drivers.
    m15_x570_itx_vega64_iommu_only: Machine {
        files: &["15-asrock-x570-itx-tb3-vega64-proxmox.iommu.txt"],
        iommu_enabled: Some(true), devices: 52, group_count: 39, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:2c:00.0", ids: "1002:687f", kind: "vga", vendor: "amd", role: "discrete",
                  boot_display: true, driver: None, iommu_group: Some(32),
                  functions: &["0000:2c:00.0", "0000:2c:00.1"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: &["amd-reset-bug"] },
        ],
        mode: "single-gpu", passthrough: None, host: Some("0000:2c:00.0"),
    };
    // `lspci -kk` alone: no ids (vendor ids from the vendor names), no groups.
    m15_x570_itx_vega64_lspci_only: Machine {
        files: &["15-asrock-x570-itx-tb3-vega64-proxmox.lspci-kk.txt"],
        iommu_enabled: None, devices: 54, group_count: 0, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:2c:00.0", ids: "1002:????", kind: "vga", vendor: "amd", role: "discrete",
                  boot_display: true, driver: Some("vfio-pci"), iommu_group: None,
                  functions: &["0000:2c:00.0", "0000:2c:00.1"],
                  isolation: "unknown", identical_ids_with: NONE, quirks: NONE },
        ],
        mode: "single-gpu", passthrough: None, host: Some("0000:2c:00.0"),
    };
    // Merged: flat lexicographic listing after a prompt + `lspci -nnk -d`
    // excerpts: the Vega (on vfio-pci) goes to the guest, the RX 480 stays.
    m16_x470_rx480_vega64_merged: Machine {
        files: &[
            "16-asrock-x470-taichi-rx480-vega64-fedora.iommu.txt",
            "16-asrock-x470-taichi-rx480-vega64-fedora.lspci-nnk.txt",
        ],
        iommu_enabled: Some(true), devices: 52, group_count: 27, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:2e:00.0", ids: "1002:67df", kind: "vga", vendor: "amd", role: "discrete",
                  boot_display: true, driver: None, iommu_group: Some(16),
                  functions: &["0000:2e:00.0", "0000:2e:00.1"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: &["amd-reset-bug"] },
            Gpu { address: "0000:31:00.0", ids: "1002:687f", kind: "vga", vendor: "amd", role: "discrete",
                  boot_display: false, driver: Some("vfio-pci"), iommu_group: Some(19),
                  functions: &["0000:31:00.0", "0000:31:00.1"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: &["amd-reset-bug"] },
        ],
        mode: "split", passthrough: Some("0000:31:00.0"), host: Some("0000:2e:00.0"),
    };
    // The two `lspci -nnk -d` excerpts alone: the Vega's two functions.
    m16_x470_vega64_lspci_only: Machine {
        files: &["16-asrock-x470-taichi-rx480-vega64-fedora.lspci-nnk.txt"],
        iommu_enabled: None, devices: 2, group_count: 0, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:31:00.0", ids: "1002:687f", kind: "vga", vendor: "amd", role: "discrete",
                  boot_display: true, driver: Some("vfio-pci"), iommu_group: None,
                  functions: &["0000:31:00.0", "0000:31:00.1"],
                  isolation: "unknown", identical_ids_with: NONE, quirks: &["amd-reset-bug"] },
        ],
        mode: "single-gpu", passthrough: None, host: Some("0000:31:00.0"),
    };
    // Terminal session: tab listing, `lspci -nnk`, and an unsorted
    // `### Group N ###` listing without ids, all of one machine. The RX 550
    // is on vfio-pci, the RX 6700 XT on amdgpu, the iGPU on i915.
    m17_alderlake_rx6700xt_rx550_session: Machine {
        files: &["17-alderlake-asus-rx6700xt-rx550-vfio.session.txt"],
        iommu_enabled: Some(true), devices: 43, group_count: 36, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:00:02.0", ids: "8086:4680", kind: "vga", vendor: "intel", role: "integrated",
                  boot_display: true, driver: Some("i915"), iommu_group: Some(3), functions: &["0000:00:02.0"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: NONE },
            Gpu { address: "0000:03:00.0", ids: "1002:73df", kind: "vga", vendor: "amd", role: "discrete",
                  boot_display: false, driver: Some("amdgpu"), iommu_group: Some(21),
                  functions: &["0000:03:00.0", "0000:03:00.1"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: NONE },
            Gpu { address: "0000:04:00.0", ids: "1002:67ff", kind: "vga", vendor: "amd", role: "discrete",
                  boot_display: false, driver: Some("vfio-pci"), iommu_group: Some(23),
                  functions: &["0000:04:00.0", "0000:04:00.1"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: &["amd-reset-bug"] },
        ],
        mode: "split", passthrough: Some("0000:04:00.0"), host: Some("0000:00:02.0"),
    };
    // Merged: lowercase `IOMMU group N` flat listing after a prompt and
    // /proc/cmdline + `lspci -nnkq` with 8-space details.
    m18_z370_gt1030_uhd630_merged: Machine {
        files: &[
            "18-asrock-z370-i5-9400-gt1030-uhd630.iommu.txt",
            "18-asrock-z370-i5-9400-gt1030-uhd630.lspci-nnkq.txt",
        ],
        iommu_enabled: Some(true), devices: 21, group_count: 15, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:00:02.0", ids: "8086:3e92", kind: "vga", vendor: "intel", role: "integrated",
                  boot_display: true, driver: Some("i915"), iommu_group: Some(0), functions: &["0000:00:02.0"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: NONE },
            Gpu { address: "0000:01:00.0", ids: "10de:1d01", kind: "vga", vendor: "nvidia", role: "discrete",
                  boot_display: false, driver: None, iommu_group: Some(2),
                  functions: &["0000:01:00.0", "0000:01:00.1"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: NONE },
        ],
        mode: "split", passthrough: Some("0000:01:00.0"), host: Some("0000:00:02.0"),
    };
    // r15ch13 columns listing with USB and continuation lines; the RX 7600
    // is the only GPU.
    m19_b560_rx7600_columns: Machine {
        files: &["19-tigerlake-b560-rx7600-navi33.txt"],
        iommu_enabled: Some(true), devices: 20, group_count: 16, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:03:00.0", ids: "1002:7480", kind: "vga", vendor: "amd", role: "discrete",
                  boot_display: true, driver: None, iommu_group: Some(12),
                  functions: &["0000:03:00.0", "0000:03:00.1"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: NONE },
        ],
        mode: "single-gpu", passthrough: None, host: Some("0000:03:00.0"),
    };
    // Laptop, MUXed GTX 1060 Mobile (no audio function) in group 1 with its
    // root port.
    m20_laptop_gtx1060_muxed: Machine {
        files: &["20-laptop-coffeelake-h-gtx1060-mobile-muxed.txt"],
        iommu_enabled: Some(true), devices: 17, group_count: 11, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:00:02.0", ids: "8086:3e9b", kind: "vga", vendor: "intel", role: "integrated",
                  boot_display: true, driver: None, iommu_group: Some(2), functions: &["0000:00:02.0"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: NONE },
            Gpu { address: "0000:01:00.0", ids: "10de:1c20", kind: "vga", vendor: "nvidia", role: "discrete",
                  boot_display: false, driver: None, iommu_group: Some(1), functions: &["0000:01:00.0"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: NONE },
        ],
        mode: "split", passthrough: Some("0000:01:00.0"), host: Some("0000:00:02.0"),
    };
    // Optimus laptop: MX150 '3D controller' in dirty group 7 with WiFi and a
    // card reader: nothing can be passed through.
    m21_laptop_mx150_dirty: Machine {
        files: &["21-laptop-kabylake-u-mx150-optimus-dirty-group.txt"],
        iommu_enabled: Some(true), devices: 21, group_count: 10, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:00:02.0", ids: "8086:5917", kind: "vga", vendor: "intel", role: "integrated",
                  boot_display: true, driver: None, iommu_group: Some(1), functions: &["0000:00:02.0"],
                  isolation: "isolated", identical_ids_with: NONE, quirks: NONE },
            Gpu { address: "0000:01:00.0", ids: "10de:1d10", kind: "3d", vendor: "nvidia", role: "discrete",
                  boot_display: false, driver: None, iommu_group: Some(7), functions: &["0000:01:00.0"],
                  isolation: "shared", identical_ids_with: NONE, quirks: NONE },
        ],
        mode: "none", passthrough: None, host: Some("0000:00:02.0"),
    };
    // Two identical RX 580 in clean groups 16 and 17.
    m23_dual_identical_rx580: Machine {
        files: &["23-ryzen1-x370-dual-identical-rx580.txt"],
        iommu_enabled: Some(true), devices: 44, group_count: 24, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:26:00.0", ids: "1002:67df", kind: "vga", vendor: "amd", role: "discrete",
                  boot_display: true, driver: None, iommu_group: Some(16),
                  functions: &["0000:26:00.0", "0000:26:00.1"],
                  isolation: "isolated", identical_ids_with: &["0000:27:00.0"], quirks: &["amd-reset-bug"] },
            Gpu { address: "0000:27:00.0", ids: "1002:67df", kind: "vga", vendor: "amd", role: "discrete",
                  boot_display: false, driver: None, iommu_group: Some(17),
                  functions: &["0000:27:00.0", "0000:27:00.1"],
                  isolation: "isolated", identical_ids_with: &["0000:26:00.0"], quirks: &["amd-reset-bug"] },
        ],
        mode: "split", passthrough: Some("0000:27:00.0"), host: Some("0000:26:00.0"),
    };
    // `lspci -v`, no ids, no groups: isolation cannot be judged.
    m25_laptop_t430_nvs5400m_v: Machine {
        files: &["25-laptop-thinkpad-t430-nvs5400m-optimus.lspci-v.txt"],
        iommu_enabled: None, devices: 18, group_count: 0, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:00:02.0", ids: "8086:????", kind: "vga", vendor: "intel", role: "integrated",
                  boot_display: true, driver: Some("i915"), iommu_group: None, functions: &["0000:00:02.0"],
                  isolation: "unknown", identical_ids_with: NONE, quirks: NONE },
            Gpu { address: "0000:01:00.0", ids: "10de:????", kind: "vga", vendor: "nvidia", role: "discrete",
                  boot_display: false, driver: Some("nvidia"), iommu_group: None, functions: &["0000:01:00.0"],
                  isolation: "unknown", identical_ids_with: NONE, quirks: NONE },
        ],
        mode: "none", passthrough: None, host: Some("0000:00:02.0"),
    };
    // `lspci -v` as non-root: the GTX 1060 Max-Q is the only GPU (iGPU
    // disabled): never recommended for passthrough.
    m26_laptop_omen_gtx1060_only_gpu: Machine {
        files: &["26-laptop-hp-omen-15-gtx1060-maxq-no-igpu.lspci-v.txt"],
        iommu_enabled: None, devices: 22, group_count: 0, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:01:00.0", ids: "10de:????", kind: "vga", vendor: "nvidia", role: "discrete",
                  boot_display: true, driver: Some("nvidia"), iommu_group: None, functions: &["0000:01:00.0"],
                  isolation: "unknown", identical_ids_with: NONE, quirks: &["nvidia-boot-vga-rom"] },
        ],
        mode: "single-gpu", passthrough: None, host: Some("0000:01:00.0"),
    };
    // Plain `lspci` (CRLF) of an EPYC server: two identical H100 '3D
    // controllers' (identical by name: no ids) and an ASPEED BMC.
    m27_epyc_dual_h100_plain: Machine {
        files: &["27-supermicro-epyc-genoa-dual-h100-server.lspci.txt"],
        iommu_enabled: None, devices: 149, group_count: 0, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:62:00.0", ids: "1a03:????", kind: "vga", vendor: "aspeed", role: "bmc",
                  boot_display: true, driver: None, iommu_group: None, functions: &["0000:62:00.0"],
                  isolation: "unknown", identical_ids_with: NONE, quirks: NONE },
            Gpu { address: "0000:c1:00.0", ids: "10de:????", kind: "3d", vendor: "nvidia", role: "discrete",
                  boot_display: false, driver: None, iommu_group: None, functions: &["0000:c1:00.0"],
                  isolation: "unknown", identical_ids_with: &["0000:e1:00.0"], quirks: NONE },
            Gpu { address: "0000:e1:00.0", ids: "10de:????", kind: "3d", vendor: "nvidia", role: "discrete",
                  boot_display: false, driver: None, iommu_group: None, functions: &["0000:e1:00.0"],
                  isolation: "unknown", identical_ids_with: &["0000:c1:00.0"], quirks: NONE },
        ],
        mode: "none", passthrough: None, host: Some("0000:62:00.0"),
    };
    // grep excerpt with `--` separators: two identical T400, one on vfio-pci.
    m28_truenas_dual_t400_excerpt: Machine {
        files: &["28-truenas-dual-identical-t400-one-vfio.lspci-nnk-excerpt.txt"],
        iommu_enabled: None, devices: 3, group_count: 0, warnings: NONE,
        gpus: &[
            Gpu { address: "0000:03:00.0", ids: "1a03:2000", kind: "vga", vendor: "aspeed", role: "bmc",
                  boot_display: true, driver: Some("ast"), iommu_group: None, functions: &["0000:03:00.0"],
                  isolation: "unknown", identical_ids_with: NONE, quirks: NONE },
            Gpu { address: "0000:17:00.0", ids: "10de:1ff2", kind: "vga", vendor: "nvidia", role: "discrete",
                  boot_display: false, driver: Some("vfio-pci"), iommu_group: None, functions: &["0000:17:00.0"],
                  isolation: "unknown", identical_ids_with: &["0000:65:00.0"], quirks: NONE },
            Gpu { address: "0000:65:00.0", ids: "10de:1ff2", kind: "vga", vendor: "nvidia", role: "discrete",
                  boot_display: false, driver: Some("nvidia"), iommu_group: None, functions: &["0000:65:00.0"],
                  isolation: "unknown", identical_ids_with: &["0000:17:00.0"], quirks: NONE },
        ],
        mode: "none", passthrough: None, host: Some("0000:03:00.0"),
    };
}

/// Every dump in the folder is covered by a test above.
#[test]
fn every_dump_is_covered() {
    let Some(dir) = dumps() else {
        return;
    };
    let covered = [
        "01", "02", "03", "04", "05", "06", "08", "09", "10", "11", "14", "15", "16", "17", "18",
        "19", "20", "21", "23", "25", "26", "27", "28",
    ];
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{DUMPS}: {e}"));
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".txt") {
            continue;
        }
        let nn = name.get(..2).unwrap_or("");
        assert!(covered.contains(&nn), "{name} has no expectations here");
    }
}

/// The `# source:`/`# notes:` header is ordinary comment text to the
/// parser: the dumps parse without any warning about it, and the same
/// text without it gives the same devices.
#[test]
fn header_lines_are_ordinary_comments() {
    let Some(dir) = dumps() else {
        return;
    };
    let file = "05-dual-xeon-x79-c602-three-nvidia-aspeed.txt";
    let text = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{e}"));
    let body: String = text.lines().skip(2).map(|l| format!("{l}\n")).collect();
    let run = |input: String| {
        let out = Command::new(env!("CARGO_BIN_EXE_exliar"))
            .args(["analyze", "--json", "-"])
            .write_stdin(input)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(out.status.success());
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
        (
            v["devices"].clone(),
            v["iommu_groups"].clone(),
            v["gpus"].clone(),
        )
    };
    assert_eq!(run(text), run(body));
}

/// Several files on the command line merge regardless of order for the
/// facts only one of them has.
#[test]
fn merge_order_does_not_lose_groups_or_drivers() {
    let Some(dir) = dumps() else {
        return;
    };
    let a = "18-asrock-z370-i5-9400-gt1030-uhd630.iommu.txt";
    let b = "18-asrock-z370-i5-9400-gt1030-uhd630.lspci-nnkq.txt";
    let parse = |files: &[&str]| -> Value {
        serde_json::from_str(&analyze(&dir, files, true)).unwrap_or_else(|e| panic!("{e}"))
    };
    let ab = parse(&[a, b]);
    let ba = parse(&[b, a]);
    assert_eq!(ab["devices"], ba["devices"]);
    assert_eq!(ab["gpus"], ba["gpus"]);
    assert_eq!(ab["recommendation"], ba["recommendation"]);
    assert_eq!(
        ab["host"]["kernel_cmdline"],
        "BOOT_IMAGE=/boot/vmlinuz-6.8.0-49-generic root=UUID=9ff8c203-950b-4f46-8c41-6e994151ecd3 ro quiet splash"
    );
}

/// Nothing usable in any file: exit 2, naming the files.
#[test]
fn nothing_usable_exits_2_naming_the_files() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let prose = dir.path().join("prose.txt");
    let binary = dir.path().join("blob.bin");
    std::fs::write(&prose, "just some words\nIOMMU Group 1:\n").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&binary, [0u8, 159, 146, 150, 255, 0, 10, 1, 2, 3])
        .unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_exliar"))
        .current_dir(dir.path())
        .args(["analyze", "prose.txt", "blob.bin"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("prose.txt") && err.contains("blob.bin"),
        "{err}"
    );
}
