//! Golden tests of the boot-configuration editors over every real file of
//! their formats in ../shared/fixtures/configs (read in place; line 1, the
//! collector's `# source:` header, is stripped). For each file and edit:
//! the result (as a diff against the input, snapshotted), applying again
//! changes nothing, `is_applied` agrees, and `remove` gives the input back
//! byte for byte.

use std::path::PathBuf;

use exliar::plan::editors::InPlaceEdit;
use exliar::plan::initramfs::{booster, dracut, mkinitcpio, tools, vfio_modules};
use exliar::plan::modprobe;

const CONFIGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/configs");

/// Every fixture file's name and text (header stripped), or `None` (with a
/// message) when the shared fixtures are absent.
fn fixtures() -> Option<Vec<(String, String)>> {
    let dir = PathBuf::from(CONFIGS);
    let Ok(rd) = std::fs::read_dir(&dir) else {
        eprintln!("skipping: {} is absent", dir.display());
        return None;
    };
    let mut v: Vec<(String, String)> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            if name == "README.md" {
                return None;
            }
            let text = std::fs::read_to_string(&p).ok()?;
            Some((name, strip_header(&text)))
        })
        .collect();
    v.sort();
    Some(v)
}

fn strip_header(text: &str) -> String {
    assert!(text.starts_with("# source:"), "fixture without header");
    match text.find('\n') {
        Some(i) => text[i + 1..].to_string(),
        None => String::new(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Mkinitcpio,
    Preset,
    Dracut,
    ToolsModules,
    Booster,
    Modprobe,
    /// Boot loaders, kernel command lines, NixOS...: not these editors'.
    Other,
}

fn format_of(name: &str) -> Format {
    if name.starts_with("arch-mkinitcpio.conf.") {
        Format::Mkinitcpio
    } else if name.starts_with("arch-mkinitcpio.d-") {
        Format::Preset
    } else if name.contains("dracut.conf") {
        Format::Dracut
    } else if name.starts_with("debian-initramfs-tools-modules")
        || name.starts_with("proxmox-etc-modules")
    {
        Format::ToolsModules
    } else if name.starts_with("booster.yaml") {
        Format::Booster
    } else if name.starts_with("modprobe.d-") {
        Format::Modprobe
    } else {
        Format::Other
    }
}

fn of_format(f: Format) -> Vec<(String, String)> {
    fixtures()
        .unwrap_or_default()
        .into_iter()
        .filter(|(n, _)| format_of(n) == f)
        .collect()
}

/// The lines that differ, with two lines of context, numbered as in the
/// result (`+`) or the input (`-`).
fn diff(a: &str, b: &str) -> String {
    if a == b {
        return "(unchanged)\n".to_string();
    }
    let x: Vec<&str> = a.split_inclusive('\n').collect();
    let y: Vec<&str> = b.split_inclusive('\n').collect();
    let (n, m) = (x.len(), y.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if x[i] == y[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // (tag, line number, text)
    let mut ops: Vec<(char, usize, String)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    let show = |s: &str| match s.strip_suffix('\n') {
        Some(t) => t.to_string(),
        None => format!("{s}⏎(no newline at end)"),
    };
    while i < n || j < m {
        if i < n && j < m && x[i] == y[j] {
            ops.push((' ', j + 1, show(y[j])));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', i + 1, show(x[i])));
            i += 1;
        } else {
            ops.push(('+', j + 1, show(y[j])));
            j += 1;
        }
    }
    let near = |k: usize| {
        let lo = k.saturating_sub(2);
        let hi = (k + 2).min(ops.len() - 1);
        (lo..=hi).any(|q| ops[q].0 != ' ')
    };
    let mut out = String::new();
    let mut gap = false;
    for (k, (tag, line, text)) in ops.iter().enumerate() {
        if near(k) {
            if gap {
                out.push_str("...\n");
                gap = false;
            }
            out.push_str(&format!("{tag}{line:>4} {text}\n"));
        } else {
            gap = true;
        }
    }
    out
}

/// The checks every in-place edit must pass on a real file; the snapshot.
fn golden(edit: &InPlaceEdit, name: &str, input: &str) -> String {
    let out = edit
        .apply(input)
        .unwrap_or_else(|e| panic!("{name}: apply failed: {e}"));
    assert_eq!(
        edit.apply(&out).ok().as_deref(),
        Some(out.as_str()),
        "{name}: apply twice"
    );
    assert_eq!(
        edit.is_applied(&out).ok(),
        Some(true),
        "{name}: is_applied(out)"
    );
    assert_eq!(
        edit.is_applied(input).ok(),
        Some(out == input),
        "{name}: is_applied(in)"
    );
    assert_eq!(
        edit.remove(&out).ok().as_deref(),
        Some(input),
        "{name}: remove(apply(x)) != x"
    );
    assert_eq!(
        edit.remove(input).ok().as_deref(),
        Some(input),
        "{name}: remove(x) != x"
    );
    diff(input, &out)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

const SCRIPT: &str = "/usr/lib/exliar/vfio-early-bind";

#[test]
fn every_fixture_has_a_format_or_is_knowingly_someone_elses() {
    let Some(all) = fixtures() else {
        return;
    };
    let mut per = std::collections::BTreeMap::<String, usize>::new();
    for (n, _) in &all {
        *per.entry(format!("{:?}", format_of(n))).or_default() += 1;
    }
    // Changing the fixture set must show up here.
    insta::assert_debug_snapshot!("fixture_formats", per);
}

fn mkinitcpio_inputs() -> Vec<(String, String)> {
    let mut v = of_format(Format::Mkinitcpio);
    // The template's HOOKS is filled in at package build time; the two
    // values it can get (README, section 2).
    if let Some((_, t)) = v
        .iter()
        .find(|(n, _)| n.ends_with("upstream-template"))
        .cloned()
    {
        for (tag, hooks) in [
            (
                "udev",
                "base udev autodetect microcode modconf kms keyboard keymap consolefont block filesystems fsck",
            ),
            (
                "systemd",
                "base systemd autodetect microcode modconf kms keyboard sd-vconsole block filesystems fsck",
            ),
        ] {
            v.push((
                format!("arch-mkinitcpio.conf.template-hooks-{tag}"),
                t.replace("@MKINITCPIO_HOOKS@", hooks),
            ));
        }
    }
    v
}

#[test]
fn mkinitcpio_golden() {
    let inputs = mkinitcpio_inputs();
    if inputs.is_empty() {
        return;
    }
    let ids = InPlaceEdit::Mkinitcpio(mkinitcpio::MkinitcpioEdit {
        modules: strings(&vfio_modules((6, 6))),
        hooks: strings(&["modconf"]),
        files: Vec::new(),
    });
    let early_old = InPlaceEdit::Mkinitcpio(mkinitcpio::MkinitcpioEdit {
        modules: strings(&vfio_modules((5, 15))),
        hooks: strings(&["modconf"]),
        files: strings(&[SCRIPT]),
    });
    for (name, text) in &inputs {
        insta::assert_snapshot!(format!("mkinitcpio-ids-{name}"), golden(&ids, name, text));
        insta::assert_snapshot!(
            format!("mkinitcpio-earlybind-5.15-{name}"),
            golden(&early_old, name, text)
        );
    }
}

#[test]
fn mkinitcpio_bad_input_is_an_error_naming_the_line() {
    let edit = mkinitcpio::MkinitcpioEdit {
        modules: strings(&vfio_modules((6, 6))),
        hooks: strings(&["modconf"]),
        files: strings(&[SCRIPT]),
    };
    for (name, text) in mkinitcpio_inputs() {
        // Cut every array open right after its `(`, and every quote after
        // its opening mark: each must be an error with a line, not a panic.
        for (pos, _) in text.match_indices(['(', '"', '\'']) {
            let line = text[..pos].matches('\n').count() + 1;
            let cut = format!("{}\n", &text[..=pos]);
            let result = edit.apply(&cut);
            // A `(`, `"` or `'` inside a comment is no syntax.
            if cut.lines().last().is_some_and(|l| l.contains('#')) {
                continue;
            }
            match result {
                Err(e) => assert!(e.line >= 1 && e.line <= line, "{name}@{pos}: {e}"),
                Ok(out) => panic!("{name}@{pos}: accepted {cut:?} as {out:?}"),
            }
        }
    }
}

#[test]
fn mkinitcpio_presets() {
    for (name, text) in of_format(Format::Preset) {
        let info = mkinitcpio::preset_info(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        insta::assert_json_snapshot!(format!("preset-{name}"), info);
    }
}

#[test]
fn mkinitcpio_dropin_conflicts() {
    let edit = mkinitcpio::MkinitcpioEdit {
        modules: strings(&vfio_modules((6, 6))),
        hooks: strings(&["modconf"]),
        files: Vec::new(),
    };
    for (name, text) in mkinitcpio_inputs() {
        let Ok(main) = edit.apply(&text) else {
            continue;
        };
        // A real main file as a drop-in re-assigns everything: MODULES (when
        // it lacks the vfio modules up front) must be reported.
        let found =
            mkinitcpio::check_dropins(&main, &[("/etc/mkinitcpio.conf.d/zz.conf", &text)], &edit);
        insta::assert_json_snapshot!(format!("mkinitcpio-dropin-{name}"), found);
    }
}

#[test]
fn obsolete_modules_in_real_files() {
    if fixtures().is_none() {
        return;
    }
    let mut found = Vec::new();
    for (name, text) in mkinitcpio_inputs() {
        for f in
            mkinitcpio::obsolete_modules(&text, (6, 6)).unwrap_or_else(|e| panic!("{name}: {e}"))
        {
            found.push((name.clone(), f.line, f.message));
        }
        assert!(mkinitcpio::obsolete_modules(&text, (6, 1)).is_ok_and(|v| v.is_empty()));
    }
    for (name, text) in of_format(Format::ToolsModules) {
        for f in tools::obsolete_modules(&text, (6, 6)) {
            found.push((name.clone(), f.line, f.message));
        }
    }
    insta::assert_json_snapshot!("obsolete-modules-6.6", found);
}

#[test]
fn dracut_golden() {
    let inputs = of_format(Format::Dracut);
    let edit = dracut::DracutEdit {
        force_drivers: strings(&vfio_modules((6, 6))),
        install_items: strings(&[SCRIPT, modprobe::EARLY_CONF, modprobe::IDS_CONF]),
    };
    let ours = edit.apply("").unwrap_or_default();
    insta::assert_snapshot!("dracut-dropin", ours);
    let edit = InPlaceEdit::Dracut(edit);
    for (name, text) in &inputs {
        insta::assert_snapshot!(format!("dracut-{name}"), golden(&edit, name, text));
        // What dracut would make of this file next to exliar's drop-in.
        let path = if name.contains("dracut.conf.d") {
            format!("/etc/dracut.conf.d/{}.conf", name.trim_end_matches(".conf"))
        } else {
            "/etc/dracut.conf".to_string()
        };
        let summary = dracut::evaluate(&[
            (path.as_str(), text.as_str()),
            (dracut::DROPIN, ours.as_str()),
        ]);
        insta::assert_json_snapshot!(format!("dracut-evaluate-{name}"), summary);
    }
}

#[test]
fn initramfs_tools_golden() {
    for (kernel, tag) in [((6, 6), "6.6"), ((5, 15), "5.15")] {
        let edit = InPlaceEdit::InitramfsToolsModules(tools::ModulesEdit {
            modules: strings(&vfio_modules(kernel)),
            ..Default::default()
        });
        for (name, text) in of_format(Format::ToolsModules) {
            insta::assert_snapshot!(
                format!("initramfs-tools-{tag}-{name}"),
                golden(&edit, &name, &text)
            );
        }
    }
}

#[test]
fn booster_golden() {
    let ids = InPlaceEdit::Booster(booster::BoosterEdit {
        modules_force_load: strings(&vfio_modules((6, 6))),
        modules_exclude: Vec::new(),
    });
    let by_address = InPlaceEdit::Booster(booster::BoosterEdit {
        modules_force_load: Vec::new(),
        modules_exclude: strings(&["amdgpu", "radeon", "snd_hda_intel"]),
    });
    for (name, text) in of_format(Format::Booster) {
        insta::assert_snapshot!(format!("booster-ids-{name}"), golden(&ids, &name, &text));
        insta::assert_snapshot!(
            format!("booster-by-address-{name}"),
            golden(&by_address, &name, &text)
        );
    }
}

#[test]
fn modprobe_golden() {
    let early = InPlaceEdit::Modprobe(modprobe::ModprobeEdit::new(vec![
        "install vfio-pci /usr/lib/exliar/vfio-early-bind vfio-pci $CMDLINE_OPTS".into(),
        "softdep amdgpu pre: vfio-pci".into(),
    ]));
    let ids = InPlaceEdit::Modprobe(modprobe::ModprobeEdit::new(vec![
        modprobe::ids_option_line(&strings(&["10de:1b80", "10de:10f0"])),
    ]));
    for (name, text) in of_format(Format::Modprobe) {
        insta::assert_snapshot!(
            format!("modprobe-early-{name}"),
            golden(&early, &name, &text)
        );
        insta::assert_snapshot!(format!("modprobe-ids-{name}"), golden(&ids, &name, &text));
        // Both files were /etc/modprobe.d/vfio.conf on their machines.
        let report = modprobe::existing_vfio_ids(&[("/etc/modprobe.d/vfio.conf", text.as_str())]);
        insta::assert_json_snapshot!(
            format!("modprobe-existing-ids-{name}"),
            (&report, report.findings())
        );
    }
}

#[test]
fn no_editor_panics_on_any_fixture() {
    let Some(all) = fixtures() else {
        return;
    };
    let edits = [
        InPlaceEdit::Mkinitcpio(mkinitcpio::MkinitcpioEdit {
            modules: strings(&vfio_modules((6, 6))),
            hooks: strings(&["modconf"]),
            files: strings(&[SCRIPT]),
        }),
        InPlaceEdit::Dracut(dracut::DracutEdit {
            force_drivers: strings(&vfio_modules((6, 6))),
            install_items: strings(&[SCRIPT]),
        }),
        InPlaceEdit::InitramfsToolsModules(tools::ModulesEdit {
            modules: strings(&vfio_modules((6, 6))),
            fix_misplaced: true,
            move_vfio_args: true,
        }),
        InPlaceEdit::Booster(booster::BoosterEdit {
            modules_force_load: strings(&vfio_modules((6, 6))),
            modules_exclude: strings(&["amdgpu"]),
        }),
        InPlaceEdit::Modprobe(modprobe::ModprobeEdit::new(vec![
            "softdep amdgpu pre: vfio-pci".into(),
        ])),
    ];
    for (name, text) in &all {
        for e in &edits {
            if let Ok(out) = e.apply(text) {
                assert_eq!(
                    e.apply(&out).ok().as_deref(),
                    Some(out.as_str()),
                    "{name}: {e:?}"
                );
                assert_eq!(
                    e.remove(&out).ok().as_deref(),
                    Some(text.as_str()),
                    "{name}: {e:?}"
                );
            }
        }
        let _ = mkinitcpio::preset_info(text);
        let _ = dracut::evaluate(&[("/etc/dracut.conf", text)]);
        let _ = modprobe::existing_vfio_ids(&[("/etc/modprobe.d/x.conf", text)]);
    }
}
