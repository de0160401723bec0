//! The console's pages. Each reads through the same services as the API
//! and renders HTML; forms carry `data-` attributes that the script turns
//! into API calls.

use axum::extract::{Query, State};
use maud::{Markup, html};
use serde::Deserialize;

use super::health;
use super::{May, Nav, PageError, User, layout};
use crate::api::state::AppState;
use crate::domain::callbacks::{CallbackFilter, CallbackView};
use crate::domain::page_size;
use crate::domain::stats::{DeliveryStats, Window};
use crate::model::event::rfc3339;
use crate::model::{
    ActivationOutcome, CallbackInput, Phase, PluginRecord, PluginState, Role, default_actions,
};

type Page = Result<Markup, PageError>;

#[derive(Deserialize)]
pub(super) struct SignInQuery {
    #[serde(default)]
    expired: Option<String>,
}

pub(super) async fn sign_in(Query(query): Query<SignInQuery>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            @if query.expired.is_some() {
                p class="error" role="alert" { "That key is unknown or was revoked. Sign in with another." }
            }
            form id="sign-in" class="card narrow" {
                label for="api-key" { "Tenant API key" }
                input id="api-key" name="key" type="password" autocomplete="off" required
                    aria-describedby="api-key-help";
                p id="api-key-help" class="help" {
                    "The key your administrator gave you, starting with " code { "hg_" } "."
                }
                p class="error" role="alert" data-error-for="key" {}
                button type="submit" { "Sign in" }
            }
        },
    )
}

#[derive(Deserialize)]
pub(super) struct SearchQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    /// `attention`: only the failing and disabled callbacks.
    #[serde(default)]
    show: Option<String>,
}

/// When something happened: UTC to the second in the page, which the
/// script turns into a relative time with the reader's local time on hover.
pub(super) fn when(ms: u64) -> Markup {
    let exact = rfc3339(ms);
    html! { time datetime=(exact) { (exact.get(..19).unwrap_or(&exact).replace('T', " ")) " UTC" } }
}

/// The callbacks the views of those needing attention look through, at
/// most.
pub(super) const ALL_CALLBACKS: usize = 10_000;

/// A link's query string from the parameters that are set.
pub(super) fn link_query(params: &[(&str, Option<&str>)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    format!("?{}", query.finish())
}

pub(super) async fn callbacks(
    User(who): User,
    State(state): State<AppState>,
    Query(query): Query<SearchQuery>,
) -> Page {
    who.may(&[Role::Manage, Role::Read], "see callbacks")?;
    // A read key sees the same list, without the controls that change it.
    let manage = who.role == Role::Manage;
    let q = query.q.filter(|q| !q.trim().is_empty());
    let attention = query.show.as_deref() == Some("attention");
    let filter = CallbackFilter {
        q: q.clone(),
        ..CallbackFilter::default()
    };
    // Those needing attention are few and wanted together: all of them on
    // one page. Otherwise a page at a time.
    let (views, next) = if attention {
        let all = state
            .callbacks
            .list(&who.tenant_id, &filter, None, ALL_CALLBACKS)
            .await?;
        let views: Vec<CallbackView> = all
            .items
            .into_iter()
            .filter(|view| health::State::of(view).needs_attention())
            .collect();
        (views, None)
    } else {
        let page = state
            .callbacks
            .list(
                &who.tenant_id,
                &filter,
                query.cursor.as_deref(),
                page_size(None),
            )
            .await?;
        (page.items, page.next_cursor)
    };
    let mut rows = Vec::with_capacity(views.len());
    for view in &views {
        let stats = match view.callback.phase {
            Phase::After => Some(
                state
                    .callbacks
                    .stats_of(&view.callback, Window::DAY)
                    .await?,
            ),
            Phase::Before => None,
        };
        rows.push(callback_row(view, stats.as_ref(), manage));
    }
    let plugins = state.plugins.list(&who.tenant_id).await?;
    let show_link = |label: &str, attention_only: bool| {
        let href = link_query(&[
            ("show", attention_only.then_some("attention")),
            ("q", q.as_deref()),
        ]);
        html! {
            @if attention == attention_only {
                a href=(href) aria-current="true" { (label) }
            } @else {
                a href=(href) { (label) }
            }
        }
    };
    Ok(layout(
        "Event callbacks",
        Some(Nav {
            role: who.role,
            current: "callbacks",
        }),
        html! {
            div class="title-row" {
                h1 { "Event callbacks" }
                @if manage {
                    button type="button" class="add" data-open-callback aria-label="Add a callback" title="Add a callback" { "+" }
                }
            }
            form class="search" method="get" role="search" {
                label for="q" { "Search by name" }
                input id="q" name="q" type="search" value=[q.as_deref()];
                @if attention { input type="hidden" name="show" value="attention"; }
                button type="submit" { "Search" }
            }
            nav class="filters" aria-label="Show" {
                (show_link("All callbacks", false))
                (show_link("Failing or disabled", true))
            }
            p class="error" role="alert" data-page-error {}
            @if views.is_empty() {
                p class="empty" {
                    @if attention { "Nothing is failing or disabled." }
                    @else if q.is_some() { "No callback matches." }
                    @else if manage { "No callbacks yet. Add one with +." }
                    @else { "No callbacks yet." }
                }
            } @else {
                table class="cards callbacks" {
                    caption class="visually-hidden" { "Callbacks" }
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Listens to" }
                        th scope="col" { "URL" } th scope="col" { "Health, last 24 h" } th scope="col" { "Enabled" }
                        th scope="col" { "Last run" }
                        th scope="col" { span class="visually-hidden" { "Actions" } }
                    } }
                    tbody {
                        @for row in rows { (row) }
                    }
                }
            }
            @if let Some(next) = &next {
                p { a href=(link_query(&[("cursor", Some(next)), ("q", q.as_deref())])) { "More callbacks" } }
            }
            @if manage {
                (callback_dialog(&plugins))
                (secret_dialog(state.config.delivery.secret_overlap_hours))
            }
        },
    ))
}

