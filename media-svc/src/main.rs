//! The media-svc binary: settings from the environment, serve until SIGTERM/SIGINT.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    mesh::telemetry::init_from_env();
    let settings = match media_svc::Settings::from_env(mesh::settings::Env::from_process()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("media-svc: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match media_svc::run(settings, mesh::server::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "media-svc stopped with an error");
            std::process::ExitCode::FAILURE
        }
    }
}
