//! Compiles `proto/*.proto` with protox (no system protoc) and generates the
//! prost messages and tonic services.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/objects.proto", "proto/dispatcher.proto", "proto/raft.proto", "proto/ca.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)]")
        .compile_fds(fds)?;
    Ok(())
}
