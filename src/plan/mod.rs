//! Plans: every persistent change exliar makes, as data, before anything is
//! touched. A [`Plan`] is an ordered list of typed [`Step`]s; `exliar plan`
//! renders it (unified diffs, commands), `exliar apply` hands it to
//! [`crate::txn`].

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::model::PciAddress;

pub mod boot;
pub mod earlybind;
pub mod editors;
pub mod effective;
pub mod facts;
pub mod initramfs;
pub mod isolate;
pub mod modalias;
pub mod modprobe;
pub mod rawtext;
pub(crate) mod shell;

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Step {
    /// Create or replace a file (path relative to the target root).
    WriteFile {
        path: PathBuf,
        /// The content the plan was made against (`None`: the file is
        /// absent). Apply refuses if the file changed since.
        #[serde(skip)]
        before: Option<Vec<u8>>,
        #[serde(skip)]
        after: Vec<u8>,
        /// Mode for a new file; an existing file keeps its mode and owner.
        mode: u32,
        why: String,
    },
    /// Kernel command-line parameters to add and remove, for whatever boot
    /// loader boots the target (filled in per boot loader).
    KernelParams {
        add: Vec<String>,
        remove: Vec<String>,
        why: String,
    },
    /// A new disk image (`qemu-img create -f FORMAT PATH SIZE`), run after
    /// the files are written. Undone by removing the image, unless it was
    /// written to since (then it is kept and the rollback says so, unless
    /// `--delete-disks`). The path must not exist when the plan is applied.
    CreateImage {
        path: PathBuf,
        format: String,
        size: String,
        why: String,
    },
    /// An ISO image built from the files of a staging folder that the
    /// caller fills just before applying (`xorriso -as mkisofs`): the
    /// unattended-install answer file, whose password must never be in a
    /// plan, a journal or a log. Undone like [`Step::CreateImage`]; the path
    /// must not exist when the plan is applied.
    CreateIso {
        path: PathBuf,
        /// Absolute; the caller removes it after applying.
        staging: PathBuf,
        volume: String,
        /// The names of the files it holds (for the plan's reader).
        files: Vec<String>,
        why: String,
    },
    /// Define a new libvirt domain from a file the plan writes (`virsh
    /// --connect URI define FILE`), after the files and images. Undone by
    /// `virsh undefine --nvram NAME` when the domain exists.
    Define {
        connect: String,
        name: String,
        xml: PathBuf,
        why: String,
    },
    /// A command run after the files are written (initramfs regeneration,
    /// boot-loader update), inside the target root when it is not `/`.
    Run {
        argv: Vec<String>,
        /// What undoes it on rollback (`grubby --remove-args=…`); `None`:
        /// the command regenerates from files, so rollback runs it again.
        undo: Option<Vec<String>>,
        why: String,
    },
}

/// What a plan changes: the boot-time isolation of a GPU, or a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "subject", rename_all = "kebab-case")]
pub enum Subject {
    /// The GPU being isolated and the functions bound with it.
    GpuIsolation {
        gpu: Option<PciAddress>,
        functions: Vec<PciAddress>,
    },
    /// A libvirt domain (`exliar vm create` / `vm edit`).
    Vm { name: String, connect: String },
    /// exliar's libvirt QEMU hook (`exliar hooks install`).
    Hooks,
    /// A container engine's configuration for CDI (`exliar runtime
    /// configure ENGINE`).
    Runtime { engine: String },
    /// exliar's CDI spec files in one directory (`exliar cdi generate`):
    /// `dir` is the directory as the root's engines read it (`/etc/cdi`).
    Cdi { dir: String },
    /// exliar's node-feature-discovery feature file (`exliar nfd`): its
    /// path as the root names it.
    Nfd { file: String },
}

impl Subject {
    /// The GPU of a GPU isolation.
    pub fn gpu(&self) -> Option<PciAddress> {
        match self {
            Subject::GpuIsolation { gpu, .. } => *gpu,
            Subject::Vm { .. }
            | Subject::Hooks
            | Subject::Runtime { .. }
            | Subject::Cdi { .. }
            | Subject::Nfd { .. } => None,
        }
    }
    pub fn functions(&self) -> &[PciAddress] {
        match self {
            Subject::GpuIsolation { functions, .. } => functions,
            Subject::Vm { .. }
            | Subject::Hooks
            | Subject::Runtime { .. }
            | Subject::Cdi { .. }
            | Subject::Nfd { .. } => &[],
        }
    }
}

