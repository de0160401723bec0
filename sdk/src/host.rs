//! What Hookgate offers a running plugin: its configuration and a log.

use std::fmt::Display;
use std::str::FromStr;

use crate::Failure;
use crate::wit::host;

/// Reads `key` from the plugin configuration of the callback being run, or
/// `None` if the key is not set.
///
/// ```no_run
/// let channel = hookgate_sdk::config("channel");
/// ```
pub fn config(key: &str) -> Option<String> {
    host::config(key)
}

/// Reads `key` from the plugin configuration, or `default` if it is not set.
///
/// ```no_run
/// let field = hookgate_sdk::config_or("field", "language");
/// ```
pub fn config_or(key: &str, default: &str) -> String {
    config(key).unwrap_or_else(|| default.to_owned())
}

/// Reads `key` from the plugin configuration and parses it, ignoring
/// surrounding whitespace, or returns `default` if it is not set.
///
/// Fails with code `bad-config`, naming the key and the value, when the value
/// does not parse.
///
/// ```no_run
/// # fn main() -> Result<(), hookgate_sdk::Failure> {
/// let max_rps: u64 = hookgate_sdk::config_parse("max_rps", 100)?;
/// # Ok(())
/// # }
/// ```
pub fn config_parse<T>(key: &str, default: T) -> Result<T, Failure>
where
    T: FromStr,
    T::Err: Display,
{
    parse(key, config(key), default)
}

fn parse<T>(key: &str, value: Option<String>, default: T) -> Result<T, Failure>
where
    T: FromStr,
    T::Err: Display,
{
    let Some(value) = value else {
        return Ok(default);
    };
    value.trim().parse().map_err(|error| {
        Failure::bad_config(format!(
            "config key {key:?} has value {value:?}, which is not valid: {error}"
        ))
    })
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed diagnostics.
    Trace,
    /// Diagnostics useful while writing a plugin.
    Debug,
    /// Normal operation worth recording.
    Info,
    /// Something unexpected that the plugin worked around.
    Warn,
    /// Something the plugin could not handle.
    Error,
}

/// Writes a line to the host's log, tagged with the plugin and callback.
///
/// Long messages and chatty plugins are truncated by the host. The macros
/// [`trace!`](crate::trace), [`debug!`](crate::debug), [`info!`](crate::info),
/// [`warn!`](crate::warn) and [`error!`](crate::error) are shorter.
///
/// ```no_run
/// hookgate_sdk::log(hookgate_sdk::Level::Info, "starting");
/// ```
pub fn log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => host::Level::Trace,
        Level::Debug => host::Level::Debug,
        Level::Info => host::Level::Info,
        Level::Warn => host::Level::Warn,
        Level::Error => host::Level::Error,
    };
    host::log(level, message);
}

/// Logs a formatted line at [`Level::Trace`].
///
/// ```no_run
/// hookgate_sdk::trace!("body is {} bytes", 42);
/// ```
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => {
        $crate::log($crate::Level::Trace, &::std::format!($($arg)+))
    };
}

/// Logs a formatted line at [`Level::Debug`].
///
/// ```no_run
/// let action = "created";
/// hookgate_sdk::debug!("action is {action}");
/// ```
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log($crate::Level::Debug, &::std::format!($($arg)+))
    };
}

/// Logs a formatted line at [`Level::Info`].
///
/// ```no_run
/// let id = "evt_1";
/// hookgate_sdk::info!("skipped event {id}");
/// ```
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log($crate::Level::Info, &::std::format!($($arg)+))
    };
}

/// Logs a formatted line at [`Level::Warn`].
///
/// ```no_run
/// hookgate_sdk::warn!("no name in the payload, using the event id");
/// ```
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log($crate::Level::Warn, &::std::format!($($arg)+))
    };
}

/// Logs a formatted line at [`Level::Error`].
///
/// ```no_run
/// let status = 502;
/// hookgate_sdk::error!("the callback answered {status}");
/// ```
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log($crate::Level::Error, &::std::format!($($arg)+))
    };
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn config_parse_uses_the_default_when_the_key_is_not_set() {
        assert_eq!(parse("max_rps", None, 100_u64), Ok(100));
    }

    #[test]
    fn config_parse_ignores_surrounding_whitespace() {
        assert_eq!(parse("max_rps", Some(" 250 ".into()), 100_u64), Ok(250));
    }

    #[test]
    fn config_parse_names_the_key_and_the_value_it_could_not_parse() {
        let failure = parse("max_rps", Some("lots".into()), 100_u64).unwrap_err();
        assert_eq!(failure.code, "bad-config");
        assert!(failure.message.contains(r#""max_rps""#), "{failure}");
        assert!(failure.message.contains(r#""lots""#), "{failure}");
    }
}
