//! Time exliar's kernel-command-line editors on one huge command line, for
//! `benches/cmdline-editors.sh`.
//!
//!     cargo run --release --example cmdline-edit -- BYTES [quiet|distinct]
//!
//! Builds, for every command-line source exliar edits, a file whose command
//! line is about BYTES long (`quiet quiet …` or `foo0=0 foo1=1 …`), then
//! adds exliar's usual parameters and removes them again (the rollback),
//! and prints one line per editor: its name and the seconds both edits took.
//! The last line is the total.

use std::time::Instant;

use anyhow::{Context, bail};
use exliar::plan::boot::bls::{edit_kernel_cmdline, edit_loader_entry};
use exliar::plan::boot::grub::{GrubKey, edit_default_grub};
use exliar::plan::boot::limine::{edit_default_limine, edit_limine_conf};
use exliar::plan::boot::refind::edit_refind_linux_conf;
use exliar::plan::boot::{EditError, Edited};

fn line(bytes: usize, distinct: bool) -> String {
    let mut s = String::with_capacity(bytes + 32);
    let mut i = 0usize;
    while s.len() < bytes {
        if !s.is_empty() {
            s.push(' ');
        }
        if distinct {
            s.push_str(&format!("foo{i}={i}"));
        } else {
            s.push_str("quiet");
        }
        i += 1;
    }
    s
}

type Editor = fn(&str, &[String], &[String]) -> Result<Edited, EditError>;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let bytes: usize = args
        .next()
        .context("usage: cmdline-edit BYTES [quiet|distinct]")?
        .parse()?;
    let distinct = match args.next().as_deref() {
        None | Some("quiet") => false,
        Some("distinct") => true,
        Some(other) => bail!("unknown token kind {other}: quiet or distinct"),
    };
    let l = line(bytes, distinct);
    let grub = |var: &str| {
        format!("GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\n{var}=\"{l}\"\nGRUB_DISABLE_OS_PROBER=true\n")
    };
    let cases: Vec<(&str, String, Editor)> = vec![
        (
            "GRUB_CMDLINE_LINUX_DEFAULT",
            grub("GRUB_CMDLINE_LINUX_DEFAULT"),
            |t, a, r| edit_default_grub(t, GrubKey::LinuxDefault, a, r),
        ),
        (
            "GRUB_CMDLINE_LINUX",
            grub("GRUB_CMDLINE_LINUX"),
            |t, a, r| edit_default_grub(t, GrubKey::Linux, a, r),
        ),
        ("/etc/kernel/cmdline", format!("{l}\n"), edit_kernel_cmdline),
        (
            "loader entry options",
            format!(
                "title Linux\nlinux /vmlinuz-linux\ninitrd /initramfs-linux.img\noptions {l}\n"
            ),
            |t, a, r| edit_loader_entry("linux.conf", t, a, r).map(|e| e.edited),
        ),
        (
            "refind_linux.conf",
            format!("\"Boot with standard options\" \"{l}\"\n"),
            edit_refind_linux_conf,
        ),
        (
            "limine.conf cmdline",
            format!(
                "timeout: 3\n/Linux\n    protocol: linux\n    path: boot():/vmlinuz-linux\n    cmdline: {l}\n"
            ),
            edit_limine_conf,
        ),
        (
            "/etc/default/limine",
            format!("KERNEL_CMDLINE[default]+=\"{l}\"\n"),
            edit_default_limine,
        ),
    ];
    let add: Vec<String> = [
        "intel_iommu=on",
        "iommu=pt",
        "vfio-pci.ids=10de:2503,10de:228e",
        "rd.driver.pre=vfio-pci",
        "video=efifb:off",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut total = 0.0;
    for (name, text, edit) in cases {
        let t0 = Instant::now();
        let added = edit(&text, &add, &[]).with_context(|| format!("{name}: adding"))?;
        if added.added != add {
            bail!("{name}: added {:?}", added.added);
        }
        let back = edit(&added.text, &[], &add).with_context(|| format!("{name}: removing"))?;
        let secs = t0.elapsed().as_secs_f64();
        if back.text != text {
            bail!("{name}: removing what was added did not give the file back");
        }
        total += secs;
        println!("{name:<28} {secs:8.3}");
    }
    println!("{:<28} {total:8.3}", "total");
    Ok(())
}