/// A plan for one target root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub schema: &'static str,
    /// The target root (`/`, or an installer's mounted root).
    pub target: String,
    /// What the plan is about; its fields are inlined in the JSON
    /// (`subject`: `gpu-isolation` with `gpu` and `functions`, or `vm`
    /// with `name` and `connect`).
    #[serde(flatten)]
    pub subject: Subject,
    pub steps: Vec<Step>,
    pub warnings: Vec<String>,
    /// What the plan changes in the user's own configuration so that
    /// exliar's takes effect (a `vfio-pci.ids=` on the command line that
    /// would replace exliar's list, arguments moved out of initramfs-tools'
    /// modules file, lines commented out there).
    pub fixed: Vec<String>,
    /// Kernel parameters exliar needs that a boot entry will not pass
    /// after the plan (see [`boot::effective`]): said loudly, never a
    /// silent success.
    pub unplaced_params: Vec<boot::effective::Unplaced>,
}

pub const PLAN_SCHEMA: &str = "exliar.plan/1";

/// `(path, contents)` of each file `steps` write (tests).
#[cfg(test)]
pub(crate) fn written(steps: &[Step]) -> Vec<(String, String)> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::WriteFile { path, after, .. } => Some((
                path.display().to_string(),
                String::from_utf8_lossy(after).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

impl Plan {
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            schema: PLAN_SCHEMA,
            target: target.into(),
            subject: Subject::GpuIsolation {
                gpu: None,
                functions: Vec::new(),
            },
            steps: Vec::new(),
            warnings: Vec::new(),
            fixed: Vec::new(),
            unplaced_params: Vec::new(),
        }
    }

    /// Nothing to do: the target already has everything.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// `qemu-img create` of a new image at `path` (relative to the target
/// root; the command sees it absolute).
pub fn create_image_argv(path: &std::path::Path, format: &str, size: &str) -> Vec<String> {
    vec![
        "qemu-img".into(),
        "create".into(),
        "-q".into(),
        "-f".into(),
        format.into(),
        format!("/{}", path.display()),
        size.into(),
    ]
}

/// `xorriso` building an ISO 9660 image (Joliet and Rock Ridge names) at
/// `path` (relative to the root) from the folder `staging`.
pub fn create_iso_argv(
    path: &std::path::Path,
    staging: &std::path::Path,
    volume: &str,
) -> Vec<String> {
    vec![
        "xorriso".into(),
        "-as".into(),
        "mkisofs".into(),
        "-quiet".into(),
        "-J".into(),
        "-r".into(),
        "-V".into(),
        volume.into(),
        "-o".into(),
        format!("/{}", path.display()),
        staging.display().to_string(),
    ]
}

/// `virsh define` of the domain XML file at `xml` (relative to the root).
pub fn define_argv(connect: &str, xml: &std::path::Path) -> Vec<String> {
    vec![
        "virsh".into(),
        "--connect".into(),
        connect.into(),
        "define".into(),
        format!("/{}", xml.display()),
    ]
}

/// What undoes [`define_argv`] of a new domain: its definition and its
/// NVRAM (and, with libvirt's default, its TPM state) go.
pub fn undefine_argv(connect: &str, name: &str) -> Vec<String> {
    vec![
        "virsh".into(),
        "--connect".into(),
        connect.into(),
        "undefine".into(),
        "--nvram".into(),
        name.into(),
    ]
}

/// Whether a domain exists (`virsh dominfo`; exit 0 when it does).
pub fn dominfo_argv(connect: &str, name: &str) -> Vec<String> {
    vec![
        "virsh".into(),
        "--connect".into(),
        connect.into(),
        "dominfo".into(),
        name.into(),
    ]
}

/// A unified diff of one file change, with `a/`/`b/` paths.
pub fn unified_diff(path: &std::path::Path, before: Option<&[u8]>, after: &[u8]) -> String {
    let old = before.map(String::from_utf8_lossy).unwrap_or_default();
    let new = String::from_utf8_lossy(after);
    let shown = format!("/{}", path.display());
    let old_name = if before.is_some() {
        shown.clone()
    } else {
        "/dev/null".to_string()
    };
    similar::TextDiff::from_lines(old.as_ref(), new.as_ref())
        .unified_diff()
        .context_radius(3)
        .header(&old_name, &shown)
        .to_string()
}

/// The human rendering of a plan (what `exliar plan` prints).
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    match &plan.subject {
        Subject::GpuIsolation {
            gpu: Some(g),
            functions,
        } => {
            let fns: Vec<String> = functions.iter().map(|a| a.to_string()).collect();
            let _ = writeln!(
                out,
                "Plan: isolate {g} for passthrough (functions: {})",
                fns.join(", ")
            );
        }
        Subject::GpuIsolation { gpu: None, .. } => {}
        Subject::Hooks => {
            let _ = writeln!(out, "Plan: exliar's libvirt QEMU hook");
        }
        Subject::Vm { name, connect } => {
            let _ = writeln!(out, "Plan: VM {name} on {connect}");
        }
        Subject::Runtime { engine } => {
            let _ = writeln!(out, "Plan: CDI in {engine}'s configuration");
        }
        Subject::Cdi { dir } => {
            let _ = writeln!(out, "Plan: exliar's CDI specs in {dir}");
        }
        Subject::Nfd { file } => {
            let _ = writeln!(
                out,
                "Plan: node labels for node-feature-discovery in {file}"
            );
        }
    }
    let _ = writeln!(out, "Target root: {}", plan.target);
    if plan.is_empty() {
        let _ = writeln!(
            out,
            "\nNothing to change: the target is already configured."
        );
    }
    for (i, s) in plan.steps.iter().enumerate() {
        let n = i + 1;
        match s {
            Step::WriteFile {
                path,
                before,
                after,
                why,
                ..
            } => {
                let verb = if before.is_some() { "edit" } else { "create" };
                let _ = writeln!(out, "\n[{n}] {verb} /{}: {why}", path.display());
                out.push_str(&unified_diff(path, before.as_deref(), after));
            }
            Step::KernelParams { add, remove, why } => {
                let _ = writeln!(out, "\n[{n}] kernel command line: {why}");
                if !add.is_empty() {
                    let _ = writeln!(out, "    add:    {}", add.join(" "));
                }
                if !remove.is_empty() {
                    let _ = writeln!(out, "    remove: {}", remove.join(" "));
                }
            }
            Step::Run { argv, why, .. } => {
                let _ = writeln!(out, "\n[{n}] run: {}  ({why})", argv.join(" "));
            }
            Step::CreateImage {
                path,
                format,
                size,
                why,
            } => {
                let _ = writeln!(
                    out,
                    "\n[{n}] create disk image /{} ({format}, {size}): {why}",
                    path.display()
                );
                let _ = writeln!(
                    out,
                    "    run: {}",
                    create_image_argv(path, format, size).join(" ")
                );
            }
            Step::CreateIso {
                path,
                staging,
                volume,
                files,
                why,
            } => {
                let _ = writeln!(
                    out,
                    "\n[{n}] create ISO image /{} ({}): {why}",
                    path.display(),
                    files.join(", ")
                );
                let _ = writeln!(
                    out,
                    "    run: {}",
                    create_iso_argv(path, staging, volume).join(" ")
                );
            }
            Step::Define {
                connect,
                name,
                xml,
                why,
            } => {
                let _ = writeln!(out, "\n[{n}] define libvirt domain {name}: {why}");
                let _ = writeln!(out, "    run:  {}", define_argv(connect, xml).join(" "));
                let _ = writeln!(out, "    undo: {}", undefine_argv(connect, name).join(" "));
            }
        }
    }
    for f in &plan.fixed {
        let _ = writeln!(out, "\nfixed: {f}");
    }
    for w in &plan.warnings {
        let _ = writeln!(out, "\nwarning: {w}");
    }
    out.push_str(&render_unplaced(&plan.unplaced_params));
    out
}

