//! libvirt tier: a real, throwaway libvirt daemon started by the tests (Debian's
//! libvirtd + virtlogd in private namespaces, see tests/libvirt/README.md), and the two
//! halves of the domain-XML oracle: libvirt's schema (`virt-xml-validate`) and a real
//! `virsh define`. These tests prove the harness itself is real and not vacuous.

#[allow(dead_code)] // the harness's API, partly used here
mod libvirt {
    pub mod daemon;
}

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use libvirt::daemon::{self, Daemon, hostdevs, xml_validate};

/// A minimal domain that QEMU can start under TCG: q35, SeaBIOS, 64 MiB, no disk, no
/// display.
fn minimal(name: &str) -> String {
    format!(
        "<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <video><model type='none'/></video>
  </devices>
</domain>
"
    )
}

/// The GPU-shaped domain of the oracle tests: a Hyper-V vendor id and two managed
/// hostdevs (a card and its audio function) on one multifunction guest slot.
fn with_gpu(vendor_id: &str, managed: &str, audio_guest_function: &str) -> String {
    format!(
        "<domain type='qemu'>
  <name>oracle-gpu</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <features>
    <acpi/>
    <hyperv mode='custom'>
      <relaxed state='on'/>
      <vendor_id state='on' value='{vendor_id}'/>
    </hyperv>
  </features>
  <devices>
    <controller type='pci' index='0' model='pcie-root'/>
    <controller type='pci' index='1' model='pcie-root-port'/>
    <hostdev mode='subsystem' type='pci' managed='{managed}'>
      <source><address domain='0x0000' bus='0x0a' slot='0x00' function='0x0'/></source>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0' multifunction='on'/>
    </hostdev>
    <hostdev mode='subsystem' type='pci' managed='{managed}'>
      <source><address domain='0x0000' bus='0x0a' slot='0x00' function='0x1'/></source>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='{audio_guest_function}'/>
    </hostdev>
    <video><model type='none'/></video>
  </devices>
</domain>
"
    )
}

fn secs(t: Instant) -> String {
    format!("{:.2} s", t.elapsed().as_secs_f64())
}

