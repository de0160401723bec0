//! When to try a delivery again. The default follows Apigee's: a connect
//! error, a timeout, a 5xx, a 408 or a 429 is retried after 5 s, 30 s and
//! 120 s (each ±20%), honouring a capped `Retry-After`; any other 4xx is
//! final, and a 410 Gone also unsubscribes the callback.

use std::time::Duration;

use rand::Rng;

/// What a receiver's answer means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Disposition {
    /// The receiver took it.
    Delivered,
    /// Worth another try.
    Retry,
    /// No point trying again.
    Final,
    /// The receiver asked to be unsubscribed (410 Gone).
    Gone,
}

/// Classifies a receiver's status code.
pub(super) fn classify_status(status: u16) -> Disposition {
    match status {
        200..=299 => Disposition::Delivered,
        410 => Disposition::Gone,
        408 | 429 | 500..=599 => Disposition::Retry,
        _ => Disposition::Final,
    }
}

/// The delay before retry number `retry` (1 for the first retry): the
/// schedule's entry, its last one repeating, with ±20% jitter so that
/// retries of many deliveries do not arrive together.
pub(super) fn backoff(schedule_secs: &[u64], retry: u32) -> Duration {
    let index = (retry.saturating_sub(1) as usize).min(schedule_secs.len().saturating_sub(1));
    let base = schedule_secs.get(index).copied().unwrap_or(5) as f64;
    let jitter = rand::rng().random_range(0.8..=1.2);
    Duration::from_secs_f64(base * jitter)
}

/// A `Retry-After` header in delta-seconds or HTTP-date form, capped.
pub(super) fn retry_after(
    value: &str,
    cap: Duration,
    now: std::time::SystemTime,
) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or_default(),
    };
    Some(wait.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_like_apigee() {
        assert_eq!(classify_status(204), Disposition::Delivered);
        for status in [408, 429, 500, 503] {
            assert_eq!(classify_status(status), Disposition::Retry, "{status}");
        }
        for status in [301, 400, 401, 404, 422] {
            assert_eq!(classify_status(status), Disposition::Final, "{status}");
        }
        assert_eq!(classify_status(410), Disposition::Gone);
    }

    #[test]
    fn backoff_follows_the_schedule_with_twenty_percent_jitter() {
        let schedule = [5, 30, 120];
        for _ in 0..200 {
            let first = backoff(&schedule, 1).as_secs_f64();
            assert!((4.0..=6.0).contains(&first), "{first}");
            let third = backoff(&schedule, 3).as_secs_f64();
            assert!((96.0..=144.0).contains(&third), "{third}");
            let later = backoff(&schedule, 9).as_secs_f64();
            assert!(
                (96.0..=144.0).contains(&later),
                "the last delay repeats: {later}"
            );
        }
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates_and_is_capped() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let cap = Duration::from_secs(600);
        assert_eq!(retry_after("7", cap, now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("86400", cap, now), Some(cap));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(retry_after(&date, cap, now), Some(Duration::from_secs(30)));
        assert_eq!(retry_after("soon", cap, now), None);
    }
}