/// One callback's row; `manage` adds the controls that change it. The
/// edit button carries the callback's writable fields only: a page's HTML
/// never holds a signing secret.
fn callback_row(view: &CallbackView, stats: Option<&DeliveryStats>, manage: bool) -> Markup {
    let c = &view.callback;
    let mut fields = serde_json::to_value(CallbackInput::of(c)).expect("inputs serialize");
    fields["id"] = c.id.clone().into();
    let json = fields.to_string();
    html! {
        tr data-callback-id=(c.id) {
            th scope="row" { (c.name) }
            td data-label="Listens to" { code { (c.object_type) } " · " (c.phase.as_str()) }
            td class="url" data-label="URL" { (c.url.as_deref().unwrap_or("— (plugin decides)")) }
            td class="health" data-label="Health, last 24 h" { (health::cell(view, stats)) }
            td data-label="Enabled" {
                label class="switch" {
                    input type="checkbox" data-toggle=(c.id) checked[c.enabled] disabled[!manage];
                    span class="visually-hidden" { "Enabled: " (c.name) }
                }
            }
            td data-label="Last run" {
                a href={ "/console/callbacks/" (c.id) "/history" } {
                    @match view.last.last_triggered_at {
                        Some(at) => {
                            (when(at)) " · "
                            @let status = view.last.last_status.map_or("", ActivationOutcome::as_str);
                            span class={ "outcome " (status) } { (status) }
                        }
                        None => "Never",
                    }
                }
            }
            td class="actions" {
                @if manage {
                    button type="button" data-edit-callback=(json) { "Edit" span class="visually-hidden" { " " (c.name) } }
                    button type="button" data-secret=(c.id) data-name=(c.name) { "Secret" span class="visually-hidden" { " of " (c.name) } }
                    button type="button" class="danger" data-delete-callback=(c.id) data-name=(c.name) { "Delete" span class="visually-hidden" { " " (c.name) } }
                }
            }
        }
    }
}

/// Shows a callback's signing secret when asked, and rotates it. The
/// page's HTML never holds a secret: the script fetches it.
fn secret_dialog(overlap_hours: u64) -> Markup {
    html! {
        dialog id="secret-dialog" aria-labelledby="secret-title" data-overlap-hours=(overlap_hours) {
            h2 id="secret-title" { "Signing secret" }
            p class="help" {
                "Receivers check each request's " code { "webhook-signature" }
                " header with this secret, as Standard Webhooks describes."
            }
            div class="copyable" {
                pre data-secret {}
                button type="button" class="copy" data-copy hidden { "Copy" span class="visually-hidden" { " the secret" } }
            }
            p role="status" data-secret-note {}
            div class="buttons" {
                button type="button" data-reveal-secret { "Reveal" }
                button type="button" class="danger" data-rotate-secret { "Rotate" }
                button type="button" data-close-secret { "Close" }
            }
        }
    }
}

