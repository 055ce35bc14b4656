//! The memory-svc binary keeps the start-up contract (see `mesh::testkit_process::check_service_binary`).

#[tokio::test]
async fn binary_serves_refuses_bad_settings_and_superuser_and_stops_on_sigterm() {
    mesh::testkit_process::check_service_binary(
        env!("CARGO_BIN_EXE_memory-svc"),
        "memory-svc",
        "memory_svc",
        "MEMORY_SVC_PORT",
    )
    .await;
}
