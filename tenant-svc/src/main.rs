//! The tenant-svc binary: settings from the environment, serve until SIGTERM/SIGINT.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    mesh::telemetry::init_from_env();
    let settings = match tenant_svc::Settings::from_env(mesh::settings::Env::from_process()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tenant-svc: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match tenant_svc::run(settings, mesh::server::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "tenant-svc stopped with an error");
            std::process::ExitCode::FAILURE
        }
    }
}
