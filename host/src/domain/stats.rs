//! Delivery figures over a window of hours, for one callback or for all a
//! tenant's: what health looks like at a glance. The store counts attempts by hour as they are
//! recorded (see `HourCount`), so the figures cost a handful of rows
//! whatever the history holds.

use serde::{Deserialize, Serialize};

use super::{Error, Result};
use crate::model::HourCount;

/// The longest window asked for, in hours: 30 days.
const MAX_WINDOW_HOURS: u64 = 720;

/// How far back the figures go, in whole hours: `24h` or `7d` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    hours: u64,
}

impl Window {
    /// The last 24 hours, which a dashboard shows by default.
    pub const DAY: Window = Window { hours: 24 };
    /// The last 7 days.
    pub const WEEK: Window = Window { hours: 168 };

    /// Reads `24h` or `7d`.
    pub fn parse(text: &str) -> Result<Window> {
        let invalid = || {
            Error::invalid(
                "window",
                format!("`{text}` is not a window: give hours or days, like 24h or 7d, up to 30d"),
            )
        };
        let (number, per) = match (text.strip_suffix('h'), text.strip_suffix('d')) {
            (Some(number), _) => (number, 1),
            (_, Some(number)) => (number, 24),
            _ => return Err(invalid()),
        };
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let hours = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(per))
            .ok_or_else(invalid)?;
        if hours == 0 || hours > MAX_WINDOW_HOURS {
            return Err(invalid());
        }
        Ok(Window { hours })
    }

    /// Start of the window's first hour, for a window ending in the hour
    /// that holds `now`.
    pub fn since(self, now: u64) -> u64 {
        let this_hour = now - now % HourCount::HOUR_MS;
        this_hour.saturating_sub((self.hours - 1) * HourCount::HOUR_MS)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Window::parse(&text).map_err(|err| match err {
            Error::Invalid { message, .. } => serde::de::Error::custom(message),
            other => serde::de::Error::custom(other),
        })
    }
}

/// Delivery attempts over a window: of one callback, or of all a tenant's.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeliveryStats {
    /// The window's length in hours; it ends with the current hour.
    pub window_hours: u64,
    /// Attempts the receiver took.
    pub succeeded: u64,
    /// Attempts that failed or were blocked.
    pub failed: u64,
    /// `succeeded` over all attempts, from 0 to 1; null without attempts.
    pub success_rate: Option<f64>,
    /// Every hour of the window, oldest first, those without attempts too.
    pub hours: Vec<HourCount>,
}

impl DeliveryStats {
    /// The figures for `window` ending now, from the hours the store
    /// counted (oldest first, empty hours left out).
    pub fn of(window: Window, now: u64, counted: &[HourCount]) -> Self {
        let since = window.since(now);
        let hours: Vec<HourCount> = (0..window.hours)
            .map(|i| {
                let at = since + i * HourCount::HOUR_MS;
                counted
                    .iter()
                    .find(|c| c.at == at)
                    .copied()
                    .unwrap_or(HourCount {
                        at,
                        succeeded: 0,
                        failed: 0,
                    })
            })
            .collect();
        let succeeded = hours.iter().map(|h| h.succeeded).sum();
        let failed = hours.iter().map(|h| h.failed).sum();
        let attempts: u64 = succeeded + failed;
        DeliveryStats {
            window_hours: window.hours,
            succeeded,
            failed,
            success_rate: (attempts > 0).then(|| succeeded as f64 / attempts as f64),
            hours,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = HourCount::HOUR_MS;

    #[test]
    fn windows_are_hours_or_days_up_to_thirty_days() {
        assert_eq!(Window::parse("24h").unwrap().hours, 24);
        assert_eq!(Window::parse("7d").unwrap().hours, 168);
        assert_eq!(Window::parse("30d").unwrap().hours, 720);
        for bad in [
            "",
            "h",
            "0h",
            "31d",
            "24",
            "1w",
            "-1h",
            "1.5h",
            "99999999999999999999d",
        ] {
            let err = Window::parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("window") && err.contains("24h or 7d"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn every_hour_of_the_window_is_listed_and_only_those_count() {
        let now = 100 * H + 1_234;
        let counted = [
            HourCount {
                at: 97 * H,
                succeeded: 50,
                failed: 50,
            }, // before the window
            HourCount {
                at: 98 * H,
                succeeded: 3,
                failed: 1,
            },
            HourCount {
                at: 100 * H,
                succeeded: 0,
                failed: 4,
            },
        ];
        let stats = DeliveryStats::of(Window::parse("3h").unwrap(), now, &counted);
        let at: Vec<u64> = stats.hours.iter().map(|h| h.at / H).collect();
        assert_eq!(at, [98, 99, 100]);
        assert_eq!((stats.succeeded, stats.failed), (3, 5));
        assert_eq!(stats.success_rate, Some(3.0 / 8.0));
        assert_eq!(stats.hours[1].succeeded + stats.hours[1].failed, 0);
        let quiet = DeliveryStats::of(Window::DAY, now, &[]);
        assert_eq!((quiet.hours.len(), quiet.success_rate), (24, None));
    }
}