fn text(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The files under a directory, recursively (to see that nothing lands in the host's
/// /etc/libvirt).
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Host-side `virsh list --all` with the default URI (no LIBVIRT_DEFAULT_URI).
fn host_list() -> String {
    let o = std::process::Command::new("virsh")
        .args(["list", "--all"])
        .env_remove("LIBVIRT_DEFAULT_URI")
        .output()
        .expect("virsh");
    text(&o)
}

#[test]
fn daemon_is_private_and_empty() {
    let before = (host_list(), tree(Path::new("/etc/libvirt")));
    let host_sock = Path::new("/run/libvirt/libvirt-sock").exists();
    let Some(d) = daemon::shared("daemon_is_private_and_empty") else {
        return;
    };
    let version = d.virsh_ok(&["version"]);
    assert!(version.contains("Running hypervisor: QEMU"), "{version}");
    let list = d.virsh_ok(&["list", "--all", "--name"]);
    assert_eq!(list.trim(), "", "the throwaway daemon has no domains");
    // The daemon's socket is in its temporary directory, not the host's /run/libvirt.
    assert!(d.dir().join("run/libvirt-sock").exists());
    assert_eq!(
        Path::new("/run/libvirt/libvirt-sock").exists(),
        host_sock,
        "the host's /run/libvirt changed"
    );
    // A domain defined in the throwaway daemon is not the host's.
    d.virsh_ok(&[
        "define",
        &write(&d, "private.xml", &minimal("exliar-private")),
    ]);
    let after = (host_list(), tree(Path::new("/etc/libvirt")));
    d.virsh_ok(&["undefine", "exliar-private"]);
    assert_eq!(
        before, after,
        "host's `virsh list --all` or /etc/libvirt changed"
    );
    assert!(
        d.dir().join("etc/qemu").is_dir(),
        "the daemon's /etc/libvirt is the temporary copy"
    );
}

fn write(d: &Daemon, name: &str, xml: &str) -> String {
    let p = d.dir().join(name);
    std::fs::write(&p, xml).expect("writing XML");
    p.display().to_string()
}

#[test]
fn tcg_domain_defines_starts_paused_and_goes() {
    let Some(d) = daemon::shared("tcg_domain_defines_starts_paused_and_goes") else {
        return;
    };
    let xml = minimal("exliar-tcg");
    xml_validate(&xml).expect("the minimal domain is valid");
    let file = write(&d, "tcg.xml", &xml);
    let t = Instant::now();
    d.virsh_ok(&["define", &file]);
    eprintln!("define: {}", secs(t));
    // 76 s when libvirt re-probes QEMU on every lookup (the /dev/kvm quirk).
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "define took {}: is libvirt re-probing QEMU? /dev/kvm masked: {}\n{}",
        secs(t),
        d.kvm_masked(),
        d.log_tail(20)
    );
    let t = Instant::now();
    d.virsh_ok(&["start", "--paused", "exliar-tcg"]);
    eprintln!("start --paused: {}", secs(t));
    assert_eq!(d.virsh_ok(&["domstate", "exliar-tcg"]).trim(), "paused");
    // A real QEMU, under TCG, in the daemon's namespace.
    let qemu: Vec<_> = d
        .processes()
        .into_iter()
        .filter(|(_, c)| c.contains("qemu-system-x86_64") && c.contains("guest=exliar-tcg"))
        .collect();
    assert_eq!(
        qemu.len(),
        1,
        "one QEMU for the domain: {:?}",
        d.processes()
    );
    assert!(qemu[0].1.contains("-accel tcg"), "{}", qemu[0].1);
    let t = Instant::now();
    d.virsh_ok(&["destroy", "exliar-tcg"]);
    eprintln!("destroy: {}", secs(t));
    assert_eq!(d.virsh_ok(&["domstate", "exliar-tcg"]).trim(), "shut off");
    let t = Instant::now();
    d.virsh_ok(&["undefine", "--nvram", "exliar-tcg"]);
    eprintln!("undefine --nvram: {}", secs(t));
    assert_eq!(d.virsh_ok(&["list", "--all", "--name"]).trim(), "");
    assert!(
        !d.processes().iter().any(|(_, c)| c.contains("qemu-system")),
        "QEMU gone after destroy: {:?}",
        d.processes()
    );
}

#[test]
fn oracle_accepts_a_good_gpu_domain() {
    let Some(d) = daemon::shared("oracle_accepts_a_good_gpu_domain") else {
        return;
    };
    let xml = with_gpu("exliar12345", "yes", "0x1");
    xml_validate(&xml).expect("schema");
    let out = d.define_check(&xml).expect("define");
    let hd = hostdevs(&out).expect("dumpxml parses");
    assert_eq!(
        hd,
        vec![
            ("0000:0a:00.0".to_string(), Some("yes".to_string())),
            ("0000:0a:00.1".to_string(), Some("yes".to_string())),
        ],
        "{out}"
    );
    assert!(out.contains("exliar12345"), "{out}");
    assert_eq!(
        d.virsh_ok(&["list", "--all", "--name"]).trim(),
        "",
        "undefined again"
    );
}

#[test]
fn oracle_catches_a_double_used_guest_address() {
    let Some(d) = daemon::shared("oracle_catches_a_double_used_guest_address") else {
        return;
    };
    // Both functions at guest 01:00.0: the schema cannot see it, the daemon can.
    let xml = with_gpu("exliar12345", "yes", "0x0");
    xml_validate(&xml).expect("the schema misses a double-used address");
    let err = d.define_check(&xml).expect_err("the daemon refuses it");
    assert!(err.contains("double use of PCI Address"), "{err}");
    assert_eq!(d.virsh_ok(&["list", "--all", "--name"]).trim(), "");
}

#[test]
fn oracle_catches_managed_true() {
    let Some(d) = daemon::shared("oracle_catches_managed_true") else {
        return;
    };
    let xml = with_gpu("exliar12345", "true", "0x1");
    let schema = xml_validate(&xml).expect_err("the schema knows only yes/no");
    assert!(schema.contains("fails to validate"), "{schema}");
    // The daemon alone accepts it and silently makes the hostdevs unmanaged...
    let file = write(&d, "managed-true.xml", &xml);
    d.virsh_ok(&["define", &file]);
    let dumped = d.virsh_ok(&["dumpxml", "--inactive", "oracle-gpu"]);
    d.virsh_ok(&["undefine", "oracle-gpu"]);
    assert!(
        hostdevs(&dumped)
            .expect("parses")
            .iter()
            .all(|(_, m)| m.as_deref() == Some("no")),
        "{dumped}"
    );
    // ...which define_check reports.
    let err = d.define_check(&xml).expect_err("downgrade caught");
    assert!(
        err.contains("managed='true'") && err.contains("0000:0a:00.0"),
        "{err}"
    );
    assert_eq!(d.virsh_ok(&["list", "--all", "--name"]).trim(), "");
}

#[test]
fn oracle_catches_a_long_vendor_id() {
    let Some(d) = daemon::shared("oracle_catches_a_long_vendor_id") else {
        return;
    };
    let xml = with_gpu("exliar1234567", "yes", "0x1");
    assert!(xml_validate(&xml).is_err(), "schema: 13 characters");
    let err = d.define_check(&xml).expect_err("daemon: 13 characters");
    assert!(err.contains("must not be more than 12 characters"), "{err}");
    // 12 characters is fine for both.
    let ok = with_gpu("exliar123456", "yes", "0x1");
    xml_validate(&ok).expect("12 characters");
    d.define_check(&ok).expect("12 characters");
}

#[test]
fn default_network_starts_privately() {
    let host_bridge = Path::new("/sys/class/net/virbr0").exists();
    let Some(d) = daemon::shared("default_network_starts_privately") else {
        return;
    };
    let nets = d.virsh_ok(&["net-list", "--all", "--name"]);
    assert!(
        nets.lines().any(|l| l.trim() == "default"),
        "the package's default network is defined: {nets}"
    );
    let t = Instant::now();
    d.virsh_ok(&["net-start", "default"]);
    eprintln!("net-start default: {}", secs(t));
    let info = d.virsh_ok(&["net-info", "default"]);
    let dnsmasq = d
        .processes()
        .into_iter()
        .any(|(_, c)| c.starts_with("/usr/sbin/dnsmasq") && c.contains("default.conf"));
    // The bridge is in the daemon's network namespace, not the host's.
    let bridge_on_host = Path::new("/sys/class/net/virbr0").exists();
    d.virsh_ok(&["net-destroy", "default"]);
    assert!(
        info.lines()
            .any(|l| l.starts_with("Active:") && l.ends_with("yes")),
        "{info}"
    );
    assert!(dnsmasq, "dnsmasq runs for it: {:?}", d.processes());
    assert_eq!(bridge_on_host, host_bridge, "virbr0 appeared on the host");
}

/// Two daemons one after the other in one process: each stops completely (no process
/// left that names its directory or lives in its namespace, a QEMU included).
#[test]
fn daemons_clean_up_after_themselves() {
    let _serial = daemon::serial();
    for round in 1..=2 {
        let d = match Daemon::start() {
            Ok(d) => d,
            Err(u) => {
                daemon::skip("daemons_clean_up_after_themselves", &u);
                return;
            }
        };
        let dir = d.dir().display().to_string();
        let ns = d.net_ns().to_string();
        let mnt = d.mnt_ns();
        // A domain left running: Drop has to kill its QEMU.
        d.virsh_ok(&["define", &write(&d, "left.xml", &minimal("exliar-left"))]);
        d.virsh_ok(&["start", "--paused", "exliar-left"]);
        let before = d.processes();
        assert!(
            before.iter().any(|(_, c)| c.contains("guest=exliar-left")),
            "round {round}: QEMU runs: {before:?}"
        );
        assert!(
            !daemon::processes_mentioning(&dir).is_empty(),
            "round {round}: the daemons name {dir}"
        );
        drop(d);
        assert_eq!(
            daemon::processes_mentioning(&dir),
            vec![],
            "round {round}: processes naming {dir}"
        );
        assert_eq!(
            daemon::processes_in_ns(&ns),
            vec![],
            "round {round}: processes in {ns}"
        );
        assert_eq!(
            daemon::processes_in_ns(&mnt),
            vec![],
            "round {round}: processes in {mnt}"
        );
        assert!(!Path::new(&dir).exists(), "round {round}: {dir} removed");
    }
}

#[test]
fn managed_check_is_by_source_address() {
    // Pure: no daemon needed.
    let asked = with_gpu("x", "yes", "0x1");
    let downgraded = asked.replacen("managed='yes'", "managed='no'", 1);
    assert!(daemon::managed_kept(&asked, &asked).is_ok());
    let err = daemon::managed_kept(&asked, &downgraded).expect_err("downgrade");
    assert!(err.contains("0000:0a:00.0"), "{err}");
    let unmanaged = with_gpu("x", "no", "0x1");
    assert!(daemon::managed_kept(&unmanaged, &unmanaged).is_ok());
    let dropped = asked.replacen("function='0x1'/></source>", "function='0x2'/></source>", 1);
    let err = daemon::managed_kept(&asked, &dropped).expect_err("missing");
    assert!(
        err.contains("0000:0a:00.1") && err.contains("missing"),
        "{err}"
    );
}

/// `Daemon::command` runs a program as if on the daemon's host: the plain
/// `qemu:///system` URI reaches the throwaway daemon, /etc/libvirt is its copy.
#[test]
fn commands_run_in_the_daemon_namespace() {
    let Some(d) = daemon::shared("commands_run_in_the_daemon_namespace") else {
        return;
    };
    let o = d
        .command("readlink")
        .arg("/proc/self/ns/mnt")
        .output()
        .expect("nsenter");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        d.mnt_ns(),
        "{}",
        text(&o)
    );
    d.virsh_ok(&["define", &write(&d, "ns.xml", &minimal("exliar-ns"))]);
    let o = d
        .command("virsh")
        .args(["-c", "qemu:///system", "list", "--all", "--name"])
        .output()
        .expect("nsenter virsh");
    let inside = d
        .command("ls")
        .arg("/etc/libvirt/qemu")
        .output()
        .expect("nsenter ls");
    d.virsh_ok(&["undefine", "exliar-ns"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "exliar-ns",
        "{}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&inside.stdout).contains("exliar-ns.xml"),
        "{}",
        text(&inside)
    );
    assert!(!Path::new("/etc/libvirt/qemu/exliar-ns.xml").exists());
}

/// A qcow2 image under the daemon's directory (made with qemu-img, as `vm create
/// --disk SIZE` does) is usable by the daemon's QEMU.
#[test]
fn domain_with_a_disk_in_the_temporary_directory_starts() {
    let Some(d) = daemon::shared("domain_with_a_disk_in_the_temporary_directory_starts") else {
        return;
    };
    let disk = d.images().join("exliar-disk.qcow2");
    let o = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&disk)
        .arg("16M")
        .output()
        .expect("qemu-img (qemu-utils)");
    assert!(o.status.success(), "{}", text(&o));
    let xml = minimal("exliar-disk").replace(
        "<devices>",
        &format!(
            "<devices>\n    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
             <source file='{}'/><target dev='vda' bus='virtio'/></disk>",
            disk.display()
        ),
    );
    xml_validate(&xml).expect("schema");
    d.virsh_ok(&["define", &write(&d, "disk.xml", &xml)]);
    let started = d.virsh(&["start", "--paused", "exliar-disk"]);
    let state = d.virsh_ok(&["domstate", "exliar-disk"]);
    let _ = d.virsh(&["destroy", "exliar-disk"]);
    d.virsh_ok(&["undefine", "exliar-disk"]);
    std::fs::remove_file(&disk).expect("disk removed");
    assert!(
        started.status.success(),
        "{}\n{}",
        text(&started),
        d.log_tail(20)
    );
    assert_eq!(state.trim(), "paused");
}

// ---------------------------------------------------------------------------
// `exliar vm`: every generated domain validated by both oracles, and the
// lifecycle on the throwaway daemon.

fn manifest() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn exliar() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_exliar"));
    c.env_remove("EXLIAR_ROOT")
        .env_remove("LIBVIRT_DEFAULT_URI");
    c
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = e.file_type().expect("type");
        if ft.is_symlink() {
            let t = std::fs::read_link(&src).expect("readlink");
            std::os::unix::fs::symlink(t, &dst).expect("symlink");
        } else if ft.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
}

