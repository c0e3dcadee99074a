//! Pure parsers of what the tools print: `virsh domstats` and
//! `nvidia-smi --query-gpu=… --format=csv,noheader,nounits`.

use std::collections::BTreeMap;

use crate::model::PciAddress;

/// One block device or network interface of a domain: its name and two
/// byte counters (read/written, received/transmitted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Io {
    pub name: String,
    pub first: Option<u64>,
    pub second: Option<u64>,
}

/// The statistics of one domain (`virsh domstats`), what exliar exports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomStats {
    pub name: String,
    /// libvirt's `virDomainState` number (`state.state`).
    pub state: Option<u32>,
    /// `cpu.time`: nanoseconds.
    pub cpu_time_ns: Option<u64>,
    /// `vcpu.current`.
    pub vcpus: Option<u64>,
    /// `balloon.current`: KiB.
    pub memory_kib: Option<u64>,
    /// `balloon.maximum`: KiB.
    pub memory_max_kib: Option<u64>,
    /// `block.N.name`, `block.N.rd.bytes`, `block.N.wr.bytes`.
    pub blocks: Vec<Io>,
    /// `net.N.name`, `net.N.rx.bytes`, `net.N.tx.bytes`.
    pub nets: Vec<Io>,
}

/// The name of libvirt's `virDomainState` number.
pub fn state_name(n: u32) -> &'static str {
    match n {
        0 => "nostate",
        1 => "running",
        2 => "blocked",
        3 => "paused",
        4 => "shutdown",
        5 => "shutoff",
        6 => "crashed",
        7 => "pmsuspended",
        _ => "unknown",
    }
}

/// Every domain's statistics in `virsh domstats` output: `Domain: 'NAME'`
/// then indented `key=value` lines. Lines that are not understood are
/// skipped; a value that is not a number leaves its field unset.
pub fn domstats(text: &str) -> Vec<DomStats> {
    let mut out: Vec<DomStats> = Vec::new();
    let mut blocks: BTreeMap<u32, Io> = BTreeMap::new();
    let mut nets: BTreeMap<u32, Io> = BTreeMap::new();
    let finish = |out: &mut Vec<DomStats>, b: &mut BTreeMap<u32, Io>, n: &mut BTreeMap<u32, Io>| {
        if let Some(d) = out.last_mut() {
            d.blocks = std::mem::take(b).into_values().collect();
            d.nets = std::mem::take(n).into_values().collect();
        }
    };
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("Domain:") {
            finish(&mut out, &mut blocks, &mut nets);
            let name = name.trim();
            let name = name
                .strip_prefix('\'')
                .and_then(|n| n.strip_suffix('\''))
                .unwrap_or(name);
            out.push(DomStats {
                name: name.to_string(),
                ..Default::default()
            });
            continue;
        }
        let Some(d) = out.last_mut() else { continue };
        let Some((key, val)) = line.split_once('=') else {
            continue;
        };
        let num = val.trim().parse::<u64>().ok();
        match key.trim() {
            "state.state" => d.state = num.and_then(|n| u32::try_from(n).ok()),
            "cpu.time" => d.cpu_time_ns = num,
            "vcpu.current" => d.vcpus = num,
            "balloon.current" => d.memory_kib = num,
            "balloon.maximum" => d.memory_max_kib = num,
            k => {
                let mut parts = k.splitn(3, '.');
                let (Some(kind), Some(idx), Some(field)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let Ok(idx) = idx.parse::<u32>() else {
                    continue;
                };
                let (map, first, second) = match kind {
                    "block" => (&mut blocks, "rd.bytes", "wr.bytes"),
                    "net" => (&mut nets, "rx.bytes", "tx.bytes"),
                    _ => continue,
                };
                let io = map.entry(idx).or_default();
                if field == "name" {
                    io.name = val.trim().to_string();
                } else if field == first {
                    io.first = num;
                } else if field == second {
                    io.second = num;
                }
            }
        }
    }
    finish(&mut out, &mut blocks, &mut nets);
    for d in &mut out {
        d.blocks.retain(|b| !b.name.is_empty());
        d.nets.retain(|n| !n.name.is_empty());
    }
    out
}

/// One GPU as `nvidia-smi` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct NvidiaGpu {
    pub address: PciAddress,
    pub temperature_celsius: Option<f64>,
    pub power_watts: Option<f64>,
    /// 0 to 1.
    pub busy_ratio: Option<f64>,
}

