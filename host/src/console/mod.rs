//! The web console at `/console`: server-rendered pages for a tenant's
//! callbacks, history, plugins, events and subscriptions.
//!
//! Pages only read. Every change is made by the page's script calling the
//! management API with the tenant's key, so the console can do nothing the
//! API cannot, and the API's field errors are shown next to the fields.
//! The key lives in a `SameSite=Strict` cookie that only `/console` sees;
//! the API never reads cookies, so a cross-site request cannot act for the
//! user. Pages are served `no-store` and hold no signing secret, so Back
//! after signing out shows nothing. Each role sees the pages it may use:
//! `manage` everything, `read` callbacks and history, `emit` the page that
//! emits test events. Assets are compiled into the binary.

mod health;
mod history;
mod keys;
mod overview;
mod pages;

use axum::Router;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::api::error::ApiError;
use crate::api::state::AppState;
use crate::domain::Error;
use crate::domain::tenants::Principal;
use crate::model::Role;

/// The cookie holding the signed-in tenant's API key.
const KEY_COOKIE: &str = "hookgate_key";

/// The console's pages and assets. Pages are never stored by the browser:
/// after signing out, Back must not show a tenant's data.
pub fn router() -> Router<AppState> {
    let pages = Router::new()
        .route("/console", get(home))
        .route("/console/sign-in", get(pages::sign_in))
        .route("/console/overview", get(overview::page))
        .route("/console/callbacks", get(pages::callbacks))
        .route("/console/callbacks/{id}/history", get(history::page))
        .route("/console/plugins", get(pages::plugins))
        .route("/console/try", get(pages::try_event))
        .route("/console/subscriptions", get(pages::subscriptions))
        .route("/console/keys", get(keys::page))
        .route("/console/{*unknown}", get(unknown))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    pages.route("/console/assets/{file}", get(asset))
}

/// Where a key starts: the first page its role may see.
async fn home(User(who): User) -> Redirect {
    Redirect::to(match who.role {
        Role::Emit => "/console/try",
        Role::Manage | Role::Read => "/console/overview",
    })
}

/// A console path that names no page: a page saying so, not the API's JSON.
async fn unknown() -> Response {
    let body = layout(
        "Not found",
        None,
        html! {
            h1 { "No such page" }
            p role="alert" { "The console has no page at this address." }
            p { a href="/console" { "Go to the console" } }
        },
    );
    (StatusCode::NOT_FOUND, body).into_response()
}

/// A signed-in console user: the key from the cookie. Without a valid key
/// the page redirects to the sign-in form.
pub(crate) struct User(Principal);

impl FromRequestParts<AppState> for User {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let key = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| pair.trim().strip_prefix(&format!("{KEY_COOKIE}=")))
            .map(str::to_string);
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return Err(Redirect::to("/console/sign-in").into_response());
        };
        match state.tenants.authenticate(&key).await {
            Ok(principal) => Ok(User(principal)),
            Err(_) => Err(Redirect::to("/console/sign-in?expired=1").into_response()),
        }
    }
}

/// The console's view of a signed-in key: what it may see.
trait May {
    /// Passes if the key's role is one of `allowed`.
    fn may(&self, allowed: &[Role], action: &str) -> Result<(), PageError>;
}

impl May for Principal {
    fn may(&self, allowed: &[Role], action: &str) -> Result<(), PageError> {
        if allowed.contains(&self.role) {
            Ok(())
        } else {
            Err(PageError {
                error: ApiError::Forbidden(format!(
                    "a key with role `{}` cannot {action}",
                    self.role.as_str()
                )),
                role: Some(self.role),
            })
        }
    }
}

/// A page that could not be shown, as a page rather than JSON, with the
/// navigation the key's role allows when it is known.
pub(crate) struct PageError {
    error: ApiError,
    role: Option<Role>,
}

impl From<Error> for PageError {
    fn from(err: Error) -> Self {
        PageError {
            error: err.into(),
            role: None,
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let message = match &self.error {
            ApiError::Domain(Error::Internal(_)) => {
                "Hookgate failed to show this page; the details are in its log.".to_string()
            }
            other => other.to_string(),
        };
        let status = self.error.into_response().status();
        let heading = match status {
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::NOT_FOUND => "Not found",
            _ => "Something went wrong",
        };
        let nav = self.role.map(|role| Nav { role, current: "" });
        let body = layout(
            heading,
            nav,
            html! {
                h1 { (heading) }
                p role="alert" { (message) }
                p { a href="/console" { "Back to the console" } }
                @if nav.is_none() {
                    p { button type="button" class="link" data-sign-out { "Sign out" } }
                }
            },
        );
        (status, body).into_response()
    }
}

/// A signed-in page's navigation: the entries `role` may open, with
/// `current` marked.
#[derive(Clone, Copy)]
pub(crate) struct Nav<'a> {
    pub(crate) role: Role,
    pub(crate) current: &'a str,
}

/// The console's pages, and the roles that may open each.
const PAGES: [(&str, &str, &str, &[Role]); 6] = [
    (
        "overview",
        "/console/overview",
        "Overview",
        &[Role::Manage, Role::Read],
    ),
    (
        "callbacks",
        "/console/callbacks",
        "Event callbacks",
        &[Role::Manage, Role::Read],
    ),
    ("plugins", "/console/plugins", "Plugins", &[Role::Manage]),
    (
        "try",
        "/console/try",
        "Try an event",
        &[Role::Manage, Role::Emit],
    ),
    (
        "subscriptions",
        "/console/subscriptions",
        "Subscriptions",
        &[Role::Manage],
    ),
    ("keys", "/console/keys", "API keys", &[Role::Manage]),
];

/// Every page's frame: navigation for a signed-in key, the page's content,
/// and the script.
fn layout(title: &str, nav: Option<Nav<'_>>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Hookgate" }
                link rel="icon" href="/console/assets/favicon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body data-role=[nav.map(|n| n.role.as_str())] {
                a class="skip" href="#main" { "Skip to content" }
                header {
                    span class="brand" { "Hookgate" }
                    @if let Some(Nav { role, current }) = nav {
                        nav aria-label="Console" {
                            ul {
                                @for (id, href, label, roles) in PAGES {
                                    @if roles.contains(&role) {
                                        li {
                                            @if id == current {
                                                a href=(href) aria-current="page" { (label) }
                                            } @else {
                                                a href=(href) { (label) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        button type="button" class="link" data-sign-out { "Sign out" }
                    }
                }
                main id="main" { (content) }
                dialog id="confirm-dialog" aria-labelledby="confirm-title" aria-describedby="confirm-message" {
                    form method="dialog" {
                        h2 id="confirm-title" { "Are you sure?" }
                        p id="confirm-message" data-confirm-message {}
                        div class="buttons" {
                            button value="cancel" { "Cancel" }
                            button value="ok" class="danger" { "Confirm" }
                        }
                    }
                }
            }
        }
    }
}

async fn asset(Path(file): Path<String>) -> Response {
    let (content_type, body) = match file.as_str() {
        "console.css" => ("text/css", include_str!("assets/console.css")),
        "console.js" => ("text/javascript", include_str!("assets/console.js")),
        "favicon.svg" => ("image/svg+xml", include_str!("assets/favicon.svg")),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
