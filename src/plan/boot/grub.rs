//! GRUB: `/etc/default/grub` and its `/etc/default/grub.d/*.cfg` drop-ins
//! (POSIX shell, sourced by `grub-mkconfig`; the last assignment wins), and
//! the command that regenerates `grub.cfg`.

use std::collections::HashMap;

use super::params::{Existing, split};
use super::shellvar::{NewLine, edit_var, edit_var_in, value_words};
use super::{EditError, Edited};
use crate::plan::shell::{self, Assignment, decode};

/// Which GRUB variable carries the parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrubKey {
    /// `GRUB_CMDLINE_LINUX_DEFAULT`: normal entries only (not recovery);
    /// the Debian/Ubuntu/Arch habit for VFIO parameters.
    LinuxDefault,
    /// `GRUB_CMDLINE_LINUX`: every Linux entry, recovery included (Fedora's
    /// anaconda puts everything here).
    Linux,
}

impl GrubKey {
    pub fn name(self) -> &'static str {
        match self {
            GrubKey::LinuxDefault => "GRUB_CMDLINE_LINUX_DEFAULT",
            GrubKey::Linux => "GRUB_CMDLINE_LINUX",
        }
    }
}

pub const DEFAULT_GRUB: &str = "/etc/default/grub";
pub const DEFAULT_GRUB_D: &str = "/etc/default/grub.d";

/// The files `grub-mkconfig` sources for its settings.
#[derive(Debug, Clone, Copy)]
pub struct GrubInputs<'a> {
    /// `/etc/default/grub`.
    pub main: &'a str,
    /// `/etc/default/grub.d/*.cfg` as `(file name, text)`, in the shell's
    /// glob order (sorted by name).
    pub dropins: &'a [(String, String)],
    /// The distribution's `grub-mkconfig` sources `grub.d/*.cfg` after the
    /// main file (a Debian patch: Debian, Ubuntu, Mint, Pop!_OS, Proxmox).
    /// Upstream GRUB (Arch, Fedora) does not; a main file may still source
    /// them itself (Garuda's does), which is detected.
    pub dropins_sourced: bool,
}

/// A file among [`GrubInputs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrubFile {
    Main,
    DropIn(String),
}

impl GrubFile {
    pub fn path(&self) -> String {
        match self {
            GrubFile::Main => DEFAULT_GRUB.to_string(),
            GrubFile::DropIn(n) => format!("{DEFAULT_GRUB_D}/{n}"),
        }
    }
}

/// One assignment of the variable, in the order the shell runs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrubAssignment {
    pub file: GrubFile,
    pub line: usize,
    /// `X="$X more"`: adds to the earlier value instead of replacing it.
    pub extends: bool,
    /// Still part of the effective value (not replaced by a later one).
    pub effective: bool,
}

/// Where a command-line variable is effectively set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdlineSetting {
    pub key: GrubKey,
    /// The file to edit: the one holding the last assignment that sets the
    /// value (the main file when the variable is not set anywhere).
    pub file: GrubFile,
    /// Its line (0: not set; an assignment is added).
    pub line: usize,
    /// Every assignment in shell order.
    pub assignments: Vec<GrubAssignment>,
    /// The effective parameters, expansions other than the variable itself
    /// left as written.
    pub value: Vec<String>,
    pub warnings: Vec<String>,
}

/// The main file sources the drop-ins itself at this line (Garuda:
/// `for f in ${sysconfdir}/default/grub.d/*.cfg ; do ... source "$f"`).
fn inline_sourcing_line(main: &str) -> Option<usize> {
    for (n, line) in main.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with('#') {
            continue;
        }
        if t.contains("grub.d")
            && (t.contains("source ")
                || t.starts_with(". ")
                || t.contains("; . ")
                || t.contains("do . "))
        {
            return Some(n + 1);
        }
    }
    None
}