/// The query exliar runs (the columns [`nvidia_smi`] reads, in order).
pub const NVIDIA_SMI_ARGS: [&str; 2] = [
    "--query-gpu=pci.bus_id,temperature.gpu,power.draw,utilization.gpu",
    "--format=csv,noheader,nounits",
];

/// Lines of `pci.bus_id, temperature.gpu, power.draw, utilization.gpu`
/// (no header, no units). `[N/A]`, `[Not Supported]` or anything not a
/// finite number leaves a value unset; a line without a valid bus id is
/// skipped.
pub fn nvidia_smi(text: &str) -> Vec<NvidiaGpu> {
    let num = |s: Option<&str>| {
        s.and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite())
    };
    text.lines()
        .filter_map(|line| {
            let mut cols = line.split(',');
            let address =
                PciAddress::parse(cols.next()?.trim().to_ascii_lowercase().as_str()).ok()?;
            Some(NvidiaGpu {
                address,
                temperature_celsius: num(cols.next()),
                power_watts: num(cols.next()),
                busy_ratio: num(cols.next()).map(|p| p / 100.0),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMSTATS: &str = "Domain: 'win11'
  state.state=1
  state.reason=1
  cpu.time=123456789000
  cpu.user=1000
  balloon.current=8388608
  balloon.maximum=8388608
  vcpu.current=8
  vcpu.maximum=8
  net.count=1
  net.0.name=vnet0
  net.0.rx.bytes=1000
  net.0.rx.pkts=10
  net.0.tx.bytes=2000
  block.count=2
  block.0.name=vda
  block.0.path=/var/lib/libvirt/images/win11.qcow2
  block.0.rd.bytes=4096
  block.0.wr.bytes=8192
  block.1.name=sda
  block.1.rd.bytes=garbage

Domain: 'off'
  state.state=5
  state.reason=2
";

    #[test]
    fn parses_domstats() {
        let d = domstats(DOMSTATS);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "win11");
        assert_eq!(d[0].state, Some(1));
        assert_eq!(d[0].cpu_time_ns, Some(123_456_789_000));
        assert_eq!(d[0].vcpus, Some(8));
        assert_eq!(d[0].memory_kib, Some(8_388_608));
        assert_eq!(
            d[0].nets,
            vec![Io {
                name: "vnet0".into(),
                first: Some(1000),
                second: Some(2000)
            }]
        );
        assert_eq!(d[0].blocks.len(), 2);
        assert_eq!(d[0].blocks[0].first, Some(4096));
        assert_eq!(d[0].blocks[0].second, Some(8192));
        assert_eq!(d[0].blocks[1].name, "sda");
        assert_eq!(d[0].blocks[1].first, None);
        assert_eq!(d[1].name, "off");
        assert_eq!(d[1].state.map(state_name), Some("shutoff"));
        assert!(d[1].blocks.is_empty());
    }

    #[test]
    fn domstats_garbage_is_skipped() {
        assert!(domstats("").is_empty());
        assert!(domstats("state.state=1\nnonsense\n").is_empty());
        let d = domstats("Domain: x\n block.x.name=a\n net.0=1\n=\n state.state=99999999999\n");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].name, "x");
        assert_eq!(d[0].state, None);
        assert!(d[0].blocks.is_empty() && d[0].nets.is_empty());
    }

    #[test]
    fn parses_nvidia_smi() {
        let text = "00000000:01:00.0, 45, 30.12, 3\n00000000:02:00.0, [N/A], [Not Supported], 100\nnot a bus id, 1, 2, 3\n\n0000:03:00.0, inf\n";
        let g = nvidia_smi(text);
        assert_eq!(g.len(), 3);
        assert_eq!(g[0].address.to_string(), "0000:01:00.0");
        assert_eq!(g[0].temperature_celsius, Some(45.0));
        assert_eq!(g[0].power_watts, Some(30.12));
        assert_eq!(g[0].busy_ratio, Some(0.03));
        assert_eq!(g[1].temperature_celsius, None);
        assert_eq!(g[1].power_watts, None);
        assert_eq!(g[1].busy_ratio, Some(1.0));
        assert_eq!(g[2].address.to_string(), "0000:03:00.0");
        assert_eq!(g[2].temperature_celsius, None);
        assert_eq!(g[2].busy_ratio, None);
    }
}
