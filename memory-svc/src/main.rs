//! The memory-svc binary: settings from the environment, serve until SIGTERM/SIGINT.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    mesh::telemetry::init_from_env();
    let settings = match memory_svc::Settings::from_env(mesh::settings::Env::from_process()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("memory-svc: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match memory_svc::run(settings, mesh::server::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "memory-svc stopped with an error");
            std::process::ExitCode::FAILURE
        }
    }
}
