//! One scrape's reads: the host through its root, `virsh` on a libvirt
//! connection, `nvidia-smi` on the live host. Nothing here fails the
//! scrape: what cannot be read is left out (and logged).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::analyze::gpu::Isolation;
use crate::host::HostRoot;
use crate::txn::Status;
use crate::vm::virsh::Virsh;

use super::parse::{self, NvidiaGpu};
use super::{CheckFacts, Gathered, GpuFacts, HandoverRun, Libvirt};

/// What to read.
#[derive(Debug, Clone)]
pub struct Options {
    pub root: PathBuf,
    /// libvirt connection URI.
    pub connect: String,
}

/// Every transaction status, by its journal name.
const STATUSES: [(Status, &str); 6] = [
    (Status::Applying, "applying"),
    (Status::Applied, "applied"),
    (Status::RollingBack, "rolling-back"),
    (Status::Failed, "failed"),
    (Status::RolledBack, "rolled-back"),
    (Status::Recovered, "recovered"),
];

/// The longest `nvidia-smi` may take (a wedged driver can hang it).
const NVIDIA_SMI_TIMEOUT: Duration = Duration::from_secs(10);

/// Read everything for one scrape.
pub fn gather(opts: &Options) -> Gathered {
    let host = HostRoot::new(&opts.root);
    let mut g = Gathered::default();

    // The checks, as `exliar check` runs them; their evidence holds the GPU
    // analysis too.
    let (ev, analysis) = crate::cli::check_evidence(&host);
    if let Ok(selected) = crate::check::select(&[]) {
        let checks = crate::check::run_checks(&ev, analysis.as_ref(), &selected);
        let r = crate::check::CheckReport::new(&ev, analysis.as_ref(), checks, None);
        g.check = Some(CheckFacts {
            ready: r.ready,
            ok: r.counts.ok,
            info: r.counts.info,
            warn: r.counts.warn,
            fail: r.counts.fail,
            skip: r.counts.skip,
        });
    }

    if let Some(a) = &analysis {
        g.pci_readable = true;
        let nvidia =
            if host.is_live() && a.gpus.iter().any(|x| x.driver.as_deref() == Some("nvidia")) {
                nvidia_smi()
            } else {
                Vec::new()
            };
        for gpu in &a.gpus {
            let mut f = GpuFacts {
                address: gpu.address,
                vendor_id: gpu.vendor_id,
                device_id: gpu.device_id,
                name: gpu.name.to_string(),
                driver: gpu.driver.clone(),
                vfio_bound: gpu.driver.as_deref() == Some(crate::bind::VFIO),
                group_viable: gpu.isolation == Isolation::Isolated,
                boot_display: gpu.boot_display,
                temperature_celsius: None,
                power_watts: None,
                busy_ratio: None,
            };
            if !f.vfio_bound {
                sensors(&host, &mut f);
            }
            if let Some(n) = nvidia.iter().find(|n| n.address == gpu.address) {
                f.temperature_celsius = f.temperature_celsius.or(n.temperature_celsius);
                f.power_watts = f.power_watts.or(n.power_watts);
                f.busy_ratio = f.busy_ratio.or(n.busy_ratio);
            }
            g.gpus.push(f);
        }
    }

    match crate::txn::read_journals(&opts.root) {
        Ok(j) => {
            let mut by: BTreeMap<&'static str, usize> =
                STATUSES.iter().map(|(_, n)| (*n, 0)).collect();
            for journal in &j.list {
                if let Some((_, n)) = STATUSES.iter().find(|(s, _)| *s == journal.status) {
                    *by.entry(n).or_default() += 1;
                }
            }
            g.transactions = Some(by);
        }
        Err(e) => tracing::warn!("{}", crate::cli::term::safe(&e.to_string())),
    }

    match crate::bind::StateFile::load(&opts.root) {
        Ok(st) => g.runtime_bound = Some(crate::bind::BindingState::all(&st).len()),
        Err(e) => tracing::warn!("{}", crate::cli::term::safe(&e)),
    }

    let hs = crate::hooks::status(&host, usize::MAX);
    g.handover_in_progress = hs.handover_in_progress.is_some();
    // The newest run of each (domain, phase).
    let mut last: BTreeMap<(String, String), &crate::hooks::Run> = BTreeMap::new();
    for r in &hs.last_runs {
        last.insert((r.domain.clone(), r.phase.clone()), r);
    }
    for ((vm, phase), r) in last {
        let mut steps: Vec<(String, f64)> = Vec::new();
        for s in &r.steps {
            match steps.iter_mut().find(|(w, _)| *w == s.what) {
                Some((_, secs)) => *secs += s.secs,
                None => steps.push((s.what.clone(), s.secs)),
            }
        }
        g.handovers.push(HandoverRun {
            vm,
            phase,
            at: r.at,
            success: matches!(r.outcome.as_str(), "ok" | "nothing-to-do"),
            secs: r.secs,
            steps,
        });
    }

    g.libvirt = libvirt(&Virsh::new(&opts.connect));
    g
}

