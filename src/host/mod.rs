//! The one seam to the host: every read goes through a [`HostRoot`].
//!
//! Parsers and analysis never touch the file system; they receive what this
//! module read.

pub mod critical;
pub mod devdir;
mod idsdb;
pub mod kernel;
mod pciids;
pub mod readfile;
mod root;
pub mod sim;
pub mod snapshot;
pub mod stacks;
pub mod sysfs;
pub mod usb;
mod usbids;
pub mod write;

pub use pciids::{PCI_IDS_PATHS, PciIds};
pub use root::{HostRoot, NODES_FILE, NodeInfo, NodeStat, ReadError, Touched};
pub use usbids::{USB_IDS_PATHS, UsbIds};
