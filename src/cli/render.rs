//! Human output. Pure: analysis in, text out.

use std::fmt::Write as _;
use std::io;

use crate::analyze::{Analysis, Gpu, GroupVerdict, Mode};
use crate::check::{CheckReport, Evidence, Status};
use crate::model::{Device, Inventory, PciAddress, Source};

fn source_line(inv: &Inventory) -> String {
    match &inv.source {
        Source::Sysfs { root } => {
            let os = inv.host.os_pretty_name.as_deref().unwrap_or("unknown OS");
            format!("host {root} ({os})")
        }
        Source::Listing { files } => format!("pasted listing: {}", files.join(", ")),
    }
}

fn iommu_line(inv: &Inventory) -> String {
    match inv.iommu.enabled {
        Some(true) => format!(
            "IOMMU: enabled, {} groups{}",
            inv.iommu.groups.len(),
            if inv.iommu.units.is_empty() {
                String::new()
            } else {
                format!(" (units: {})", inv.iommu.units.join(", "))
            }
        ),
        Some(false) => "IOMMU: not enabled (no IOMMU groups)".to_string(),
        None => "IOMMU: unknown (the source does not list groups)".to_string(),
    }
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn fn_label(inv: &Inventory, a: &PciAddress) -> String {
    let class = inv
        .device(a)
        .and_then(|d| d.class)
        .map(|c| match c.class_subclass() {
            0x0300 => "VGA",
            0x0302 => "3D",
            0x0380 => "display",
            0x0403 | 0x0401 => "audio",
            0x0c03 => "USB",
            0x0c80 => "UCSI/serial bus",
            _ => c.describe(),
        })
        .unwrap_or("?");
    format!("{a} ({class})")
}

/// Text handed to `emit` in pieces of about [`Chunks::SIZE`] bytes, so that
/// a report of tens of megabytes (a listing of many thousand devices) is
/// never held whole. The first error of `emit` is kept for
/// [`Chunks::finish`].
pub struct Chunks<'a> {
    buf: String,
    emit: &'a mut dyn FnMut(&str) -> io::Result<()>,
    error: Option<io::Error>,
}

impl<'a> Chunks<'a> {
    const SIZE: usize = 64 << 10;

    pub fn new(emit: &'a mut dyn FnMut(&str) -> io::Result<()>) -> Self {
        Self {
            buf: String::with_capacity(Self::SIZE + 1024),
            emit,
            error: None,
        }
    }

    fn spill(&mut self) {
        if self.error.is_none()
            && !self.buf.is_empty()
            && let Err(e) = (self.emit)(&self.buf)
        {
            self.error = Some(e);
        }
        self.buf.clear();
    }

    pub fn finish(mut self) -> io::Result<()> {
        self.spill();
        self.error.take().map_or(Ok(()), Err)
    }
}

impl std::fmt::Write for Chunks<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.buf.push_str(s);
        if self.buf.len() >= Self::SIZE {
            self.spill();
        }
        Ok(())
    }
}