struct Event<'a> {
    file: GrubFile,
    text: &'a str,
    a: Assignment,
}

/// The assignments of the main file (values not split into words: the
/// command line is read by [`value_words`]).
fn main_assignments(inputs: &GrubInputs<'_>) -> Result<Vec<Assignment>, EditError> {
    shell::assignments_unsplit(inputs.main).map_err(|e| EditError::from(e).in_file(DEFAULT_GRUB))
}

fn events<'a>(inputs: &GrubInputs<'a>, name: &str) -> Result<Vec<Event<'a>>, EditError> {
    events_in(inputs, &main_assignments(inputs)?, name)
}

/// [`events`] with the main file's assignments read already.
fn events_in<'a>(
    inputs: &GrubInputs<'a>,
    main_assigns: &[Assignment],
    name: &str,
) -> Result<Vec<Event<'a>>, EditError> {
    let mut drop_assigns = Vec::new();
    for (n, t) in inputs.dropins {
        let f = GrubFile::DropIn(n.clone());
        let v = shell::assignments_unsplit(t).map_err(|e| EditError::from(e).in_file(f.path()))?;
        drop_assigns.push((f, t.as_str(), v));
    }
    let dropin_events = |out: &mut Vec<Event<'a>>| {
        for (f, t, v) in &drop_assigns {
            for a in v.iter().filter(|a| a.name == name) {
                out.push(Event {
                    file: f.clone(),
                    text: t,
                    a: a.clone(),
                });
            }
        }
    };
    let inline = inline_sourcing_line(inputs.main);
    let mut out = Vec::new();
    let mut spliced = false;
    for a in main_assigns.iter().filter(|a| a.name == name) {
        if let Some(l) = inline
            && !spliced
            && a.line() > l
        {
            dropin_events(&mut out);
            spliced = true;
        }
        out.push(Event {
            file: GrubFile::Main,
            text: inputs.main,
            a: a.clone(),
        });
    }
    if inline.is_some() && !spliced {
        dropin_events(&mut out);
    }
    if inputs.dropins_sourced {
        dropin_events(&mut out);
    }
    Ok(out)
}

/// Which file and line effectively set `key`, given the main file and its
/// drop-ins, and the value that results. The planner edits
/// [`CmdlineSetting::file`]; the warnings say when that is not the main file
/// or when the main file's assignment no longer counts.
pub fn grub_cmdline_setting(
    inputs: &GrubInputs<'_>,
    key: GrubKey,
) -> Result<CmdlineSetting, EditError> {
    cmdline_setting_in(inputs, &main_assignments(inputs)?, key)
}

/// [`grub_cmdline_setting`] with the main file's assignments read already.
fn cmdline_setting_in(
    inputs: &GrubInputs<'_>,
    main_assigns: &[Assignment],
    key: GrubKey,
) -> Result<CmdlineSetting, EditError> {
    let name = key.name();
    let ev = events_in(inputs, main_assigns, name)?;
    let mut value: Vec<String> = Vec::new();
    let mut base: Option<usize> = None;
    for (i, e) in ev.iter().enumerate() {
        let toks = value_words(e.text, &e.a).map_err(|er| er.in_file(e.file.path()))?;
        let mine: Vec<String> = toks
            .into_iter()
            .filter(|(t, opaque)| !(*opaque && refers(t, name)))
            .map(|(t, _)| t)
            .collect();
        if e.a.extends(e.text) {
            value.extend(mine);
        } else {
            value = mine;
            base = Some(i);
        }
    }
    let assignments: Vec<GrubAssignment> = ev
        .iter()
        .enumerate()
        .map(|(i, e)| GrubAssignment {
            file: e.file.clone(),
            line: e.a.line(),
            extends: e.a.extends(e.text),
            effective: base.is_none_or(|b| i >= b),
        })
        .collect();
    let (file, line) = match base {
        Some(b) => (ev[b].file.clone(), ev[b].a.line()),
        None => match ev.last() {
            // Only extending assignments: the value starts empty; edit the
            // last one.
            Some(e) => (e.file.clone(), e.a.line()),
            None => (GrubFile::Main, 0),
        },
    };
    let mut warnings = Vec::new();
    if let GrubFile::DropIn(_) = file {
        warnings.push(format!(
            "{name} is set in {} line {line}, which is read after {DEFAULT_GRUB}: that drop-in is the file edited",
            file.path()
        ));
    }
    for a in &assignments {
        if !a.effective && a.file == GrubFile::Main && file != GrubFile::Main {
            warnings.push(format!(
                "{name} on {DEFAULT_GRUB} line {} has no effect: {} line {line} replaces it",
                a.line,
                file.path()
            ));
        }
    }
    Ok(CmdlineSetting {
        key,
        file,
        line,
        assignments,
        value,
        warnings,
    })
}

