//! `exliar metrics`: the host's GPUs, exliar's VMs and exliar's own state
//! as Prometheus metrics.
//!
//! [`gather`] reads (through the host root, `virsh`, `nvidia-smi`) into
//! plain data, [`Gathered`]; [`families`] turns that into metric families
//! and [`expo::render`] into the text format, both pure. `docs/metrics.md`
//! lists every metric.

pub mod expo;
pub mod gather;
pub mod parse;

use std::collections::BTreeMap;

pub use expo::{CONTENT_TYPE, Family, Kind};
pub use gather::{Options, gather};

use crate::model::PciAddress;
use parse::DomStats;

/// One GPU: what the analysis says and the sensors its driver exposes.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuFacts {
    pub address: PciAddress,
    pub vendor_id: Option<u16>,
    pub device_id: Option<u16>,
    pub name: String,
    pub driver: Option<String>,
    pub vfio_bound: bool,
    /// Its IOMMU groups hold nothing but the card (`isolated`).
    pub group_viable: bool,
    pub boot_display: bool,
    pub temperature_celsius: Option<f64>,
    pub power_watts: Option<f64>,
    /// 0 to 1.
    pub busy_ratio: Option<f64>,
}

/// What `exliar check` concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFacts {
    pub ready: bool,
    pub ok: usize,
    pub info: usize,
    pub warn: usize,
    pub fail: usize,
    pub skip: usize,
}

/// The last hook run of one (domain, phase).
#[derive(Debug, Clone, PartialEq)]
pub struct HandoverRun {
    pub vm: String,
    pub phase: String,
    pub at: u64,
    pub success: bool,
    pub secs: f64,
    /// Step name and seconds (a step named twice: summed).
    pub steps: Vec<(String, f64)>,
}

/// The libvirt connection: whether it answered, and exliar's domains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Libvirt {
    pub up: bool,
    /// Every domain on the connection.
    pub domains: usize,
    /// The domains exliar manages (its metadata), with their statistics.
    pub vms: Vec<DomStats>,
}

/// Everything one scrape read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gathered {
    /// The PCI tree could be read (else no GPU series).
    pub pci_readable: bool,
    pub gpus: Vec<GpuFacts>,
    pub check: Option<CheckFacts>,
    /// Transactions by status (every status, 0 where none); `None`: the
    /// journals could not be read.
    pub transactions: Option<BTreeMap<&'static str, usize>>,
    /// Devices in the bind state file; `None`: unreadable.
    pub runtime_bound: Option<usize>,
    pub handover_in_progress: bool,
    pub handovers: Vec<HandoverRun>,
    pub libvirt: Libvirt,
}

fn b(v: bool) -> f64 {
    if v { 1.0 } else { 0.0 }
}

fn hex(id: Option<u16>) -> String {
    id.map(|v| format!("0x{v:04x}")).unwrap_or_default()
}