fn put(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

/// A fixture host (a real machine's PCI facts and CPU topology) with what a
/// VM host also has: this machine's OVMF descriptors and files (Debian's
/// `ovmf`, read in place), 64 GiB of memory, 2M and 1G hugepage pools with
/// 4096 free 2M pages, and a free block device `/dev/sdb`.
fn vm_host(fixture: &str) -> Option<tempfile::TempDir> {
    let fw = Path::new("/usr/share/qemu/firmware");
    if !fw.is_dir() {
        eprintln!("SKIP: no /usr/share/qemu/firmware (package ovmf)");
        assert!(!daemon::in_ci(), "CI needs ovmf");
        return None;
    }
    let t = tempfile::tempdir().expect("tempdir");
    copy_tree(
        &manifest().join("tests/fixtures/hosts").join(fixture),
        t.path(),
    );
    copy_tree(fw, &t.path().join("usr/share/qemu/firmware"));
    for f in std::fs::read_dir("/usr/share/OVMF")
        .expect("OVMF")
        .flatten()
    {
        put(
            t.path(),
            &format!("usr/share/OVMF/{}", f.file_name().to_string_lossy()),
            "",
        );
    }
    put(
        t.path(),
        "proc/meminfo",
        "MemTotal:       65536000 kB\nMemAvailable:   60000000 kB\n",
    );
    let hp = "sys/kernel/mm/hugepages";
    put(
        t.path(),
        &format!("{hp}/hugepages-2048kB/nr_hugepages"),
        "4096\n",
    );
    put(
        t.path(),
        &format!("{hp}/hugepages-2048kB/free_hugepages"),
        "4096\n",
    );
    put(
        t.path(),
        &format!("{hp}/hugepages-1048576kB/nr_hugepages"),
        "0\n",
    );
    put(
        t.path(),
        &format!("{hp}/hugepages-1048576kB/free_hugepages"),
        "0\n",
    );
    put(
        t.path(),
        "proc/self/mountinfo",
        "22 1 259:2 / / rw,relatime - ext4 /dev/nvme0n1p2 rw\n24 22 0:21 / /dev/hugepages rw - hugetlbfs hugetlbfs rw\n",
    );
    put(t.path(), "sys/class/block/sdb/dev", "8:16\n");
    put(t.path(), "sys/class/block/sdb/size", "1953525168\n");
    put(t.path(), "dev/sdb", "");
    Some(t)
}

/// The option sets of the golden matrix.
const OPTION_SETS: &[(&str, &[&str])] = &[
    ("defaults", &[]),
    (
        "hugepages-stealth-bridge",
        &[
            "--hugepages",
            "--stealth",
            "--network",
            "bridge=br0",
            "--memory",
            "8G",
        ],
    ),
    (
        "block-disk-macvtap",
        &[
            "--disk",
            "/dev/sdb",
            "--network",
            "macvtap=enp5s0",
            "--cpus",
            "2",
        ],
    ),
    (
        "no-gpu-user-net",
        &["--gpu", "none", "--network", "user", "--memory", "4G"],
    ),
    (
        "no-network-bios",
        &["--network", "none", "--firmware", "bios", "--disk", "none"],
    ),
];

const VM_HOSTS: &[&str] = &[
    "hw08-ryzen7950x-am5-rtx3060-audio-split",
    "hw06-raptorlake-rtx4090-annotated",
    "hw05-dual-xeon-x79-c602-three-nvidia-aspeed",
    "hw20-laptop-coffeelake-h-gtx1060-mobile-muxed",
];

#[test]
fn vm_create_golden_matrix_passes_both_oracles() {
    let Some(d) = daemon::shared("vm_create_golden_matrix_passes_both_oracles") else {
        return;
    };
    let mut checked = 0;
    for host in VM_HOSTS {
        let Some(root) = vm_host(host) else { return };
        let mut golden = String::new();
        for profile in ["windows11", "windows10", "linux"] {
            for (set, opts) in OPTION_SETS {
                let name = format!("g-{profile}-{set}");
                let o = exliar()
                    .arg("--root")
                    .arg(root.path())
                    .args(["vm", "create", &name, "--profile", profile, "--print-xml"])
                    .args(*opts)
                    .output()
                    .expect("exliar");
                let xml = String::from_utf8_lossy(&o.stdout).into_owned();
                let gpu = !opts.contains(&"none") || !opts.contains(&"--gpu");
                if gpu
                    && o.status.code() == Some(1)
                    && text(&o).contains("the card holds the host's only console")
                {
                    // a single-GPU host (single-GPU handover by default) with no network
                    // login: refused, said, nothing to validate
                    golden.push_str(&format!(
                        "==== {profile} {set}: refused\n{}",
                        String::from_utf8_lossy(&o.stderr)
                    ));
                    continue;
                }
                assert!(o.status.success(), "{host} {profile} {set}: {}", text(&o));
                // libvirt's schema, then the daemon's parser (TCG here)
                xml_validate(&xml)
                    .unwrap_or_else(|e| panic!("{host} {profile} {set}: schema: {e}\n{xml}"));
                let back = d
                    .define_check(&daemon::tcg(&xml))
                    .unwrap_or_else(|e| panic!("{host} {profile} {set}: define: {e}\n{xml}"));
                // every function of the card is there, managed, on one slot
                let hd = hostdevs(&back).expect("dumpxml");
                if opts.contains(&"none") && opts.contains(&"--gpu") {
                    assert!(hd.is_empty(), "{back}");
                } else {
                    let fns = xml
                        .split("<exliar:functions>")
                        .nth(1)
                        .and_then(|r| r.split('<').next())
                        .map_or(0, |f| f.split(',').count());
                    assert!(
                        fns >= 1 && hd.len() == fns,
                        "{host}: every function of the card: {back}"
                    );
                    assert!(
                        hd.iter().all(|(_, m)| m.as_deref() == Some("yes")),
                        "{back}"
                    );
                }
                // no vCPU on CPU 0 (core 0 stays with the host)
                assert!(!xml.contains("<vcpupin vcpu='0' cpuset='0'/>"), "{xml}");
                golden.push_str(&format!("==== {profile} {set}: {}\n{xml}", opts.join(" ")));
                checked += 1;
            }
        }
        let _ = &mut checked;
        insta::assert_snapshot!(format!("vm_create_{host}"), golden);
    }
    eprintln!("{checked} domains validated by virt-xml-validate and virsh define");
    // hw06 has one GPU: only its no-GPU domains are made
    assert_eq!(
        checked,
        VM_HOSTS.len() * 3 * OPTION_SETS.len() - 3 * (OPTION_SETS.len() - 1)
    );
}

fn run(args: &[&str]) -> (i32, String, String) {
    let o = exliar().args(args).output().expect("exliar");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// The real flow on the running host (`--root /`) against the throwaway
/// daemon: create (a transaction: domain file, a qcow2 image, `virsh
/// define`), list, show, start under TCG, stop (ACPI, which a guest with no
/// OS ignores: the timeout and its hint), destroy, rollback.
#[test]
fn vm_lifecycle_on_a_real_daemon() {
    let Some(d) = daemon::shared("vm_lifecycle_on_a_real_daemon") else {
        return;
    };
    let uri = d.uri().to_string();
    let images = d.images();
    // the images pool, at a path both sides see (another test on this
    // shared daemon may have made it already)
    let _ = d.virsh(&[
        "pool-define-as",
        "default",
        "dir",
        "--target",
        &images.display().to_string(),
    ]);
    let _ = d.virsh(&["pool-start", "default"]);
    let pool = d.virsh_ok(&["pool-dumpxml", "default"]);
    assert!(pool.contains(&images.display().to_string()), "{pool}");
    let before = d.virsh_ok(&["list", "--all", "--name"]);
    let name = format!("exliar-t{}", std::process::id());
    let t = Instant::now();
    let (rc, out, err) = run(&[
        "vm",
        "create",
        &name,
        "--connect",
        &uri,
        "--gpu",
        "none",
        "--profile",
        "linux",
        "--firmware",
        "bios",
        "--virt-type",
        "qemu",
        "--memory",
        "64M",
        "--cpus",
        "1",
        "--disk",
        "16M",
        "--network",
        "none",
        "--yes",
        "--json",
    ]);
    eprintln!("vm create: {}", secs(t));
    assert_eq!(rc, 0, "{out}{err}");
    let doc = json(&out);
    assert_eq!(doc["applied"], true, "{out}");
    assert_eq!(doc["plan"]["subject"], "vm");
    let id = doc["journal"]["id"].as_str().expect("id").to_string();
    let image = images.join(format!("{name}.qcow2"));
    assert!(image.is_file(), "qemu-img made {}", image.display());
    let file = Path::new("/etc/exliar/vms").join(format!("{name}.xml"));
    assert!(file.is_file());

    let (rc, out, _) = run(&["vm", "list", "--connect", &uri, "--json"]);
    assert_eq!(rc, 0);
    let l = json(&out);
    let me = l["vms"]
        .as_array()
        .expect("vms")
        .iter()
        .find(|v| v["name"] == name.as_str())
        .cloned()
        .expect("listed");
    assert_eq!(me["exliar"], true);
    assert_eq!(me["profile"], "linux");

    let (rc, out, _) = run(&["vm", "show", &name, "--connect", &uri, "--json"]);
    assert_eq!(rc, 0, "{out}");
    let s = json(&out);
    assert_eq!(s["schema"], "exliar.vm/1");
    assert_eq!(s["state"], "shut off");
    assert_eq!(s["ready"], true, "{out}");
    assert_eq!(s["memory_mib"], 64);

    // a second create of the same name is refused, nothing written
    let (rc, _, err) = run(&[
        "vm",
        "create",
        &name,
        "--connect",
        &uri,
        "--gpu",
        "none",
        "--yes",
    ]);
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("exists on"), "{err}");

    let t = Instant::now();
    let (rc, out, err) = run(&["vm", "start", &name, "--connect", &uri]);
    eprintln!("vm start: {}", secs(t));
    assert_eq!(rc, 0, "{out}{err}");
    let (_, out, _) = run(&["vm", "show", &name, "--connect", &uri, "--json"]);
    assert_eq!(json(&out)["state"], "running", "{out}");
    let (rc, _, err) = run(&["vm", "start", &name, "--connect", &uri]);
    assert_eq!(rc, 1, "already running: {err}");

    let (rc, _, err) = run(&["vm", "stop", &name, "--connect", &uri, "--timeout", "2"]);
    assert_eq!(rc, 1, "SeaBIOS with no OS ignores ACPI: {err}");
    assert!(err.contains("exliar vm destroy"), "{err}");
    let t = Instant::now();
    let (rc, out, err) = run(&["vm", "destroy", &name, "--connect", &uri]);
    eprintln!("vm destroy: {}", secs(t));
    assert_eq!(rc, 0, "{out}{err}");
    let (_, out, _) = run(&["vm", "show", &name, "--connect", &uri, "--json"]);
    assert_eq!(json(&out)["state"], "shut off");

    let (rc, out, err) = run(&["rollback", &id, "--delete-disks"]);
    assert_eq!(rc, 0, "{out}{err}");
    assert_eq!(
        d.virsh_ok(&["list", "--all", "--name"]),
        before,
        "virsh list --all as before"
    );
    assert!(!image.exists() && !file.exists(), "{out}");
    d.virsh_ok(&["pool-destroy", "default"]);
    d.virsh_ok(&["pool-undefine", "default"]);
}

/// Bad input: each refused with a message naming it, nothing defined,
/// nothing written.
#[test]
fn vm_bad_input_is_refused_and_nothing_is_written() {
    let Some(d) = daemon::shared("vm_bad_input_is_refused_and_nothing_is_written") else {
        return;
    };
    let uri = d.uri().to_string();
    let before = d.virsh_ok(&["list", "--all", "--name"]);
    let journals = || {
        std::fs::read_dir("/var/lib/exliar/txn")
            .map(|r| r.count())
            .unwrap_or(0)
    };
    let j0 = journals();
    let base = [
        "vm",
        "create",
        "bad1",
        "--connect",
        &uri,
        "--gpu",
        "none",
        "--virt-type",
        "qemu",
        "--firmware",
        "bios",
        "--disk",
        "none",
        "--yes",
    ];
    let root_dev = std::fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|mi| {
            mi.lines()
                .find(|l| l.split_whitespace().nth(4) == Some("/"))
                .and_then(|l| {
                    l.split(" - ")
                        .nth(1)?
                        .split_whitespace()
                        .nth(1)
                        .map(str::to_string)
                })
        })
        .filter(|s| s.starts_with("/dev/"));
    let mut cases: Vec<(Vec<String>, String)> = vec![
        (
            vec!["--iso".into(), "/nonexistent/win11.iso".into()],
            "/nonexistent/win11.iso".into(),
        ),
        (
            vec!["--memory".into(), "900T".into()],
            "more than this host has".into(),
        ),
        (
            vec!["--cpus".into(), "4096".into()],
            "more than this host can give".into(),
        ),
        (
            vec!["--network".into(), "bridge=a b".into()],
            "not an interface name".into(),
        ),
    ];
    if let Some(dev) = &root_dev {
        cases.push((vec!["--disk".into(), dev.clone()], "is in use".into()));
    } else {
        eprintln!(
            "note: the root is not on a /dev block device here; the mounted-disk case is in the fixture test"
        );
    }
    for (extra, want) in cases {
        let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        // later options win: drop the base's --disk none for the disk case
        if extra[0] == "--disk" {
            let i = args.iter().position(|a| a == "--disk").expect("disk");
            args.drain(i..i + 2);
        }
        args.extend(extra.iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (rc, out, err) = run(&refs);
        assert_eq!(rc, 1, "{extra:?}: {out}{err}");
        assert!(err.contains(&want), "{extra:?}: wanted {want:?} in {err}");
        assert!(err.contains("nothing was changed"), "{err}");
    }
    // a card in a shared IOMMU group (a laptop's MX150 shares its group)
    let (rc, _, err) = run(&[
        "--root",
        &manifest()
            .join("tests/fixtures/hosts/hw21-laptop-kabylake-u-mx150-optimus-dirty-group")
            .display()
            .to_string(),
        "vm",
        "create",
        "bad2",
        "--gpu",
        "0000:01:00.0",
        "--firmware",
        "bios",
        "--print-xml",
    ]);
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains("shared with") || err.contains("which the host needs"),
        "{err}"
    );
    // a mounted block device on a fixture host
    let root = vm_host("hw08-ryzen7950x-am5-rtx3060-audio-split").expect("host");
    put(
        root.path(),
        "proc/self/mountinfo",
        "22 1 8:17 / /srv rw - ext4 /dev/sdb1 rw\n",
    );
    put(root.path(), "sys/class/block/sdb/sdb1/partition", "1\n");
    put(root.path(), "sys/class/block/sdb1/dev", "8:17\n");
    put(root.path(), "sys/class/block/sdb1/partition", "1\n");
    let (rc, _, err) = run(&[
        "--root",
        &root.path().display().to_string(),
        "vm",
        "create",
        "bad3",
        "--disk",
        "/dev/sdb",
        "--print-xml",
    ]);
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains("/dev/sdb is in use: sdb1 is mounted on /srv"),
        "{err}"
    );
    // an existing name
    let xml = minimal("exliar-taken");
    let f = write(&d, "exliar-taken", &xml);
    d.virsh_ok(&["define", &f]);
    let (rc, _, err) = run(&[
        "vm",
        "create",
        "exliar-taken",
        "--connect",
        &uri,
        "--gpu",
        "none",
        "--yes",
    ]);
    d.virsh_ok(&["undefine", "exliar-taken"]);
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("exliar-taken exists"), "{err}");
    assert_eq!(d.virsh_ok(&["list", "--all", "--name"]), before);
    assert_eq!(journals(), j0, "no transaction was recorded");
    assert!(!Path::new("/etc/exliar/vms/bad1.xml").exists());
}

