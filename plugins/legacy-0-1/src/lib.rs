//! Test fixture: a plugin built against version 0.1.0 of the contract, as
//! plugins were before each hook had an interface of its own. It exports
//! all three hooks as functions and imports `hookgate:plugin/host@0.1.0`,
//! so it proves that Hookgate still runs such plugins unchanged.
//!
//! - `decide` denies a `deleted` event, naming its object type, and allows
//!   the rest.
//! - `transform` adds the header `x-contract: 0.1.0`, plus `x-tag` from the
//!   config key `tag` when set, and logs one line.
//! - `judge` allows when the answer has the header `x-allow: yes`, and
//!   otherwise agrees with the host.
#![expect(
    clippy::too_many_arguments,
    reason = "the generated export glue takes an event's fields as flat arguments"
)]

wit_bindgen::generate!({
    path: "../../wit/legacy/plugin-0.1.0.wit",
    world: "plugin",
});

use hookgate::plugin::host::{self, Level};

struct Legacy;

impl Guest for Legacy {
    fn transform(_event: Event, mut request: Outgoing) -> Result<Transformed, Failure> {
        request
            .headers
            .push(("x-contract".to_string(), "0.1.0".to_string()));
        if let Some(tag) = host::config("tag") {
            request.headers.push(("x-tag".to_string(), tag));
        }
        host::log(Level::Info, "0.1.0 plugin transformed a request");
        Ok(Transformed::Send(request))
    }

    fn decide(event: Event) -> Result<Verdict, Failure> {
        Ok(if event.action == "deleted" {
            Verdict::Deny(format!(
                "a 0.1.0 plugin refuses to delete objects of type {}",
                event.object_type
            ))
        } else {
            Verdict::Allow
        })
    }

    fn judge(_event: Event, response: Incoming, expected: Verdict) -> Result<Verdict, Failure> {
        let allow = response
            .headers
            .iter()
            .any(|(name, value)| name == "x-allow" && value == "yes");
        Ok(if allow { Verdict::Allow } else { expected })
    }
}

export!(Legacy);
