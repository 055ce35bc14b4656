//! The load generator of the benchmark commands (feature `testkit`): N workers calling one async
//! operation, either back to back (closed loop: throughput at a fixed number in flight) or paced
//! at an offered rate (open loop: latency at a given throughput, at most N in flight).
//!
//! Paced runs measure each request twice: from the moment it was actually sent (the service's
//! response time) and from the moment the schedule said it should start (includes any wait for a
//! free worker, so a service that falls behind cannot hide it: no coordinated omission). The
//! second includes the timer's lateness (tokio's timer has millisecond resolution), so it is the
//! pessimistic figure.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How to drive the operation.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Workers, i.e. most requests in flight.
    pub concurrency: usize,
    /// How long to measure.
    pub duration: Duration,
    /// Offered requests per second; `None`: back to back (closed loop).
    pub rate: Option<f64>,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// The load that was asked for.
    pub load: Load,
    /// Response times of successful requests, from the actual send, sorted.
    pub service: Vec<Duration>,
    /// Paced runs: times of successful requests from their scheduled start, sorted.
    pub scheduled: Vec<Duration>,
    /// Failed requests.
    pub errors: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

/// The `p`-quantile (0..=1) of sorted durations; zero when empty.
pub fn quantile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Report {
    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        self.service.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Lines for a terminal: the load, throughput, errors and both latency distributions.
    pub fn lines(&self, what: &str) -> Vec<String> {
        let mode = match self.load.rate {
            Some(r) => format!(
                "paced at {r:.0}/s offered, at most {} in flight",
                self.load.concurrency
            ),
            None => format!("closed loop, {} in flight", self.load.concurrency),
        };
        let mut out = vec![format!(
            "{what}: {mode}; {} ok in {:.1?} ({:.0}/s), {} failed",
            self.service.len(),
            self.elapsed,
            self.throughput(),
            self.errors
        )];
        let dist = |name: &str, d: &[Duration]| {
            format!(
                "  {name}: p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
                ms(quantile(d, 0.50)),
                ms(quantile(d, 0.90)),
                ms(quantile(d, 0.99)),
                ms(quantile(d, 0.999)),
                ms(d.last().copied().unwrap_or_default()),
            )
        };
        out.push(dist("latency from send", &self.service));
        if self.load.rate.is_some() {
            out.push(dist("latency from schedule", &self.scheduled));
        }
        out
    }
}

/// Runs `op(i)` (i = 0, 1, 2, … across all workers; `true` = success) under `load`.
pub async fn drive<F, Fut>(load: Load, op: F) -> Report
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let deadline = began + load.duration;
    let interval = load
        .rate
        .map(|r| Duration::from_secs_f64(1.0 / r.max(1e-3)));
    let mut workers = Vec::with_capacity(load.concurrency);
    for _ in 0..load.concurrency.max(1) {
        let (op, next) = (op.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let (mut service, mut scheduled, mut errors) = (Vec::new(), Vec::new(), 0u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let due = match interval {
                    Some(every) => {
                        let due = began + every.mul_f64(i as f64);
                        if due >= deadline {
                            break;
                        }
                        tokio::time::sleep_until(due.into()).await;
                        Some(due)
                    }
                    None if Instant::now() >= deadline => break,
                    None => None,
                };
                let sent = Instant::now();
                let ok = op(i).await;
                let done = Instant::now();
                if ok {
                    service.push(done - sent);
                    if let Some(due) = due {
                        scheduled.push(done - due);
                    }
                } else {
                    errors += 1;
                }
            }
            (service, scheduled, errors)
        }));
    }
    let mut report = Report {
        load,
        service: Vec::new(),
        scheduled: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for w in workers {
        let (s, d, e) = w.await.expect("load worker panicked");
        report.service.extend(s);
        report.scheduled.extend(d);
        report.errors += e;
    }
    report.elapsed = began.elapsed();
    report.service.sort_unstable();
    report.scheduled.sort_unstable();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_paced_run_offers_the_rate_and_counts_failures() {
        let load = Load {
            concurrency: 4,
            duration: Duration::from_millis(500),
            rate: Some(200.0),
        };
        let report = drive(load, |i| async move { i % 10 != 0 }).await;
        let total = report.service.len() as u64 + report.errors;
        assert!(
            (95..=101).contains(&total),
            "about 100 requests in 0.5 s at 200/s, got {total}"
        );
        assert_eq!(report.errors, total.div_ceil(10));
        assert_eq!(report.scheduled.len(), report.service.len());
    }

    #[tokio::test]
    async fn a_closed_loop_keeps_every_worker_busy() {
        let load = Load {
            concurrency: 3,
            duration: Duration::from_millis(200),
            rate: None,
        };
        let report = drive(load, |_| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            true
        })
        .await;
        // 3 workers x ~20 requests of 10 ms (timer rounding makes each a little longer).
        assert!(
            (30..=63).contains(&report.service.len()),
            "{}",
            report.service.len()
        );
        assert!(report.scheduled.is_empty());
        assert!(quantile(&report.service, 0.5) >= Duration::from_millis(10));
    }
}
