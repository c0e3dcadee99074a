//! The data exliar reasons about: PCI addresses, devices, IOMMU groups and
//! the inventory of one host. Plain data, no I/O.

mod address;
mod device;
mod fact;
mod inventory;

pub use address::{AddressError, PciAddress};
pub use device::{ClassCode, Device, Link, Sriov, class_from_name, describe_class, hex16};
pub use fact::Fact;
pub use inventory::{HostFacts, Inventory, IommuState, Source, Warning};
