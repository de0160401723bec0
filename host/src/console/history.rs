//! A callback's activation history: filtered by outcome and time, paged
//! both ways, each exchange with its JSON pretty-printed and a copy button,
//! one Retry per delivery, and a replay of a window's failures.

use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use serde::Deserialize;

use super::pages::{link_query, when};
use super::{May, Nav, PageError, User, layout};
use crate::api::state::AppState;
use crate::domain::{input, page_size};
use crate::model::{Activation, ActivationOutcome, Callback, HttpRecord, Phase, Role};
use crate::store::{ActivationQuery, PageFrom};

/// The outcomes the filter offers, by phase.
const AFTER_OUTCOMES: [ActivationOutcome; 4] = [
    ActivationOutcome::Succeeded,
    ActivationOutcome::Failed,
    ActivationOutcome::Blocked,
    ActivationOutcome::Skipped,
];
const BEFORE_OUTCOMES: [ActivationOutcome; 2] = [ActivationOutcome::Allow, ActivationOutcome::Deny];

#[derive(Deserialize)]
pub(super) struct HistoryQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    outcome: Option<String>,
    /// Milliseconds since the epoch, as the page's script sends them.
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    until: Option<String>,
}

pub(super) async fn page(
    User(who): User,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Markup, PageError> {
    who.may(&[Role::Manage, Role::Read], "read history")?;
    let manage = who.role == Role::Manage;
    let callback = state.callbacks.get(&who.tenant_id, &id).await?.callback;
    let outcomes: &[ActivationOutcome] = match callback.phase {
        Phase::After => &AFTER_OUTCOMES,
        Phase::Before => &BEFORE_OUTCOMES,
    };
    let outcome = query
        .outcome
        .as_deref()
        .and_then(|o| outcomes.iter().copied().find(|x| x.as_str() == o));
    let blank = |v: Option<String>| v.filter(|v| !v.is_empty());
    let since = input::instant("since", blank(query.since).as_deref())?;
    let until = input::instant("until", blank(query.until).as_deref())?;
    let selection = ActivationQuery {
        outcome,
        since,
        until,
        from: match (blank(query.cursor), blank(query.after)) {
            (Some(id), _) => PageFrom::Before(id),
            (None, Some(id)) => PageFrom::After(id),
            (None, None) => PageFrom::Newest,
        },
    };
    let newest = selection.from == PageFrom::Newest;
    let filtered = outcome.is_some() || since.is_some() || until.is_some();
    // The times as the page's script reads them: milliseconds.
    let (since, until) = (since.map(|t| t.to_string()), until.map(|t| t.to_string()));
    let page = state
        .callbacks
        .activations(&who.tenant_id, &id, selection, page_size(None))
        .await?;
    // Links keep the filters.
    let filters = [
        ("outcome", outcome.map(ActivationOutcome::as_str)),
        ("since", since.as_deref()),
        ("until", until.as_deref()),
    ];
    let link = |cursor: (&'static str, Option<&str>)| {
        let mut params = filters.to_vec();
        params.push(cursor);
        link_query(&params)
    };
    let mut retried = std::collections::HashSet::new();
    Ok(layout(
        "Activation history",
        Some(Nav {
            role: who.role,
            current: "callbacks",
        }),
        html! {
            p { a href="/console/callbacks" { "← Event callbacks" } }
            h1 { "Activation history: " (callback.name) }
            p class="help" { (callback.phase.as_str()) "-callback on " code { (callback.object_type) } " · " (callback.url.as_deref().unwrap_or("plugin only")) }
            @if !callback.enabled {
                p class="notice" role="note" {
                    "This callback is disabled"
                    @if let Some(reason) = &callback.disabled_reason { " (" (reason) ")" }
                    ": new deliveries are not attempted, but a retry or replay you ask for here is sent."
                }
            }
            (filter_form(outcomes, outcome, since.as_deref(), until.as_deref()))
            p class="error" role="alert" data-page-error {}
            @if page.items.is_empty() {
                p class="empty" { @if filtered { "No activation matches." } @else { "This callback has not run yet." } }
            } @else {
                ol class="activations" {
                    @for a in &page.items {
                        // One Retry per delivery, on its latest attempt here.
                        @let retry = manage && a.delivery_id.as_ref().is_some_and(|d| retried.insert(d.clone()));
                        (activation(a, retry))
                    }
                }
            }
            nav class="pager" aria-label="Pages" {
                @if !newest {
                    a href=(link(("cursor", None))) { "Newest" }
                }
                @if let Some(newer) = &page.prev_cursor {
                    a href=(link(("after", Some(newer)))) { "← Newer" }
                }
                @if let Some(older) = &page.next_cursor {
                    a href=(link(("cursor", Some(older)))) { "Older →" }
                }
            }
            @if manage && callback.phase == Phase::After {
                (replay_form(&callback))
            }
        },
    ))
}

fn filter_form(
    outcomes: &[ActivationOutcome],
    outcome: Option<ActivationOutcome>,
    since: Option<&str>,
    until: Option<&str>,
) -> Markup {
    html! {
        form class="filters-form" method="get" data-time-form {
            div {
                label for="h-outcome" { "Outcome" }
                select id="h-outcome" name="outcome" {
                    option value="" { "Any" }
                    @for o in outcomes {
                        option value=(o.as_str()) selected[outcome == Some(*o)] { (o.as_str()) }
                    }
                }
            }
            div {
                label for="h-since" { "From" }
                input id="h-since" type="datetime-local" data-ms-for="since" data-ms=[since];
                input type="hidden" name="since" value=[since];
            }
            div {
                label for="h-until" { "Until" }
                input id="h-until" type="datetime-local" data-ms-for="until" data-ms=[until];
                input type="hidden" name="until" value=[until];
            }
            div class="buttons" {
                button type="submit" { "Filter" }
                a href="?" { "Clear" }
            }
        }
    }
}

/// Re-sends a window's failed deliveries, each with a fresh round of
/// retries.
fn replay_form(callback: &Callback) -> Markup {
    html! {
        form id="replay-form" class="card" data-time-form data-replay=(callback.id) {
            h2 { "Replay failed deliveries" }
            p class="help" { "Every delivery of this callback that failed between these times is sent again, with a fresh round of retries." }
            div class="grid" {
                div {
                    label for="r-since" { "From" }
                    input id="r-since" type="datetime-local" data-ms-for="since" required;
                    input type="hidden" name="since";
                }
                div {
                    label for="r-until" { "Until" }
                    input id="r-until" type="datetime-local" data-ms-for="until" required;
                    input type="hidden" name="until";
                }
            }
            p class="error" role="alert" data-error-for="" {}
            button type="submit" class="primary" { "Replay" }
            p role="status" data-replay-result {}
        }
    }
}

/// One activation; `retry` offers a Retry of its delivery if it failed.
fn activation(a: &Activation, retry: bool) -> Markup {
    let failed = !matches!(
        a.outcome,
        ActivationOutcome::Succeeded | ActivationOutcome::Allow | ActivationOutcome::Skipped
    );
    // An attempt that failed with another to come is not a failed
    // delivery yet: it is marked apart from one that gave up.
    let state = match a.next_attempt_at {
        Some(_) => "retrying",
        None => a.outcome.as_str(),
    };
    html! {
        li class={ "activation " (state) } data-activation-id=(a.id) {
            details {
                summary {
                    (when(a.at))
                    span class="outcome" { (a.outcome.as_str()) }
                    @if let Some(next) = a.next_attempt_at { span class="retrying" { "next attempt " (when(next)) } }
                    span { "status " (a.status.map_or("—".to_string(), |s| s.to_string())) }
                    span { (format!("{:.1} ms", a.duration_ms)) }
                    @if let Some(n) = a.attempt { span { "attempt " (n) } }
                    @if let Some(error) = &a.error { span class="error-text" { (error) } }
                }
                div class="exchange" {
                    p { "Event " code { (a.event_id) } @if let Some(d) = &a.delivery_id { " · delivery " code { (d) } } }
                    (http_record("Request", a.request.as_ref()))
                    (http_record("Response", a.response.as_ref()))
                }
            }
            @if let (Some(delivery), true) = (&a.delivery_id, failed && retry) {
                button type="button" data-retry=(delivery) { "Retry delivery" }
            }
        }
    }
}

fn http_record(label: &str, record: Option<&HttpRecord>) -> Markup {
    html! {
        section {
            h3 { (label) }
            @match record {
                None => p class="help" { "None." },
                Some(r) => {
                    @if let Some(url) = &r.url { p { "POST " code { (url) } } }
                    @if let Some(status) = r.status { p { "Status " (status) } }
                    pre { @for (k, v) in &r.headers { (k) ": " (v) "\n" } }
                    div class="copyable" {
                        // Copy takes the body exactly as it was sent.
                        pre data-raw=(r.body) {
                            @if r.body.is_empty() { "(empty body)" } @else { (pretty(&r.body)) }
                            @if r.truncated { "\n… (truncated)" }
                        }
                        @if !r.body.is_empty() {
                            button type="button" class="copy" data-copy { "Copy" span class="visually-hidden" { " the " (label.to_lowercase()) " body" } }
                        }
                    }
                }
            }
        }
    }
}

/// A body as people read it: JSON indented, with its keys in their order
/// and its numbers as written; anything else as it came.
fn pretty(body: &str) -> String {
    if serde_json::from_str::<serde::de::IgnoredAny>(body).is_err() {
        return body.to_string();
    }
    let mut out = String::with_capacity(body.len() * 2);
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.next_if(|c| c.is_whitespace()).is_some() {}
                match chars.next_if(|c| matches!(c, '}' | ']')) {
                    Some(close) => out.push(close),
                    None => {
                        depth += 1;
                        newline(&mut out, depth);
                    }
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::pretty;

    #[test]
    fn json_is_indented_with_its_keys_and_numbers_as_sent() {
        let body =
            r#"{"b":1,"a":[1, 2],"big":12345678901234567890,"e":{},"s":"x,\"y\":{ [","f":1.50}"#;
        assert_eq!(
            pretty(body),
            "{\n  \"b\": 1,\n  \"a\": [\n    1,\n    2\n  ],\n  \"big\": 12345678901234567890,\n  \
             \"e\": {},\n  \"s\": \"x,\\\"y\\\":{ [\",\n  \"f\": 1.50\n}"
        );
        assert_eq!(pretty("not json, {"), "not json, {");
    }
}
