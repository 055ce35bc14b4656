//! Generates the Rust code for the typed API from `proto/` with a pure-Rust protobuf compiler
//! (protox), so building needs no system `protoc`. The encoded file descriptor set is written next
//! to the generated code and exposed as `mesh::api::FILE_DESCRIPTOR_SET` for server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("..");
    let proto_dir = root.join("proto");
    let files = [
        "neurosphere/common/v1/common.proto",
        "neurosphere/tenant/v1/tenant.proto",
        "neurosphere/tenant/v1/account.proto",
        "neurosphere/tenant/v1/team.proto",
        "neurosphere/tenant/v1/onboarding.proto",
        "neurosphere/tenant/v1/operator.proto",
        "neurosphere/memory/v1/memory.proto",
        "neurosphere/media/v1/media.proto",
        "neurosphere/media/v1/numbers.proto",
        "neurosphere/media/v1/billing.proto",
    ];
    println!("cargo:rerun-if-changed={}", proto_dir.display());
    // The migrations are embedded by refinery; a new file must trigger a rebuild too.
    println!(
        "cargo:rerun-if-changed={}",
        root.join("migrations").display()
    );
    for file in &files {
        println!("cargo:rerun-if-changed={}", proto_dir.join(file).display());
    }

    let descriptors = protox::compile(files, [&proto_dir])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("neurosphere_descriptor.bin");
    std::fs::write(
        &descriptor_path,
        prost::Message::encode_to_vec(&descriptors),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .file_descriptor_set_path(&descriptor_path)
        // Recording chunks pass from the reader to the wire and on to HTTP bodies uncopied.
        .bytes(".neurosphere.media.v1.ReadRecordingResponse.data")
        .skip_protoc_run()
        .compile_fds(descriptors)?;
    Ok(())
}
