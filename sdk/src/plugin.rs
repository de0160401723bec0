//! One trait per hook, and the glue that exports a plugin's hooks, each as
//! the interface of its own world.

use crate::wit;
use crate::{Event, Failure, Incoming, Outgoing, Phase, Transformed, Verdict};

// Each call runs in a fresh sandbox, so the hooks take no `self`: nothing
// survives from one call to the next.

/// The `transform` hook: shapes the request sent to a callback URL, for
/// after-events and for before-callbacks that have a URL.
pub trait Transform {
    /// Changes the request's body, adds headers, or skips the delivery
    /// altogether.
    fn transform(event: Event, request: Outgoing) -> Result<Transformed, Failure>;
}

/// The `decide` hook: answers a before-event locally, with no URL involved.
/// It runs first for a before-callback, and a deny ends the callback there.
pub trait Decide {
    /// Allows or denies the change the event describes.
    fn decide(event: Event) -> Result<Verdict, Failure>;
}

/// The `judge` hook: interprets a before-callback's HTTP answer.
pub trait Judge {
    /// `expected` is the verdict Hookgate reached from the status code
    /// alone; return it to agree, or another verdict to override it.
    fn judge(event: Event, response: Incoming, expected: Verdict) -> Result<Verdict, Failure>;
}

/// Exports a type's hooks as this component's plugin: name the type, then
/// the traits it implements, each of which becomes an export.
///
/// Use it once, at the top level of a `cdylib` crate:
///
/// ```
/// use hookgate_sdk::{Event, Failure, Outgoing, Transform, Transformed};
///
/// struct Passthrough;
///
/// impl Transform for Passthrough {
///     fn transform(_event: Event, request: Outgoing) -> Result<Transformed, Failure> {
///         Ok(Transformed::Send(request))
///     }
/// }
///
/// hookgate_sdk::export!(Passthrough: Transform);
/// # fn main() {}
/// ```
///
/// A type implementing several hooks lists them all, as in
/// `export!(Policy: Decide, Transform)`.
#[macro_export]
macro_rules! export {
    ($plugin:ty: $($hook:ident),+ $(,)?) => {
        $($crate::__export_hook!($hook $plugin);)+
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_hook {
    (Transform $plugin:ty) => {
        const _: () = {
            struct Exports;

            impl $crate::wit::transform::exports::hookgate::plugin::transform::Guest for Exports {
                fn transform(
                    event: $crate::wit::Event,
                    request: $crate::wit::Outgoing,
                ) -> ::core::result::Result<$crate::wit::Transformed, $crate::wit::Failure>
                {
                    $crate::__private::transform::<$plugin>(event, request)
                }
            }

    $crate::wit::transform::export!(Exports with_types_in $crate::wit::transform);
        };
    };
    (Decide $plugin:ty) => {
        const _: () = {
            struct Exports;

            impl $crate::wit::decide::exports::hookgate::plugin::decide::Guest for Exports {
                fn decide(
                    event: $crate::wit::Event,
                ) -> ::core::result::Result<$crate::wit::Verdict, $crate::wit::Failure> {
                    $crate::__private::decide::<$plugin>(event)
                }
            }

    $crate::wit::decide::export!(Exports with_types_in $crate::wit::decide);
        };
    };
    (Judge $plugin:ty) => {
        const _: () = {
            struct Exports;

            impl $crate::wit::judge::exports::hookgate::plugin::judge::Guest for Exports {
                fn judge(
                    event: $crate::wit::Event,
                    response: $crate::wit::Incoming,
                    expected: $crate::wit::Verdict,
                ) -> ::core::result::Result<$crate::wit::Verdict, $crate::wit::Failure> {
                    $crate::__private::judge::<$plugin>(event, response, expected)
                }
            }

    $crate::wit::judge::export!(Exports with_types_in $crate::wit::judge);
        };
    };
    ($other:ident $plugin:ty) => {
        ::core::compile_error!(::core::concat!(
            "`",
            ::core::stringify!($other),
            "` is not a hook: export Transform, Decide or Judge"
        ));
    };
}

// The conversions below are functions rather than `From` impls so that the
// hidden generated types stay out of the public API.

/// The `transform` export of [`export!`](crate::export).
pub fn transform<P: Transform>(
    event: wit::Event,
    request: wit::Outgoing,
) -> Result<wit::Transformed, wit::Failure> {
    let request = Outgoing {
        headers: request.headers,
        body: request.body,
    };
    match P::transform(from_wit_event(event), request) {
        Ok(Transformed::Send(request)) => Ok(wit::Transformed::Send(wit::Outgoing {
            headers: request.headers,
            body: request.body,
        })),
        Ok(Transformed::Skip(reason)) => Ok(wit::Transformed::Skip(reason)),
        Err(failure) => Err(to_wit_failure(failure)),
    }
}

/// The `decide` export of [`export!`](crate::export).
pub fn decide<P: Decide>(event: wit::Event) -> Result<wit::Verdict, wit::Failure> {
    P::decide(from_wit_event(event))
        .map(to_wit_verdict)
        .map_err(to_wit_failure)
}

/// The `judge` export of [`export!`](crate::export).
pub fn judge<P: Judge>(
    event: wit::Event,
    response: wit::Incoming,
    expected: wit::Verdict,
) -> Result<wit::Verdict, wit::Failure> {
    let response = Incoming {
        status: response.status,
        headers: response.headers,
        body: response.body,
    };
    let expected = match expected {
        wit::Verdict::Allow => Verdict::Allow,
        wit::Verdict::Deny(reason) => Verdict::Deny(reason),
    };
    P::judge(from_wit_event(event), response, expected)
        .map(to_wit_verdict)
        .map_err(to_wit_failure)
}

fn from_wit_event(event: wit::Event) -> Event {
    use wit::Phase as WitPhase;

    Event {
        id: event.id,
        object_type: event.object_type,
        action: event.action,
        phase: match event.phase {
            WitPhase::Before => Phase::Before,
            WitPhase::After => Phase::After,
        },
        actor: event.actor,
        timestamp_ms: event.timestamp_ms,
        data: event.data,
    }
}

fn to_wit_verdict(verdict: Verdict) -> wit::Verdict {
    match verdict {
        Verdict::Allow => wit::Verdict::Allow,
        Verdict::Deny(reason) => wit::Verdict::Deny(reason),
    }
}

fn to_wit_failure(failure: Failure) -> wit::Failure {
    wit::Failure {
        code: failure.code,
        message: failure.message,
    }
}
