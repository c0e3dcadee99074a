//! Looking Glass: the shared memory the guest's capture host writes frames
//! into and `looking-glass-client` reads on the host.
//!
//! Sizing follows Looking Glass' published formula ([`size_mib`]). Two
//! forms: an `ivshmem-plain` `<shmem>` device backed by
//! `/dev/shm/looking-glass` (permissions by a tmpfiles.d entry), or the
//! `kvmfr` kernel module's `/dev/kvmfr0` (DMA-capable; module options,
//! udev rule, `qemu.conf`'s cgroup device list and AppArmor's local
//! abstraction — all planned files). Everything here is pure: the host's
//! facts come in as text.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::plan::Step;

/// The file QEMU creates for the `<shmem name='looking-glass'>` device.
pub const SHM_PATH: &str = "/dev/shm/looking-glass";
/// The device the kvmfr module creates (the first static device).
pub const KVMFR_DEV: &str = "/dev/kvmfr0";

/// `--looking-glass[=WIDTHxHEIGHT]` and its companions, as stored in the
/// domain's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LgOptions {
    /// `None`: the largest mode of the host's connected monitors.
    pub resolution: Option<(u32, u32)>,
    pub hdr: bool,
    pub kvmfr: bool,
    /// Who runs `looking-glass-client` (owner of the shared memory).
    pub user: Option<String>,
}

/// What the domain gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LgDevice {
    /// `<shmem name='looking-glass'><model type='ivshmem-plain'/>`.
    Shmem { size_mib: u64 },
    /// `qemu:commandline` with `/dev/kvmfr0`; `json`: the JSON argument
    /// form (libvirt ≥ 7.9 with QEMU ≥ 6.2), else the key=value form.
    Kvmfr { size_mib: u64, json: bool },
}

impl LgDevice {
    pub fn size_mib(&self) -> u64 {
        match self {
            LgDevice::Shmem { size_mib } | LgDevice::Kvmfr { size_mib, .. } => *size_mib,
        }
    }
    pub fn path(&self) -> &'static str {
        match self {
            LgDevice::Shmem { .. } => SHM_PATH,
            LgDevice::Kvmfr { .. } => KVMFR_DEV,
        }
    }
}

/// Looking Glass' formula: width × height × bytes per pixel (4, or 8 for
/// HDR) × 2 frames, in MiB, plus 10 MiB, rounded up to the next power of
/// two.
pub fn size_mib(width: u32, height: u32, hdr: bool) -> u64 {
    let bpp: u64 = if hdr { 8 } else { 4 };
    let bytes = u64::from(width) * u64::from(height) * bpp * 2;
    // exactly, in bytes: the smallest power-of-two MiB count that holds it
    let need = bytes + (10 << 20);
    let mut p: u64 = 1 << 20;
    while p < need {
        p <<= 1;
    }
    p >> 20
}

/// Parse `WIDTHxHEIGHT` (both at least 1, at most 16384).
pub fn parse_resolution(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{s:?}: give WIDTHxHEIGHT, e.g. 2560x1440");
    let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u32 = w.parse().map_err(|_| bad())?;
    let h: u32 = h.parse().map_err(|_| bad())?;
    if w == 0 || h == 0 || w > 16384 || h > 16384 {
        return Err(format!("{s:?}: width and height must be 1 to 16384"));
    }
    Ok((w, h))
}

/// A connector of `/sys/class/drm`: its name, `status`, `modes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connector {
    pub name: String,
    pub status: String,
    pub modes: String,
}

/// The largest mode (by pixels) of the connected monitors, and which.
pub fn largest_mode(connectors: &[Connector]) -> Option<((u32, u32), String)> {
    let mut best: Option<((u32, u32), String)> = None;
    for c in connectors.iter().filter(|c| c.status.trim() == "connected") {
        for line in c.modes.lines() {
            // "1920x1080" (older kernels may add "i" for interlaced)
            let m = line.trim().trim_end_matches('i');
            if let Ok((w, h)) = parse_resolution(m) {
                let px = u64::from(w) * u64::from(h);
                if best
                    .as_ref()
                    .is_none_or(|((bw, bh), _)| px > u64::from(*bw) * u64::from(*bh))
                {
                    best = Some(((w, h), c.name.clone()));
                }
            }
        }
    }
    best
}

