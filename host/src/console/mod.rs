//! The web console at `/console`: server-rendered pages for a tenant's
//! callbacks, history, plugins, events and subscriptions.
//!
//! Pages only read. Every change is made by the page's script calling the
//! management API with the tenant's key, so the console can do nothing the
//! API cannot, and the API's field errors are shown next to the fields.
//! The key lives in a `SameSite=Strict` cookie that only `/console` sees;
//! the API never reads cookies, so a cross-site request cannot act for the
//! user. Assets are compiled into the binary.

mod pages;

use axum::Router;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};

use crate::api::error::ApiError;
use crate::api::state::AppState;
use crate::domain::Error;
use crate::domain::tenants::Principal;
use crate::model::Role;

/// The cookie holding the signed-in tenant's API key.
const KEY_COOKIE: &str = "hookgate_key";

/// The console's pages and assets.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::to("/console/callbacks") }),
        )
        .route("/console/sign-in", get(pages::sign_in))
        .route("/console/callbacks", get(pages::callbacks))
        .route("/console/callbacks/{id}/history", get(pages::history))
        .route("/console/plugins", get(pages::plugins))
        .route("/console/try", get(pages::try_event))
        .route("/console/subscriptions", get(pages::subscriptions))
        .route("/console/assets/{file}", get(asset))
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
            Err(PageError(ApiError::Forbidden(format!(
                "a key with role `{}` cannot {action}",
                self.role.as_str()
            ))))
        }
    }
}

/// A page that could not be shown, as a page rather than JSON.
pub(crate) struct PageError(ApiError);

impl From<Error> for PageError {
    fn from(err: Error) -> Self {
        PageError(err.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let message = match &self.0 {
            ApiError::Domain(Error::Internal(_)) => {
                "Hookgate failed to show this page; the details are in its log.".to_string()
            }
            other => other.to_string(),
        };
        let status = self.0.into_response().status();
        let body = layout(
            "Error",
            None,
            html! {
                h1 { "Something went wrong" }
                p role="alert" { (message) }
                p { a href="/console/callbacks" { "Back to the callbacks" } }
            },
        );
        (status, body).into_response()
    }
}

/// Every page's frame: navigation, the page's content, and the script.
/// `current` marks the navigation entry of the page, if any.
fn layout(title: &str, current: Option<&str>, content: Markup) -> Markup {
    let nav = [
        ("callbacks", "/console/callbacks", "Event callbacks"),
        ("plugins", "/console/plugins", "Plugins"),
        ("try", "/console/try", "Try an event"),
        ("subscriptions", "/console/subscriptions", "Subscriptions"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Hookgate" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header {
                    span class="brand" { "Hookgate" }
                    @if let Some(current) = current {
                        nav aria-label="Console" {
                            ul {
                                @for (id, href, label) in nav {
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
                        button type="button" class="link" data-sign-out { "Sign out" }
                    }
                }
                main id="main" { (content) }
            }
        }
    }
}

async fn asset(Path(file): Path<String>) -> Response {
    let (content_type, body) = match file.as_str() {
        "console.css" => ("text/css", include_str!("assets/console.css")),
        "console.js" => ("text/javascript", include_str!("assets/console.js")),
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