/// `vm edit` is a plan with the XML diff, applied as a transaction that
/// keeps the domain's UUID; rolling it back restores the definition;
/// `vm delete` rolls back what created it.
#[test]
fn vm_edit_and_delete_are_transactions() {
    let Some(d) = daemon::shared("vm_edit_and_delete_are_transactions") else {
        return;
    };
    let uri = d.uri().to_string();
    let before = d.virsh_ok(&["list", "--all", "--name"]);
    let name = format!("exliar-e{}", std::process::id());
    let (rc, out, err) = run(&[
        "vm",
        "create",
        &name,
        "--connect",
        &uri,
        "--gpu",
        "none",
        "--profile",
        "linux",
        "--firmware",
        "bios",
        "--virt-type",
        "qemu",
        "--memory",
        "64M",
        "--cpus",
        "1",
        "--disk",
        "none",
        "--network",
        "none",
        "--yes",
    ]);
    assert_eq!(rc, 0, "{out}{err}");
    let uuid = d.virsh_ok(&["domuuid", &name]);
    let (rc, out, err) = run(&[
        "vm",
        "edit",
        &name,
        "--connect",
        &uri,
        "--memory",
        "96M",
        "--yes",
    ]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(
        out.contains("-  <memory unit='MiB'>64</memory>")
            && out.contains("+  <memory unit='MiB'>96</memory>"),
        "the diff: {out}"
    );
    assert_eq!(d.virsh_ok(&["domuuid", &name]), uuid, "same domain");
    let (_, out, _) = run(&["vm", "show", &name, "--connect", &uri, "--json"]);
    assert_eq!(json(&out)["memory_mib"], 96);
    // the edit's rollback defines the previous XML again
    let (rc, out, err) = run(&["rollback", "last"]);
    assert_eq!(rc, 0, "{out}{err}");
    let (_, out, _) = run(&["vm", "show", &name, "--connect", &uri, "--json"]);
    assert_eq!(json(&out)["memory_mib"], 64);
    let (rc, out, err) = run(&["vm", "delete", &name, "--connect", &uri, "--yes"]);
    assert_eq!(rc, 0, "{out}{err}");
    assert_eq!(d.virsh_ok(&["list", "--all", "--name"]), before);
    assert!(
        !Path::new("/etc/exliar/vms")
            .join(format!("{name}.xml"))
            .exists()
    );
    // a VM exliar did not create is not deleted by it
    let f = write(&d, "exliar-foreign", &minimal("exliar-foreign"));
    d.virsh_ok(&["define", &f]);
    let (rc, _, err) = run(&["vm", "delete", "exliar-foreign", "--connect", &uri, "--yes"]);
    d.virsh_ok(&["undefine", "exliar-foreign"]);
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("virsh undefine"), "{err}");
}