/// The host facts the Looking Glass plan needs.
#[derive(Debug, Clone, Default)]
pub struct LgHost {
    pub connectors: Vec<Connector>,
    /// `etc/libvirt/qemu.conf`, when it exists.
    pub qemu_conf: Option<String>,
    /// The group QEMU runs as (qemu.conf's `group`, else the distribution's).
    pub qemu_group: Option<String>,
    /// Users of `etc/passwd`.
    pub users: Vec<String>,
    /// Files as they are now (for the plan's `before`), by relative path.
    pub files: Vec<(String, Option<Vec<u8>>)>,
    /// AppArmor's libvirt abstraction exists (`etc/apparmor.d/abstractions/libvirt-qemu`).
    pub apparmor: bool,
    /// (libvirt, QEMU) versions, when known.
    pub versions: Option<((u32, u32), (u32, u32))>,
}

impl LgHost {
    fn before(&self, rel: &str) -> Option<Vec<u8>> {
        self.files
            .iter()
            .find(|(p, _)| p == rel)
            .and_then(|(_, b)| b.clone())
    }
}

/// The relative paths [`plan`] may write (so the gatherer reads them).
pub const FILES: &[&str] = &[
    "etc/tmpfiles.d/10-exliar-looking-glass.conf",
    "etc/modprobe.d/exliar-kvmfr.conf",
    "etc/modules-load.d/exliar-kvmfr.conf",
    "etc/udev/rules.d/99-exliar-kvmfr.rules",
    "etc/libvirt/qemu.conf",
    "etc/apparmor.d/local/abstractions/libvirt-qemu",
];

/// The default device list of libvirt's `qemu.conf` (used when neither an
/// active nor a commented-out `cgroup_device_acl` gives one).
const DEFAULT_ACL: &[&str] = &[
    "/dev/null",
    "/dev/full",
    "/dev/zero",
    "/dev/random",
    "/dev/urandom",
    "/dev/ptmx",
    "/dev/kvm",
];

/// Where `cgroup_device_acl` is set in a qemu.conf: the byte range of the
/// whole setting (from the key to the closing `]`) and its entries.
fn find_acl(conf: &str, commented: bool) -> Option<(usize, usize, Vec<String>)> {
    let mut offset = 0;
    for line in conf.split_inclusive('\n') {
        let t = line.trim_start();
        let body = if commented {
            t.strip_prefix('#').map(str::trim_start)
        } else {
            Some(t)
        };
        if let Some(b) = body
            && let Some(rest) = b.strip_prefix("cgroup_device_acl")
            && rest.trim_start().starts_with('=')
        {
            let start = offset;
            // collect to the closing bracket (over following lines)
            let tail = &conf[start..];
            let mut end = None;
            let mut text = String::new();
            let mut pos = 0;
            for l in tail.split_inclusive('\n') {
                let lt = l.trim_start();
                let lb = if commented {
                    match lt.strip_prefix('#') {
                        Some(x) => x,
                        None => break,
                    }
                } else {
                    lt
                };
                // drop comments after the value
                let lb = lb.split('#').next().unwrap_or("");
                text.push_str(lb);
                pos += l.len();
                if lb.contains(']') {
                    end = Some(start + pos);
                    break;
                }
            }
            let end = end?;
            let open = text.find('[')?;
            let close = text.rfind(']')?;
            let entries = text[open + 1..close]
                .split(',')
                .map(|e| e.trim().trim_matches('"').to_string())
                .filter(|e| !e.is_empty())
                .collect();
            return Some((start, end, entries));
        }
        offset += line.len();
    }
    None
}