/// The value the shell ends up with for a simple variable
/// (`GRUB_ENABLE_BLSCFG`, `GRUB_DISABLE_RECOVERY`), quotes removed and
/// expansions left as written; `None` when no file sets it.
pub fn grub_variable(inputs: &GrubInputs<'_>, name: &str) -> Result<Option<String>, EditError> {
    let ev = events(inputs, name)?;
    Ok(ev
        .last()
        .map(|e| decode(e.text, e.a.segments()).text.into_owned()))
}

/// Which variable to add parameters to: `GRUB_CMDLINE_LINUX_DEFAULT` when
/// it is set anywhere (Debian, Ubuntu, Arch), `GRUB_CMDLINE_LINUX` on a BLS
/// system that only sets that one (Fedora's anaconda), else
/// `GRUB_CMDLINE_LINUX_DEFAULT` (added).
pub fn preferred_key(inputs: &GrubInputs<'_>) -> Result<GrubKey, EditError> {
    if !events(inputs, GrubKey::LinuxDefault.name())?.is_empty() {
        return Ok(GrubKey::LinuxDefault);
    }
    let bls = grub_variable(inputs, "GRUB_ENABLE_BLSCFG")?.as_deref() == Some("true");
    if bls && !events(inputs, GrubKey::Linux.name())?.is_empty() {
        return Ok(GrubKey::Linux);
    }
    Ok(GrubKey::LinuxDefault)
}

fn refers(token: &str, name: &str) -> bool {
    token == format!("${name}") || token == format!("${{{name}}}")
}

/// Edit `/etc/default/grub` alone (no drop-ins): add to the last assignment
/// of `key` that sets it, keeping its quotes (`"…"` with `"`, `$`, `` ` ``
/// and `\` escaped, or `'…'`); remove exliar's parameters from any
/// assignment. A missing variable is added (after `GRUB_CMDLINE_LINUX` for
/// `_DEFAULT`) on a line marked `# added by exliar`, and so is an extension
/// `KEY="$KEY …"` when the value is not one quoted string (unquoted,
/// command substitution); removal deletes such a line when it is left
/// empty.
pub fn edit_default_grub(
    text: &str,
    key: GrubKey,
    add: &[String],
    remove: &[String],
) -> Result<Edited, EditError> {
    let inputs = GrubInputs {
        main: text,
        dropins: &[],
        dropins_sourced: false,
    };
    // The file is read once, for both variables.
    let all = main_assignments(&inputs)?;
    let other = other_key_params_in(&inputs, &all, key)?;
    edit_var_in(
        text,
        &all,
        key.name(),
        add,
        remove,
        &other,
        true,
        &new_line(key),
    )
    .map_err(|e| e.in_file(DEFAULT_GRUB))
}

impl GrubKey {
    /// The other variable: normal entries get both on their command line.
    pub fn other(self) -> GrubKey {
        match self {
            GrubKey::LinuxDefault => GrubKey::Linux,
            GrubKey::Linux => GrubKey::LinuxDefault,
        }
    }
}

