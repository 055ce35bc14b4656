//! The gateway's one retry rule for calls to its peers: a call's set-up RPCs and its stream to
//! media-svc are tried again while no replica takes them (`UNAVAILABLE`) for up to a second, so
//! a replica that just died (still in the balancer until its health probe fails) costs a caller
//! nothing.

use std::time::{Duration, Instant};

/// How long the gateway keeps trying an RPC of a call's set-up, or opening a call's stream to
/// media-svc, while no replica is available (then Twilio gets the apology, inside the 2-second
/// answer budget, or the socket is closed and Twilio plays it).
const RETRY_BUDGET: Duration = Duration::from_millis(1000);

/// Pause between two attempts of a call's set-up RPC or stream.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Runs `rpc` again while it fails with `Unavailable` (no replica took it: one that just died
/// stays in the balancer until its health probe fails, within a second) and less than
/// [`RETRY_BUDGET`] has passed since `began`; the answer budget still bounds the whole.
pub async fn retry_unavailable<T, F>(
    began: Instant,
    mut rpc: impl FnMut() -> F,
) -> Result<T, tonic::Status>
where
    F: Future<Output = Result<T, tonic::Status>>,
{
    loop {
        match rpc().await {
            Err(s)
                if s.code() == tonic::Code::Unavailable
                    && began.elapsed() + RETRY_PAUSE < RETRY_BUDGET =>
            {
                metrics::counter!("gateway_rpc_retries_total").increment(1);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            other => return other,
        }
    }
}
