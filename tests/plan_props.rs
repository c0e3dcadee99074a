//! Property tests of the boot-configuration editors: on generated
//! configurations (random module lists, spacing, quoting, comments, final
//! newline or not) every edit is idempotent, `is_applied` agrees, and
//! `remove(apply(x)) == x`; on any text at all, no editor panics and what
//! it accepts it handles the same way.

use exliar::plan::editors::InPlaceEdit;
use exliar::plan::initramfs::{booster, dracut, mkinitcpio, tools, vfio_modules};
use exliar::plan::modprobe;
use proptest::prelude::*;

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn editors() -> Vec<InPlaceEdit> {
    vec![
        InPlaceEdit::Mkinitcpio(mkinitcpio::MkinitcpioEdit {
            modules: strings(&vfio_modules((6, 6))),
            hooks: strings(&["modconf"]),
            files: strings(&["/usr/lib/exliar/vfio-early-bind"]),
        }),
        InPlaceEdit::Mkinitcpio(mkinitcpio::MkinitcpioEdit {
            modules: strings(&vfio_modules((5, 10))),
            hooks: Vec::new(),
            files: Vec::new(),
        }),
        InPlaceEdit::Dracut(dracut::DracutEdit {
            force_drivers: strings(&vfio_modules((6, 6))),
            install_items: strings(&["/usr/lib/exliar/vfio-early-bind"]),
        }),
        InPlaceEdit::InitramfsToolsModules(tools::ModulesEdit {
            modules: strings(&vfio_modules((6, 6))),
            fix_misplaced: true,
            move_vfio_args: true,
        }),
        InPlaceEdit::Booster(booster::BoosterEdit {
            modules_force_load: strings(&vfio_modules((6, 6))),
            modules_exclude: strings(&["amdgpu", "snd_hda_intel"]),
        }),
        InPlaceEdit::Modprobe(modprobe::ModprobeEdit::new(vec![
            "softdep amdgpu pre: vfio-pci".into(),
            modprobe::ids_option_line(&strings(&["10de:1b80"])),
        ])),
    ]
}

/// The invariants, for an input exliar has not touched (`remove(x) == x`).
fn check(e: &InPlaceEdit, x: &str) -> Result<(), TestCaseError> {
    let Ok(out) = e.apply(x) else {
        // Refused: remove must not invent anything either.
        return Ok(());
    };
    prop_assert_eq!(e.apply(&out).ok(), Some(out.clone()), "apply twice");
    prop_assert_eq!(e.is_applied(&out).ok(), Some(true));
    prop_assert_eq!(e.is_applied(x).ok(), Some(out == x));
    if e.remove(x).ok().as_deref() == Some(x) {
        let back = e.remove(&out).ok();
        prop_assert_eq!(back.as_deref(), Some(x), "remove(apply(x))");
    }
    Ok(())
}

const MODULES: &[&str] = &[
    "vfio",
    "vfio_pci",
    "vfio-pci",
    "vfio_iommu_type1",
    "vfio_virqfd",
    "amdgpu",
    "nvidia",
    "nvidia_drm",
    "i915",
    "snd_hda_intel",
    "nvme",
    "kvm_amd",
    "'nvme'",
    "\"btrfs\"",
    "ext4?",
    "${extra}",
];

const HOOKS: &[&str] = &[
    "base",
    "udev",
    "systemd",
    "autodetect",
    "microcode",
    "modconf",
    "kms",
    "keyboard",
    "sd-vconsole",
    "block",
    "filesystems",
    "fsck",
];

fn words(pool: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop::sample::select(pool), 0..max)
        .prop_map(|v| v.into_iter().map(str::to_string).collect())
}

/// A bash array or string assignment in one of the styles found in the wild.
fn assignment(name: &'static str, items: Vec<String>, style: u8, pad: &str) -> String {
    match style % 5 {
        0 => format!("{name}=({})", items.join(" ")),
        1 => format!("{name}=({pad}{}{pad})", items.join(pad)),
        2 => {
            let mut s = format!("{name}=(\n");
            for i in &items {
                s.push_str(&format!("{pad}{i}\n"));
            }
            s.push(')');
            s
        }
        3 if items.iter().all(|i| !i.contains(['"', '\'', '$'])) => {
            format!("{name}=\"{}\"", items.join(" "))
        }
        _ => format!("{name}=( {} ) # {name} ", items.join("  ")),
    }
}