/// The parameters the other variable puts on the same (normal) command
/// line: present already, so not added again.
fn other_key_params_in(
    inputs: &GrubInputs<'_>,
    main_assigns: &[Assignment],
    key: GrubKey,
) -> Result<Vec<Existing>, EditError> {
    let other = cmdline_setting_in(inputs, main_assigns, key.other())?;
    Ok(other
        .value
        .into_iter()
        .filter(|t| !t.contains('$') && !t.contains('`'))
        .map(|t| Existing {
            text: t,
            place: key.other().name().to_string(),
            editable: false,
        })
        .collect())
}

fn new_line(key: GrubKey) -> NewLine<'static> {
    NewLine {
        after_var: match key {
            GrubKey::LinuxDefault => Some("GRUB_CMDLINE_LINUX"),
            GrubKey::Linux => Some("GRUB_CMDLINE_LINUX_DEFAULT"),
        },
        plus: false,
    }
}

/// Edit the GRUB settings across the main file and its drop-ins: additions
/// go to the file [`grub_cmdline_setting`] names (parameters reaching the
/// value from other files count as present), removals to every file.
/// Returns the changed files only, with the setting (for its warnings).
pub fn edit_grub(
    inputs: &GrubInputs<'_>,
    key: GrubKey,
    add: &[String],
    remove: &[String],
) -> Result<(Vec<(GrubFile, Edited)>, CmdlineSetting), EditError> {
    let main = main_assignments(inputs)?;
    let setting = cmdline_setting_in(inputs, &main, key)?;
    let other = other_key_params_in(inputs, &main, key)?;
    let mut files: Vec<(GrubFile, &str)> = vec![(GrubFile::Main, inputs.main)];
    for (n, t) in inputs.dropins {
        files.push((GrubFile::DropIn(n.clone()), t.as_str()));
    }
    let mut out = Vec::new();
    for (f, text) in files {
        let is_target = f == setting.file;
        // What reaches the value from elsewhere.
        let mut inherited: Vec<Existing> = if is_target {
            let here = shell::assignments_unsplit(text)
                .ok()
                .map(|v| {
                    let mut toks = Vec::new();
                    for a in v.iter().filter(|a| a.name == key.name()) {
                        if let Ok(t) = value_words(text, a) {
                            toks.extend(t.into_iter().map(|(t, _)| t));
                        }
                    }
                    toks
                })
                .unwrap_or_default();
            // The value less what this file holds: each of its tokens
            // takes out the first equal one left (counted, not searched
            // for and removed one by one from the front).
            let mut take: HashMap<&str, usize> = HashMap::new();
            for h in &here {
                *take.entry(h.as_str()).or_default() += 1;
            }
            let rest: Vec<String> = setting
                .value
                .iter()
                .filter(|r| match take.get_mut(r.as_str()) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        false
                    }
                    _ => true,
                })
                .cloned()
                .collect();
            rest.into_iter()
                .filter(|t| !t.contains('$') && !t.contains('`'))
                .map(|t| Existing {
                    text: t,
                    place: "another GRUB settings file".into(),
                    editable: false,
                })
                .collect()
        } else {
            Vec::new()
        };
        if is_target {
            inherited.extend(other.iter().cloned());
        }
        let e = edit_var(
            text,
            key.name(),
            add,
            remove,
            &inherited,
            is_target,
            &new_line(key),
        )
        .map_err(|e| e.in_file(f.path()))?;
        if e.text != text || !e.warnings.is_empty() {
            out.push((f, e));
        }
    }
    Ok((out, setting))
}

