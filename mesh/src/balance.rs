//! Client-side load balancing across replicas of a service, with health checking.
//!
//! A peer URL setting may list several replicas, comma-separated
//! (`http://10.0.0.5:50051,http://10.0.0.6:50051`). One URL gives a plain lazy channel. Several
//! give a tonic balanced channel (power of two choices over the replicas' connections) whose
//! membership a background task keeps honest: every [`PROBE_INTERVAL`] it asks each replica's
//! gRPC health service and removes the ones that do not answer SERVING in time, adding them back
//! when they do. tonic's balancer alone keeps routing to a replica that went away (each request
//! sent there fails while its connection is re-established), so without the probe a dead replica
//! would fail about half of all requests instead of none after the first second.

use std::time::Duration;

use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// How often each replica is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// How long a probe may take before the replica counts as down.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(400);

/// The URLs of a comma-separated list, trimmed, empty entries dropped.
pub fn split_urls(urls: &str) -> Vec<String> {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A lazy channel to the replicas listed in `urls`, each endpoint shaped by `configure`
/// (timeouts, keep-alive). Must be called inside a Tokio runtime when `urls` lists more than one
/// replica (the probe task is spawned then); it ends when the channel is dropped.
pub fn channel(
    urls: &str,
    configure: impl Fn(Endpoint) -> Endpoint,
) -> Result<Channel, tonic::transport::Error> {
    let list = split_urls(urls);
    let endpoints = list
        .iter()
        .map(|u| Endpoint::from_shared(u.clone()).map(&configure))
        .collect::<Result<Vec<_>, _>>()?;
    match endpoints.as_slice() {
        [] => Endpoint::from_shared(String::new()).map(|e| e.connect_lazy()),
        [one] => Ok(one.clone().connect_lazy()),
        _ => {
            let (channel, changes) = Channel::balance_channel::<usize>(64);
            for (i, e) in endpoints.iter().enumerate() {
                // Optimistic start: every replica is in until a probe says otherwise.
                let _ = changes.try_send(Change::Insert(i, e.clone()));
            }
            tokio::spawn(probe(endpoints, changes));
            Ok(channel)
        }
    }
}

async fn probe(
    endpoints: Vec<Endpoint>,
    changes: tokio::sync::mpsc::Sender<Change<usize, Endpoint>>,
) {
    let mut clients: Vec<HealthClient<Channel>> = endpoints
        .iter()
        .map(|e| {
            HealthClient::new(
                e.clone()
                    .connect_timeout(PROBE_TIMEOUT)
                    .timeout(PROBE_TIMEOUT)
                    .connect_lazy(),
            )
        })
        .collect();
    let mut member = vec![true; endpoints.len()];
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if changes.is_closed() {
            return; // the balanced channel was dropped
        }
        for (i, client) in clients.iter_mut().enumerate() {
            let healthy = tokio::time::timeout(
                PROBE_TIMEOUT,
                client.check(HealthCheckRequest {
                    service: String::new(),
                }),
            )
            .await
            .ok()
            .and_then(Result::ok)
            .is_some_and(|r| r.into_inner().status == ServingStatus::Serving as i32);
            if healthy == member[i] {
                continue;
            }
            let change = if healthy {
                Change::Insert(i, endpoints[i].clone())
            } else {
                Change::Remove(i)
            };
            if changes.send(change).await.is_err() {
                return;
            }
            member[i] = healthy;
            tracing::info!(
                replica = %endpoints[i].uri(),
                healthy,
                "replica {} the balancer",
                if healthy { "back in" } else { "taken out of" }
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_split_and_trimmed() {
        assert_eq!(
            split_urls(" http://a:1 ,http://b:2,, "),
            ["http://a:1", "http://b:2"]
        );
        assert_eq!(split_urls("http://a:1"), ["http://a:1"]);
    }
}