/// `qemu.conf` with `dev` in the effective `cgroup_device_acl`: the active
/// setting extended in place, or (none active) a new setting after the
/// commented-out default, holding that default plus `dev`. `None`: already
/// there.
pub fn qemu_conf_with_device(conf: &str, dev: &str) -> Option<String> {
    let render = |entries: &[String]| {
        let mut s = String::from("cgroup_device_acl = [\n");
        let n = entries.len();
        for (i, e) in entries.iter().enumerate() {
            s.push_str(&format!(
                "    \"{e}\"{}\n",
                if i + 1 < n { "," } else { "" }
            ));
        }
        s.push_str("]\n");
        s
    };
    if let Some((start, end, mut entries)) = find_acl(conf, false) {
        if entries.iter().any(|e| e == dev) {
            return None;
        }
        entries.push(dev.to_string());
        let mut out = String::with_capacity(conf.len() + 64);
        out.push_str(&conf[..start]);
        out.push_str(&render(&entries));
        out.push_str(&conf[end..]);
        return Some(out);
    }
    let (at, mut entries) = match find_acl(conf, true) {
        Some((_, end, entries)) => (end, entries),
        None => (
            conf.len(),
            DEFAULT_ACL.iter().map(|s| s.to_string()).collect(),
        ),
    };
    entries.push(dev.to_string());
    let mut out = String::with_capacity(conf.len() + 256);
    out.push_str(&conf[..at]);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("# exliar: Looking Glass (kvmfr) — libvirt's default list and ");
    out.push_str(dev);
    out.push('\n');
    out.push_str(&render(&entries));
    out.push_str(&conf[at..]);
    Some(out)
}

/// The group QEMU runs as: `group = "…"` in qemu.conf, else the first of
/// the distributions' groups that exists.
pub fn qemu_group(qemu_conf: Option<&str>, groups: &[String]) -> Option<String> {
    if let Some(conf) = qemu_conf {
        for line in conf.lines() {
            let t = line.trim();
            if let Some(rest) = t.strip_prefix("group")
                && let Some(v) = rest.trim_start().strip_prefix('=')
            {
                let v = v.split('#').next().unwrap_or("").trim().trim_matches('"');
                if !v.is_empty() {
                    return Some(v.to_string());
                }
            }
        }
    }
    ["libvirt-qemu", "qemu", "kvm"]
        .iter()
        .find(|g| groups.iter().any(|x| x == *g))
        .map(|g| g.to_string())
}

/// Parse `virsh version`'s output: (libvirt daemon or library, hypervisor).
pub fn parse_virsh_version(out: &str) -> Option<((u32, u32), (u32, u32))> {
    let ver = |s: &str| -> Option<(u32, u32)> {
        let v = s.split_whitespace().last()?;
        let mut it = v.split('.');
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    };
    let mut libvirt = None;
    let mut qemu = None;
    for line in out.lines() {
        if let Some(r) = line.strip_prefix("Running against daemon:") {
            libvirt = ver(r).or(libvirt);
        } else if let Some(r) = line.strip_prefix("Using library: libvirt")
            && libvirt.is_none()
        {
            libvirt = ver(r);
        } else if let Some(r) = line.strip_prefix("Running hypervisor: QEMU") {
            qemu = ver(r);
        }
    }
    Some((libvirt?, qemu?))
}

/// What [`plan`] decided.
#[derive(Debug, Clone)]
pub struct LgPlan {
    pub device: LgDevice,
    pub steps: Vec<Step>,
    pub reasons: Vec<String>,
    pub warnings: Vec<String>,
    /// The client's command line, printed after create.
    pub client: Vec<String>,
}

fn file_step(host: &LgHost, rel: &str, after: String, why: String) -> Option<Step> {
    let before = host.before(rel);
    if before.as_deref() == Some(after.as_bytes()) {
        return None;
    }
    Some(Step::WriteFile {
        path: PathBuf::from(rel),
        before,
        after: after.into_bytes(),
        mode: 0o644,
        why,
    })
}