/// The loud part of a plan: the parameters a boot entry will not pass
/// (empty when there are none).
pub fn render_unplaced(unplaced: &[boot::effective::Unplaced]) -> String {
    let mut out = String::new();
    if unplaced.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "\nWARNING: NOT EVERY BOOT ENTRY WILL HAVE THE KERNEL PARAMETERS EXLIAR NEEDS; the card is not isolated when these boot:"
    );
    for u in unplaced {
        let _ = writeln!(
            out,
            "  {}: missing `{}`: {}",
            u.entry,
            u.missing.join(" "),
            u.reason
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_of_a_new_and_an_edited_file() {
        let d = unified_diff(
            std::path::Path::new("etc/modprobe.d/x.conf"),
            None,
            b"a\nb\n",
        );
        assert!(
            d.starts_with("--- /dev/null\n+++ /etc/modprobe.d/x.conf\n"),
            "{d}"
        );
        assert!(d.contains("+a\n+b\n"));
        let d = unified_diff(std::path::Path::new("etc/f"), Some(b"x\ny\n"), b"x\nz\n");
        assert!(d.contains("-y\n+z\n"), "{d}");
    }

    #[test]
    fn diff_of_bytes_that_are_not_utf8() {
        let d = unified_diff(
            std::path::Path::new("etc/default/grub"),
            Some(b"# f\xfcr\nA=\"\"\n"),
            b"# f\xfcr\nA=\"x\"\n",
        );
        assert!(d.contains(" # f\u{FFFD}r\n-A=\"\"\n+A=\"x\"\n"), "{d}");
    }
}
