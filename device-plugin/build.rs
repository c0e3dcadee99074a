//! Generates the v1beta1 messages and services from proto/api.proto with
//! prost and tonic. protoc comes from protoc-bin-vendored (a prebuilt
//! binary in a crate), so building needs no system protoc (CI and
//! developers' machines need not install protobuf-compiler); a `PROTOC`
//! set in the environment still wins.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/api.proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    let protoc = match std::env::var_os("PROTOC") {
        Some(p) => p.into(),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_with_config(config, &["proto/api.proto"], &["proto"])?;
    Ok(())
}
