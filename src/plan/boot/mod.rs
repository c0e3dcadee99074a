//! Kernel command-line editors, one per boot loader, and the per-loader
//! "apply" data (which command makes the change take effect).
//!
//! Every editor is a pure function: file text in, file text out. It keeps
//! comments, quoting style, order and the user's own parameters, never adds a
//! parameter that is already there, and removes only the parameters it is
//! told to remove (the planner passes what the journal says exliar added).
//! A parameter the user set to a conflicting value (`intel_iommu=off` when
//! exliar wants `intel_iommu=on`) is a warning, never silently overwritten.
//!
//! | loader | editor | apply |
//! |---|---|---|
//! | GRUB `/etc/default/grub` (+ `grub.d/*.cfg`) | [`grub::edit_grub`], [`grub::edit_default_grub`] | [`grub::grub_update`] |
//! | Fedora/RHEL BLS + grubby | (no file edit; decided from the entries) | [`bls::grubby_plan`] |
//! | systemd-boot entries | [`bls::edit_loader_entry`] | none (read at boot) |
//! | `/etc/kernel/cmdline` | [`bls::edit_kernel_cmdline`] | [`bls::kernel_cmdline_apply`] |
//! | Pop!_OS kernelstub | [`kernelstub::read_config`] | [`kernelstub::kernelstub_argv`] |
//! | rEFInd `refind_linux.conf` | [`refind::edit_refind_linux_conf`] | none (read at boot) |
//! | Limine `limine.conf` | [`limine::edit_limine_conf`] | none, but see [`limine::ENROLLED_CHECKSUM_WARNING`] |
//! | `/etc/default/limine` | [`limine::edit_default_limine`] | [`limine::default_limine_update_argv`] |
//! | NixOS | [`nix::nixos_module`] | `nixos-rebuild` |
//!
//! The parameter model (tokenizer, identity, conflicts, idempotent add) is in
//! [`params`]; the choice of parameters for a host is
//! [`params::params_for_host`].
//!
//! After planning, [`effective::evaluate`] applies the plan's file edits in
//! memory, reads back the command line every boot entry will pass, and
//! lists the needed parameters one will lack ([`effective::Unplaced`]: a
//! UKI, a user's conflicting value, a GRUB drop-in overriding the main
//! file, no boot loader recognised); plan and apply say them loudly.

use std::fmt;

pub mod bls;
pub mod effective;
pub mod grub;
pub mod kernelstub;
pub mod limine;
pub mod nix;
pub mod params;
pub mod refind;
pub(crate) mod region;
pub(crate) mod shellvar;

pub use params::{CpuVendor, Framebuffer, params_for_host};

/// Why a file cannot be edited: a line (1-based; 0 when the problem is not
/// on one line) and what is wrong there. [`EditError::in_file`] names the
/// file once the planner knows its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditError {
    pub file: Option<String>,
    pub line: usize,
    pub message: String,
}

impl EditError {
    pub fn new(line: usize, message: impl Into<String>) -> Self {
        Self {
            file: None,
            line,
            message: message.into(),
        }
    }

    /// The same error, naming the file it is in.
    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), 0) => write!(f, "{file}: {}", self.message),
            (Some(file), line) => write!(f, "{file}:{line}: {}", self.message),
            (None, 0) => write!(f, "{}", self.message),
            (None, line) => write!(f, "line {line}: {}", self.message),
        }
    }
}

impl std::error::Error for EditError {}

impl From<crate::plan::shell::ShellError> for EditError {
    fn from(e: crate::plan::shell::ShellError) -> Self {
        EditError::new(e.line(), e.to_string())
    }
}

/// The comment exliar puts on a line it adds, so that removing its last
/// parameter removes the line.
pub(crate) const MARK: &str = "# added by exliar";

/// What an editor did: the new text, the parameters it actually added (what
/// the journal must record), the ones it removed, and warnings for the plan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Edited {
    pub text: String,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub warnings: Vec<String>,
}

impl Edited {
    /// Nothing changed.
    pub fn unchanged(text: &str) -> Self {
        Self {
            text: text.to_string(),
            ..Self::default()
        }
    }

    pub fn changed(&self, before: &str) -> bool {
        self.text != before
    }
}

/// 1-based line number of a byte offset.
/// Append the items of `from` that `to` does not hold yet, in order.
pub(crate) fn push_unique<T: PartialEq>(to: &mut Vec<T>, from: Vec<T>) {
    for x in from {
        if !to.contains(&x) {
            to.push(x);
        }
    }
}

pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    memchr::memchr_iter(b'\n', &text.as_bytes()[..end]).count() + 1
}

/// Lines with their byte ranges: `(start, end_without_newline, end_with_newline)`.
pub(crate) fn line_ranges(text: &str) -> Vec<(usize, usize, usize)> {
    let mut v = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    while start < bytes.len() {
        let nl = memchr::memchr(b'\n', &bytes[start..]).map(|i| start + i);
        match nl {
            Some(i) => {
                v.push((start, i, i + 1));
                start = i + 1;
            }
            None => {
                v.push((start, bytes.len(), bytes.len()));
                start = bytes.len();
            }
        }
    }
    v
}

/// Strip the `# source:` header line the fixture collector put on line 1
/// of every file in `shared/fixtures/configs` (test helper; real files have
/// no such line).
pub fn strip_fixture_header(text: &str) -> &str {
    if text.starts_with("# source:") {
        match text.find('\n') {
            Some(i) => &text[i + 1..],
            None => "",
        }
    } else {
        text
    }
}