/// `--hugepages 2M` beyond the free pages plans the reservation (sysctl.d
/// and `sysctl -w`, undone to the old count) after a free-memory check, and
/// refuses what the host cannot give; shown from a fixture host, not applied.
#[test]
fn vm_hugepages_are_planned_or_refused() {
    let Some(root) = vm_host("hw08-ryzen7950x-am5-rtx3060-audio-split") else {
        return;
    };
    let r = root.path().display().to_string();
    let (rc, out, err) = run(&[
        "--root",
        &r,
        "vm",
        "create",
        "hp",
        "--hugepages",
        "2M",
        "--memory",
        "16G",
        "--json",
    ]);
    assert_eq!(rc, 0, "{err}");
    let doc = json(&out);
    assert_eq!(doc["applied"], false);
    let steps = doc["plan"]["steps"].as_array().expect("steps");
    assert_eq!(
        steps[0]["path"], "etc/sysctl.d/80-exliar-hugepages.conf",
        "{out}"
    );
    assert_eq!(
        steps[1]["argv"],
        serde_json::json!(["sysctl", "-w", "vm.nr_hugepages=8192"])
    );
    assert_eq!(
        steps[1]["undo"],
        serde_json::json!(["sysctl", "-w", "vm.nr_hugepages=4096"])
    );
    assert!(
        doc["plan"]["diffs"][0]
            .as_str()
            .expect("diff")
            .contains("+vm.nr_hugepages = 8192")
    );
    // more than MemAvailable
    put(
        root.path(),
        "proc/meminfo",
        "MemTotal:       65536000 kB\nMemAvailable:   10000000 kB\n",
    );
    let (rc, _, err) = run(&[
        "--root",
        &r,
        "vm",
        "create",
        "hp",
        "--hugepages",
        "2M",
        "--memory",
        "20G",
        "--print-xml",
    ]);
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("MiB available"), "{err}");
    // 1G pages that would leave the host less than 2 GiB
    let (rc, _, err) = run(&[
        "--root",
        &r,
        "vm",
        "create",
        "hp",
        "--hugepages",
        "1G",
        "--memory",
        "62G",
        "--print-xml",
    ]);
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("less than 2 GiB"), "{err}");
}

/// The host facts the VM extras read, added to a fixture host: one connected
/// 4K monitor (drm), a user and QEMU's group, this machine's own Debian
/// `qemu.conf`, AppArmor's libvirt abstraction.
fn extras_overlay(root: &Path) {
    put(root, "sys/class/drm/card1-DP-1/status", "connected\n");
    put(
        root,
        "sys/class/drm/card1-DP-1/modes",
        "3840x2160\n2560x1440\n1920x1080\n",
    );
    put(
        root,
        "sys/class/drm/card1-HDMI-A-1/status",
        "disconnected\n",
    );
    put(root, "sys/class/drm/card1-HDMI-A-1/modes", "");
    put(
        root,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\n",
    );
    put(
        root,
        "etc/group",
        "root:x:0:\nkvm:x:108:\nlibvirt-qemu:x:64055:libvirt-qemu\n",
    );
    let conf = std::fs::read_to_string("/etc/libvirt/qemu.conf")
        .expect("/etc/libvirt/qemu.conf (libvirt-daemon-system)");
    put(root, "etc/libvirt/qemu.conf", &conf);
    put(root, "etc/apparmor.d/abstractions/libvirt-qemu", "");
    // A Logitech Unifying receiver (046d:c52b: keyboard and mouse) on hw08's
    // xHCI 0000:11:00.0, laid out as the kernel does (sysfs attribute names,
    // the bus link into the controller's device folder), and its evdev links
    let pci = std::fs::read_link(root.join("sys/bus/pci/devices/0000:11:00.0"))
        .expect("hw08 has 0000:11:00.0");
    let ctl = root.join("sys/bus/pci/devices").join(&pci);
    let dev = ctl.join("usb3/3-2");
    for (k, v) in [
        ("idVendor", "046d"),
        ("idProduct", "c52b"),
        ("manufacturer", "Logitech"),
        ("product", "USB Receiver"),
        ("busnum", "3"),
        ("devnum", "2"),
        ("bDeviceClass", "00"),
        ("speed", "12"),
    ] {
        put(&dev, k, &format!("{v}\n"));
    }
    for (i, proto) in [(0, "01"), (1, "02")] {
        let f = dev.join(format!("3-2:1.{i}"));
        put(&f, "bInterfaceClass", "03\n");
        put(&f, "bInterfaceSubClass", "01\n");
        put(&f, "bInterfaceProtocol", &format!("{proto}\n"));
        put(&f, "bInterfaceNumber", &format!("0{i}\n"));
    }
    // and a Logitech USB headset (046d:0a01, audio) beside it
    let headset = ctl.join("usb3/3-3");
    for (k, v) in [
        ("idVendor", "046d"),
        ("idProduct", "0a01"),
        ("manufacturer", "Logitech"),
        ("product", "Logitech USB Headset"),
        ("busnum", "3"),
        ("devnum", "3"),
        ("bDeviceClass", "00"),
        ("speed", "12"),
    ] {
        put(&headset, k, &format!("{v}\n"));
    }
    let f = headset.join("3-3:1.0");
    put(&f, "bInterfaceClass", "01\n");
    put(&f, "bInterfaceSubClass", "01\n");
    put(&f, "bInterfaceProtocol", "00\n");
    put(&f, "bInterfaceNumber", "00\n");
    let hub = ctl.join("usb3");
    for (k, v) in [
        ("idVendor", "1d6b"),
        ("idProduct", "0002"),
        ("busnum", "3"),
        ("devnum", "1"),
        ("bDeviceClass", "09"),
    ] {
        put(&hub, k, &format!("{v}\n"));
    }
    let devices = root.join("sys/bus/usb/devices");
    std::fs::create_dir_all(&devices).expect("mkdir");
    let rel = |p: &Path| {
        Path::new("../../..").join(
            std::fs::canonicalize(p)
                .expect("canonical")
                .strip_prefix(std::fs::canonicalize(root.join("sys")).expect("sys"))
                .expect("under sys"),
        )
    };
    for (name, p) in [
        ("usb3", hub.clone()),
        ("3-2", dev.clone()),
        ("3-2:1.0", dev.join("3-2:1.0")),
        ("3-2:1.1", dev.join("3-2:1.1")),
        ("3-3", headset.clone()),
        ("3-3:1.0", headset.join("3-3:1.0")),
    ] {
        std::os::unix::fs::symlink(rel(&p), devices.join(name)).expect("link");
    }
    std::fs::create_dir_all(root.join("dev/input/by-id")).expect("mkdir");
    for (link, ev) in [
        ("usb-Logitech_USB_Receiver-event-kbd", "event3"),
        ("usb-Logitech_USB_Receiver-if01-event-mouse", "event4"),
    ] {
        put(root, &format!("dev/input/{ev}"), "");
        std::os::unix::fs::symlink(format!("../{ev}"), root.join("dev/input/by-id").join(link))
            .expect("link");
    }
    // ROM files built from the published layouts: one for hw08's RTX 3060
    // (10de:2504, legacy + UEFI), one without a UEFI image, one for another card
    use exliar::vbios::synth::{Img, rom};
    let write = |rel: &str, bytes: Vec<u8>| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, bytes).expect("rom");
    };
    write(
        "srv/rtx3060.rom",
        rom(&[
            Img::legacy(64).ids(0x10de, 0x2504),
            Img::uefi(32).ids(0x10de, 0x2504).last(),
        ]),
    );
    write(
        "srv/legacy-only.rom",
        rom(&[Img::legacy(64).ids(0x10de, 0x2504).last()]),
    );
    write(
        "srv/gtx1080.rom",
        rom(&[
            Img::legacy(64).ids(0x10de, 0x1b80),
            Img::uefi(32).ids(0x10de, 0x1b80).last(),
        ]),
    );
}

