//! Container Device Interface (CDI): the spec model, its strict validator
//! and version rules ([`spec`]), and a generator from a plain description of
//! devices ([`generate`]). Pure: nothing here reads the host.

pub mod generate;
pub mod spec;

pub use generate::{Edits, GPU_KIND, Hook, Input, InputDevice, Mount, Node, VFIO_KIND, generate};
pub use spec::{Problem, Spec, Version, minimum_version, parse, to_json, validate};
