//! The gateway binary: settings from the environment, serve until SIGTERM/SIGINT.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    mesh::telemetry::init_from_env();
    let settings = match gateway::Settings::from_env(mesh::settings::Env::from_process()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gateway: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match gateway::run(settings, mesh::server::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "gateway stopped with an error");
            std::process::ExitCode::FAILURE
        }
    }
}