/// The create/edit dialog. Field names are the API's field paths, so its
/// errors land next to the right input.
fn callback_dialog(plugins: &[PluginRecord]) -> Markup {
    let field_error =
        |field: &str| html! { p class="error" role="alert" data-error-for=(field) {} };
    html! {
        dialog id="callback-dialog" aria-labelledby="callback-dialog-title" {
            form id="callback-form" method="dialog" novalidate {
                h2 id="callback-dialog-title" { "New callback" }
                input type="hidden" name="id";
                div class="grid" {
                    div { label for="cb-name" { "Name" } input id="cb-name" name="name" required; (field_error("name")) }
                    div { label for="cb-object-type" { "Object type" } input id="cb-object-type" name="object_type" required placeholder="app"; (field_error("object_type")) }
                    div {
                        label for="cb-phase" { "Phase" }
                        select id="cb-phase" name="phase" {
                            option value="after" { "After (delivered as a webhook)" }
                            option value="before" { "Before (allow or deny)" }
                        }
                        (field_error("phase"))
                    }
                    fieldset {
                        legend { "Actions" }
                        @for action in default_actions() {
                            label class="inline" { input type="checkbox" name="actions" value=(action) checked; " " (action) }
                        }
                        (field_error("actions"))
                    }
                    div class="wide" { label for="cb-url" { "URL" } input id="cb-url" name="url" type="url" placeholder="https://receiver.example/hook"; (field_error("url")) }
                    div {
                        label for="cb-expected" { "Expected HTTP status" }
                        input id="cb-expected" name="expected_status" type="number" min="100" max="599" placeholder="200" disabled aria-describedby="cb-expected-help";
                        p id="cb-expected-help" class="help" { "Before-callbacks only: the status that allows the event." }
                        (field_error("expected_status"))
                    }
                    div { label for="cb-timeout" { "Timeout (ms)" } input id="cb-timeout" name="timeout_ms" type="number" min="1" placeholder="default"; (field_error("timeout_ms")) }
                    div class="wide" {
                        label for="cb-headers" { "Request headers" }
                        textarea id="cb-headers" name="headers" rows="3" placeholder="x-team: blue" aria-describedby="cb-headers-help" {}
                        p id="cb-headers-help" class="help" { "One per line, as " code { "name: value" } "." }
                        (field_error("headers"))
                    }
                    div {
                        label for="cb-plugin" { "Plugin" }
                        select id="cb-plugin" name="plugin.id" {
                            option value="" { "None" }
                            @for p in plugins { option value=(p.id) { (p.name) " v" (p.version) } }
                        }
                        (field_error("plugin.id"))
                    }
                    div {
                        label for="cb-plugin-config" { "Plugin config (JSON object)" }
                        textarea id="cb-plugin-config" name="plugin.config" rows="3" placeholder="{\"max_rps\": 100}" {}
                        (field_error("plugin.config"))
                    }
                    fieldset class="wide" data-after-only {
                        legend { "Retry policy (after-callbacks)" }
                        div class="grid" {
                            div { label for="cb-retry-attempts" { "Max attempts" } input id="cb-retry-attempts" name="retry.max_attempts" type="number" min="1" max="50" placeholder="default (4)"; (field_error("retry.max_attempts")) }
                            div { label for="cb-retry-schedule" { "Schedule (seconds)" } input id="cb-retry-schedule" name="retry.schedule_secs" placeholder="5, 30, 120"; (field_error("retry.schedule_secs")) }
                        }
                    }
                    div { label class="inline" { input type="checkbox" name="enabled" checked; " Enabled" } }
                }
                p class="error" role="alert" data-error-for="" {}
                div class="buttons" {
                    button type="button" value="cancel" data-close-dialog { "Cancel" }
                    button type="submit" class="primary" { "Save" }
                }
            }
        }
    }
}

