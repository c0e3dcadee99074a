//! The CDI oracles shared by tests/cdi.rs and tests/cdi_generate.rs:
//! crates.io's `container-device-interface` and the upstream JSON schema.

use std::path::{Path, PathBuf};

use container_device_interface as oracle;

/// The crate's verdict on a file: Ok(its minimum required version) or the
/// error (`read_spec`, file by file: its cache API hides errors).
pub fn oracle_check(path: &Path) -> Result<String, String> {
    let p = PathBuf::from(path);
    oracle::spec::read_spec(&p, 0).map_err(|e| format!("{e:#}"))?;
    let raw = oracle::spec::parse_spec(&p).map_err(|e| format!("{e:#}"))?;
    oracle::version::minimum_required_version(&raw)
        .map(|v| v.to_string())
        .map_err(|e| format!("{e:#}"))
}

/// The upstream schema (Draft 7, defs.json beside it) from
/// ../shared/fixtures/cdi, when present.
pub fn upstream_schema() -> Option<jsonschema::Validator> {
    let dir = super::shared_fixtures()?.join("cdi");
    let read = |n: &str| -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(dir.join(n)).ok()?).ok()
    };
    let (Some(schema), Some(defs)) = (read("schema.json"), read("defs.json")) else {
        eprintln!(
            "skipping the upstream schema check: {}/schema.json or defs.json is absent",
            dir.display()
        );
        return None;
    };
    Some(
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .with_base_uri("file:///cdi/schema.json")
            .with_resource(
                "file:///cdi/defs.json",
                jsonschema::Draft::Draft7.create_resource(defs),
            )
            .build(&schema)
            .expect("the upstream schema compiles"),
    )
}