/// The metric families of a scrape, in a fixed order (pure).
pub fn families(g: &Gathered) -> Vec<Family> {
    use Kind::{Counter, Gauge};
    let mut out = Vec::new();

    out.push(Family::new("exliar_build_info", Gauge, "exliar's version (always 1).").with(1.0));
    if let Some(f) = out.last_mut() {
        f.samples[0]
            .labels
            .push(("version", env!("CARGO_PKG_VERSION").to_string()));
    }
    out.push(
        Family::new(
            "exliar_pci_readable",
            Gauge,
            "1 when the PCI tree under the root could be read (else no GPU series).",
        )
        .with(b(g.pci_readable)),
    );

    // GPUs
    let mut info = Family::new(
        "exliar_gpu_info",
        Gauge,
        "A GPU (always 1); driver is the driver bound now, empty when none.",
    );
    let mut vfio = Family::new(
        "exliar_gpu_vfio_bound",
        Gauge,
        "1 when the GPU is bound to vfio-pci.",
    );
    let mut viable = Family::new(
        "exliar_gpu_iommu_group_viable",
        Gauge,
        "1 when the GPU's IOMMU groups hold only the card's own functions (it can be passed through alone).",
    );
    let mut boot = Family::new(
        "exliar_gpu_boot_display",
        Gauge,
        "1 when the GPU is the boot display.",
    );
    let mut temp = Family::new(
        "exliar_gpu_temperature_celsius",
        Gauge,
        "GPU temperature (hwmon temp1_input, or nvidia-smi).",
    );
    let mut power = Family::new(
        "exliar_gpu_power_watts",
        Gauge,
        "GPU power draw (hwmon power1_average or power1_input, or nvidia-smi).",
    );
    let mut busy = Family::new(
        "exliar_gpu_busy_ratio",
        Gauge,
        "GPU busy, 0 to 1 (amdgpu gpu_busy_percent, or nvidia-smi utilization.gpu).",
    );
    for gpu in &g.gpus {
        let labels = vec![
            ("address", gpu.address.to_string()),
            ("vendor", hex(gpu.vendor_id)),
            ("device", hex(gpu.device_id)),
        ];
        let mut l = labels.clone();
        l.push(("name", gpu.name.clone()));
        l.push(("driver", gpu.driver.clone().unwrap_or_default()));
        info.push(l, 1.0);
        vfio.push(labels.clone(), b(gpu.vfio_bound));
        viable.push(labels.clone(), b(gpu.group_viable));
        boot.push(labels.clone(), b(gpu.boot_display));
        if let Some(v) = gpu.temperature_celsius {
            temp.push(labels.clone(), v);
        }
        if let Some(v) = gpu.power_watts {
            power.push(labels.clone(), v);
        }
        if let Some(v) = gpu.busy_ratio {
            busy.push(labels.clone(), v);
        }
    }
    out.extend([info, vfio, viable, boot, temp, power, busy]);

    // exliar's own state
    if let Some(c) = &g.check {
        out.push(
            Family::new(
                "exliar_check_ready",
                Gauge,
                "1 when no check of `exliar check` fails.",
            )
            .with(b(c.ready)),
        );
        out.push(
            Family::new(
                "exliar_check_failing",
                Gauge,
                "How many checks of `exliar check` fail.",
            )
            .with(c.fail as f64),
        );
        let mut r = Family::new(
            "exliar_checks",
            Gauge,
            "The checks of `exliar check` by result.",
        );
        for (name, n) in [
            ("ok", c.ok),
            ("info", c.info),
            ("warn", c.warn),
            ("fail", c.fail),
            ("skip", c.skip),
        ] {
            r.push(vec![("result", name.to_string())], n as f64);
        }
        out.push(r);
    }
    let mut txn = Family::new(
        "exliar_transactions",
        Gauge,
        "exliar's transactions on this root (journals) by status.",
    );
    for (status, n) in g.transactions.iter().flatten() {
        txn.push(vec![("status", status.to_string())], *n as f64);
    }
    out.push(txn);
    if let Some(n) = g.runtime_bound {
        out.push(
            Family::new(
                "exliar_runtime_bound_devices",
                Gauge,
                "Devices exliar holds on vfio-pci at runtime (exliar bind).",
            )
            .with(n as f64),
        );
    }
    out.push(
        Family::new(
            "exliar_handover_in_progress",
            Gauge,
            "1 while a single-GPU handover is recorded and not given back.",
        )
        .with(b(g.handover_in_progress)),
    );
    let mut h_secs = Family::new(
        "exliar_handover_last_duration_seconds",
        Gauge,
        "How long the hook's last run for a VM and libvirt phase took.",
    );
    let mut h_at = Family::new(
        "exliar_handover_last_timestamp_seconds",
        Gauge,
        "When the hook's last run for a VM and libvirt phase was (Unix time).",
    );
    let mut h_ok = Family::new(
        "exliar_handover_last_success",
        Gauge,
        "1 when the hook's last run for a VM and libvirt phase succeeded (ok or nothing to do).",
    );
    let mut h_step = Family::new(
        "exliar_handover_last_step_duration_seconds",
        Gauge,
        "How long each step of the hook's last run for a VM and libvirt phase took.",
    );
    for r in &g.handovers {
        let l = vec![("vm", r.vm.clone()), ("phase", r.phase.clone())];
        h_secs.push(l.clone(), r.secs);
        h_at.push(l.clone(), r.at as f64);
        h_ok.push(l.clone(), b(r.success));
        for (step, secs) in &r.steps {
            let mut l = l.clone();
            l.push(("step", step.clone()));
            h_step.push(l, *secs);
        }
    }
    out.extend([h_secs, h_at, h_ok, h_step]);

    // libvirt
    out.push(
        Family::new(
            "exliar_libvirt_up",
            Gauge,
            "1 when the libvirt connection answered.",
        )
        .with(b(g.libvirt.up)),
    );
    if g.libvirt.up {
        out.push(
            Family::new(
                "exliar_libvirt_domains",
                Gauge,
                "Domains on the libvirt connection, exliar's or not.",
            )
            .with(g.libvirt.domains as f64),
        );
    }
    let mut st = Family::new(
        "exliar_vm_state",
        Gauge,
        "An exliar VM's state (1 for the state it is in).",
    );
    let mut cpu = Family::new(
        "exliar_vm_cpu_seconds_total",
        Counter,
        "CPU time an exliar VM used (all vCPUs).",
    );
    let mut vcpus = Family::new("exliar_vm_vcpus", Gauge, "An exliar VM's vCPUs now.");
    let mut mem = Family::new(
        "exliar_vm_memory_bytes",
        Gauge,
        "An exliar VM's memory now (balloon).",
    );
    let mut mem_max = Family::new(
        "exliar_vm_memory_max_bytes",
        Gauge,
        "An exliar VM's maximum memory (balloon).",
    );
    let mut rd = Family::new(
        "exliar_vm_block_read_bytes_total",
        Counter,
        "Bytes an exliar VM read from a disk.",
    );
    let mut wr = Family::new(
        "exliar_vm_block_written_bytes_total",
        Counter,
        "Bytes an exliar VM wrote to a disk.",
    );
    let mut rx = Family::new(
        "exliar_vm_network_receive_bytes_total",
        Counter,
        "Bytes an exliar VM received on an interface.",
    );
    let mut tx = Family::new(
        "exliar_vm_network_transmit_bytes_total",
        Counter,
        "Bytes an exliar VM sent on an interface.",
    );
    for d in &g.libvirt.vms {
        let vm = || vec![("vm", d.name.clone())];
        if let Some(s) = d.state {
            let mut l = vm();
            l.push(("state", parse::state_name(s).to_string()));
            st.push(l, 1.0);
        }
        if let Some(ns) = d.cpu_time_ns {
            cpu.push(vm(), ns as f64 / 1e9);
        }
        if let Some(n) = d.vcpus {
            vcpus.push(vm(), n as f64);
        }
        if let Some(k) = d.memory_kib {
            mem.push(vm(), k as f64 * 1024.0);
        }
        if let Some(k) = d.memory_max_kib {
            mem_max.push(vm(), k as f64 * 1024.0);
        }
        for (io, a, b_, label) in [
            (&d.blocks, &mut rd, &mut wr, "device"),
            (&d.nets, &mut rx, &mut tx, "interface"),
        ] {
            for x in io {
                let mut l = vm();
                l.push((label, x.name.clone()));
                if let Some(v) = x.first {
                    a.push(l.clone(), v as f64);
                }
                if let Some(v) = x.second {
                    b_.push(l, v as f64);
                }
            }
        }
    }
    out.extend([st, cpu, vcpus, mem, mem_max, rd, wr, rx, tx]);
    out
}