pub(super) async fn plugins(User(who): User, State(state): State<AppState>) -> Page {
    who.may(&[Role::Manage], "manage plugins")?;
    let plugins = state.plugins.list(&who.tenant_id).await?;
    let callbacks = state.callbacks.all(&who.tenant_id).await?;
    Ok(layout(
        "Plugins",
        Some(Nav {
            role: who.role,
            current: "plugins",
        }),
        html! {
            h1 { "Plugins" }
            form id="plugin-upload" class="card" {
                h2 { "Upload a plugin" }
                div class="grid" {
                    div { label for="plugin-name" { "Name" } input id="plugin-name" name="name" required; }
                    div { label for="plugin-file" { "Component (.wasm)" } input id="plugin-file" name="file" type="file" accept=".wasm,application/wasm" required; }
                }
                p class="error" role="alert" data-error-for="" {}
                button type="submit" class="primary" { "Upload" }
            }
            p class="error" role="alert" data-page-error {}
            @if plugins.is_empty() {
                p class="empty" { "No plugins yet." }
            } @else {
                table class="cards" {
                    caption class="visually-hidden" { "Plugin versions" }
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Version" } th scope="col" { "State" } th scope="col" { "Exports" } th scope="col" { "Size" } th scope="col" { "Used by" } th scope="col" { "Uploaded" } th scope="col" { span class="visually-hidden" { "Actions" } } } }
                    tbody {
                        @for p in &plugins {
                            tr data-plugin-id=(p.id) {
                                th scope="row" { (p.name) }
                                td data-label="Version" { (p.version) }
                                td data-label="State" data-plugin-state=(plugin_state(p.state)) {
                                    (plugin_state(p.state))
                                    @if let Some(error) = &p.error { ": " (error) }
                                }
                                td data-label="Exports" { (p.exports.join(", ")) }
                                td data-label="Size" title={ (p.size) " bytes" } { (size(p.size)) }
                                td data-label="Used by" {
                                    @let users: Vec<&str> = callbacks.iter()
                                        .filter(|c| c.plugin.as_ref().is_some_and(|r| r.id == p.id))
                                        .map(|c| c.name.as_str()).collect();
                                    @if users.is_empty() { span class="help" { "no callback" } } @else { (users.join(", ")) }
                                }
                                td data-label="Uploaded" { (when(p.created_at)) }
                                td class="actions" { button type="button" class="danger" data-delete-plugin=(p.id) data-name={ (p.name) " v" (p.version) } { "Delete" span class="visually-hidden" { " " (p.name) " v" (p.version) } } }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// A size for people: bytes, KiB or MiB.
fn size(bytes: usize) -> String {
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MiB", bytes as f64 / 1_048_576.0),
    }
}

fn plugin_state(state: PluginState) -> &'static str {
    match state {
        PluginState::Compiling => "compiling",
        PluginState::Ready => "ready",
        PluginState::Failed => "failed",
    }
}

pub(super) async fn try_event(User(who): User) -> Page {
    who.may(&[Role::Manage, Role::Emit], "emit events")?;
    Ok(layout(
        "Try an event",
        Some(Nav {
            role: who.role,
            current: "try",
        }),
        html! {
            h1 { "Try an event" }
            form id="try-form" class="card" {
                div class="grid" {
                    div { label for="ev-object-type" { "Object type" } input id="ev-object-type" name="object_type" required placeholder="app"; p class="error" role="alert" data-error-for="object_type" {} }
                    div {
                        label for="ev-action" { "Action" }
                        input id="ev-action" name="action" list="ev-actions" value="created" required;
                        datalist id="ev-actions" { @for a in default_actions() { option value=(a) {} } }
                        p class="error" role="alert" data-error-for="action" {}
                    }
                    div {
                        label for="ev-phase" { "Phase" }
                        select id="ev-phase" name="phase" { option value="before" { "Before" } option value="after" { "After" } }
                    }
                    div { label for="ev-actor" { "Actor" } input id="ev-actor" name="actor" placeholder="alice"; }
                    div class="wide" {
                        label for="ev-data" { "Data (JSON)" }
                        textarea id="ev-data" name="data" rows="6" { "{\n  \"name\": \"weather\"\n}" }
                        p class="error" role="alert" data-error-for="data" {}
                    }
                }
                p class="error" role="alert" data-error-for="" {}
                button type="submit" class="primary" { "Emit" }
            }
            section id="try-result" aria-live="polite" {}
        },
    ))
}

pub(super) async fn subscriptions(User(who): User, State(state): State<AppState>) -> Page {
    who.may(&[Role::Manage], "manage subscriptions")?;
    let subscriptions = state.subscriptions.list(&who.tenant_id).await?;
    let templates = state.templates.list(&who.tenant_id).await?;
    Ok(layout(
        "Subscriptions",
        Some(Nav {
            role: who.role,
            current: "subscriptions",
        }),
        html! {
            h1 { "Subscriptions and templates" }
            p class="error" role="alert" data-page-error {}
            h2 { "Subscriptions" }
            @if subscriptions.is_empty() {
                p class="empty" { "No subscriptions. Your API creates them with " code { "POST /v1/subscriptions" } "." }
            } @else {
                table class="cards" {
                    caption class="visually-hidden" { "Subscriptions" }
                    thead { tr { th scope="col" { "Template" } th scope="col" { "URL" } th scope="col" { "State" } th scope="col" { "Since" } th scope="col" { span class="visually-hidden" { "Actions" } } } }
                    tbody {
                        @for s in &subscriptions {
                            tr data-subscription-id=(s.id) {
                                th scope="row" { (s.template_name) }
                                td class="url" data-label="URL" { (s.url.as_deref().unwrap_or("")) }
                                td data-label="State" { @if s.enabled { "active" } @else { "stopped: " (s.disabled_reason.as_deref().unwrap_or("disabled")) } }
                                td data-label="Since" { a href={ "/console/callbacks/" (s.callback_id) "/history" } { (when(s.created_at)) } }
                                td class="actions" { button type="button" class="danger" data-unsubscribe=(s.id) data-name=(s.url.as_deref().unwrap_or(&s.id)) { "Unsubscribe" } }
                            }
                        }
                    }
                }
            }
            h2 { "Templates" }
            @if templates.is_empty() {
                p class="empty" { "No templates. Import an OpenAPI document below." }
            } @else {
                table class="cards" {
                    caption class="visually-hidden" { "Templates" }
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Object type" } th scope="col" { "Phase" } th scope="col" { "URL expression" } th scope="col" { span class="visually-hidden" { "Actions" } } } }
                    tbody {
                        @for t in &templates {
                            tr {
                                th scope="row" { (t.spec.name) }
                                td data-label="Object type" { (t.spec.object_type) }
                                td data-label="Phase" { (t.spec.phase.as_str()) }
                                td class="url" data-label="URL expression" { code { (t.spec.url.as_deref().unwrap_or("")) } }
                                td class="actions" { button type="button" class="danger" data-delete-template=(t.id) data-name=(t.spec.name) { "Delete" span class="visually-hidden" { " " (t.spec.name) } } }
                            }
                        }
                    }
                }
            }
            @if !templates.is_empty() {
                form id="subscribe-form" class="card" {
                    h2 { "Subscribe" }
                    p class="help" { "What your API does when a client subscribes: the template's expressions read this request." }
                    div class="grid" {
                        div {
                            label for="sub-template" { "Template" }
                            select id="sub-template" name="template" {
                                @for t in &templates { option value=(t.spec.name) { (t.spec.name) } }
                            }
                            p class="error" role="alert" data-error-for="template" {}
                        }
                        div class="wide" {
                            label for="sub-body" { "Subscribe request body (JSON)" }
                            textarea id="sub-body" name="request.body" rows="3" { "{\"callbackUrl\": \"https://receiver.example/hook\"}" }
                            p class="error" role="alert" data-error-for="request" {}
                        }
                    }
                    p class="error" role="alert" data-error-for="" {}
                    button type="submit" class="primary" { "Subscribe" }
                }
            }
            form id="template-form" class="card" novalidate {
                h2 { "New template" }
                p class="help" { "A callback whose URL and header values may hold runtime expressions, such as " code { "{$request.body#/callbackUrl}" } "." }
                div class="grid" {
                    div { label for="tpl-name" { "Name" } input id="tpl-name" name="name" required; p class="error" role="alert" data-error-for="name" {} }
                    div { label for="tpl-object-type" { "Object type" } input id="tpl-object-type" name="object_type" required placeholder="app"; p class="error" role="alert" data-error-for="object_type" {} }
                    div { label for="tpl-phase" { "Phase" } select id="tpl-phase" name="phase" { option value="after" { "After" } option value="before" { "Before" } } }
                    div class="wide" {
                        label for="tpl-url" { "URL expression" }
                        input id="tpl-url" name="url" required placeholder="{$request.body#/callbackUrl}";
                        p class="error" role="alert" data-error-for="url" {}
                    }
                }
                p class="error" role="alert" data-error-for="" {}
                button type="submit" class="primary" { "Create template" }
            }
            form id="import-form" class="card" {
                h2 { "Import an OpenAPI document" }
                p class="help" { "Every POST under an operation's " code { "callbacks" } " becomes a template. JSON or YAML, OpenAPI 3.0 or 3.1." }
                div class="grid" {
                    div { label for="import-file" { "Document" } input id="import-file" name="file" type="file" accept=".json,.yaml,.yml" required; }
                    div { label for="import-object-type" { "Object type (default: each callback's name)" } input id="import-object-type" name="object_type"; }
                    div { label for="import-phase" { "Phase" } select id="import-phase" name="phase" { option value="after" { "After" } option value="before" { "Before" } } }
                }
                p class="error" role="alert" data-error-for="" {}
                button type="submit" class="primary" { "Import" }
                div id="import-result" aria-live="polite" {}
            }
        },
    ))
}