fn gpu_block(
    out: &mut impl std::fmt::Write,
    inv: &Inventory,
    g: &Gpu,
    stack: Option<&crate::host::stacks::GpuStack>,
) {
    let ids = match (g.vendor_id, g.device_id) {
        (Some(v), Some(d)) => format!(" [{v:04x}:{d:04x}]"),
        _ => String::new(),
    };
    let mut tags = vec![g.kind.label().to_string(), g.vendor.to_string()];
    tags.push(
        if g.bmc {
            "BMC"
        } else if g.integrated {
            "integrated"
        } else {
            "discrete"
        }
        .to_string(),
    );
    if let Some(words) = g.boot_display_words() {
        // "boot display", or "boot display (inferred: ...)" as the JSON's
        // boot_display_evidence says
        tags.push(words.trim_start_matches("the ").to_string());
    }
    let _ = writeln!(out, "  {}  {}{}", g.address, g.name, ids);
    let _ = writeln!(out, "    {}", tags.join(", "));
    let _ = writeln!(
        out,
        "    driver: {}   IOMMU group: {}   isolation: {}",
        opt(&g.driver),
        opt(&g.iommu_group),
        g.isolation.label()
    );
    if let Some(s) = stack {
        let _ = writeln!(out, "    stack: {}", crate::host::stacks::summary_line(s));
    }
    let fns: Vec<String> = g.functions.iter().map(|a| fn_label(inv, a)).collect();
    let _ = writeln!(out, "    functions: {}", fns.join(", "));
    if !g.group_peers().is_empty() {
        let peers: Vec<String> = g.group_peers().iter().map(|a| fn_label(inv, a)).collect();
        let _ = writeln!(out, "    group peers: {}", peers.join(", "));
    }
    if !g.identical_ids_with.is_empty() {
        let twins = crate::analyze::gpu::named_list(&g.identical_ids_with, g.identical_ids_count);
        let _ = writeln!(out, "    identical ids with: {twins}");
    }
    if let Some(r) = g.reset_methods() {
        let _ = writeln!(
            out,
            "    reset methods: {}",
            if r.is_empty() {
                "none".to_string()
            } else {
                r.join(" ")
            }
        );
    }
    for q in g.quirk_details() {
        let _ = writeln!(out, "    quirk {}: {}", q.id, q.title);
        let _ = writeln!(out, "      {}", q.advice);
    }
    let _ = writeln!(out, "    verdict: {}", g.verdict());
}

fn device_table(out: &mut impl std::fmt::Write, devices: &[Device]) {
    let _ = writeln!(
        out,
        "  {:<13} {:<8} {:<9} {:<16} {:>5}  NAME",
        "ADDRESS", "CLASS", "IDS", "DRIVER", "GROUP"
    );
    for d in devices {
        let class = d.class.map_or_else(
            || "-".to_string(),
            |c| format!("{:04x}", c.class_subclass()),
        );
        let _ = writeln!(
            out,
            "  {:<13} {:<8} {:<9} {:<16} {:>5}  {}",
            d.address.to_string(),
            class,
            d.ids(),
            d.driver.as_deref().unwrap_or("-"),
            opt(&d.iommu_group),
            d.display_name()
        );
    }
}

/// `exliar scan` / `exliar analyze`.
pub fn scan(
    emit: &mut dyn FnMut(&str) -> io::Result<()>,
    inv: &Inventory,
    a: &Analysis,
    stacks: Option<&crate::host::stacks::Stacks>,
) -> io::Result<()> {
    let mut out = Chunks::new(emit);
    let _ = writeln!(out, "exliar scan: {}", source_line(inv));
    let _ = writeln!(out, "{}", iommu_line(inv));
    let _ = writeln!(out);
    if a.gpus.is_empty() {
        let _ = writeln!(out, "GPUs: none found (no PCI display-class function)");
    } else {
        let _ = writeln!(out, "GPUs ({})", a.gpus.len());
        for g in &a.gpus {
            gpu_block(&mut out, inv, g, stacks.and_then(|s| s.gpu(&g.address)));
        }
    }
    let _ = writeln!(out);
    let r = &a.recommendation;
    let head = match r.mode {
        Mode::Split => format!(
            "pass through {}, the host keeps {}",
            opt(&r.passthrough),
            opt(&r.host)
        ),
        Mode::SingleGpu => format!("single GPU ({}): handover only", opt(&r.host)),
        Mode::None => "none".to_string(),
    };
    let _ = writeln!(out, "Recommendation: {head}");
    for reason in &r.reasons {
        let _ = writeln!(out, "  - {reason}");
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Devices ({})", inv.devices.len());
    device_table(&mut out, &inv.devices);
    let warnings: Vec<&crate::model::Warning> = inv
        .warnings
        .iter()
        .chain(stacks.into_iter().flat_map(|s| s.warnings.iter()))
        .collect();
    if !warnings.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Warnings ({})", warnings.len());
        for w in warnings {
            let _ = writeln!(out, "  {w}");
        }
    }
    out.finish()
}

