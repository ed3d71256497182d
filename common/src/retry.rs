//! The one retry layer for calls the AWS SDK does not retry itself (PostgreSQL work, batch
//! entries the services refused one by one). Everything that retries goes through here.
//!
//! The `backoff` crate is confined to this module: it carries an unmaintained-crate advisory
//! (RUSTSEC-2025-0012), and keeping it behind [`retry`] and [`Policy`] means replacing it is a
//! one-file change.
//!
//! Invariant: the caller classifies every error as [`Attempt::Transient`] or
//! [`Attempt::Permanent`] where it appears; nothing here turns a permanent error into a retry.

use rand::Rng;
use std::future::Future;
use std::time::Duration;

/// An attempt's failure, classified by the caller.
#[derive(Debug)]
pub enum Attempt<E> {
    /// Trying again later may succeed.
    Transient(E),
    /// Trying again cannot help; stop now.
    Permanent(E),
}

/// Exponential backoff, each wait drawn uniformly from [0.5, 1.5] x its nominal interval (the
/// `backoff` crate's randomization factor 0.5): spread out, never zero, never more than 1.5x.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub initial: Duration,
    pub max_interval: Duration,
    /// Give up (returning the last transient error) after this long; None retries forever.
    pub max_elapsed: Option<Duration>,
}

impl Policy {
    /// For ordinary calls: a few quick retries over half a minute.
    pub const STANDARD: Policy = Policy {
        initial: Duration::from_millis(200),
        max_interval: Duration::from_secs(5),
        max_elapsed: Some(Duration::from_secs(30)),
    };

    /// For the database while a file is held: rides out a restart or failover of minutes.
    pub const fn patient(max_elapsed: Duration) -> Policy {
        Policy {
            initial: Duration::from_millis(500),
            max_interval: Duration::from_secs(30),
            max_elapsed: Some(max_elapsed),
        }
    }

    /// Never retries.
    pub const NO_RETRIES: Policy = Policy {
        initial: Duration::ZERO,
        max_interval: Duration::ZERO,
        max_elapsed: Some(Duration::ZERO),
    };

    fn backoff(&self) -> backoff::ExponentialBackoff {
        backoff::ExponentialBackoff {
            initial_interval: self.initial,
            max_interval: self.max_interval,
            max_elapsed_time: self.max_elapsed,
            // each wait is drawn from [0.5, 1.5] x the nominal interval
            randomization_factor: 0.5,
            multiplier: 2.0,
            ..backoff::ExponentialBackoff::default()
        }
    }
}

/// Runs `op` until it succeeds, fails permanently, or the policy's time is up. `notify` is
/// called before each wait with the error and the wait. Each wait counts in the metric
/// `sluice_retries_total{operation}` ([`crate::metrics::RETRIES`]): `operation` is a fixed name
/// of what is retried (`load_file`, `replace`, `db_bootstrap`).
pub async fn retry<T, E, F, Fut, N>(
    operation: &'static str,
    policy: Policy,
    mut op: F,
    mut notify: N,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Attempt<E>>>,
    N: FnMut(&E, Duration),
{
    if policy == Policy::NO_RETRIES {
        return op().await.map_err(|a| match a {
            Attempt::Transient(e) | Attempt::Permanent(e) => e,
        });
    }
    backoff::future::retry_notify(
        policy.backoff(),
        || {
            let fut = op();
            async move {
                fut.await.map_err(|a| match a {
                    Attempt::Transient(e) => backoff::Error::transient(e),
                    Attempt::Permanent(e) => backoff::Error::permanent(e),
                })
            }
        },
        |e: E, wait| {
            crate::metrics::inc(&crate::metrics::RETRIES, &[operation], 1);
            notify(&e, wait)
        },
    )
    .await
}

/// Delay before attempt `attempt` (1-based) of a file comes back: exponential from `base`,
/// capped at `cap`, with equal jitter: drawn uniformly from [0.5, 1] x that (half fixed, half
/// random), so redeliveries spread out but never come back sooner than half the nominal delay.
/// Used for the message visibility after a transient failure.
pub fn redelivery_delay(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let nominal = exp.min(cap);
    let millis = nominal.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(millis / 2..=millis.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const FAST: Policy = Policy {
        initial: Duration::from_millis(1),
        max_interval: Duration::from_millis(2),
        max_elapsed: Some(Duration::from_secs(5)),
    };

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let mut notified = 0;
        let out: Result<u32, &str> = retry(
            "test_op",
            FAST,
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if n < 3 {
                    Err(Attempt::Transient("busy"))
                } else {
                    Ok(n)
                }
            },
            |_, _| notified += 1,
        )
        .await;
        assert_eq!(out, Ok(3));
        assert_eq!(notified, 3);
        assert!(crate::metrics::render().contains("sluice_retries_total{operation=\"test_op\"} "));
    }

    #[tokio::test]
    async fn permanent_errors_stop_at_once() {
        let calls = AtomicU32::new(0);
        let out: Result<(), &str> = retry(
            "test_op",
            FAST,
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Attempt::Permanent("no such table"))
            },
            |_, _| {},
        )
        .await;
        assert_eq!(out, Err("no such table"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn gives_up_after_max_elapsed() {
        let policy = Policy {
            max_elapsed: Some(Duration::from_millis(30)),
            ..FAST
        };
        let out: Result<(), &str> = retry(
            "test_op",
            policy,
            || async { Err(Attempt::Transient("down")) },
            |_, _| {},
        )
        .await;
        assert_eq!(out, Err("down"));
    }

    #[test]
    fn redelivery_delay_grows_and_is_capped() {
        let base = Duration::from_secs(10);
        let cap = Duration::from_secs(300);
        for _ in 0..50 {
            let d1 = redelivery_delay(1, base, cap);
            assert!(d1 >= Duration::from_secs(5) && d1 <= base, "{d1:?}");
            let d10 = redelivery_delay(10, base, cap);
            assert!(d10 >= cap / 2 && d10 <= cap, "{d10:?}");
        }
        assert!(redelivery_delay(40, base, cap) <= cap);
    }
}
