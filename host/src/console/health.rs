//! How a callback fares, drawn for people: a state in words and colour,
//! the share of its deliveries that succeeded over the last day, and a
//! sparkline of their volume, hour by hour.

use maud::{Markup, html};

use crate::domain::callbacks::CallbackView;
use crate::domain::stats::DeliveryStats;
use crate::model::{ActivationOutcome, HourCount, Phase};

/// A callback's state at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Turned off, by its tenant or by Hookgate.
    Disabled,
    /// An after-callback whose latest delivery attempt failed.
    Failing,
    /// Running, and its latest attempt (if any) went through. A
    /// before-callback that denies is doing its job: it is healthy.
    Healthy,
}

impl State {
    pub(super) fn of(view: &CallbackView) -> State {
        let c = &view.callback;
        if !c.enabled {
            return State::Disabled;
        }
        let failed = matches!(
            view.last.last_status,
            Some(ActivationOutcome::Failed | ActivationOutcome::Blocked)
        );
        if c.phase == Phase::After && failed {
            State::Failing
        } else {
            State::Healthy
        }
    }

    /// True for the states a tenant should look at.
    pub(super) fn needs_attention(self) -> bool {
        self != State::Healthy
    }

    fn label(self) -> &'static str {
        match self {
            State::Disabled => "disabled",
            State::Failing => "failing",
            State::Healthy => "healthy",
        }
    }
}

/// The health cell of a callback's row: its state (with the reason it was
/// disabled), and for an after-callback its success rate and volume.
pub(super) fn cell(view: &CallbackView, stats: Option<&DeliveryStats>) -> Markup {
    let state = State::of(view);
    html! {
        span class={ "state " (state.label()) } { (state.label()) }
        @if let Some(reason) = &view.callback.disabled_reason {
            span class="help reason" { (reason) }
        }
        @if let Some(stats) = stats {
            span class="rate" title="Deliveries that succeeded in the last 24 hours" {
                @match stats.success_rate {
                    Some(rate) => { (percent(rate)) " ok" }
                    None => "no deliveries",
                }
                span class="visually-hidden" { " in the last 24 hours" }
            }
            (sparkline(stats))
        }
    }
}

/// `0.987` as `98.7%`, and never 100% while anything failed.
fn percent(rate: f64) -> String {
    let shown = (rate * 1000.0).floor() / 10.0;
    if shown.fract() == 0.0 {
        format!("{shown:.0}%")
    } else {
        format!("{shown:.1}%")
    }
}

/// One bar per hour, its height the hour's attempts against the busiest
/// hour's, the failed part on top in red.
fn sparkline(stats: &DeliveryStats) -> Markup {
    const BAR: usize = 3;
    const HEIGHT: u64 = 20;
    let busiest = busiest(stats).max(1);
    let width = stats.hours.len() * (BAR + 1);
    let label = summary(stats, "attempt");
    // Any hour with attempts shows, however quiet against the busiest.
    let scale = |n: u64| {
        if n == 0 {
            0
        } else {
            (n * HEIGHT / busiest).max(1)
        }
    };
    html! {
        svg class="spark" width=(width) height=(HEIGHT) viewBox={ "0 0 " (width) " " (HEIGHT) } role="img" aria-label=(label) {
            title { (label) }
            rect class="base" x="0" y=(HEIGHT - 1) width=(width) height="1" {}
            @for (i, hour) in stats.hours.iter().enumerate() {
                @let (ok, failed) = (scale(hour.succeeded), scale(hour.failed));
                @let x = i * (BAR + 1);
                @if ok > 0 {
                    rect class="ok" x=(x) y=(HEIGHT - ok) width=(BAR) height=(ok) {}
                }
                @if failed > 0 {
                    rect class="failed" x=(x) y=(HEIGHT.saturating_sub(ok + failed)) width=(BAR) height=(failed) {}
                }
            }
        }
    }
}

/// A bar chart of attempts per hour, succeeded below and failed above,
/// scaled to the page's width, with its busiest hour and its ends marked,
/// and the same figures as a table for those who cannot see it.
pub(super) fn chart(stats: &DeliveryStats) -> Markup {
    const WIDTH: usize = 720;
    const HEIGHT: u64 = 160;
    let hours = stats.hours.len().max(1);
    let slot = WIDTH as f64 / hours as f64;
    let bar = (slot * 0.8).max(1.0);
    let busiest = busiest(stats);
    let scale = |n: u64| {
        if n == 0 || busiest == 0 {
            0.0
        } else {
            (n as f64 * HEIGHT as f64 / busiest as f64).max(1.0)
        }
    };
    let label = format!(
        "{}; the busiest hour had {busiest}",
        summary(stats, "delivery attempt")
    );
    html! {
        figure class="chart" {
            svg viewBox={ "0 0 " (WIDTH) " " (HEIGHT + 2) } preserveAspectRatio="none" role="img" aria-label=(label) {
                title { (label) }
                rect class="base" x="0" y=(HEIGHT + 1) width=(WIDTH) height="1" {}
                @for (i, hour) in stats.hours.iter().enumerate() {
                    @let (ok, failed) = (scale(hour.succeeded), scale(hour.failed));
                    @let x = i as f64 * slot;
                    @if ok > 0.0 {
                        rect class="ok" x=(format!("{x:.1}")) y=(format!("{:.1}", HEIGHT as f64 - ok)) width=(format!("{bar:.1}")) height=(format!("{ok:.1}")) {}
                    }
                    @if failed > 0.0 {
                        rect class="failed" x=(format!("{x:.1}")) y=(format!("{:.1}", (HEIGHT as f64 - ok - failed).max(0.0))) width=(format!("{bar:.1}")) height=(format!("{failed:.1}")) {}
                    }
                }
            }
            figcaption {
                span { (stats.window_hours) " hours ago" }
                span { "busiest hour: " (busiest) }
                span { "now" }
            }
            details {
                summary { "The figures as a table" }
                table {
                    thead { tr { th scope="col" { "Hour starting" } th scope="col" { "Succeeded" } th scope="col" { "Failed" } } }
                    tbody {
                        @for hour in stats.hours.iter().rev().filter(|h| h.attempts() > 0) {
                            tr {
                                td { (super::pages::when(hour.at)) }
                                td { (hour.succeeded) }
                                td { (hour.failed) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Attempts in the window's busiest hour; 0 without any.
fn busiest(stats: &DeliveryStats) -> u64 {
    stats
        .hours
        .iter()
        .map(HourCount::attempts)
        .max()
        .unwrap_or(0)
}

/// "3 attempts in the last 24 hours, 1 failed", counting them as `noun`s.
fn summary(stats: &DeliveryStats, noun: &str) -> String {
    let attempts = stats.succeeded + stats.failed;
    format!(
        "{attempts} {noun}{} in the last {} hours, {} failed",
        if attempts == 1 { "" } else { "s" },
        stats.window_hours,
        stats.failed
    )
}

/// A success rate for people, or a dash without attempts.
pub(super) fn rate(stats: &DeliveryStats) -> String {
    stats.success_rate.map_or("—".into(), percent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_never_round_up_to_all_delivered() {
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.9999), "99.9%");
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(0.0), "0%");
    }
}