prop_compose! {
    fn mkinitcpio_conf()(
        modules in words(MODULES, 8),
        hooks in words(HOOKS, 10),
        files in prop::collection::vec("/etc/[a-z]{1,6}", 0..3),
        styles in prop::collection::vec(any::<u8>(), 3),
        pad in prop::sample::select(vec![" ", "  ", "\t"]),
        append in proptest::option::of(words(MODULES, 3)),
        comments in prop::collection::vec(prop::sample::select(vec!["# MODULES=(x)", "", "#", "# HOOKS=(y)"]), 0..4),
        has_files in any::<bool>(),
        order in any::<bool>(),
        final_nl in any::<bool>(),
    ) -> String {
        let mut lines: Vec<String> = comments.iter().map(|c| c.to_string()).collect();
        let m = assignment("MODULES", modules, styles[0], pad);
        let h = assignment("HOOKS", hooks, styles[1], pad);
        if order { lines.push(m); lines.push(h); } else { lines.push(h); lines.push(m); }
        if let Some(a) = append {
            lines.push(format!("MODULES+=({})", a.join(" ")));
        }
        if has_files {
            lines.push(assignment("FILES", files, styles[2], pad));
        }
        let mut s = lines.join("\n");
        if final_nl { s.push('\n'); }
        s
    }
}

prop_compose! {
    fn modules_file()(
        lines in prop::collection::vec(
            prop_oneof![
                prop::sample::select(MODULES).prop_map(|m| m.trim_matches(['\'', '"']).to_string()),
                Just("# comment".to_string()),
                Just(String::new()),
                Just("  vfio_pci ids=10de:1b80".to_string()),
                Just("raid1".to_string()),
            ],
            0..10,
        ),
        final_nl in any::<bool>(),
    ) -> String {
        let mut s = lines.join("\n");
        if final_nl { s.push('\n'); }
        s
    }
}

prop_compose! {
    fn booster_yaml()(
        force in proptest::option::of(prop::collection::vec(prop::sample::select(vec!["vfio", "vfio_pci", "nvme", "vfio-iommu-type1"]), 0..4)),
        modules in proptest::option::of(prop::collection::vec(prop::sample::select(vec!["-*", "hid_apple", "-amdgpu", "kernel/fs/"]), 0..4)),
        sep in prop::sample::select(vec![",", ", "]),
        quote in prop::sample::select(vec!["", "\"", "'"]),
        comment in any::<bool>(),
        order in any::<bool>(),
        final_nl in any::<bool>(),
    ) -> String {
        let mut lines = vec!["universal: false".to_string()];
        let key = |k: &str, v: Vec<&str>| {
            let mut l = format!("{k}: {quote}{}{quote}", v.join(sep));
            if v.is_empty() { l = format!("{k}:"); }
            if comment { l.push_str(" # mine"); }
            l
        };
        let f = force.map(|v| key("modules_force_load", v));
        let m = modules.map(|v| key("modules", v));
        let (a, b) = if order { (f, m) } else { (m, f) };
        lines.extend(a);
        lines.push("serialize_tokens:\n  enabled: true".to_string());
        lines.extend(b);
        let mut s = lines.join("\n");
        if final_nl { s.push('\n'); }
        s
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mkinitcpio_round_trip(x in mkinitcpio_conf()) {
        for e in editors().iter().take(2) {
            prop_assert!(e.apply(&x).is_ok(), "{:?}", e.apply(&x));
            check(e, &x)?;
        }
    }

    #[test]
    fn initramfs_tools_round_trip(x in modules_file()) {
        let e = &editors()[3];
        prop_assert!(e.apply(&x).is_ok());
        check(e, &x)?;
    }

    #[test]
    fn booster_round_trip(x in booster_yaml()) {
        let e = &editors()[4];
        prop_assert!(e.apply(&x).is_ok(), "{:?}", e.apply(&x));
        check(e, &x)?;
    }

    #[test]
    fn block_editors_round_trip(x in mkinitcpio_conf(), y in modules_file()) {
        for e in [&editors()[2], &editors()[5]] {
            check(e, &x)?;
            check(e, &y)?;
        }
    }

    #[test]
    fn any_text_never_panics(x in "(?s).{0,300}") {
        for e in editors() {
            check(&e, &x)?;
        }
    }

    #[test]
    fn syntax_soup_never_panics(x in "[a-zA-Z_=()\"'#\\\\$`{}:,+ \\-\n\t]{0,200}") {
        for e in editors() {
            check(&e, &x)?;
        }
        let _ = mkinitcpio::preset_info(&x);
        let _ = dracut::evaluate(&[("/etc/dracut.conf", x.as_str())]);
        let _ = modprobe::existing_vfio_ids(&[("/etc/modprobe.d/a.conf", x.as_str())]);
    }

    #[test]
    fn marker_soup_never_panics(
        parts in prop::collection::vec(
            prop::sample::select(vec![
                "# exliar was: MODULES=(a)", "# exliar added", "MODULES=(vfio amdgpu)",
                "# BEGIN exliar vfio", "# END exliar vfio", "HOOKS=(base)", "modules_force_load: vfio",
                "FILES=(", ")", "\"", "", "vfio_pci",
            ]),
            0..12,
        )
    ) {
        let x = parts.join("\n");
        for e in editors() {
            if let Ok(out) = e.apply(&x) {
                prop_assert_eq!(e.apply(&out).ok(), Some(out.clone()));
            }
            let _ = e.remove(&x);
        }
    }
}
