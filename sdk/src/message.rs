//! What a plugin is given: the event, and the HTTP messages around it.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Failure;

/// When an event is emitted relative to the change it describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Before the change: the host system waits for an allow or a deny.
    Before,
    /// After the change: the event is delivered to receivers as a webhook.
    After,
}

/// Something that happened, or is about to happen, in the host system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Unique id of the event, stable across every delivery attempt, so that
    /// a plugin or receiver can deduplicate on it.
    pub id: String,
    /// The kind of object concerned, for example `app`, `api`,
    /// `access-token`, `developer`, `plan` or `system-config`.
    pub object_type: String,
    /// What happened to it: `created`, `updated`, `deleted`, or a
    /// tenant-defined action.
    pub action: String,
    /// Whether this is a before-event or an after-event.
    pub phase: Phase,
    /// Who caused the event, if the host system said.
    pub actor: Option<String>,
    /// When the event was emitted, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The object itself, as JSON text. See [`Event::data`] and
    /// [`Event::json`].
    pub data: String,
}

impl Event {
    /// Parses [`data`](Event::data) into `T`.
    ///
    /// Fails with code `bad-data` and the parser's explanation when the object
    /// does not have the shape of `T`.
    ///
    /// ```
    /// # use hookgate_sdk::{Event, Failure, Phase};
    /// #[derive(serde::Deserialize)]
    /// struct App {
    ///     name: String,
    /// }
    ///
    /// # fn main() -> Result<(), Failure> {
    /// # let event = Event {
    /// #     id: "evt_1".into(),
    /// #     object_type: "app".into(),
    /// #     action: "created".into(),
    /// #     phase: Phase::After,
    /// #     actor: None,
    /// #     timestamp_ms: 0,
    /// #     data: r#"{"name":"weather-app"}"#.into(),
    /// # };
    /// let app: App = event.data()?;
    /// assert_eq!(app.name, "weather-app");
    /// # Ok(())
    /// # }
    /// ```
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        from_json(self.data.as_bytes(), "the event data")
    }

    /// Parses [`data`](Event::data) as untyped JSON.
    ///
    /// Fails with code `bad-data` when it is not JSON.
    pub fn json(&self) -> Result<serde_json::Value, Failure> {
        self.data()
    }
}

/// A request Hookgate is about to POST to a callback URL.
///
/// Its body is the JSON envelope
/// `{"type", "timestamp", "event_id", "object_type", "action", "phase", "actor", "data"}`,
/// where `data` is the object of the event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outgoing {
    /// Headers the plugin adds or replaces. Hookgate sets the signature,
    /// `webhook-*`, `content-length` and causation headers itself after the
    /// transform, so values given here for them are ignored.
    pub headers: Vec<(String, String)>,
    /// The request body. Unless a `content-type` header says otherwise, it
    /// must be JSON.
    pub body: Vec<u8>,
}

impl Outgoing {
    /// Parses the body into `T`.
    ///
    /// Fails with code `bad-data` when the body does not have the shape of
    /// `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        from_json(&self.body, "the request body")
    }

    /// Replaces the body with `value` serialised as JSON.
    ///
    /// Fails with code `bad-data` when `value` cannot be represented as JSON,
    /// such as a map whose keys are not strings.
    ///
    /// ```
    /// # use hookgate_sdk::{Failure, Outgoing};
    /// # fn main() -> Result<(), Failure> {
    /// let mut request = Outgoing::default();
    /// request.set_json(&serde_json::json!({ "text": "hello" }))?;
    /// assert_eq!(request.body, br#"{"text":"hello"}"#);
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Failure> {
        self.body = serde_json::to_vec(value).map_err(|error| {
            Failure::bad_data(format!(
                "the request body cannot be written as JSON: {error}"
            ))
        })?;
        Ok(())
    }

    /// The value of the first header called `name`, compared without regard
    /// to case.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Sets header `name` to `value`, removing every header of that name,
    /// compared without regard to case, that was there before.
    ///
    /// ```
    /// # use hookgate_sdk::Outgoing;
    /// let mut request = Outgoing::default();
    /// request.set_header("Content-Type", "text/plain");
    /// request.set_header("content-type", "application/json");
    /// assert_eq!(request.header("CONTENT-TYPE"), Some("application/json"));
    /// assert_eq!(request.headers.len(), 1);
    /// ```
    pub fn set_header(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        self.headers
            .retain(|(existing, _)| !existing.eq_ignore_ascii_case(&name));
        self.headers.push((name, value.into()));
    }
}

/// The answer a callback URL gave to a before-event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The HTTP status code.
    pub status: u16,
    /// The response headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The response body, possibly truncated by the host's size cap.
    pub body: Vec<u8>,
}

impl Incoming {
    /// Parses the body into `T`.
    ///
    /// Fails with code `bad-data` when the body does not have the shape of
    /// `T`, which includes a body cut short by the host's size cap.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        from_json(&self.body, "the response body")
    }

    /// The value of the first header called `name`, compared without regard
    /// to case.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

fn from_json<T: DeserializeOwned>(json: &[u8], what: &str) -> Result<T, Failure> {
    serde_json::from_slice(json)
        .map_err(|error| Failure::bad_data(format!("{what} is not the expected JSON: {error}")))
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(existing, _)| existing.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}
