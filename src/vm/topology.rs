//! Host CPU topology (read through the host root: `/sys/devices/system/cpu`,
//! `/sys/devices/system/node`, `/sys/devices/cpu_core|cpu_atom` for Intel
//! hybrid parts, `/proc/cpuinfo`) and the choice of host CPUs to pin a VM's
//! vCPUs to ([`choose`], pure).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::host::HostRoot;

use super::{GuestTopology, Pinning};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CpuVendor {
    Amd,
    Intel,
    Other,
}

/// Intel hybrid core types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CoreKind {
    Performance,
    Unknown,
    Efficient,
}

/// One online logical CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogicalCpu {
    pub id: u32,
    /// The physical core: (package, die, core_id).
    pub core: (u32, u32, u32),
    pub package: u32,
    /// The L3 cache group (AMD CCX/CCD): the first CPU sharing it.
    pub l3: Option<u32>,
    pub node: Option<u32>,
    pub kind: CoreKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuTopology {
    pub vendor: CpuVendor,
    pub model: Option<String>,
    pub cpus: Vec<LogicalCpu>,
}

const CPU: &str = "sys/devices/system/cpu";

fn num(host: &HostRoot, p: String) -> Option<u32> {
    host.read_optional(p).ok().flatten()?.trim().parse().ok()
}

fn list(host: &HostRoot, p: &str) -> Option<Vec<u32>> {
    parse_cpulist(&host.read_optional(p).ok().flatten()?)
}

/// Read the online CPUs' topology. Missing files degrade: no core id →
/// each CPU its own core; no L3 → unknown; no nodes → one node.
pub fn read(host: &HostRoot) -> Result<CpuTopology, String> {
    let online = match list(host, &format!("{CPU}/online")) {
        Some(l) if !l.is_empty() => l,
        _ => {
            let mut ids: Vec<u32> = host
                .list_dir(CPU)
                .map_err(|e| format!("/{CPU}: {}", e.source))?
                .iter()
                .filter_map(|n| n.strip_prefix("cpu")?.parse().ok())
                .collect();
            ids.sort_unstable();
            ids
        }
    };
    if online.is_empty() {
        return Err(format!("/{CPU}: no CPUs listed"));
    }
    let mut node_of: BTreeMap<u32, u32> = BTreeMap::new();
    for n in host.list_dir("sys/devices/system/node").unwrap_or_default() {
        let Some(k) = n.strip_prefix("node").and_then(|k| k.parse::<u32>().ok()) else {
            continue;
        };
        for c in list(host, &format!("sys/devices/system/node/{n}/cpulist")).unwrap_or_default() {
            node_of.insert(c, k);
        }
    }
    let p_cores = list(host, "sys/devices/cpu_core/cpus");
    let e_cores = list(host, "sys/devices/cpu_atom/cpus");
    let mut cpus = Vec::new();
    for id in online {
        let t = format!("{CPU}/cpu{id}/topology");
        let package = num(host, format!("{t}/physical_package_id")).unwrap_or(0);
        let die = num(host, format!("{t}/die_id")).unwrap_or(0);
        let core = num(host, format!("{t}/core_id"))
            .map_or((package, die, 1_000_000 + id), |c| (package, die, c));
        let mut l3 = None;
        for idx in host
            .list_dir(format!("{CPU}/cpu{id}/cache"))
            .unwrap_or_default()
        {
            if !idx.starts_with("index") {
                continue;
            }
            let c = format!("{CPU}/cpu{id}/cache/{idx}");
            if num(host, format!("{c}/level")) == Some(3) {
                l3 = list(host, &format!("{c}/shared_cpu_list"))
                    .and_then(|l| l.first().copied())
                    .or_else(|| {
                        num(host, format!("{c}/id")).map(|i| 1_000_000 + package * 1000 + i)
                    });
            }
        }
        let kind = match (&p_cores, &e_cores) {
            (Some(p), _) if p.contains(&id) => CoreKind::Performance,
            (_, Some(e)) if e.contains(&id) => CoreKind::Efficient,
            _ => CoreKind::Unknown,
        };
        cpus.push(LogicalCpu {
            id,
            core,
            package,
            l3,
            node: node_of.get(&id).copied(),
            kind,
        });
    }
    let info = host
        .read_optional("proc/cpuinfo")
        .ok()
        .flatten()
        .unwrap_or_default();
    let field = |k: &str| {
        info.lines().find_map(|l| {
            let (a, b) = l.split_once(':')?;
            (a.trim() == k).then(|| b.trim().to_string())
        })
    };
    let vendor = match field("vendor_id").as_deref() {
        Some("AuthenticAMD") | Some("HygonGenuine") => CpuVendor::Amd,
        Some("GenuineIntel") => CpuVendor::Intel,
        _ => CpuVendor::Other,
    };
    Ok(CpuTopology {
        vendor,
        model: field("model name"),
        cpus,
    })
}