/// The option sets of the extras matrix (hw08: an RTX 3060 to give, an iGPU
/// for the host; its xHCI 0000:11:00.0 is alone in its IOMMU group).
const EXTRAS_SETS: &[(&str, &[&str])] = &[
    (
        "looking-glass-usb",
        &[
            "--looking-glass",
            "--looking-glass-user",
            "alice",
            "--evdev",
            "--usb",
            "046d:0a01",
            "1b1c:1b2e",
        ],
    ),
    (
        "kvmfr-hdr-controller",
        &[
            "--looking-glass=3440x1440",
            "--hdr",
            "--kvmfr",
            "--looking-glass-user",
            "alice",
            "--usb-controller",
            "0000:11:00.0",
            "--force",
            "--vbios",
            "/srv/rtx3060.rom",
        ],
    ),
];

#[test]
fn vm_extras_pass_both_oracles() {
    let Some(d) = daemon::shared("vm_extras_pass_both_oracles") else {
        return;
    };
    let host = "hw08-ryzen7950x-am5-rtx3060-audio-split";
    let Some(root) = vm_host(host) else { return };
    extras_overlay(root.path());
    let mut golden = String::new();
    for profile in ["windows11", "linux"] {
        for (set, opts) in EXTRAS_SETS {
            let name = format!("x-{profile}-{set}");
            let o = exliar()
                .arg("--root")
                .arg(root.path())
                .args(["vm", "create", &name, "--profile", profile, "--print-xml"])
                .args(*opts)
                .env_remove("SUDO_USER")
                .output()
                .expect("exliar");
            assert!(o.status.success(), "{profile} {set}: {}", text(&o));
            let xml = String::from_utf8_lossy(&o.stdout).into_owned();
            xml_validate(&xml).unwrap_or_else(|e| panic!("{profile} {set}: schema: {e}\n{xml}"));
            let back = d
                .define_check(&daemon::tcg(&xml))
                .unwrap_or_else(|e| panic!("{profile} {set}: define: {e}\n{xml}"));
            // what libvirt kept of each extra
            if opts.contains(&"--kvmfr") {
                assert!(back.contains("<qemu:commandline>"), "{back}");
                assert!(
                    back.contains(
                        "&quot;mem-path&quot;:&quot;/dev/kvmfr0&quot;,&quot;size&quot;:134217728"
                    ),
                    "{back}"
                );
                assert!(
                    back.contains(
                        "<address domain='0x0000' bus='0x11' slot='0x00' function='0x0'/>"
                    ),
                    "{back}"
                );
            } else {
                // 3840x2160 SDR (the connected monitor): 128 MiB
                assert!(back.contains("<shmem name='looking-glass'>"), "{back}");
                assert!(back.contains("<size unit='M'>128</size>"), "{back}");
                assert!(
                    back.contains("<vendor id='0x046d'/>")
                        && back.contains("<product id='0x1b2e'/>"),
                    "{back}"
                );
            }
            assert!(back.contains("<graphics type='spice'"), "{back}");
            assert!(back.contains("<model type='none'/>"), "video none: {back}");
            golden.push_str(&format!("==== {profile} {set}: {}\n{xml}", opts.join(" ")));
        }
    }
    insta::assert_snapshot!("vm_extras_hw08", golden);
    // the kvmfr plan, shown (not applied: --root)
    let o = exliar()
        .arg("--root")
        .arg(root.path())
        .args([
            "vm",
            "create",
            "k",
            "--looking-glass",
            "--kvmfr",
            "--looking-glass-user",
            "alice",
        ])
        .output()
        .expect("exliar");
    assert!(o.status.success(), "{}", text(&o));
    let plan = String::from_utf8_lossy(&o.stdout);
    for want in [
        "options kvmfr static_size_mb=128",
        "+kvmfr",
        "SUBSYSTEM==\"kvmfr\", OWNER=\"alice\", GROUP=\"libvirt-qemu\", MODE=\"0660\"",
        "+    \"/dev/kvmfr0\"",
        "+/dev/kvmfr0 rw,",
    ] {
        assert!(plan.contains(want), "{want} not in the plan:\n{plan}");
    }
}

#[test]
fn vm_extras_bad_input_is_refused() {
    let host = "hw08-ryzen7950x-am5-rtx3060-audio-split";
    let Some(root) = vm_host(host) else { return };
    extras_overlay(root.path());
    let r = root.path().to_string_lossy().into_owned();
    let cases: &[(&[&str], &str)] = &[
        (&["--looking-glass"], "--looking-glass-user"),
        (
            &["--looking-glass", "--looking-glass-user", "mallory"],
            "mallory: no such user",
        ),
        (
            &["--looking-glass=0x1080", "--looking-glass-user", "alice"],
            "width and height",
        ),
        (
            &[
                "--gpu",
                "none",
                "--looking-glass",
                "--looking-glass-user",
                "alice",
            ],
            "needs a card",
        ),
        (&["--kvmfr"], "go with --looking-glass"),
        (&["--usb", "046d"], "VENDOR:PRODUCT"),
        (
            &["--usb-controller", "0000:02:00.0"],
            "not a USB host controller",
        ),
        (
            &["--usb-controller", "0000:99:00.0"],
            "not a PCI device on this host",
        ),
        (&["--profile", "linux", "--unattend", "bob"], "not Windows"),
        (
            &["--vbios", "/srv/legacy-only.rom"],
            "not usable for 0000:01:00.0",
        ),
        (
            &["--vbios", "/srv/gtx1080.rom"],
            "not usable for 0000:01:00.0",
        ),
        (&["--vbios", "/srv/none.rom"], "--vbios /srv/none.rom"),
        (&["--vbios", "srv/rtx3060.rom"], "absolute path"),
    ];
    for (args, want) in cases {
        let o = exliar()
            .args(["--root", &r, "vm", "create", "bad"])
            .args(*args)
            .env_remove("SUDO_USER")
            .output()
            .expect("exliar");
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {t}");
        assert!(t.contains(want), "{args:?}: want {want:?} in: {t}");
        assert!(t.contains("nothing was changed"), "{t}");
    }
    // hw04's GT 710 is the boot display: its quirk needs a ROM file
    let Some(hw04) = vm_host("hw04-msi-b550m-mortar-matisse-gt710-dirty-rtx2070s") else {
        return;
    };
    let o = exliar()
        .arg("--root")
        .arg(hw04.path())
        .args([
            "vm",
            "create",
            "boot-gpu",
            "--gpu",
            "0000:04:00.0",
            "--print-xml",
        ])
        .output()
        .expect("exliar");
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("--vbios FILE") && t.contains("--force"), "{t}");
    let o = exliar()
        .arg("--root")
        .arg(hw04.path())
        .args([
            "vm",
            "create",
            "boot-gpu",
            "--gpu",
            "0000:04:00.0",
            "--force",
            "--print-xml",
        ])
        .output()
        .expect("exliar");
    // (its group is shared too: still refused, but not for the ROM)
    let t = text(&o);
    assert!(
        !t.contains("needs a clean copy"),
        "--force goes on without a ROM: {t}"
    );
    assert!(t.contains("IOMMU group is shared"), "{t}");
}

