//! How a callback fares, drawn for people: a state in words and colour,
//! the share of its deliveries that succeeded over the last day, and a
//! sparkline of their volume, hour by hour.

use maud::{Markup, html};

use crate::domain::callbacks::CallbackView;
use crate::domain::stats::CallbackStats;
use crate::model::{ActivationOutcome, Phase};

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
pub(super) fn cell(view: &CallbackView, stats: Option<&CallbackStats>) -> Markup {
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
fn sparkline(stats: &CallbackStats) -> Markup {
    const BAR: usize = 3;
    const HEIGHT: u64 = 20;
    let busiest = stats
        .hours
        .iter()
        .map(|h| h.succeeded + h.failed)
        .max()
        .unwrap_or(0)
        .max(1);
    let width = stats.hours.len() * (BAR + 1);
    let attempts = stats.succeeded + stats.failed;
    let label = format!(
        "{attempts} attempt{} in the last {} hours, {} failed",
        if attempts == 1 { "" } else { "s" },
        stats.window_hours,
        stats.failed
    );
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
