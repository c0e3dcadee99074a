//! VMs: a libvirt domain with the GPU, generated from this host's facts
//! (the card and its functions, the CPU topology, memory, firmware), shown
//! as a plan and defined through the transaction engine.
//!
//! The flow: [`topology`] reads the CPUs (through the host root) and
//! [`topology::choose`] picks the host CPUs to pin (pure); [`profile`] holds
//! the per-OS defaults (TOML files, overridable in `/etc/exliar/profiles/`);
//! [`firmware`] finds OVMF; [`domain`] turns a [`domain::DomainSpec`] into
//! libvirt XML (pure) and reads exliar's metadata back; [`virsh`] runs
//! `virsh` with argv. [`unattend`] makes the answer-file ISO of an
//! unattended Windows installation.

use serde::{Deserialize, Serialize};

pub mod create;
pub mod domain;
pub mod firmware;
pub mod hostfacts;
pub mod looking_glass;
pub mod profile;
pub mod ready;
pub mod request;
pub mod topology;
pub mod unattend;
pub mod virsh;

/// The guest CPU topology libvirt is told (`<cpu><topology>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestTopology {
    pub sockets: u32,
    pub dies: u32,
    pub cores: u32,
    pub threads: u32,
}

impl GuestTopology {
    pub fn vcpus(&self) -> u32 {
        self.sockets * self.dies * self.cores * self.threads
    }
}

/// The host CPUs a VM runs on, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pinning {
    /// Host logical CPU of each vCPU, in vCPU order (SMT siblings adjacent,
    /// so that guest threads of one guest core share one host core).
    pub vcpus: Vec<u32>,
    /// Host CPUs for the emulator threads (`<emulatorpin>`).
    pub emulator: Vec<u32>,
    /// Host CPUs for the I/O thread (`<iothreadpin>`); empty: no iothread.
    pub iothread: Vec<u32>,
    pub guest: GuestTopology,
    /// The NUMA node the vCPUs are on, when the host has more than one.
    pub numa_node: Option<u32>,
    /// One line per decision, shown in the plan.
    pub reasons: Vec<String>,
}