/// `exliar iommu`.
pub fn iommu(emit: &mut dyn FnMut(&str) -> io::Result<()>, inv: &Inventory) -> io::Result<()> {
    let mut out = Chunks::new(emit);
    let _ = writeln!(out, "exliar iommu: {}", source_line(inv));
    let _ = writeln!(out, "{}", iommu_line(inv));
    for g in crate::analyze::groups::reports(inv) {
        let mark = match g.verdict {
            GroupVerdict::Isolated => "isolated",
            GroupVerdict::Shared => "SHARED",
            GroupVerdict::BridgesOnly => "bridges",
        };
        let _ = writeln!(out, "IOMMU group {} [{mark}] {}", g.id, g.summary);
        for m in &g.devices {
            let line = match inv.device(m) {
                Some(d) => format!(
                    "{} [{}] {} ({})",
                    d.class.map_or_else(
                        || "????".to_string(),
                        |c| format!("{:04x}", c.class_subclass())
                    ),
                    d.ids(),
                    d.display_name(),
                    d.driver.as_deref().unwrap_or("no driver")
                ),
                None => "(not in the device list)".to_string(),
            };
            let _ = writeln!(out, "  {m} {line}");
        }
    }
    let ungrouped: Vec<&Device> = inv
        .devices
        .iter()
        .filter(|d| d.iommu_group.is_none())
        .collect();
    if !ungrouped.is_empty() && inv.iommu.enabled == Some(true) {
        let _ = writeln!(out, "Devices in no group ({})", ungrouped.len());
        for d in ungrouped {
            let _ = writeln!(out, "  {} {}", d.address, d.display_name());
        }
    }
    if !inv.warnings.is_empty() {
        let _ = writeln!(out, "Warnings ({})", inv.warnings.len());
        for w in &inv.warnings {
            let _ = writeln!(out, "  {w}");
        }
    }
    out.finish()
}

/// `exliar check`.
pub fn check(r: &CheckReport, ev: &Evidence) -> String {
    let mut out = String::new();
    let os = ev
        .os_release()
        .and_then(|(_, t)| crate::host::sysfs::os_release_value(&t, "PRETTY_NAME"))
        .unwrap_or_else(|| "unknown OS".to_string());
    let kernel = ev
        .kernel_release()
        .map(|k| format!(", Linux {k}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "exliar check: host {} ({os}{kernel}){}",
        r.root,
        if r.live { "" } else { " [not the live host]" }
    );
    let mut group = None;
    for c in &r.checks {
        if group != Some(c.group) {
            group = Some(c.group);
            let _ = writeln!(out);
            let _ = writeln!(out, "{}", c.group.label());
        }
        let mark = match c.status {
            Status::Ok => "ok",
            Status::Info => "info",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        };
        let _ = writeln!(out, "  {mark:<4}  {:<20} {}", c.id, c.summary);
        if matches!(c.status, Status::Warn | Status::Fail | Status::Skip) {
            for e in &c.evidence {
                let _ = writeln!(out, "        {:<20} {e}", "");
            }
        }
        if c.status != Status::Ok
            && let Some(fix) = &c.remedy
        {
            let _ = writeln!(out, "        {:<20} fix: {fix}", "");
        }
    }
    let _ = writeln!(out);
    let n = &r.counts;
    let tally = format!(
        "{} ok, {} info, {} warnings, {} failed, {} skipped",
        n.ok, n.info, n.warn, n.fail, n.skip
    );
    let scope = if r.only.is_some() {
        " (only the selected checks)"
    } else {
        ""
    };
    match &r.first_blocker {
        None => {
            let what = r
                .target_gpu
                .as_ref()
                .map(|g| format!(" of {g}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "READY for boot-time passthrough{what}{scope}: nothing blocks it ({tally})."
            );
        }
        Some(b) => {
            let _ = writeln!(
                out,
                "NOT READY for boot-time passthrough{scope}: first blocking failure {}: {} ({tally}).",
                b.id, b.summary
            );
        }
    }
    out
}