/// What is known about the host's GRUB installation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GrubHost {
    /// `update-grub` exists (Debian family).
    pub has_update_grub: bool,
    /// `grub-mkconfig` or `grub2-mkconfig`, whichever exists.
    pub mkconfig: Option<String>,
    /// Which of `/boot/grub/grub.cfg` and `/boot/grub2/grub.cfg` exist.
    pub grub_cfg: bool,
    pub grub2_cfg: bool,
    /// `GRUB_ENABLE_BLSCFG=true`: kernel command lines live in
    /// `/boot/loader/entries/*.conf` (Fedora, RHEL).
    pub blscfg: bool,
    /// grub2-mkconfig knows `--update-bls-cmdline` (RHEL ≥ 9.3, Fedora ≥ 39:
    /// without it BLS entries keep their old options).
    pub mkconfig_update_bls_cmdline: bool,
    /// `grubby` exists.
    pub has_grubby: bool,
}

/// The GRUB update: commands (argv) and warnings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GrubUpdate {
    pub commands: Vec<Vec<String>>,
    pub warnings: Vec<String>,
}

/// The command that makes an edited `/etc/default/grub` effective.
/// `bls_options` is the current `options` of a BLS entry (for grubby's
/// conflict check, see [`super::bls::grubby_argv`]).
pub fn grub_update(
    host: &GrubHost,
    add: &[String],
    remove: &[String],
    bls_options: &str,
) -> GrubUpdate {
    let mut u = GrubUpdate::default();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    let mk = host.mkconfig.clone().unwrap_or_else(|| {
        if host.grub2_cfg && !host.grub_cfg {
            "grub2-mkconfig".into()
        } else {
            "grub-mkconfig".into()
        }
    });
    let cfg = match (host.grub_cfg, host.grub2_cfg) {
        (true, false) => "/boot/grub/grub.cfg",
        (false, true) => "/boot/grub2/grub.cfg",
        (true, true) => {
            let c = if mk.starts_with("grub2") {
                "/boot/grub2/grub.cfg"
            } else {
                "/boot/grub/grub.cfg"
            };
            u.warnings.push(format!(
                "both /boot/grub/grub.cfg and /boot/grub2/grub.cfg exist; {c} is regenerated (the one {mk} belongs to)"
            ));
            c
        }
        (false, false) => {
            let c = if mk.starts_with("grub2") {
                "/boot/grub2/grub.cfg"
            } else {
                "/boot/grub/grub.cfg"
            };
            u.warnings
                .push(format!("no grub.cfg found; {mk} writes {c}"));
            c
        }
    };
    if host.blscfg {
        if host.has_grubby {
            let existing = split(bls_options).unwrap_or_default();
            let (argv, d) = super::bls::grubby_argv(&existing, add, remove);
            u.warnings.extend(d.warnings);
            if let Some(a) = argv {
                u.commands.push(a);
            }
        } else if host.mkconfig_update_bls_cmdline {
            u.commands
                .push(s(&[&mk, "-o", cfg, "--update-bls-cmdline"]));
        } else {
            u.commands.push(s(&[&mk, "-o", cfg]));
            u.warnings.push(format!(
                "GRUB_ENABLE_BLSCFG=true: the command lines of installed kernels are in /boot/loader/entries; this {mk} has no --update-bls-cmdline (older versions update them through $kernelopts in grubenv; newer ones need the option or grubby)"
            ));
        }
    } else if host.has_update_grub {
        u.commands.push(s(&["update-grub"]));
    } else {
        u.commands.push(s(&[&mk, "-o", cfg]));
    }
    u
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }
    const K: GrubKey = GrubKey::LinuxDefault;

    #[test]
    fn double_quoted_in_place() {
        let t = "A=1\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\"\nGRUB_CMDLINE_LINUX=\"\"\n";
        let e = edit_default_grub(t, K, &s(&["intel_iommu=on", "foo=\"a $b\""]), &[]).unwrap();
        assert_eq!(
            e.text,
            "A=1\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash intel_iommu=on foo=\\\"a \\$b\\\"\"\nGRUB_CMDLINE_LINUX=\"\"\n"
        );
        let again =
            edit_default_grub(&e.text, K, &s(&["intel_iommu=on", "foo=\"a $b\""]), &[]).unwrap();
        assert_eq!(again.text, e.text);
        let r = edit_default_grub(&e.text, K, &[], &e.added).unwrap();
        assert_eq!(r.text, t);
    }

    #[test]
    fn single_quoted_and_empty() {
        let t = "GRUB_CMDLINE_LINUX_DEFAULT=''\n";
        let e = edit_default_grub(t, K, &s(&["iommu=pt"]), &[]).unwrap();
        assert_eq!(e.text, "GRUB_CMDLINE_LINUX_DEFAULT='iommu=pt'\n");
        assert_eq!(
            edit_default_grub(&e.text, K, &[], &s(&["iommu=pt"]))
                .unwrap()
                .text,
            t
        );
    }

    #[test]
    fn missing_and_unquoted() {
        let t = "GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX=\"rhgb\"";
        let e = edit_default_grub(t, K, &s(&["iommu=pt"]), &[]).unwrap();
        assert_eq!(
            e.text,
            "GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX=\"rhgb\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"iommu=pt\" # added by exliar"
        );
        assert_eq!(
            edit_default_grub(&e.text, K, &[], &s(&["iommu=pt"]))
                .unwrap()
                .text,
            t
        );
        let t = "GRUB_CMDLINE_LINUX_DEFAULT=quiet\n";
        let e = edit_default_grub(t, K, &s(&["iommu=pt"]), &[]).unwrap();
        assert_eq!(
            e.text,
            "GRUB_CMDLINE_LINUX_DEFAULT=quiet\nGRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT iommu=pt\" # added by exliar\n"
        );
        let e2 = edit_default_grub(&e.text, K, &s(&["iommu=pt", "x=1"]), &[]).unwrap();
        assert!(
            e2.text.ends_with("iommu=pt x=1\" # added by exliar\n"),
            "{}",
            e2.text
        );
        let r = edit_default_grub(&e2.text, K, &[], &s(&["iommu=pt", "x=1"])).unwrap();
        assert_eq!(r.text, t);
    }

    #[test]
    fn last_assignment_wins_and_commented_keys_do_not_count() {
        let t = "#GRUB_CMDLINE_LINUX_DEFAULT=\"a\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"b\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"c\"\n";
        let e = edit_default_grub(t, K, &s(&["iommu=pt"]), &[]).unwrap();
        assert!(e.text.ends_with("=\"c iommu=pt\"\n"), "{}", e.text);
    }

    #[test]
    fn continuation_at_end_of_file() {
        let e = edit_default_grub("GRUB_TIMEOUT=5 \\", K, &s(&["iommu=pt"]), &[]).unwrap_err();
        assert!(e.message.contains("line continuation"), "{e}");
        assert!(edit_default_grub("GRUB_TIMEOUT=5 \\\\", K, &s(&["iommu=pt"]), &[]).is_ok());
        let e = edit_default_grub("GRUB_TIMEOUT=5 \\\n", K, &s(&["iommu=pt"]), &[]).unwrap_err();
        assert!(e.message.contains("line continuation"), "{e}");
    }

    #[test]
    fn unterminated_quote_names_the_line() {
        let e = edit_default_grub(
            "A=1\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\nB=2\n",
            K,
            &[],
            &[],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/default/grub:2: unterminated double quote (opened here)"
        );
    }

    #[test]
    fn dropins_override_and_extend() {
        let main = "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n";
        let d = vec![
            (
                "10-a.cfg".to_string(),
                "GRUB_CMDLINE_LINUX_DEFAULT=\"console=ttyS0\"\n".to_string(),
            ),
            (
                "20-b.cfg".to_string(),
                "GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT crashkernel=1G\"\n"
                    .to_string(),
            ),
        ];
        let inputs = GrubInputs {
            main,
            dropins: &d,
            dropins_sourced: true,
        };
        let st = grub_cmdline_setting(&inputs, K).unwrap();
        assert_eq!(st.file, GrubFile::DropIn("10-a.cfg".into()));
        assert_eq!(st.value, s(&["console=ttyS0", "crashkernel=1G"]));
        assert_eq!(st.warnings.len(), 2, "{:?}", st.warnings);
        let (files, _) = edit_grub(&inputs, K, &s(&["crashkernel=1G", "iommu=pt"]), &[]).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(
            files[0].1.text,
            "GRUB_CMDLINE_LINUX_DEFAULT=\"console=ttyS0 iommu=pt\"\n"
        );
        // Not sourced (upstream grub-mkconfig): main is the one.
        let inputs = GrubInputs {
            main,
            dropins: &d,
            dropins_sourced: false,
        };
        assert_eq!(
            grub_cmdline_setting(&inputs, K).unwrap().file,
            GrubFile::Main
        );
    }

    #[test]
    fn variables_and_preferred_key() {
        let fedora = "GRUB_CMDLINE_LINUX=\"rhgb quiet\"\nGRUB_ENABLE_BLSCFG=true\n";
        let i = GrubInputs {
            main: fedora,
            dropins: &[],
            dropins_sourced: false,
        };
        assert_eq!(
            grub_variable(&i, "GRUB_ENABLE_BLSCFG").unwrap().as_deref(),
            Some("true")
        );
        assert_eq!(preferred_key(&i).unwrap(), GrubKey::Linux);
        let debian = "GRUB_CMDLINE_LINUX_DEFAULT='quiet'\nGRUB_CMDLINE_LINUX=\"\"\n";
        let i = GrubInputs {
            main: debian,
            dropins: &[],
            dropins_sourced: true,
        };
        assert_eq!(preferred_key(&i).unwrap(), GrubKey::LinuxDefault);
        assert_eq!(
            grub_variable(&i, "GRUB_CMDLINE_LINUX_DEFAULT")
                .unwrap()
                .as_deref(),
            Some("quiet")
        );
        assert_eq!(grub_variable(&i, "GRUB_X").unwrap(), None);
    }

    #[test]
    fn update_commands() {
        let h = GrubHost {
            has_update_grub: true,
            grub_cfg: true,
            ..Default::default()
        };
        assert_eq!(
            grub_update(&h, &[], &[], "").commands,
            vec![s(&["update-grub"])]
        );
        let h = GrubHost {
            mkconfig: Some("grub2-mkconfig".into()),
            grub2_cfg: true,
            ..Default::default()
        };
        assert_eq!(
            grub_update(&h, &[], &[], "").commands,
            vec![s(&["grub2-mkconfig", "-o", "/boot/grub2/grub.cfg"])]
        );
        let h = GrubHost {
            mkconfig: Some("grub2-mkconfig".into()),
            grub2_cfg: true,
            blscfg: true,
            mkconfig_update_bls_cmdline: true,
            ..Default::default()
        };
        assert_eq!(
            grub_update(&h, &[], &[], "").commands,
            vec![s(&[
                "grub2-mkconfig",
                "-o",
                "/boot/grub2/grub.cfg",
                "--update-bls-cmdline"
            ])]
        );
        let h = GrubHost {
            blscfg: true,
            has_grubby: true,
            grub2_cfg: true,
            ..Default::default()
        };
        assert_eq!(
            grub_update(&h, &s(&["iommu=pt"]), &[], "root=/x quiet").commands,
            vec![s(&["grubby", "--update-kernel=ALL", "--args=iommu=pt"])]
        );
        let h = GrubHost {
            mkconfig: Some("grub-mkconfig".into()),
            grub_cfg: true,
            ..Default::default()
        };
        assert_eq!(
            grub_update(&h, &[], &[], "").commands,
            vec![s(&["grub-mkconfig", "-o", "/boot/grub/grub.cfg"])]
        );
    }
}