/// The sensors under `sys/bus/pci/devices/ADDR/`: `gpu_busy_percent`
/// (amdgpu) and the first hwmon's `temp1_input` (millidegrees Celsius) and
/// `power1_average` or `power1_input` (microwatts).
fn sensors(host: &HostRoot, f: &mut GpuFacts) {
    let dev = format!("sys/bus/pci/devices/{}", f.address);
    let num = |rel: &str| -> Option<f64> {
        host.read_optional(rel)
            .ok()
            .flatten()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
    };
    f.busy_ratio = num(&format!("{dev}/gpu_busy_percent")).map(|p| p / 100.0);
    let mut hwmons = host.list_dir(format!("{dev}/hwmon")).unwrap_or_default();
    hwmons.sort();
    for h in hwmons.iter().filter(|h| h.starts_with("hwmon")) {
        let base = format!("{dev}/hwmon/{h}");
        if f.temperature_celsius.is_none() {
            f.temperature_celsius = num(&format!("{base}/temp1_input")).map(|m| m / 1000.0);
        }
        if f.power_watts.is_none() {
            f.power_watts = num(&format!("{base}/power1_average"))
                .or_else(|| num(&format!("{base}/power1_input")))
                .map(|u| u / 1e6);
        }
    }
}

/// `nvidia-smi`'s readings of the NVIDIA GPUs (none when it is absent,
/// fails or takes too long).
fn nvidia_smi() -> Vec<NvidiaGpu> {
    let child = Command::new("nvidia-smi")
        .args(parse::NVIDIA_SMI_ARGS)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!("nvidia-smi: {e}");
            return Vec::new();
        }
    };
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() < NVIDIA_SMI_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                tracing::warn!("nvidia-smi did not answer in {NVIDIA_SMI_TIMEOUT:?}; killed");
                let _ = child.kill();
                let _ = child.wait();
                return Vec::new();
            }
        }
    }
    match child.wait_with_output() {
        Ok(o) if o.status.success() => parse::nvidia_smi(&String::from_utf8_lossy(&o.stdout)),
        Ok(o) => {
            tracing::warn!("nvidia-smi failed: {}", o.status);
            Vec::new()
        }
        Err(e) => {
            tracing::warn!("nvidia-smi: {e}");
            Vec::new()
        }
    }
}

/// The connection's domains and the statistics of exliar's.
fn libvirt(virsh: &Virsh) -> Libvirt {
    let names = match virsh.run(&["list", "--all", "--name"]) {
        Ok(t) => t,
        Err(e) => {
            tracing::info!("{}", crate::cli::term::safe(&e.to_string()));
            return Libvirt::default();
        }
    };
    let names: Vec<&str> = names
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    let ours: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| {
            virsh
                .dumpxml(n, true)
                .ok()
                .and_then(|x| crate::vm::domain::read_meta(&x).ok().flatten())
                .is_some()
        })
        .collect();
    let mut vms = Vec::new();
    if !ours.is_empty() {
        let mut args = vec!["domstats"];
        args.extend(ours.iter().copied());
        match virsh.run(&args) {
            Ok(t) => vms = parse::domstats(&t),
            Err(e) => tracing::warn!("{}", crate::cli::term::safe(&e.to_string())),
        }
        vms.retain(|d| ours.contains(&d.name.as_str()));
    }
    Libvirt {
        up: true,
        domains: names.len(),
        vms,
    }
}
