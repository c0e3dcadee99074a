//! Container Device Interface (CDI): the spec model, its strict validator
//! and version rules ([`spec`]), and a generator from a plain description of
//! devices ([`generate`]), what to write for a host's GPUs ([`host`]), and
//! the plan that writes it ([`write`], which reads the spec directory
//! through the host root).

pub mod generate;
pub mod host;
pub mod spec;
pub mod write;

pub use generate::{Edits, GPU_KIND, Hook, Input, InputDevice, Mount, Node, VFIO_KIND, generate};
pub use spec::{Problem, Spec, Version, minimum_version, parse, to_json, validate};