/// The text exposition of a scrape (pure).
pub fn render(g: &Gathered) -> String {
    expo::render(&families(g))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_series_from_domstats() {
        let g = Gathered {
            libvirt: Libvirt {
                up: true,
                domains: 3,
                vms: parse::domstats(
                    "Domain: 'w'\n state.state=3\n cpu.time=2500000000\n balloon.current=1024\n block.0.name=vda\n block.0.rd.bytes=10\n net.0.name=vnet0\n net.0.tx.bytes=7\n",
                ),
            },
            ..Default::default()
        };
        let text = render(&g);
        assert!(text.contains("exliar_libvirt_up 1\n"));
        assert!(text.contains("exliar_libvirt_domains 3\n"));
        assert!(text.contains("exliar_vm_state{vm=\"w\",state=\"paused\"} 1\n"));
        assert!(text.contains("# TYPE exliar_vm_cpu_seconds_total counter\nexliar_vm_cpu_seconds_total{vm=\"w\"} 2.5\n"));
        assert!(text.contains("exliar_vm_memory_bytes{vm=\"w\"} 1048576\n"));
        assert!(text.contains("exliar_vm_block_read_bytes_total{vm=\"w\",device=\"vda\"} 10\n"));
        assert!(!text.contains("exliar_vm_block_written_bytes_total"));
        assert!(
            text.contains(
                "exliar_vm_network_transmit_bytes_total{vm=\"w\",interface=\"vnet0\"} 7\n"
            )
        );
        // no transactions read: no series; no check: no check series
        assert!(!text.contains("exliar_transactions"));
        assert!(!text.contains("exliar_check_ready"));
    }

    #[test]
    fn counters_end_in_total_and_gauges_do_not() {
        for f in families(&Gathered::default()) {
            assert_eq!(
                f.kind == Kind::Counter,
                f.name.ends_with("_total"),
                "{}",
                f.name
            );
            assert!(f.name.starts_with("exliar_"));
        }
    }
}