/// `--unattend` on the running host against the real daemon: the answer file
/// goes into an ISO (listed by xorriso, Autounattend.xml at its root, checked
/// by exliar's checker), attached as a CD-ROM; the password is on no command
/// line, in no output, log, plan, journal or kept file; rollback removes the
/// ISO.
#[test]
fn vm_unattend_iso_is_made_attached_and_rolled_back() {
    let Some(d) = daemon::shared("vm_unattend_iso_is_made_attached_and_rolled_back") else {
        return;
    };
    if !Path::new("/usr/bin/xorriso").exists() {
        eprintln!("SKIP: no xorriso (package xorriso)");
        assert!(!daemon::in_ci(), "CI needs xorriso");
        return;
    }
    let uri = d.uri().to_string();
    let images = d.images();
    let _ = d.virsh(&[
        "pool-define-as",
        "default",
        "dir",
        "--target",
        &images.display().to_string(),
    ]);
    let _ = d.virsh(&["pool-start", "default"]);
    let name = format!("unattend-t{}", std::process::id());
    let secret = "Zebra-Quartz-4711!";
    let tmp = tempfile::tempdir().expect("tempdir");
    let pw = tmp.path().join("pw");
    std::fs::write(&pw, format!("{secret}\n")).expect("pw");
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let obfuscated =
        exliar::vm::unattend::obfuscate_password(&exliar::vm::unattend::Secret::new(secret));
    let o = exliar()
        .args([
            "-vv",
            "vm",
            "create",
            &name,
            "--connect",
            &uri,
            "--gpu",
            "none",
        ])
        .args([
            "--profile",
            "windows11",
            "--virt-type",
            "qemu",
            "--memory",
            "256M",
        ])
        .args(["--cpus", "1", "--disk", "none", "--network", "none"])
        .args(["--unattend", "alice", "--password-file"])
        .arg(&pw)
        .args(["--yes", "--json"])
        .output()
        .expect("exliar");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    let doc = json(&out);
    let id = doc["journal"]["id"].as_str().expect("id").to_string();
    let iso = images.join(format!("{name}-unattend.iso"));
    assert!(iso.is_file(), "{} made", iso.display());
    // the ISO: Autounattend.xml at its root, Windows' obfuscated password in
    // it, well-formed and clean by the checker
    let ls = std::process::Command::new("xorriso")
        .args(["-indev"])
        .arg(&iso)
        .args(["-ls", "/"])
        .output()
        .expect("xorriso -ls");
    let listing = String::from_utf8_lossy(&ls.stdout);
    assert!(listing.contains("Autounattend.xml"), "{listing}");
    let x = tmp.path().join("Autounattend.xml");
    let ex = std::process::Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&iso)
        .args(["-extract", "/Autounattend.xml"])
        .arg(&x)
        .output()
        .expect("xorriso -extract");
    assert!(
        ex.status.success(),
        "{}",
        String::from_utf8_lossy(&ex.stderr)
    );
    let answer = std::fs::read_to_string(&x).expect("extracted");
    assert!(
        answer.contains(&obfuscated),
        "the password, obfuscated as Windows reads it"
    );
    assert!(!answer.contains(secret));
    assert_eq!(
        exliar::vm::unattend::check_answer_file(&answer),
        Vec::<String>::new()
    );
    assert!(
        answer.contains("<Username>alice</Username>") || answer.contains("<Name>alice</Name>"),
        "{answer}"
    );
    // attached as a CD-ROM
    let xml = d.virsh_ok(&["dumpxml", &name]);
    assert!(xml.contains(&iso.display().to_string()), "{xml}");
    // nowhere else: output, logs (-vv), the plan, the journal, the kept copy
    let journal_dir = Path::new("/var/lib/exliar/txn").join(&id);
    let mut haystack = vec![("stdout", out.clone()), ("stderr", err.clone())];
    for f in tree(&journal_dir) {
        let p = journal_dir.join(&f);
        if p.is_file() {
            haystack.push((
                "journal",
                String::from_utf8_lossy(&std::fs::read(&p).expect("read")).into_owned(),
            ));
        }
    }
    let shown = std::fs::read_to_string(format!("/etc/exliar/vms/{name}-autounattend.xml"))
        .expect("the kept copy");
    assert!(
        shown.contains("(hidden: set when the ISO is made)"),
        "{shown}"
    );
    haystack.push(("kept copy", shown));
    haystack.push(("domain", xml));
    for (what, text) in &haystack {
        assert!(!text.contains(secret), "the password is in the {what}");
        assert!(
            !text.contains(&obfuscated),
            "the obfuscated password is in the {what}"
        );
    }
    assert!(
        !Path::new(&format!("/run/exliar/unattend/{name}")).exists(),
        "the staging folder is gone"
    );
    // an edit keeps the ISO (no password asked: nothing to remake) and can
    // add more: a USB device
    let (rc, o2, e2) = run(&[
        "vm",
        "edit",
        &name,
        "--connect",
        &uri,
        "--memory",
        "320M",
        "--usb",
        "046d:c52b",
        "--yes",
    ]);
    assert_eq!(rc, 0, "{o2}{e2}");
    let xml = d.virsh_ok(&["dumpxml", &name, "--inactive"]);
    assert!(xml.contains(&iso.display().to_string()), "{xml}");
    assert!(xml.contains("<vendor id='0x046d'/>"), "{xml}");
    assert!(xml.contains("<memory unit='KiB'>327680</memory>"), "{xml}");
    // delete: both transactions rolled back, ISO, kept copy and domain gone
    let (rc, o2, e2) = run(&["vm", "delete", &name, "--connect", &uri, "--yes"]);
    assert_eq!(rc, 0, "{o2}{e2}");
    let _ = &id;
    assert!(!iso.exists(), "the rollback removes the ISO");
    assert!(!Path::new(&format!("/etc/exliar/vms/{name}-autounattend.xml")).exists());
    assert!(!d.virsh_ok(&["list", "--all", "--name"]).contains(&name));
}

/// The smallest VM the tests start: no card, SeaBIOS, TCG, 64 MiB, no
/// disk, no network.
const TINY_VM: &[&str] = &[
    "--gpu",
    "none",
    "--profile",
    "linux",
    "--firmware",
    "bios",
    "--virt-type",
    "qemu",
    "--memory",
    "64M",
    "--cpus",
    "1",
    "--disk",
    "none",
    "--network",
    "none",
];