impl CpuTopology {
    /// How many physical cores.
    pub fn cores(&self) -> usize {
        let mut c: Vec<_> = self.cpus.iter().map(|c| c.core).collect();
        c.sort_unstable();
        c.dedup();
        c.len()
    }
}

/// Why no pinning can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PinError(pub String);

fn show(cpus: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if j > i {
            format!("{}-{}", cpus[i], cpus[j])
        } else {
            cpus[i].to_string()
        });
        i = j + 1;
    }
    out.join(",")
}

/// Cores sharing a (NUMA node, L3 group).
type Group<'a> = ((Option<u32>, Option<u32>), Vec<&'a Core>);

/// A physical core: its CPUs (sorted), its L3 group, node and kind.
#[derive(Debug, Clone)]
struct Core {
    cpus: Vec<u32>,
    l3: Option<u32>,
    node: Option<u32>,
    kind: CoreKind,
}

/// Choose host CPUs for `vcpus` vCPUs: whole physical cores only (SMT
/// siblings together, adjacent in vCPU order); the core of CPU 0 left to
/// the host, its CPUs given the emulator and I/O threads; P-cores before
/// E-cores; the GPU's NUMA node first, then one L3 group (a CCX/CCD) when
/// it fits — another than the host core's when one does — else the
/// fewest groups.
pub fn choose(topo: &CpuTopology, vcpus: u32, gpu_node: Option<u32>) -> Result<Pinning, PinError> {
    let mut by_core: BTreeMap<(u32, u32, u32), Core> = BTreeMap::new();
    for c in &topo.cpus {
        let e = by_core.entry(c.core).or_insert_with(|| Core {
            cpus: Vec::new(),
            l3: c.l3,
            node: c.node,
            kind: c.kind,
        });
        e.cpus.push(c.id);
    }
    let mut cores: Vec<Core> = by_core.into_values().collect();
    for c in &mut cores {
        c.cpus.sort_unstable();
    }
    cores.sort_by_key(|c| c.cpus[0]);
    let first = cores.first().map(|c| c.cpus[0]).unwrap_or(0);
    let host_idx = cores.iter().position(|c| c.cpus.contains(&0)).unwrap_or(0);
    let host = cores.remove(host_idx);
    let _ = first;
    let mut reasons = vec![format!(
        "core of CPU {} (CPUs {}) kept for the host; the emulator and I/O threads run there",
        host.cpus[0],
        show(&host.cpus)
    )];
    if cores.is_empty() {
        return Err(PinError(
            "this host has one physical core: none is left for the VM after the host's".into(),
        ));
    }
    let nodes: std::collections::BTreeSet<u32> = topo.cpus.iter().filter_map(|c| c.node).collect();
    // P-cores when they suffice.
    let hybrid = cores.iter().any(|c| c.kind == CoreKind::Efficient);
    let p_only: Vec<Core> = cores
        .iter()
        .filter(|c| c.kind != CoreKind::Efficient)
        .cloned()
        .collect();
    let p_threads = p_only.iter().map(|c| c.cpus.len()).max().unwrap_or(1) as u32;
    let p_capacity: u32 = p_only.iter().map(|c| c.cpus.len() as u32).sum();
    let (pool, threads) = if !hybrid {
        let t = cores.iter().map(|c| c.cpus.len()).max().unwrap_or(1) as u32;
        (cores.clone(), t)
    } else if vcpus <= p_capacity && vcpus.is_multiple_of(p_threads) {
        reasons.push(format!(
            "hybrid CPU: performance cores only ({} P-cores available); the E-cores stay with the host",
            p_only.len()
        ));
        (p_only, p_threads)
    } else {
        reasons.push(format!(
            "hybrid CPU: {vcpus} vCPUs need more than the P-cores give ({p_capacity} threads): E-cores too, one vCPU per core thread, guest told 1 thread per core"
        ));
        // one thread per vCPU, P threads first
        let mut all = p_only.clone();
        all.extend(
            cores
                .iter()
                .filter(|c| c.kind == CoreKind::Efficient)
                .cloned(),
        );
        let cpus: Vec<u32> = all.iter().flat_map(|c| c.cpus.clone()).collect();
        if (cpus.len() as u32) < vcpus {
            return Err(PinError(format!(
                "{vcpus} vCPUs are more than this host can give after keeping core 0 ({} CPUs)",
                cpus.len()
            )));
        }
        let chosen: Vec<u32> = cpus.into_iter().take(vcpus as usize).collect();
        reasons.push(format!("vCPUs on CPUs {}", show_sorted(&chosen)));
        return Ok(Pinning {
            vcpus: chosen,
            emulator: host.cpus.clone(),
            iothread: host.cpus.clone(),
            guest: GuestTopology {
                sockets: 1,
                dies: 1,
                cores: vcpus,
                threads: 1,
            },
            numa_node: None,
            reasons,
        });
    };
    let threads = threads.max(1);
    if vcpus == 0 {
        return Err(PinError("0 vCPUs".into()));
    }
    if !vcpus.is_multiple_of(threads) {
        let lo = vcpus / threads * threads;
        let hi = lo + threads;
        let lo_s = if lo > 0 {
            format!("{lo} or ")
        } else {
            String::new()
        };
        return Err(PinError(format!(
            "{vcpus} vCPUs are not whole cores of this {threads}-thread-per-core CPU (the VM gets whole cores, SMT siblings together): use {lo_s}{hi}"
        )));
    }
    let need = (vcpus / threads) as usize;
    let usable: Vec<&Core> = pool
        .iter()
        .filter(|c| c.cpus.len() as u32 == threads)
        .collect();
    if usable.len() < need {
        return Err(PinError(format!(
            "{vcpus} vCPUs are more than this host can give: at most {} ({} whole cores after keeping core 0 for the host)",
            usable.len() as u32 * threads,
            usable.len()
        )));
    }
    // Groups by (node, L3), in CPU order.
    let mut groups: Vec<Group<'_>> = Vec::new();
    for c in &usable {
        let key = (c.node, c.l3);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(c),
            None => groups.push((key, vec![c])),
        }
    }
    let node_ok = |n: Option<u32>| gpu_node.is_none() || nodes.len() < 2 || n == gpu_node;
    let host_l3 = host.l3;
    // One group that fits: the GPU's node first, then a group other than
    // the host core's, then the smallest that fits (leave big ones whole).
    let mut fits: Vec<&Group<'_>> = groups.iter().filter(|(_, v)| v.len() >= need).collect();
    fits.sort_by_key(|((n, l3), v)| (!node_ok(*n), *l3 == host_l3 && l3.is_some(), v.len()));
    let chosen: Vec<&Core> = if let Some(((n, l3), v)) = fits.first() {
        if nodes.len() > 1 {
            if node_ok(*n) && gpu_node.is_some() {
                reasons.push(format!("on the GPU's NUMA node {}", n.unwrap_or(0)));
            } else if gpu_node.is_some() {
                reasons.push(format!(
                    "the GPU's NUMA node {} has too few free cores: node {}",
                    gpu_node.unwrap_or(0),
                    n.unwrap_or(0)
                ));
            }
        }
        if l3.is_some() && groups.len() > 1 {
            let all: Vec<u32> = v.iter().flat_map(|c| c.cpus.clone()).collect();
            reasons.push(format!(
                "all {vcpus} vCPUs share one L3 cache (the group of CPUs {}{})",
                show_sorted(&all),
                if *l3 == host_l3 {
                    ", with the host's core"
                } else {
                    ""
                }
            ));
        }
        v.iter().take(need).copied().collect()
    } else {
        // Several groups: preferred node first, biggest groups first.
        let mut order: Vec<&Group<'_>> = groups.iter().collect();
        order.sort_by_key(|((n, _), v)| (!node_ok(*n), std::cmp::Reverse(v.len())));
        let mut out = Vec::new();
        let mut used = 0;
        for (_, v) in order {
            if out.len() >= need {
                break;
            }
            used += 1;
            out.extend(v.iter().take(need - out.len()).copied());
        }
        reasons.push(format!(
            "{vcpus} vCPUs do not fit one L3 group / node: spread over {used}"
        ));
        out
    };
    let mut v: Vec<u32> = Vec::new();
    for c in &chosen {
        v.extend(c.cpus.iter().copied());
    }
    let node = {
        let ns: std::collections::BTreeSet<Option<u32>> = chosen.iter().map(|c| c.node).collect();
        if nodes.len() > 1 && ns.len() == 1 {
            ns.into_iter().next().flatten()
        } else {
            None
        }
    };
    reasons.push(format!(
        "{vcpus} vCPUs on {} whole cores × {threads} threads: CPUs {}",
        need,
        show_sorted(&v)
    ));
    Ok(Pinning {
        vcpus: v,
        emulator: host.cpus.clone(),
        iothread: host.cpus.clone(),
        guest: GuestTopology {
            sockets: 1,
            dies: 1,
            cores: need as u32,
            threads,
        },
        numa_node: node,
        reasons,
    })
}

