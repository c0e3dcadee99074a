//! Golden tests of the kernel command-line editors over every real
//! boot-loader file in `../shared/fixtures/configs` (line 1 of each is the
//! collector's `# source:` header, stripped here): edit, render, re-edit is
//! a no-op, and removing what was added gives the original back byte for
//! byte. Snapshots hold the rendered change (a unified diff) and the
//! warnings.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use exliar::plan::boot::{
    EditError, Edited, bls, grub, kernelstub, limine, refind, strip_fixture_header,
};
use exliar::plan::unified_diff;

fn configs_dir() -> Option<PathBuf> {
    common::shared_fixtures().map(|f| f.join("configs"))
}

/// What exliar would typically add: some of it is already in the real
/// files, some conflicts with them.
fn add() -> Vec<String> {
    [
        "intel_iommu=on",
        "iommu=pt",
        "vfio-pci.ids=10de:1b81,10de:10f0",
        "rd.driver.pre=vfio-pci",
        "video=efifb:off",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    DefaultGrub,
    LoaderEntry,
    LoaderConf,
    KernelCmdline,
    Kernelstub,
    Refind,
    LimineConf,
    DefaultLimine,
    /// Not a boot-loader file (initramfs, modules, NixOS): other editors.
    NotBootLoader,
}

fn kind(name: &str) -> Option<Kind> {
    let k = if name.contains("default-grub") {
        Kind::DefaultGrub
    } else if name.starts_with("systemd-boot-entry-") || name.starts_with("bls-type1-entry") {
        Kind::LoaderEntry
    } else if name.starts_with("systemd-boot-loader.conf") {
        Kind::LoaderConf
    } else if name.starts_with("kernel-cmdline") {
        Kind::KernelCmdline
    } else if name.starts_with("popos-") {
        Kind::Kernelstub
    } else if name.starts_with("refind_linux.conf") {
        Kind::Refind
    } else if name.starts_with("limine.conf") {
        Kind::LimineConf
    } else if name.contains("default-limine") {
        Kind::DefaultLimine
    } else if [
        "arch-mkinitcpio",
        "booster",
        "debian-dracut",
        "dracut.conf",
        "fedora-dracut",
        "fedora30-dracut",
        "debian-initramfs",
        "modprobe.d-",
        "proxmox-etc-modules",
        "nixos-",
    ]
    .iter()
    .any(|p| name.starts_with(p))
    {
        Kind::NotBootLoader
    } else {
        return None;
    };
    Some(k)
}

fn render(name: &str, before: &str, e: &Edited) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "added: {:?}", e.added);
    let _ = writeln!(out, "removed: {:?}", e.removed);
    for w in &e.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    if e.text == before {
        out.push_str("(unchanged)\n");
    } else {
        out.push_str(&unified_diff(
            Path::new(name),
            Some(before.as_bytes()),
            e.text.as_bytes(),
        ));
    }
    out
}

fn render_err(e: &EditError) -> String {
    format!("error: {e}\n")
}

type EditFn<'a> = dyn Fn(&str, &[String], &[String]) -> Result<Edited, EditError> + 'a;

/// Edit, re-edit, remove: the three laws, for one editor.
fn laws(name: &str, x: &str, edit: &EditFn<'_>) -> String {
    let a = add();
    let e = match edit(x, &a, &[]) {
        Ok(e) => e,
        Err(err) => return render_err(&err.in_file(name)),
    };
    let again =
        edit(&e.text, &a, &[]).unwrap_or_else(|err| panic!("{name}: re-edit failed: {err}"));
    assert_eq!(again.text, e.text, "{name}: re-edit is not a no-op");
    assert!(
        again.added.is_empty(),
        "{name}: re-edit added {:?}",
        again.added
    );
    let back =
        edit(&e.text, &[], &e.added).unwrap_or_else(|err| panic!("{name}: remove failed: {err}"));
    assert_eq!(back.text, x, "{name}: remove(edit(x)) != x");
    assert_eq!(back.removed, e.added, "{name}: removed something else");
    render(name, x, &e)
}

