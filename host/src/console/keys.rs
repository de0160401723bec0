//! A tenant's API keys: who may do what. A new key's secret is shown once,
//! when it is made; the list shows only each key's first characters.

use axum::extract::State;
use maud::{Markup, html};

use super::pages::when;
use super::{May, Nav, PageError, User, layout};
use crate::api::state::AppState;
use crate::model::Role;

pub(super) async fn page(
    User(who): User,
    State(state): State<AppState>,
) -> Result<Markup, PageError> {
    who.may(&[Role::Manage], "manage API keys")?;
    let keys = state.tenants.list_keys(&who.tenant_id).await?;
    Ok(layout(
        "API keys",
        Some(Nav {
            role: who.role,
            current: "keys",
        }),
        html! {
            h1 { "API keys" }
            p class="help" {
                "A " strong { "manage" } " key can do everything; an " strong { "emit" } " key sends events and subscribes; a "
                strong { "read" } " key reads callbacks, history and figures."
            }
            form id="key-form" class="card" novalidate {
                h2 { "New key" }
                div class="grid" {
                    div {
                        label for="key-name" { "Name" }
                        input id="key-name" name="name" required placeholder="ci-pipeline" aria-describedby="key-name-help";
                        p id="key-name-help" class="help" { "Say what it is for: changes are recorded under this name." }
                        p class="error" role="alert" data-error-for="name" {}
                    }
                    div {
                        label for="key-role" { "Role" }
                        select id="key-role" name="role" {
                            option value="read" { "read" }
                            option value="emit" { "emit" }
                            option value="manage" { "manage" }
                        }
                        p class="error" role="alert" data-error-for="role" {}
                    }
                }
                p class="error" role="alert" data-error-for="" {}
                button type="submit" class="primary" { "Create key" }
                div id="new-key" class="notice" hidden {
                    p { strong { "Copy this key now: " } "it is shown only this once." }
                    div class="copyable" {
                        pre data-new-key {}
                        button type="button" class="copy" data-copy { "Copy" span class="visually-hidden" { " the new key" } }
                    }
                }
            }
            p class="error" role="alert" data-page-error {}
            table class="cards" {
                caption class="visually-hidden" { "API keys" }
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Key" }
                    th scope="col" { "Created" } th scope="col" { span class="visually-hidden" { "Actions" } }
                } }
                tbody {
                    @for key in &keys {
                        tr data-key-prefix=(key.prefix) {
                            th scope="row" { (key.name) span class="help" data-yours hidden { " (you)" } }
                            td data-label="Role" { (key.role.as_str()) }
                            td data-label="Key" { code { (key.prefix) "…" } }
                            td data-label="Created" { (when(key.created_at)) }
                            td class="actions" {
                                button type="button" class="danger" data-revoke-key=(key.id) data-name=(key.name) {
                                    "Revoke" span class="visually-hidden" { " " (key.name) }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}
