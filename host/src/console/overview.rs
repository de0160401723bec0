//! The overview: a tenant's deliveries over the last day or week at a
//! glance, and the callbacks that need attention. Where managers and
//! readers land after signing in.

use axum::extract::{Query, State};
use maud::{Markup, html};
use serde::Deserialize;

use super::health::{self, State as Health};
use super::pages::ALL_CALLBACKS;
use super::{May, Nav, PageError, User, layout};
use crate::api::state::AppState;
use crate::domain::callbacks::CallbackFilter;
use crate::domain::stats::Window;
use crate::model::Role;

#[derive(Deserialize)]
pub(super) struct OverviewQuery {
    /// `7d` for the last week; the last day otherwise.
    #[serde(default)]
    window: Option<String>,
}

pub(super) async fn page(
    User(who): User,
    State(state): State<AppState>,
    Query(query): Query<OverviewQuery>,
) -> Result<Markup, PageError> {
    who.may(&[Role::Manage, Role::Read], "see the overview")?;
    let week = query.window.as_deref() == Some("7d");
    let window = if week { Window::WEEK } else { Window::DAY };
    let stats = state.callbacks.tenant_stats(&who.tenant_id, window).await?;
    let callbacks = state
        .callbacks
        .list(
            &who.tenant_id,
            &CallbackFilter::default(),
            None,
            ALL_CALLBACKS,
        )
        .await?
        .items;
    let attention: Vec<_> = callbacks
        .iter()
        .filter(|view| Health::of(view).needs_attention())
        .collect();
    let failing = attention
        .iter()
        .filter(|view| Health::of(view) == Health::Failing)
        .count();
    let window_link = |label: &str, this_week: bool| {
        let href = if this_week { "?window=7d" } else { "?" };
        html! {
            @if week == this_week { a href=(href) aria-current="true" { (label) } }
            @else { a href=(href) { (label) } }
        }
    };
    Ok(layout(
        "Overview",
        Some(Nav {
            role: who.role,
            current: "overview",
        }),
        html! {
            h1 { "Overview" }
            nav class="filters" aria-label="Window" {
                (window_link("Last 24 hours", false))
                (window_link("Last 7 days", true))
            }
            div class="figures" {
                div class="figure" { span class="value" { (stats.succeeded + stats.failed) } span class="name" { "delivery attempts" } }
                div class="figure" { span class="value" { (health::rate(&stats)) } span class="name" { "succeeded" } }
                div class="figure" { span class="value" { (stats.failed) } span class="name" { "failed" } }
                div class="figure" {
                    span class="value" { (callbacks.len()) }
                    span class="name" {
                        "callbacks"
                        @if !attention.is_empty() {
                            ", " a href="/console/callbacks?show=attention" { (failing) " failing, " (attention.len() - failing) " disabled" }
                        }
                    }
                }
            }
            (health::chart(&stats))
            h2 { "Needs attention" }
            @if attention.is_empty() {
                p class="empty" { "Nothing is failing or disabled." }
            } @else {
                ul class="attention" {
                    @for view in &attention {
                        li {
                            a href={ "/console/callbacks/" (view.callback.id) "/history" } { (view.callback.name) }
                            " "
                            (health::cell(view, None))
                        }
                    }
                }
            }
        },
    ))
}