#[test]
fn every_boot_loader_fixture() {
    let Some(dir) = configs_dir() else { return };
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "README.md")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    assert!(!names.is_empty());
    let mut unclassified = Vec::new();
    let mut checked = 0;
    for name in &names {
        let raw = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let x = strip_fixture_header(&raw);
        let Some(k) = kind(name) else {
            unclassified.push(name.clone());
            continue;
        };
        let snap = match k {
            Kind::NotBootLoader => continue,
            Kind::DefaultGrub => {
                let mut s = laws(name, x, &|t, a, r| {
                    grub::edit_default_grub(t, grub::GrubKey::LinuxDefault, a, r)
                });
                s.push_str("\n== GRUB_CMDLINE_LINUX ==\n");
                s.push_str(&laws(name, x, &|t, a, r| {
                    grub::edit_default_grub(t, grub::GrubKey::Linux, a, r)
                }));
                let inputs = grub::GrubInputs {
                    main: x,
                    dropins: &[],
                    dropins_sourced: true,
                };
                for key in [grub::GrubKey::LinuxDefault, grub::GrubKey::Linux] {
                    match grub::grub_cmdline_setting(&inputs, key) {
                        Ok(st) => {
                            let _ = writeln!(
                                s,
                                "setting {}: {} line {}, value {:?}",
                                key.name(),
                                st.file.path(),
                                st.line,
                                st.value
                            );
                        }
                        Err(e) => s.push_str(&render_err(&e)),
                    }
                }
                s
            }
            Kind::LoaderEntry => laws(name, x, &|t, a, r| {
                bls::edit_loader_entry(name, t, a, r).map(|e| {
                    let mut ed = e.edited;
                    ed.warnings
                        .insert(0, format!("kind {:?}, fallback {}", e.kind, e.fallback));
                    ed
                })
            }),
            Kind::LoaderConf => {
                let mut s = match bls::edit_loader_entry(name, x, &add(), &[]) {
                    Ok(e) => panic!("{name}: loader.conf edited as an entry: {:?}", e.edited),
                    Err(e) => render_err(&e.in_file(name)),
                };
                let _ = writeln!(s, "default: {:?}", bls::loader_conf_default(x));
                s
            }
            Kind::KernelCmdline => laws(name, x, &bls::edit_kernel_cmdline),
            Kind::Kernelstub => match kernelstub::read_config(x) {
                Ok(c) => {
                    let (cmds, d) = kernelstub::kernelstub_argv(&c.kernel_options, &add(), &[]);
                    let mut s = format!("{c:?}\n");
                    for c in cmds {
                        let _ = writeln!(s, "run: {c:?}");
                    }
                    for w in d.warnings {
                        let _ = writeln!(s, "warning: {w}");
                    }
                    // The commands' effect, and its undo.
                    let (undo, _) = kernelstub::kernelstub_argv(
                        &[c.kernel_options.clone(), d.added.clone()].concat(),
                        &[],
                        &d.added,
                    );
                    for c in undo {
                        let _ = writeln!(s, "undo: {c:?}");
                    }
                    s
                }
                Err(e) => render_err(&e.in_file(name)),
            },
            Kind::Refind => laws(name, x, &refind::edit_refind_linux_conf),
            Kind::LimineConf => {
                let mut s = format!("format: {:?}\n", limine::limine_format(x));
                s.push_str(&laws(name, x, &limine::edit_limine_conf));
                s
            }
            Kind::DefaultLimine => laws(name, x, &limine::edit_default_limine),
        };
        checked += 1;
        insta::assert_snapshot!(name.clone(), snap);
    }
    assert!(
        unclassified.is_empty(),
        "fixtures no test knows what to do with: {unclassified:?}"
    );
    assert!(checked >= 20, "only {checked} boot-loader files checked");
}

/// The planner's path: several GRUB files at once, a drop-in overriding the
/// main file (as Ubuntu cloud images ship them).
#[test]
fn grub_with_dropins_over_real_main_files() {
    let Some(dir) = configs_dir() else { return };
    let raw = std::fs::read_to_string(dir.join("debian-default-grub")).unwrap_or_default();
    let main = strip_fixture_header(&raw);
    let dropins = vec![(
        "50-cloudimg-settings.cfg".to_string(),
        "# Set the recordfail timeout\nGRUB_RECORDFAIL_TIMEOUT=0\n\n# Set the default commandline\nGRUB_CMDLINE_LINUX_DEFAULT=\"console=tty1 console=ttyS0\"\n".to_string(),
    )];
    let inputs = grub::GrubInputs {
        main,
        dropins: &dropins,
        dropins_sourced: true,
    };
    let (files, setting) = grub::edit_grub(&inputs, grub::GrubKey::LinuxDefault, &add(), &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut s = String::new();
    for w in &setting.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    for (f, e) in &files {
        let before = match f {
            grub::GrubFile::Main => main,
            grub::GrubFile::DropIn(_) => dropins[0].1.as_str(),
        };
        s.push_str(&render(f.path().trim_start_matches('/'), before, e));
    }
    insta::assert_snapshot!("grub-dropin-override", s);
    // The Garuda main file sources grub.d itself, mid-file.
    let raw =
        std::fs::read_to_string(dir.join("garuda-default-grub.user-vfio")).unwrap_or_default();
    let inputs = grub::GrubInputs {
        main: strip_fixture_header(&raw),
        dropins: &dropins,
        dropins_sourced: false,
    };
    let st = grub::grub_cmdline_setting(&inputs, grub::GrubKey::LinuxDefault)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        st.file,
        grub::GrubFile::DropIn("50-cloudimg-settings.cfg".into())
    );
}