fn show_sorted(cpus: &[u32]) -> String {
    let mut c = cpus.to_vec();
    c.sort_unstable();
    show(&c)
}

/// Parses a kernel cpulist string ("0-3,8,10-11", may be empty or end in a
/// newline) into sorted, deduplicated CPU numbers. `None` on a malformed
/// list (a descending range, a non-number, an empty item).
pub fn parse_cpulist(s: &str) -> Option<Vec<u32>> {
    let s = s.trim();
    let mut out = Vec::new();
    if s.is_empty() {
        return Some(out);
    }
    for item in s.split(',') {
        let item = item.trim();
        match item.split_once('-') {
            Some((a, b)) => {
                let a: u32 = a.parse().ok()?;
                let b: u32 = b.parse().ok()?;
                if a > b || b - a > 65_535 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(item.parse().ok()?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A synthetic topology: `sockets` × `cores` × `threads`, `per_l3`
    /// cores per L3 group, Linux's numbering (first threads of every core,
    /// then the siblings), one node per socket.
    pub(super) fn synth(sockets: u32, cores: u32, threads: u32, per_l3: u32) -> CpuTopology {
        let total = sockets * cores;
        let mut cpus = Vec::new();
        for t in 0..threads {
            for s in 0..sockets {
                for c in 0..cores {
                    let id = t * total + s * cores + c;
                    let first = s * cores + (c / per_l3) * per_l3;
                    cpus.push(LogicalCpu {
                        id,
                        core: (s, 0, c),
                        package: s,
                        l3: Some(first),
                        node: Some(s),
                        kind: CoreKind::Unknown,
                    });
                }
            }
        }
        cpus.sort_by_key(|c| c.id);
        CpuTopology {
            vendor: CpuVendor::Amd,
            model: None,
            cpus,
        }
    }

    fn core_of(t: &CpuTopology, cpu: u32) -> (u32, u32, u32) {
        t.cpus
            .iter()
            .find(|c| c.id == cpu)
            .map(|c| c.core)
            .unwrap_or_default()
    }

    fn invariants(t: &CpuTopology, p: &Pinning) {
        let host = core_of(t, 0);
        for v in &p.vcpus {
            assert_ne!(core_of(t, *v), host, "vCPU on core 0's siblings: {p:?}");
        }
        let mut sorted = p.vcpus.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), p.vcpus.len(), "a CPU used twice: {p:?}");
        let th = p.guest.threads as usize;
        for chunk in p.vcpus.chunks(th) {
            let c0 = core_of(t, chunk[0]);
            assert!(
                chunk.iter().all(|c| core_of(t, *c) == c0),
                "siblings split: {p:?}"
            );
        }
        assert_eq!(p.guest.vcpus() as usize, p.vcpus.len());
    }

    #[test]
    fn two_ccd_ryzen_takes_one_ccd_without_core_0() {
        let t = synth(1, 16, 2, 8);
        let p = choose(&t, 8, None).expect("pins");
        invariants(&t, &p);
        let l3: std::collections::BTreeSet<_> = p
            .vcpus
            .iter()
            .map(|v| t.cpus.iter().find(|c| c.id == *v).and_then(|c| c.l3))
            .collect();
        assert_eq!(l3.len(), 1, "{p:?}");
        assert_eq!(
            l3.into_iter().next().flatten(),
            Some(8),
            "the CCD without core 0: {p:?}"
        );
        assert_eq!(p.emulator, vec![0, 16]);
        assert_eq!(
            p.guest,
            GuestTopology {
                sockets: 1,
                dies: 1,
                cores: 4,
                threads: 2
            }
        );
    }

    #[test]
    fn dual_socket_prefers_the_gpus_node() {
        let t = synth(2, 8, 2, 8);
        let p = choose(&t, 8, Some(1)).expect("pins");
        invariants(&t, &p);
        assert!(
            p.vcpus
                .iter()
                .all(|v| t.cpus.iter().any(|c| c.id == *v && c.node == Some(1))),
            "{p:?}"
        );
        assert_eq!(p.numa_node, Some(1));
        let p0 = choose(&t, 8, Some(0)).expect("pins");
        assert_eq!(p0.numa_node, Some(0));
    }

    #[test]
    fn odd_counts_and_too_many_are_refused_with_the_numbers() {
        let t = synth(1, 8, 2, 8);
        let e = choose(&t, 7, None).expect_err("odd");
        assert!(e.0.contains("use 6 or 8"), "{e}");
        let e = choose(&t, 16, None).expect_err("too many");
        assert!(e.0.contains("at most 14"), "{e}");
        assert!(choose(&t, 14, None).is_ok());
    }

    #[test]
    fn hybrid_uses_p_cores_only_when_they_suffice() {
        let mut t = synth(1, 8, 2, 8);
        for c in &mut t.cpus {
            c.kind = CoreKind::Performance;
        }
        for i in 0..16u32 {
            t.cpus.push(LogicalCpu {
                id: 16 + i,
                core: (0, 0, 100 + i),
                package: 0,
                l3: Some(0),
                node: Some(0),
                kind: CoreKind::Efficient,
            });
        }
        let p = choose(&t, 8, None).expect("pins");
        invariants(&t, &p);
        assert!(p.vcpus.iter().all(|v| *v < 16), "{p:?}");
        let big = choose(&t, 20, None).expect("pins");
        assert_eq!(big.guest.threads, 1);
        assert!(!big.vcpus.contains(&0) && !big.vcpus.contains(&8));
    }

    fn fixture(host: &str) -> CpuTopology {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/hosts")
            .join(host);
        read(&HostRoot::new(dir)).expect("topology")
    }

    #[test]
    fn real_topologies_from_the_fixture_hosts() {
        // 2-CCD Ryzen 9 7950X: 8 vCPUs on CCD 1 (cpus 8-15 + siblings).
        let t = fixture("hw08-ryzen7950x-am5-rtx3060-audio-split");
        assert_eq!(t.vendor, CpuVendor::Amd);
        assert_eq!(t.cpus.len(), 32);
        let p = choose(&t, 8, None).expect("pins");
        invariants(&t, &p);
        assert_eq!(p.vcpus, vec![8, 24, 9, 25, 10, 26, 11, 27]);
        assert_eq!(p.emulator, vec![0, 16]);
        // 16 vCPUs do not fit one CCD after core 0: spread, whole cores.
        let p = choose(&t, 16, None).expect("pins");
        invariants(&t, &p);
        // Intel hybrid i9-13900K: P-cores only.
        let t = fixture("hw06-raptorlake-rtx4090-annotated");
        let p = choose(&t, 8, None).expect("pins");
        invariants(&t, &p);
        assert!(p.vcpus.iter().all(|v| (2..16).contains(v)), "{p:?}");
        assert_eq!(p.emulator, vec![0, 1]);
        // Dual-socket Xeon: the GPU's node.
        let t = fixture("hw05-dual-xeon-x79-c602-three-nvidia-aspeed");
        let p = choose(&t, 8, Some(1)).expect("pins");
        invariants(&t, &p);
        assert_eq!(p.numa_node, Some(1));
        assert!(
            p.vcpus
                .iter()
                .all(|v| (8..16).contains(v) || (24..32).contains(v)),
            "{p:?}"
        );
        // Laptop i7-8750H: 6 cores, 5 for the VM at most.
        let t = fixture("hw20-laptop-coffeelake-h-gtx1060-mobile-muxed");
        let p = choose(&t, 4, None).expect("pins");
        invariants(&t, &p);
        assert!(choose(&t, 12, None).is_err());
    }

    proptest! {
        #[test]
        fn pinning_invariants(sockets in 1u32..3, cores in 2u32..17, threads in 1u32..3, per in 1u32..9, want in 1u32..40, node in 0u32..2) {
            let t = synth(sockets, cores, threads, per);
            if let Ok(p) = choose(&t, want, Some(node)) {
                invariants(&t, &p);
                prop_assert_eq!(p.vcpus.len() as u32, want);
            } else {
                let avail = (sockets * cores - 1) * threads;
                prop_assert!(want > avail || want % threads != 0);
            }
        }
    }

    #[test]
    fn cpulist() {
        assert_eq!(
            parse_cpulist("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpulist(""), Some(vec![]));
        assert_eq!(parse_cpulist("5"), Some(vec![5]));
        assert_eq!(parse_cpulist("3-1"), None);
        assert_eq!(parse_cpulist("1,,2"), None);
        assert_eq!(parse_cpulist("a"), None);
    }
}