/// Plan Looking Glass for VM `name`: the device, the files, the client's
/// command line. Errors: refusals that name what to do.
pub fn plan(name: &str, o: &LgOptions, host: &LgHost) -> Result<LgPlan, Vec<String>> {
    let mut refuse = Vec::new();
    let mut reasons = Vec::new();
    let mut warnings = Vec::new();
    let mut steps = Vec::new();
    let (w, h) = match o.resolution {
        Some(r) => {
            reasons.push(format!("Looking Glass at {}x{} (asked for)", r.0, r.1));
            r
        }
        None => match largest_mode(&host.connectors) {
            Some(((w, h), conn)) => {
                reasons.push(format!(
                    "Looking Glass at {w}x{h}: the largest mode of the host's connected monitors ({conn})"
                ));
                (w, h)
            }
            None => {
                reasons.push(
                    "Looking Glass at 1920x1080: no connected monitor was found in /sys/class/drm (give --looking-glass=WIDTHxHEIGHT)".into(),
                );
                (1920, 1080)
            }
        },
    };
    let size = size_mib(w, h, o.hdr);
    reasons.push(format!(
        "shared memory {size} MiB = {w}×{h}×{}×2 bytes + 10 MiB, rounded up to a power of two{}",
        if o.hdr { 8 } else { 4 },
        if o.hdr { " (HDR)" } else { "" }
    ));
    let user = match &o.user {
        Some(u) if host.users.iter().any(|x| x == u) => Some(u.clone()),
        Some(u) => {
            refuse.push(format!(
                "--looking-glass-user {u}: no such user in /etc/passwd"
            ));
            None
        }
        None => {
            refuse.push("Looking Glass: say who runs looking-glass-client with --looking-glass-user USER (run through sudo, it is your user)".into());
            None
        }
    };
    let group = host.qemu_group.clone();
    if group.is_none() {
        warnings.push(
            "QEMU's group was not found (qemu.conf's `group`, libvirt-qemu, qemu, kvm): the shared memory is given to the user's group only".into(),
        );
    }
    let device = if o.kvmfr {
        let json = match host.versions {
            Some(((lv, lm), (qv, qm))) => (lv, lm) >= (7, 9) && (qv, qm) >= (6, 2),
            None => {
                warnings.push("libvirt's and QEMU's versions are not known (no daemon answered `virsh version`): the JSON form of the kvmfr arguments (libvirt ≥ 7.9, QEMU ≥ 6.2) is used".into());
                true
            }
        };
        LgDevice::Kvmfr {
            size_mib: size,
            json,
        }
    } else {
        LgDevice::Shmem { size_mib: size }
    };
    if !refuse.is_empty() {
        return Err(refuse);
    }
    let user = user.unwrap_or_default();
    let owner_group = group.clone().unwrap_or_else(|| user.clone());
    match &device {
        LgDevice::Shmem { .. } => {
            steps.extend(file_step(
                host,
                FILES[0],
                format!(
                    "# exliar: Looking Glass shared memory of VM {name}, for {user} and QEMU's group\nf {SHM_PATH} 0660 {user} {owner_group} -\n"
                ),
                format!("{SHM_PATH} readable by {user} and QEMU ({owner_group}) from boot on"),
            ));
            // Run again by a rollback (after the entry is gone) it finds no
            // line for the path and does nothing: the file stays in tmpfs,
            // as QEMU left it, until the next boot.
            steps.push(Step::Run {
                argv: vec![
                    "systemd-tmpfiles".into(),
                    "--create".into(),
                    format!("--prefix={SHM_PATH}"),
                ],
                undo: None,
                why: format!("create {SHM_PATH} with those permissions now"),
            });
            reasons.push(format!(
                "ivshmem-plain <shmem> device backed by {SHM_PATH} (tmpfiles.d sets its owner {user}:{owner_group}, mode 0660)"
            ));
        }
        LgDevice::Kvmfr { json, .. } => {
            steps.extend(file_step(
                host,
                FILES[1],
                format!(
                    "# exliar: Looking Glass (VM {name})\noptions kvmfr static_size_mb={size}\n"
                ),
                format!("kvmfr creates {KVMFR_DEV} of {size} MiB"),
            ));
            steps.extend(file_step(
                host,
                FILES[2],
                "# exliar: Looking Glass\nkvmfr\n".to_string(),
                "load kvmfr at boot".to_string(),
            ));
            steps.extend(file_step(
                host,
                FILES[3],
                format!(
                    "# exliar: Looking Glass (VM {name})\nSUBSYSTEM==\"kvmfr\", OWNER=\"{user}\", GROUP=\"{owner_group}\", MODE=\"0660\"\n"
                ),
                format!("{KVMFR_DEV} readable by {user} and QEMU ({owner_group})"),
            ));
            match &host.qemu_conf {
                Some(conf) => {
                    if let Some(after) = qemu_conf_with_device(conf, KVMFR_DEV) {
                        steps.push(Step::WriteFile {
                            path: PathBuf::from(FILES[4]),
                            before: Some(conf.as_bytes().to_vec()),
                            after: after.into_bytes(),
                            mode: 0o644,
                            why: format!(
                                "let QEMU open {KVMFR_DEV} (cgroup_device_acl)"
                            ),
                        });
                        warnings.push("qemu.conf changed: restart libvirt's daemon (systemctl restart libvirtd, or virtqemud) before starting the VM".into());
                    }
                }
                None => warnings.push(format!(
                    "/etc/libvirt/qemu.conf was not found: add {KVMFR_DEV} to its cgroup_device_acl once libvirt is installed"
                )),
            }
            if host.apparmor {
                let rel = FILES[5];
                let before = host.before(rel);
                let now = before
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                let rule = format!("{KVMFR_DEV} rw,");
                if !now.lines().any(|l| l.trim() == rule) {
                    let mut after = now.clone();
                    if !after.is_empty() && !after.ends_with('\n') {
                        after.push('\n');
                    }
                    after.push_str(&format!("# exliar: Looking Glass\n{rule}\n"));
                    steps.push(Step::WriteFile {
                        path: PathBuf::from(rel),
                        before,
                        after: after.into_bytes(),
                        mode: 0o644,
                        why: format!("AppArmor: let QEMU open {KVMFR_DEV}"),
                    });
                }
            }
            reasons.push(format!(
                "kvmfr: {KVMFR_DEV} ({size} MiB) through qemu:commandline, {} form",
                if *json {
                    "JSON (libvirt ≥ 7.9, QEMU ≥ 6.2)"
                } else {
                    "key=value (older libvirt or QEMU)"
                }
            ));
            warnings.push("kvmfr is not part of the kernel: install it with DKMS from Looking Glass' sources (module/), then reboot or `modprobe kvmfr`".into());
        }
    }
    let client = vec![
        "looking-glass-client".to_string(),
        "-f".to_string(),
        device.path().to_string(),
    ];
    Ok(LgPlan {
        device,
        steps,
        reasons,
        warnings,
        client,
    })
}

