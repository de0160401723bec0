//! Configuration: compiled-in defaults (`config.default.toml`), then an
//! optional TOML file, then `HOOKGATE_*` environment variables. Checked at
//! load, with errors that name the offending key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

use crate::plugin::{Compiler, Limits};

/// The documented defaults, also the reference for every key.
pub const DEFAULTS: &str = include_str!("../config.default.toml");

/// Hookgate's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Where sled's database and this node's compiled plugins live.
    pub data_dir: PathBuf,
    /// A PostgreSQL URL: the database several nodes share. Without it, the
    /// node keeps its data in sled under `data_dir`.
    pub database: Option<String>,
    /// The administrator's token; generated on first start when unset.
    pub admin_token: Option<String>,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Grace period for in-flight requests at shutdown, in seconds.
    pub shutdown_grace_secs: u64,
    /// Longest allowed chain of events causing events.
    pub max_event_depth: usize,
    /// Whether callback URLs may reach non-public addresses.
    pub allow_private_targets: bool,
    /// After-event delivery.
    pub delivery: DeliveryConfig,
    /// The before-event gate.
    pub gate: GateConfig,
    /// The plugin sandbox.
    pub plugin: SandboxConfig,
    /// Where plugins compile. Not a setting: `serve` compiles in worker
    /// processes of its own executable, which only it knows.
    #[serde(skip)]
    pub compiler: Compiler,
}

/// Settings of after-event delivery.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Attempts in flight over all callbacks.
    pub concurrency: usize,
    /// Attempts in flight per callback.
    pub per_callback_concurrency: usize,
    /// Default receiver timeout, in milliseconds.
    pub timeout_ms: u64,
    /// Pending deliveries before events are refused with 503.
    pub max_pending: usize,
    /// Default attempts in all.
    pub max_attempts: u32,
    /// Default delays before retries, in seconds.
    pub schedule_secs: Vec<u64>,
    /// Longest Retry-After honoured, in seconds.
    pub max_retry_after_secs: u64,
    /// How long a rotated-out secret keeps signing, in hours.
    pub secret_overlap_hours: u64,
    /// Failed deliveries in a row that disable a callback.
    pub disable_after_failures: u32,
    /// Hours of failing that disable a callback.
    pub disable_after_hours: u64,
    /// Days history is kept.
    pub retention_days: u64,
}

/// Settings of the before-event gate.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateConfig {
    /// Default answer timeout of a before-callback URL, in milliseconds.
    pub timeout_ms: u64,
}

/// Settings of the plugin sandbox; see [`Limits`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// Memory per call, in MiB.
    pub memory_mib: usize,
    /// Fuel per call.
    pub fuel: u64,
    /// Deadline per call, in milliseconds.
    pub deadline_ms: u64,
    /// Bytes in and out of a call.
    pub max_io_bytes: usize,
    /// Component size cap, in bytes.
    pub max_component_bytes: usize,
    /// Concurrent calls.
    pub max_concurrent_calls: u32,
    /// Compiled plugin code kept in memory, in MiB; past it, the least
    /// recently used plugins are dropped and loaded again when next used.
    pub resident_mib: usize,
    /// Memory one compilation may use, in MiB.
    pub compile_memory_mib: usize,
    /// Time one compilation may take, in seconds.
    pub compile_timeout_secs: u64,
}

impl SandboxConfig {
    /// The runtime limits these settings describe.
    pub fn limits(&self) -> Limits {
        Limits {
            memory_bytes: self.memory_mib << 20,
            fuel: self.fuel,
            deadline: Duration::from_millis(self.deadline_ms),
            max_io_bytes: self.max_io_bytes,
            max_component_bytes: self.max_component_bytes,
            max_concurrent_calls: self.max_concurrent_calls,
            compile_memory_bytes: self.compile_memory_mib << 20,
            compile_timeout: Duration::from_secs(self.compile_timeout_secs),
        }
    }
}

