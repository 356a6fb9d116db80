//! Compiles `proto/vexil/v1/*.proto` into Rust with `protox` (a pure-Rust protobuf compiler, so no
//! `protoc` binary is needed) and `prost-build`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let include = manifest_dir.join("../../proto");
    let proto = include.join("vexil/v1/changes.proto");
    println!("cargo:rerun-if-changed={}", proto.display());

    let descriptors = protox::compile([&proto], [&include])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
