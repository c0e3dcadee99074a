//! A piece of evidence: which file (or other source) said what.

use serde::{Deserialize, Serialize};

/// One fact read from the host: the file (a path inside the checked root,
/// written as an absolute path) and the value it gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    pub source: String,
    pub value: String,
}

impl Fact {
    /// `rel` is root-relative (`proc/cmdline`); it is shown as `/proc/cmdline`.
    pub fn new(rel: &str, value: impl Into<String>) -> Self {
        let source = if rel.starts_with('/') || rel.contains(' ') || rel.is_empty() {
            rel.to_string()
        } else {
            format!("/{rel}")
        };
        Self {
            source,
            value: value.into(),
        }
    }
}

impl std::fmt::Display for Fact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.source, self.value)
    }
}