/// A setting that could not be loaded, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The sources could not be parsed or merged.
    #[error("invalid configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value parsed but makes no sense.
    #[error("invalid configuration: `{key}` {problem}")]
    Value {
        /// The dotted key.
        key: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl Config {
    /// Loads the defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULTS));
        if let Some(path) = file {
            // `Toml::file` quietly skips a missing file; a file the operator
            // named must exist.
            if !path.is_file() {
                return Err(ConfigError::Value {
                    key: "--config",
                    problem: format!("names {}, which is not a readable file", path.display()),
                });
            }
            figment = figment.merge(Toml::file(path));
        }
        let config: Config = figment
            // HOOKGATE_TEST_* configure the test suite, which runs servers
            // in the same environment.
            .merge(
                Env::prefixed("HOOKGATE_")
                    .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_"))
                    .split("__"),
            )
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// The compiled-in defaults alone, for tests and tools.
    pub fn defaults() -> Self {
        let config: Config = Figment::from(Toml::string(DEFAULTS))
            .extract()
            .expect("the compiled-in defaults parse");
        config
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max_body_bytes", self.max_body_bytes as u64),
            ("max_event_depth", self.max_event_depth as u64),
            ("gate.timeout_ms", self.gate.timeout_ms),
            ("delivery.concurrency", self.delivery.concurrency as u64),
            (
                "delivery.per_callback_concurrency",
                self.delivery.per_callback_concurrency as u64,
            ),
            ("delivery.timeout_ms", self.delivery.timeout_ms),
            ("delivery.max_pending", self.delivery.max_pending as u64),
            (
                "delivery.max_attempts",
                u64::from(self.delivery.max_attempts),
            ),
            (
                "delivery.disable_after_failures",
                u64::from(self.delivery.disable_after_failures),
            ),
            (
                "delivery.disable_after_hours",
                self.delivery.disable_after_hours,
            ),
            ("delivery.retention_days", self.delivery.retention_days),
            ("plugin.memory_mib", self.plugin.memory_mib as u64),
            ("plugin.fuel", self.plugin.fuel),
            ("plugin.deadline_ms", self.plugin.deadline_ms),
            ("plugin.max_io_bytes", self.plugin.max_io_bytes as u64),
            (
                "plugin.max_component_bytes",
                self.plugin.max_component_bytes as u64,
            ),
            (
                "plugin.max_concurrent_calls",
                u64::from(self.plugin.max_concurrent_calls),
            ),
            ("plugin.resident_mib", self.plugin.resident_mib as u64),
            (
                "plugin.compile_memory_mib",
                self.plugin.compile_memory_mib as u64,
            ),
            (
                "plugin.compile_timeout_secs",
                self.plugin.compile_timeout_secs,
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::Value {
                    key,
                    problem: "must be greater than 0".into(),
                });
            }
        }
        if self.plugin.memory_mib > 4096 {
            return Err(ConfigError::Value {
                key: "plugin.memory_mib",
                problem: format!(
                    "is {}, above the 4096 MiB a 32-bit plugin can use",
                    self.plugin.memory_mib
                ),
            });
        }
        if self.plugin.compile_memory_mib < 32 {
            return Err(ConfigError::Value {
                key: "plugin.compile_memory_mib",
                problem: format!(
                    "is {}, below the 32 MiB a compile worker needs before it compiles anything",
                    self.plugin.compile_memory_mib
                ),
            });
        }
        if self.delivery.max_attempts > 1 && self.delivery.schedule_secs.is_empty() {
            return Err(ConfigError::Value {
                key: "delivery.schedule_secs",
                problem: "must list at least one delay when max_attempts is above 1".into(),
            });
        }
        if let Some(url) = &self.database
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Value {
                key: "database",
                problem: "must be a postgres:// (or postgresql://) URL".into(),
            });
        }
        if self.admin_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::Value {
                key: "admin_token",
                problem: "must be at least 16 characters".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_in_defaults_are_valid_and_documented() {
        let config = Config::defaults();
        config.validate().unwrap();
        assert_eq!(config.listen.port(), 8080);
        assert_eq!(config.data_dir, PathBuf::from("./hookgate-data"));
        assert_eq!(config.plugin.limits(), Limits::default());
        assert_eq!(config.max_event_depth, 8);
    }

    #[test]
    fn a_file_overrides_defaults_and_unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "listen = \"127.0.0.1:9999\"\n[plugin]\nfuel = 5\n").unwrap();
        let config = Config::load(Some(&good)).unwrap();
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.plugin.fuel, 5);

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[plugin]\nfuell = 5\n").unwrap();
        let err = Config::load(Some(&bad)).unwrap_err().to_string();
        assert!(err.contains("fuell"), "{err}");

        let zero = dir.path().join("zero.toml");
        std::fs::write(&zero, "[gate]\ntimeout_ms = 0\n").unwrap();
        let err = Config::load(Some(&zero)).unwrap_err().to_string();
        assert!(err.contains("gate.timeout_ms"), "{err}");
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/hookgate.toml"))).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/hookgate.toml"),
            "{err}"
        );
    }
}