/// Bad input gets a message naming the file and the line.
#[test]
fn bad_input_messages() {
    let a = add();
    let mut s = String::new();
    let mut show = |file: &str, r: Result<Edited, EditError>| match r {
        Ok(e) => {
            let _ = writeln!(s, "{file}: ok, warnings {:?}", e.warnings);
        }
        Err(e) => {
            let _ = writeln!(s, "{}", e.in_file(file));
        }
    };
    show(
        "/etc/default/grub",
        grub::edit_default_grub(
            "GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\nGRUB_CMDLINE_LINUX=\"\"\n",
            grub::GrubKey::LinuxDefault,
            &a,
            &[],
        ),
    );
    show(
        "/etc/default/grub",
        grub::edit_default_grub(
            "GRUB_CMDLINE_LINUX_DEFAULT='quiet\n",
            grub::GrubKey::LinuxDefault,
            &a,
            &[],
        ),
    );
    show(
        "/etc/default/grub",
        grub::edit_default_grub(
            "GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX=\"\"\n",
            grub::GrubKey::LinuxDefault,
            &a,
            &[],
        ),
    );
    show(
        "/boot/loader/entries/arch.conf",
        bls::edit_loader_entry(
            "arch.conf",
            "title A\nlinux /vmlinuz-linux\noptions root=/dev/sda2 foo=\"bar\n",
            &a,
            &[],
        )
        .map(|e| e.edited),
    );
    show(
        "/boot/loader/entries/arch.conf",
        bls::edit_loader_entry(
            "arch.conf",
            "title A\nlinux /vmlinuz-linux\ninitrd /initramfs-linux.img\nlinux /vmlinuz-lts\n",
            &a,
            &[],
        )
        .map(|e| e.edited),
    );
    show(
        "/boot/loader/entries/arch.conf",
        bls::edit_loader_entry("arch.conf", "title A\nlinux /vmlinuz-linux\n", &a, &[])
            .map(|e| e.edited),
    );
    show(
        "/etc/kernel/cmdline",
        bls::edit_kernel_cmdline("root=ZFS=rpool/ROOT/pve-1 boot=zfs\nfoo=\"x\n", &a, &[]),
    );
    show(
        "/boot/refind_linux.conf",
        refind::edit_refind_linux_conf(
            "\"Boot\" \"ro root=/dev/sda2\"\n\"Single\" \"ro root=/dev/sda2 single\n",
            &a,
            &[],
        ),
    );
    show(
        "/boot/limine.cfg",
        limine::edit_limine_conf(
            "TIMEOUT=5\n\n:Arch Linux\n    PROTOCOL=linux\n    CMDLINE=root=/dev/sda2\n",
            &a,
            &[],
        ),
    );
    show(
        "/boot/limine.conf",
        limine::edit_limine_conf(
            "/Arch\n    protocol: linux\n    cmdline: root=/dev/sda2\n    KERNEL_CMDLINE: quiet\n",
            &a,
            &[],
        ),
    );
    match kernelstub::read_config(
        "{\n  \"user\": {\n    \"kernel_options\": [\"quiet\",],\n  }\n}\n",
    ) {
        Ok(c) => panic!("{c:?}"),
        Err(e) => {
            let _ = writeln!(s, "{}", e.in_file("/etc/kernelstub/configuration"));
        }
    }
    insta::assert_snapshot!("bad-input", s);
}

/// The NixOS module for the RTX 4090 machine of hw-dumps/06 (the
/// `nixos-qemu.nix.user-philt` host), bound by address.
#[test]
fn nixos_module_golden() {
    use exliar::model::PciAddress;
    use exliar::plan::boot::{CpuVendor, Framebuffer, nix, params_for_host};
    let ids = vec!["10de:2684".to_string(), "10de:22ba".to_string()];
    let params = params_for_host(
        CpuVendor::Intel,
        false,
        false,
        &ids,
        false,
        Framebuffer::SimpleFramebuffer,
        true,
    );
    let m = nix::nixos_module(
        &params,
        &["vfio_pci".into(), "vfio".into(), "vfio_iommu_type1".into()],
        "options vfio-pci ids=10de:2684,10de:22ba\nsoftdep nvidia pre: vfio-pci\n",
        &[PciAddress::new(0, 1, 0, 0), PciAddress::new(0, 1, 0, 1)],
    );
    insta::assert_snapshot!("nixos-module", m);
}
