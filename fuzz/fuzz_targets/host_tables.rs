//! Fuzz the small tables exliar reads from the host before it moves a
//! device: `/proc/self/mountinfo` (the `/` mount) and `/proc/net/route`
//! (default routes), which decide the host-critical refusals; DRM's debugfs
//! `clients` list (who uses a card before a handover); the PCI class cache
//! under `/run/exliar`; and a snapshot's device-node table. Any text gives
//! an answer or nothing, never a panic, and each answer written back in the
//! file's own format reads back the same.
#![no_main]

use exliar::hooks::parse_drm_clients;
use exliar::host::NodeStat;
use exliar::host::critical::{default_route_interfaces, root_mount};
use exliar::host::sysfs::ClassCache;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    // mountinfo: the `/` mount's device and source, in a line of its own.
    // (A device field of `-` would read as the separator: the kernel writes
    // `major:minor` there.)
    if let Some(m) = root_mount(&text)
        && m.dev != "-"
    {
        let line = format!(
            "25 1 {} / / rw,relatime shared:1 - ext4 {} rw\n",
            m.dev, m.source
        );
        assert_eq!(root_mount(&line), Some(m));
    }

    // /proc/net/route: the interfaces with a default route.
    let ifaces = default_route_interfaces(&text);
    let mut route = String::from("Iface\tDestination\tGateway\tFlags\n");
    for i in &ifaces {
        assert!(!i.is_empty() && !i.contains(char::is_whitespace));
        route.push_str(&format!("{i}\t00000000\t0102A8C0\t0003\n"));
    }
    assert_eq!(default_route_interfaces(&route), ifaces);

    // DRM clients: as the kernel prints them (`%20s %5d %3d %c %c %5d %10u`).
    // A command with a number among its words cannot be told from the pid
    // that follows it (the format has no quoting): those are not compared.
    if let Some(clients) = parse_drm_clients(&text) {
        let mut back = String::from("             command  tgid dev master a   uid      magic\n");
        for (pid, comm) in &clients {
            back.push_str(&format!(
                "{comm:>20} {pid:>5} {:>3} y y {:>5} {:>10}\n",
                0, 0, 0
            ));
        }
        if clients
            .iter()
            .all(|(_, c)| c.split_whitespace().all(|w| w.parse::<u32>().is_err()))
        {
            assert_eq!(parse_drm_clients(&back), Some(clients));
        }
    }

    // The class cache, for the boot its second line names.
    let boot = text
        .lines()
        .nth(1)
        .and_then(|l| l.strip_prefix("boot "))
        .unwrap_or("");
    let cache = ClassCache::from_text(&text, boot);
    let rendered = cache.render();
    assert_eq!(ClassCache::from_text(&rendered, boot), cache);

    // A snapshot's device nodes (`dev/dri/card0 c 226:0 0660 0 44`).
    let nodes = NodeStat::parse_table(&text);
    let table: String = nodes.iter().map(|(p, s)| s.line(p) + "\n").collect();
    assert_eq!(NodeStat::parse_table(&table), nodes);
});