/// The hook for real: a daemon of its own (hooks are per daemon), a user's
/// `qemu` hook already there, `exliar hooks install` (a transaction: the
/// drop-in, then SIGHUP to the daemon), domains started and destroyed with
/// libvirt's real argv and XML; a refusal at prepare stops `virsh start`
/// with exliar's words; `hooks remove` leaves the user's hook as it was.
#[test]
fn hooks_are_called_by_a_real_daemon() {
    let _serial = daemon::serial();
    let d = match Daemon::start() {
        Ok(d) => d,
        Err(e) => {
            daemon::skip("hooks_are_called_by_a_real_daemon", &e);
            return;
        }
    };
    let exe = env!("CARGO_BIN_EXE_exliar");
    let hooks = d.dir().join("etc/hooks");
    std::fs::create_dir_all(&hooks).expect("hooks dir");
    let user_log = d.dir().join("user-hook.log");
    let user_hook = format!(
        "#!/bin/sh\necho \"$*\" >> '{}'\ncat > /dev/null\n",
        user_log.display()
    );
    let qemu = hooks.join("qemu");
    std::fs::write(&qemu, &user_hook).expect("user hook");
    std::fs::set_permissions(&qemu, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let ns = |args: &[&str]| {
        let o = d
            .command(exe)
            .args(args)
            .output()
            .expect("exliar in the namespace");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (rc, out, err) = ns(&["hooks", "install", "--yes", "--json"]);
    assert_eq!(rc, 0, "{out}{err}");
    let doc = json(&out);
    assert_eq!(doc["plan"]["subject"], "hooks", "{out}");
    let argv = doc["journal"]["commands"][0]["argv"].clone();
    assert_eq!(argv[0], "kill", "the reload is SIGHUP to the daemon: {out}");
    let dropin = hooks.join("qemu.d/10-exliar");
    assert!(dropin.is_file(), "the drop-in");
    assert_eq!(
        std::fs::read_to_string(&qemu).expect("qemu"),
        user_hook,
        "the user's hook is untouched"
    );
    let (rc, out, _) = ns(&["hooks", "install", "--yes"]);
    assert_eq!(rc, 0);
    assert!(out.contains("nothing to do"), "{out}");

    // an exliar VM, started and destroyed: the hook runs at every phase
    let name = format!("hk{}", std::process::id());
    let create = |name: &str| {
        let mut args = vec!["vm", "create", name];
        args.extend_from_slice(TINY_VM);
        args.extend_from_slice(&["--yes", "--json"]);
        ns(&args)
    };
    let (rc, out, err) = create(&name);
    assert_eq!(rc, 0, "{out}{err}");
    d.virsh_ok(&["start", &name]);
    d.virsh_ok(&["destroy", &name]);
    let runs = |name: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(d.dir().join("exliar/hooks/runs.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| r["domain"] == name)
            .collect()
    };
    let phases: Vec<String> = runs(&name)
        .iter()
        .map(|r| r["phase"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        phases,
        [
            "prepare begin",
            "start begin",
            "started begin",
            "stopped end",
            "release end"
        ],
        "libvirt's real phases, in order"
    );
    assert!(
        runs(&name)
            .iter()
            .all(|r| r["mode"] == "boot" && r["outcome"] == "logged")
    );
    let user = std::fs::read_to_string(&user_log).unwrap_or_default();
    assert!(
        user.contains(&format!("{name} prepare begin -"))
            && user.contains(&format!("{name} release end -")),
        "the user's hook still runs (libvirt runs qemu, then qemu.d): {user}"
    );

    // a refusal at prepare: a dynamic VM whose card is not on this host
    let bad = format!("hkbad{}", std::process::id());
    let o = exliar()
        .args(["vm", "create", &bad])
        .args(TINY_VM)
        .arg("--print-xml")
        .output()
        .expect("exliar");
    let xml = String::from_utf8_lossy(&o.stdout)
        .replace(
            "<exliar:functions></exliar:functions>",
            "<exliar:functions>0000:0f:00.0</exliar:functions>",
        )
        .replace(
            "<exliar:functions/>",
            "<exliar:functions>0000:0f:00.0</exliar:functions>",
        )
        .replace(
            "{&quot;profile&quot;",
            "{&quot;handover&quot;:&quot;dynamic&quot;,&quot;profile&quot;",
        );
    assert!(
        xml.contains("0000:0f:00.0") && xml.contains("handover"),
        "{xml}"
    );
    let f = d.dir().join("bad.xml");
    std::fs::write(&f, &xml).expect("xml");
    d.virsh_ok(&["define", &f.display().to_string()]);
    let o = d.virsh(&["start", &bad]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "the start must fail");
    assert!(
        err.contains("exliar (dynamic") && err.contains("0000:0f:00.0"),
        "exliar's words: {err}"
    );
    let r = runs(&bad);
    assert_eq!(r[0]["outcome"], "refused", "{r:?}");
    d.virsh_ok(&["undefine", &bad]);

    // a foreign domain: the hook returns at once and logs nothing
    let foreign = minimal("foreign");
    let t = Instant::now();
    let n = 20;
    for _ in 0..n {
        let mut c = exliar()
            .args(["hook", "qemu", "foreign", "prepare", "begin", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("hook");
        c.stdin
            .take()
            .expect("stdin")
            .write_all(foreign.as_bytes())
            .expect("xml");
        assert!(c.wait().expect("wait").success());
    }
    let each = t.elapsed().as_secs_f64() / f64::from(n);
    eprintln!(
        "hook for a foreign domain: {:.1} ms a call (debug build)",
        each * 1000.0
    );
    assert!(each < 0.5, "{each}");
    assert!(runs("foreign").is_empty());

    // status, then remove: the user's hook is as it was, exliar's is gone
    let (rc, out, _) = ns(&["hooks", "status", "--json"]);
    assert_eq!(rc, 0);
    let s = json(&out);
    assert_eq!(
        s["installed"], "/etc/libvirt/hooks/qemu.d/10-exliar",
        "{out}"
    );
    assert_eq!(s["runs"], exe, "{out}");
    assert_eq!(s["chained"][0], "/etc/libvirt/hooks/qemu", "{out}");
    let (rc, out, err) = ns(&["hooks", "remove", "--yes"]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(!dropin.exists(), "the drop-in is gone");
    assert_eq!(std::fs::read_to_string(&qemu).expect("qemu"), user_hook);
    d.virsh_ok(&["start", &name]);
    d.virsh_ok(&["destroy", &name]);
    assert_eq!(runs(&name).len(), 5, "exliar's hook no longer runs");
    let (rc, _, _) = ns(&["vm", "delete", &name, "--yes"]);
    assert_eq!(rc, 0);
}

/// `vm create --handover single-gpu` on a host whose only GPU (an RTX 3060) holds the
/// console: without it the card is refused; with it and no network login it is refused
/// unless `--force`; with ssh enabled it is made, warned about, with hostdevs exliar's
/// hook moves (`managed='no'`), and both oracles take the XML.
#[test]
fn vm_single_gpu_needs_a_network_login() {
    let Some(d) = daemon::shared("vm_single_gpu_needs_a_network_login") else {
        return;
    };
    let Some(root) = vm_host("hw09-ryzen-x570-rtx3060") else {
        return;
    };
    // the card was the boot display: the VM gets a clean ROM (GA104, 10de:2487)
    let rom = root.path().join("srv/ga104.rom");
    std::fs::create_dir_all(rom.parent().expect("parent")).expect("mkdir");
    std::fs::write(
        &rom,
        exliar::vbios::synth::rom(&[
            exliar::vbios::synth::Img::legacy(64).ids(0x10de, 0x2487),
            exliar::vbios::synth::Img::uefi(32)
                .ids(0x10de, 0x2487)
                .last(),
        ]),
    )
    .expect("rom");
    let create = |extra: &[&str]| {
        exliar()
            .arg("--root")
            .arg(root.path())
            .args([
                "vm",
                "create",
                "sg",
                "--profile",
                "windows11",
                "--vbios",
                "/srv/ga104.rom",
                "--print-xml",
            ])
            .args(extra)
            .output()
            .expect("exliar")
    };
    // the host's only GPU, chosen by default: boot isolation is refused…
    let o = create(&["--handover", "boot"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("only GPU") && text(&o).contains("--handover single-gpu"),
        "{}",
        text(&o)
    );
    // …single-GPU handover is the recommendation's default; without ssh refused
    let o = create(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("no network login is enabled"),
        "{}",
        text(&o)
    );
    let o = create(&["--handover", "single-gpu", "--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("going on: --force"), "{}", text(&o));
    put(
        root.path(),
        "etc/systemd/system/multi-user.target.wants/ssh.service",
        "",
    );
    let o = create(&["--handover", "single-gpu"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let all = text(&o);
    assert!(
        all.contains("local display goes away") && all.contains("ssh.service is enabled"),
        "{all}"
    );
    let xml = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        xml.contains("&quot;handover&quot;:&quot;single-gpu&quot;"),
        "{xml}"
    );
    xml_validate(&xml).unwrap_or_else(|e| panic!("schema: {e}\n{xml}"));
    let back = d
        .define_check(&daemon::tcg(&xml))
        .unwrap_or_else(|e| panic!("define: {e}\n{xml}"));
    let hd = hostdevs(&back).expect("dumpxml");
    assert!(
        !hd.is_empty() && hd.iter().all(|(_, m)| m.as_deref() == Some("no")),
        "exliar's hook moves the card: {hd:?}"
    );
}