/// The `qemu:commandline` arguments of the kvmfr form.
pub fn kvmfr_args(size_mib: u64, json: bool) -> Vec<String> {
    let bytes = size_mib << 20;
    if json {
        vec![
            "-device".into(),
            r#"{"driver":"ivshmem-plain","id":"shmem0","memdev":"looking-glass"}"#.into(),
            "-object".into(),
            format!(
                r#"{{"qom-type":"memory-backend-file","id":"looking-glass","mem-path":"{KVMFR_DEV}","size":{bytes},"share":true}}"#
            ),
        ]
    } else {
        vec![
            "-device".into(),
            "ivshmem-plain,id=shmem0,memdev=looking-glass".into(),
            "-object".into(),
            format!(
                "memory-backend-file,id=looking-glass,mem-path={KVMFR_DEV},size={size_mib}M,share=yes"
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The formula, computed independently in floating point as Looking
    /// Glass' documentation states it (MiB, + 10, next power of two).
    fn documented(w: u32, h: u32, bpp: f64) -> u64 {
        let mib = f64::from(w) * f64::from(h) * bpp * 2.0 / 1024.0 / 1024.0 + 10.0;
        2f64.powf(mib.log2().ceil()) as u64
    }

    #[test]
    fn sizes_follow_the_published_formula() {
        let table = [
            // (w, h, SDR MiB, HDR MiB)
            (1280, 720, 32, 32),
            (1920, 1080, 32, 64),
            (2560, 1440, 64, 128),
            (3440, 1440, 64, 128),
            (3840, 2160, 128, 256),
        ];
        for (w, h, sdr, hdr) in table {
            assert_eq!(size_mib(w, h, false), sdr, "{w}x{h} SDR");
            assert_eq!(size_mib(w, h, true), hdr, "{w}x{h} HDR");
            assert_eq!(size_mib(w, h, false), documented(w, h, 4.0), "{w}x{h}");
            assert_eq!(size_mib(w, h, true), documented(w, h, 8.0), "{w}x{h}");
        }
    }

    proptest::proptest! {
        #[test]
        fn size_is_the_smallest_power_of_two_that_fits(w in 1u32..16384, h in 1u32..16384, hdr: bool) {
            let s = size_mib(w, h, hdr);
            let need = u64::from(w) * u64::from(h) * if hdr { 8 } else { 4 } * 2 + (10 << 20);
            proptest::prop_assert!(s.is_power_of_two());
            proptest::prop_assert!(s << 20 >= need);
            proptest::prop_assert!((s << 19) < need);
        }
    }

    #[test]
    fn resolution_parsing() {
        assert_eq!(parse_resolution("2560x1440"), Ok((2560, 1440)));
        assert_eq!(parse_resolution("3840X2160"), Ok((3840, 2160)));
        for bad in ["", "x", "1920", "0x1080", "1920x", "99999x2", "a x b"] {
            assert!(parse_resolution(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn largest_connected_mode_wins() {
        let c = |name: &str, status: &str, modes: &str| Connector {
            name: name.into(),
            status: status.into(),
            modes: modes.into(),
        };
        let cs = [
            c("card0-HDMI-A-1", "connected", "1920x1080\n1280x720\n"),
            c("card0-DP-1", "disconnected", "7680x4320\n"),
            c(
                "card1-DP-2",
                "connected",
                "2560x1440\n3440x1440\n1920x1080\n",
            ),
        ];
        assert_eq!(
            largest_mode(&cs),
            Some(((3440, 1440), "card1-DP-2".to_string()))
        );
        assert_eq!(largest_mode(&cs[1..2]), None);
    }

    const DEBIAN_CONF: &str = "# head\n#cgroup_device_acl = [\n#    \"/dev/null\", \"/dev/full\", \"/dev/zero\",\n#    \"/dev/random\", \"/dev/urandom\",\n#    \"/dev/ptmx\", \"/dev/kvm\"\n#]\n#\n# tail\n";

    #[test]
    fn qemu_conf_gets_the_default_list_plus_kvmfr() {
        let out = qemu_conf_with_device(DEBIAN_CONF, KVMFR_DEV).expect("test");
        assert!(out.starts_with(DEBIAN_CONF.split("#\n# tail").next().expect("test")));
        assert!(out.ends_with("#\n# tail\n"), "{out}");
        let (_, _, entries) = find_acl(&out, false).expect("test");
        assert_eq!(
            entries,
            [
                "/dev/null",
                "/dev/full",
                "/dev/zero",
                "/dev/random",
                "/dev/urandom",
                "/dev/ptmx",
                "/dev/kvm",
                KVMFR_DEV
            ]
        );
        // again: nothing to do
        assert_eq!(qemu_conf_with_device(&out, KVMFR_DEV), None);
    }

    #[test]
    fn an_active_list_is_extended_in_place() {
        let conf = "user = \"qemu\"\ncgroup_device_acl = [ \"/dev/null\", \"/dev/kvm\", # the usual\n  \"/dev/input/by-id/kbd\" ]\nsecurity_driver = \"none\"\n";
        let out = qemu_conf_with_device(conf, KVMFR_DEV).expect("test");
        assert!(out.starts_with("user = \"qemu\"\n"));
        assert!(out.ends_with("security_driver = \"none\"\n"));
        let (_, _, entries) = find_acl(&out, false).expect("test");
        assert_eq!(
            entries,
            ["/dev/null", "/dev/kvm", "/dev/input/by-id/kbd", KVMFR_DEV]
        );
        assert_eq!(out.matches("cgroup_device_acl").count(), 1);
    }

    #[test]
    fn empty_conf_gets_the_builtin_default() {
        let out = qemu_conf_with_device("", KVMFR_DEV).expect("test");
        let (_, _, entries) = find_acl(&out, false).expect("test");
        assert_eq!(entries.len(), DEFAULT_ACL.len() + 1);
    }

    #[test]
    fn qemu_group_from_conf_or_distribution() {
        let groups = vec!["kvm".to_string(), "libvirt-qemu".to_string()];
        assert_eq!(
            qemu_group(Some("#group = \"x\"\ngroup = \"qemu\" # mine\n"), &groups).as_deref(),
            Some("qemu")
        );
        assert_eq!(
            qemu_group(Some("#group = \"libvirt-qemu\"\n"), &groups).as_deref(),
            Some("libvirt-qemu")
        );
        assert_eq!(qemu_group(None, &["kvm".into()]).as_deref(), Some("kvm"));
        assert_eq!(qemu_group(None, &[]), None);
    }

    #[test]
    fn virsh_version_is_read() {
        let out = "Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.0.0\nUsing API: QEMU 9.0.0\nRunning hypervisor: QEMU 7.2.19\nRunning against daemon: 9.0.0\n";
        assert_eq!(parse_virsh_version(out), Some(((9, 0), (7, 2))));
        let old = "Using library: libvirt 6.0.0\nRunning hypervisor: QEMU 4.2.1\n";
        assert_eq!(parse_virsh_version(old), Some(((6, 0), (4, 2))));
        assert_eq!(parse_virsh_version("error"), None);
    }

    fn host() -> LgHost {
        LgHost {
            connectors: vec![Connector {
                name: "card0-DP-1".into(),
                status: "connected".into(),
                modes: "2560x1440\n".into(),
            }],
            qemu_conf: Some(DEBIAN_CONF.into()),
            qemu_group: Some("libvirt-qemu".into()),
            users: vec!["alice".into()],
            files: vec![],
            apparmor: true,
            versions: Some(((9, 0), (7, 2))),
        }
    }

    #[test]
    fn shmem_plan_sizes_from_the_monitor_and_plans_tmpfiles() {
        let o = LgOptions {
            resolution: None,
            hdr: false,
            kvmfr: false,
            user: Some("alice".into()),
        };
        let p = plan("win11", &o, &host()).expect("test");
        assert_eq!(p.device, LgDevice::Shmem { size_mib: 64 });
        let Step::WriteFile { path, after, .. } = &p.steps[0] else {
            panic!("{:?}", p.steps)
        };
        assert_eq!(path, &PathBuf::from(FILES[0]));
        assert!(
            String::from_utf8_lossy(after)
                .contains("f /dev/shm/looking-glass 0660 alice libvirt-qemu -")
        );
        // run again by a rollback (the entry gone) it must do nothing: a
        // --prefix run, not one of the removed file
        let Step::Run { argv, .. } = &p.steps[1] else {
            panic!("{:?}", p.steps)
        };
        assert_eq!(
            argv,
            &[
                "systemd-tmpfiles",
                "--create",
                "--prefix=/dev/shm/looking-glass"
            ]
        );
        assert_eq!(p.client, ["looking-glass-client", "-f", SHM_PATH]);
    }

    #[test]
    fn kvmfr_plan_writes_module_udev_qemu_conf_and_apparmor() {
        let o = LgOptions {
            resolution: Some((3840, 2160)),
            hdr: false,
            kvmfr: true,
            user: Some("alice".into()),
        };
        let p = plan("win11", &o, &host()).expect("test");
        assert_eq!(
            p.device,
            LgDevice::Kvmfr {
                size_mib: 128,
                json: true
            }
        );
        let paths = crate::plan::written(&p.steps);
        assert_eq!(paths.len(), 5, "{paths:?}");
        assert!(paths[0].1.contains("options kvmfr static_size_mb=128"));
        assert!(
            paths[2]
                .1
                .contains("OWNER=\"alice\", GROUP=\"libvirt-qemu\"")
        );
        assert!(paths[3].1.contains("\"/dev/kvmfr0\""));
        assert!(paths[4].1.ends_with("/dev/kvmfr0 rw,\n"));
        // an old libvirt gets the key=value form
        let mut old = host();
        old.versions = Some(((7, 0), (5, 2)));
        let p = plan("w", &o, &old).expect("test");
        assert_eq!(
            p.device,
            LgDevice::Kvmfr {
                size_mib: 128,
                json: false
            }
        );
    }

    #[test]
    fn an_unknown_or_missing_user_is_refused() {
        let mut o = LgOptions {
            resolution: None,
            hdr: false,
            kvmfr: false,
            user: None,
        };
        assert!(plan("w", &o, &host()).is_err());
        o.user = Some("mallory".into());
        let e = plan("w", &o, &host()).expect_err("test");
        assert!(e[0].contains("mallory"), "{e:?}");
    }

    #[test]
    fn kvmfr_json_args_are_json() {
        let a = kvmfr_args(32, true);
        for s in [&a[1], &a[3]] {
            let v: serde_json::Value = serde_json::from_str(s).expect("test");
            assert!(v.is_object());
        }
        assert!(a[3].contains("\"size\":33554432"));
        assert_eq!(
            kvmfr_args(32, false)[3],
            "memory-backend-file,id=looking-glass,mem-path=/dev/kvmfr0,size=32M,share=yes"
        );
    }
}
