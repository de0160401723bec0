//! The [`Plugin`] trait and the glue that exports it as the `plugin` world.

use crate::wit;
use crate::{Event, Failure, Incoming, Outgoing, Phase, Transformed, Verdict};

/// A Hookgate plugin: one function per export of the `plugin` world.
///
/// Every function has a default that leaves things as they were, so a plugin
/// implements only what it needs. Each call runs in a fresh sandbox, so there
/// is no `self`: nothing survives from one call to the next.
///
/// Wire the implementing type up with [`export!`](crate::export).
pub trait Plugin {
    /// Shapes the request sent to a callback URL for an after-event: change
    /// its body, add headers, or skip the delivery altogether.
    ///
    /// The default sends `request` unchanged.
    fn transform(event: Event, request: Outgoing) -> Result<Transformed, Failure> {
        let _ = event;
        Ok(Transformed::Send(request))
    }

    /// Answers a before-event locally, with no URL involved.
    ///
    /// The default allows.
    fn decide(event: Event) -> Result<Verdict, Failure> {
        let _ = event;
        Ok(Verdict::Allow)
    }

    /// Interprets a before-callback's HTTP answer. `expected` is the verdict
    /// Hookgate reached from the status code alone; return it to agree, or
    /// another verdict to override it.
    ///
    /// The default agrees with `expected`.
    fn judge(event: Event, response: Incoming, expected: Verdict) -> Result<Verdict, Failure> {
        let _ = (event, response);
        Ok(expected)
    }
}

/// Exports a type implementing [`Plugin`] as the plugin of this component.
///
/// Use it once, at the top level of a `cdylib` crate:
///
/// ```
/// struct Passthrough;
///
/// impl hookgate_sdk::Plugin for Passthrough {}
///
/// hookgate_sdk::export!(Passthrough);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        const _: () = {
            struct Exports;

            impl $crate::wit::Guest for Exports {
                fn transform(
                    event: $crate::wit::Event,
                    request: $crate::wit::Outgoing,
                ) -> ::core::result::Result<$crate::wit::Transformed, $crate::wit::Failure>
                {
                    $crate::__private::transform::<$plugin>(event, request)
                }

                fn decide(
                    event: $crate::wit::Event,
                ) -> ::core::result::Result<$crate::wit::Verdict, $crate::wit::Failure> {
                    $crate::__private::decide::<$plugin>(event)
                }

                fn judge(
                    event: $crate::wit::Event,
                    response: $crate::wit::Incoming,
                    expected: $crate::wit::Verdict,
                ) -> ::core::result::Result<$crate::wit::Verdict, $crate::wit::Failure> {
                    $crate::__private::judge::<$plugin>(event, response, expected)
                }
            }

    $crate::wit::export!(Exports with_types_in $crate::wit);
        };
    };
}

// The conversions below are functions rather than `From` impls so that the
// hidden generated types stay out of the public API.

/// The `transform` export of [`export!`](crate::export).
pub fn transform<P: Plugin>(
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
pub fn decide<P: Plugin>(event: wit::Event) -> Result<wit::Verdict, wit::Failure> {
    P::decide(from_wit_event(event))
        .map(to_wit_verdict)
        .map_err(to_wit_failure)
}

/// The `judge` export of [`export!`](crate::export).
pub fn judge<P: Plugin>(
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
    use wit::hookgate::plugin::types::Phase as WitPhase;

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
