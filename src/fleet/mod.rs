//! Many hosts: what a node tells a cluster about itself. Node labels for
//! node-feature-discovery ([`nfd`]) and KubeVirt's permitted host devices
//! ([`kubevirt`]). Pure: the CLI reads the host (or snapshots) and writes
//! the feature file through the transaction engine.

pub mod kubevirt;
pub mod nfd;
