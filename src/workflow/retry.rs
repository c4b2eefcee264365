//! Retrying transient failures (a busy database, EINTR, EAGAIN) with exponential backoff and
//! jitter. Deterministic failures are returned at once: retrying a missing file only wastes time.
use std::time::Duration;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Total tries including the first one.
    pub attempts: u32,
    /// Delay before the second try; doubles every time after.
    pub initial: Duration,
    /// Upper bound of one delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// Five tries, 50 ms doubling up to 2 s: about 3 s in the worst case, long enough for
    /// another process to finish a transaction, short enough not to look hung.
    fn default() -> Self {
        Backoff {
            attempts: 5,
            initial: Duration::from_millis(50),
            max: Duration::from_secs(2),
        }
    }
}

impl Backoff {
    /// The delay before try number `retry + 1` (0-based `retry`): half the exponential step
    /// plus a random half ("equal jitter"), so processes that collided once don't collide again.
    pub fn delay(&self, retry: u32) -> Duration {
        let step = self
            .initial
            .saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
            .min(self.max);
        let half = step / 2;
        let jitter_nanos = fastrand::u64(0..(half.as_nanos() as u64).max(1));
        half + Duration::from_nanos(jitter_nanos)
    }
}

/// Runs `op` until it succeeds, fails deterministically, or the tries are used up.
/// `what` names the operation in the debug log.
pub fn retry<T, E: std::fmt::Display>(
    policy: &Backoff,
    what: &str,
    is_transient: impl Fn(&E) -> bool,
    mut op: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let mut retry_no = 0;
    loop {
        match op() {
            Ok(v) => return Ok(v),
            Err(e) if is_transient(&e) && retry_no + 1 < policy.attempts => {
                let delay = policy.delay(retry_no);
                tracing::debug!(%e, ?delay, retry = retry_no + 1, "{what}: transient failure, retrying");
                std::thread::sleep(delay);
                retry_no += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_bounded() {
        let b = Backoff::default();
        for retry in 0..40 {
            let d = b.delay(retry);
            assert!(d <= b.max, "{d:?}");
        }
        assert!(b.delay(0) <= Duration::from_millis(50));
        assert!(b.delay(5) >= Duration::from_millis(800));
        // Equal jitter: from half the step up to (not including) the step.
        for _ in 0..100 {
            let d = b.delay(1);
            assert!(
                d >= Duration::from_millis(50) && d < Duration::from_millis(100),
                "{d:?}"
            );
        }
        // Zero steps stay zero rather than dividing by zero.
        let none = Backoff {
            initial: Duration::ZERO,
            ..b
        };
        assert_eq!(none.delay(3), Duration::ZERO);
    }

    #[test]
    fn deterministic_errors_are_not_retried() {
        let mut calls = 0;
        let r: Result<(), String> = retry(
            &Backoff::default(),
            "t",
            |_| false,
            || {
                calls += 1;
                Err("no".into())
            },
        );
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn transient_errors_are_retried_until_success() {
        let mut calls = 0;
        let policy = Backoff {
            initial: Duration::from_millis(1),
            ..Backoff::default()
        };
        let r: Result<u32, String> = retry(
            &policy,
            "t",
            |_| true,
            || {
                calls += 1;
                if calls < 3 {
                    Err("busy".into())
                } else {
                    Ok(calls)
                }
            },
        );
        assert_eq!(r, Ok(3));
    }
}
