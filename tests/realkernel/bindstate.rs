//! The kernel's own view of driver bindings, recorded by the guest's shell between
//! exliar commands (`bind_state TAG` in [`GUEST_HELPERS`]), independent of exliar:
//! every PCI function's driver link, `driver_override` and IOMMU group, and the
//! `/dev/vfio` listing. Format (one record a line, `-` for "none"):
//!
//! ```text
//! dev 0000:02:00.0 class=0x030000 driver=vfio-pci override=vfio-pci group=9
//! vfio 9 vfio
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Shell functions for the bind scenarios' guest scripts.
///
/// * `bind_state TAG` writes `/out/TAG.state` (see the module documentation);
/// * `timed TAG ARGS…` is `run_exliar TAG ARGS…` that also appends
///   `TAG START END` (guest uptime, seconds) to `/out/times.txt`.
pub const GUEST_HELPERS: &str = r#"
bind_state() {
  {
    for d in /sys/bus/pci/devices/*; do
      drv=-; if [ -e "$d/driver" ]; then t=$(readlink "$d/driver"); drv=${t##*/}; fi
      ovr=-; [ -e "$d/driver_override" ] && ovr=$(cat "$d/driver_override")
      grp=-; if [ -e "$d/iommu_group" ]; then t=$(readlink "$d/iommu_group"); grp=${t##*/}; fi
      echo "dev ${d##*/} class=$(cat "$d/class") driver=$drv override=$ovr group=$grp"
    done
    echo "vfio $(ls /dev/vfio 2>/dev/null | tr '\n' ' ')"
  } > "/out/$1.state"
}
timed() {
  t0=$(cut -d' ' -f1 /proc/uptime)
  run_exliar "$@"
  echo "$1 $t0 $(cut -d' ' -f1 /proc/uptime)" >> /out/times.txt
}
"#;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub class: String,
    pub driver: Option<String>,
    pub driver_override: Option<String>,
    pub group: Option<u32>,
}

impl Function {
    fn is_bridge(&self) -> bool {
        matches!(
            self.class.get(..6),
            Some("0x0604") | Some("0x0609") | Some("0x0600")
        )
    }
}

/// One `bind_state` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelState {
    pub devices: BTreeMap<String, Function>,
    /// Entries of `/dev/vfio` (`vfio` and group numbers), sorted.
    pub vfio: Vec<String>,
}

fn none_if_dash(v: &str) -> Option<String> {
    (v != "-" && v != "(null)" && !v.is_empty()).then(|| v.to_owned())
}

impl KernelState {
    pub fn read(out: &Path, tag: &str) -> KernelState {
        let path = out.join(format!("{tag}.state"));
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("the guest wrote no {}: {e}", path.display()));
        KernelState::parse(&text).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()))
    }

    pub fn parse(text: &str) -> Result<KernelState> {
        let mut devices = BTreeMap::new();
        let mut vfio = None;
        for line in text.lines() {
            let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
            match kind {
                "dev" => {
                    let mut it = rest.split_whitespace();
                    let address = it.next().context("no address")?.to_owned();
                    let kv: BTreeMap<&str, &str> = it.filter_map(|t| t.split_once('=')).collect();
                    let get = |k: &str| {
                        kv.get(k)
                            .copied()
                            .with_context(|| format!("`{line}`: no {k}="))
                    };
                    devices.insert(
                        address,
                        Function {
                            class: get("class")?.to_owned(),
                            driver: none_if_dash(get("driver")?),
                            driver_override: none_if_dash(get("override")?),
                            group: none_if_dash(get("group")?)
                                .map(|g| g.parse())
                                .transpose()
                                .with_context(|| format!("`{line}`: group"))?,
                        },
                    );
                }
                "vfio" => {
                    let mut v: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
                    v.sort();
                    vfio = Some(v);
                }
                "" => {}
                _ => bail!("unknown record `{line}`"),
            }
        }
        if devices.is_empty() {
            bail!("no PCI functions recorded");
        }
        Ok(KernelState {
            devices,
            vfio: vfio.context("no `vfio` record")?,
        })
    }

    pub fn device(&self, address: &str) -> &Function {
        self.devices
            .get(address)
            .unwrap_or_else(|| panic!("no PCI function {address} in {self:#?}"))
    }

    pub fn driver(&self, address: &str) -> Option<&str> {
        self.device(address).driver.as_deref()
    }

    pub fn group(&self, address: &str) -> u32 {
        self.device(address)
            .group
            .unwrap_or_else(|| panic!("{address} has no IOMMU group"))
    }

    /// `/dev/vfio/N` exists.
    pub fn has_node(&self, group: u32) -> bool {
        self.vfio.contains(&group.to_string())
    }

    /// The kernel's rule for a group vfio can use: every member that is not a bridge
    /// is on vfio-pci (or pci-stub) or has no driver.
    pub fn viable(&self, group: u32) -> bool {
        self.devices
            .values()
            .filter(|f| f.group == Some(group) && !f.is_bridge())
            .all(|f| {
                matches!(
                    f.driver.as_deref(),
                    None | Some("vfio-pci") | Some("pci-stub")
                )
            })
    }

    /// Drivers and overrides of every function, for comparing two states.
    pub fn bindings(&self) -> BTreeMap<String, (Option<String>, Option<String>)> {
        self.devices
            .iter()
            .map(|(a, f)| (a.clone(), (f.driver.clone(), f.driver_override.clone())))
            .collect()
    }
}

/// The wall times `timed` recorded, by tag.
pub fn times(out: &Path) -> BTreeMap<String, Duration> {
    let text = fs::read_to_string(out.join("times.txt")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let tag = f.next()?.to_owned();
            let t0: f64 = f.next()?.parse().ok()?;
            let t1: f64 = f.next()?.parse().ok()?;
            Some((tag, Duration::from_secs_f64((t1 - t0).max(0.0))))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::KernelState;

    #[test]
    fn parses_states_and_judges_viability() {
        let s = KernelState::parse(
            "dev 0000:00:02.0 class=0x060400 driver=pcieport override=(null) group=9\n\
             dev 0000:02:00.0 class=0x030000 driver=vfio-pci override=vfio-pci group=9\n\
             dev 0000:02:00.1 class=0x040300 driver=snd_hda_intel override=(null) group=9\n\
             dev 0000:03:00.0 class=0x020000 driver=- override=(null) group=10\n\
             vfio 9 vfio \n",
        )
        .expect("parse");
        assert_eq!(s.driver("0000:02:00.0"), Some("vfio-pci"));
        assert_eq!(s.device("0000:02:00.1").driver_override, None);
        assert!(s.has_node(9) && !s.has_node(10));
        assert!(!s.viable(9), "the audio function is on its host driver");
        assert!(s.viable(10), "driverless");
    }
}
