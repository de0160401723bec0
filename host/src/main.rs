//! The `hookgate` binary: parses the command line, sets up tracing and hands
//! over to the library.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use hookgate::app::Application;
use hookgate::cli::{self, CliError, HookName, RunOptions};
use hookgate::config::Config;
use hookgate::plugin::{Compiler, Limits, PluginConfig};
use tracing_subscriber::EnvFilter;

/// Hookgate: a self-hosted callback runtime.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server, with its data in embedded sled.
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Where to keep data [default: ./hookgate-data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// A PostgreSQL URL to share with other nodes, instead of sled in
        /// the data directory (env: HOOKGATE_DATABASE).
        #[arg(long, value_name = "postgres://USER:PASS@HOST:PORT/DB")]
        database: Option<String>,
        /// A TOML file overriding the defaults (see config.default.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Let callback URLs reach loopback and private addresses (local
        /// set-ups and tests); off by default to prevent request forgery.
        #[arg(long)]
        allow_private_targets: bool,
    },
    /// Create or upgrade a PostgreSQL database's schema, and stop. `serve`
    /// does this too at start.
    Migrate {
        /// The database.
        #[arg(long, value_name = "postgres://USER:PASS@HOST:PORT/DB")]
        database: String,
    },
    /// Work with plugins locally, without a server.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Compile the component read from stdin and write it, serialized, to
    /// stdout: what `serve` runs in a worker process to compile a plugin
    /// within its memory and time limits.
    #[command(hide = true)]
    CompileWorker {
        /// The server's plugin limits, as JSON: they build the engine.
        #[arg(long)]
        limits: String,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Print the WIT contract plugins are built against, for bindings
    /// generators: `hookgate plugin wit > plugin.wit`.
    Wit,
    /// Validate a plugin and print its exports, imports and size.
    Check {
        /// The plugin component (.wasm).
        file: PathBuf,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Run one hook of a plugin on an event and print the result as JSON.
    Run {
        /// The plugin component (.wasm).
        file: PathBuf,
        /// The event, as JSON: object_type, action, phase, actor, data (id optional).
        #[arg(long)]
        event: PathBuf,
        /// The hook to call.
        #[arg(long, value_enum, default_value_t = Hook::Decide)]
        hook: Hook,
        /// Plugin configuration, repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        config: Vec<(String, String)>,
        /// The callback's answer for `judge`: {"status", "headers", "body"}.
        #[arg(long)]
        response: Option<PathBuf>,
        /// The status `judge` compares the answer with.
        #[arg(long, default_value_t = 200)]
        expected_status: u16,
        #[command(flatten)]
        limits: LimitArgs,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Hook {
    Transform,
    Decide,
    Judge,
}

/// Sandbox limits; the defaults are the server's.
#[derive(Args)]
struct LimitArgs {
    /// Fuel per call (about one unit per WebAssembly instruction).
    #[arg(long)]
    fuel: Option<u64>,
    /// Wall-clock deadline per call, in milliseconds.
    #[arg(long)]
    deadline_ms: Option<u64>,
    /// Linear memory limit, in MiB.
    #[arg(long)]
    memory_mib: Option<usize>,
}

impl LimitArgs {
    fn limits(&self) -> Limits {
        let mut limits = Limits::default();
        if let Some(fuel) = self.fuel {
            limits.fuel = fuel;
        }
        if let Some(ms) = self.deadline_ms {
            limits.deadline = Duration::from_millis(ms);
        }
        if let Some(mib) = self.memory_mib {
            limits.memory_bytes = mib << 20;
        }
        // One call at a time needs one pool slot, not the server's many.
        limits.max_concurrent_calls = 1;
        limits
    }
}

/// Where `plugin check` and `plugin run` keep what they compiled:
/// `$XDG_CACHE_HOME/hookgate/plugins`, else `~/.cache/hookgate/plugins`.
fn local_cache() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("hookgate").join("plugins"))
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got `{text}`"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Trying a plugin locally, its author wants to see what it printed.
    let default_filter = match cli.command {
        Command::Plugin(_) => "hookgate=info,hookgate::plugin::guest=debug",
        _ => "hookgate=info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let result = match cli.command {
        Command::Serve {
            listen,
            data_dir,
            database,
            config,
            allow_private_targets,
        } => {
            let flags = ServeFlags {
                listen,
                data_dir,
                database,
                allow_private_targets,
            };
            return serve(flags, config).await;
        }
        Command::Migrate { database } => return migrate(&database).await,
        Command::CompileWorker { limits } => return compile_worker(&limits),
        Command::Plugin(PluginCommand::Wit) => {
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::stdout().write_all(hookgate::plugin::WIT.as_bytes());
            return ExitCode::SUCCESS;
        }
        Command::Plugin(PluginCommand::Check { file, limits }) => {
            cli::check(&file, limits.limits(), local_cache()).await
        }
        Command::Plugin(PluginCommand::Run {
            file,
            event,
            hook,
            config,
            response,
            expected_status,
            limits,
        }) => {
            let options = RunOptions {
                hook: match hook {
                    Hook::Transform => HookName::Transform,
                    Hook::Decide => HookName::Decide,
                    Hook::Judge => HookName::Judge,
                },
                event,
                config: config.into_iter().collect::<PluginConfig>(),
                response,
                expected_status,
            };
            cli::run(&file, options, limits.limits(), local_cache()).await
        }
    };
    match result {
        Ok(report) => {
            let report = serde_json::to_string_pretty(&report).expect("JSON serializes");
            let _ = writeln!(std::io::stdout(), "{report}");
            ExitCode::SUCCESS
        }
        Err(CliError::Plugin(err)) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
        Err(CliError::Problems(problems)) => {
            for problem in problems {
                eprintln!("error: {problem}");
            }
            ExitCode::from(1)
        }
        Err(CliError::Input(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// What `serve`'s flags override in the configuration.
struct ServeFlags {
    listen: Option<std::net::SocketAddr>,
    data_dir: Option<PathBuf>,
    database: Option<String>,
    allow_private_targets: bool,
}

async fn migrate(database: &str) -> ExitCode {
    match hookgate::store::PgStore::migrate_only(database).await {
        Ok(version) => {
            println!("the database's schema is at version {version}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

async fn serve(flags: ServeFlags, file: Option<PathBuf>) -> ExitCode {
    let mut config = match Config::load(file.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(listen) = flags.listen {
        config.listen = listen;
    }
    if let Some(dir) = flags.data_dir {
        config.data_dir = dir;
    }
    if flags.database.is_some() {
        config.database = flags.database;
    }
    config.allow_private_targets |= flags.allow_private_targets;
    if let Err(err) = config.validate() {
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    // On Linux, the running image itself, even if an upgrade has replaced
    // the file since: a worker must build the engine this process runs.
    let exe = if cfg!(target_os = "linux") {
        Ok(PathBuf::from("/proc/self/exe"))
    } else {
        std::env::current_exe()
    };
    match exe {
        Ok(exe) => config.compiler = Compiler::Worker(exe),
        Err(err) => {
            eprintln!("error: cannot find this executable to compile plugins with: {err}");
            return ExitCode::from(1);
        }
    }
    let mut shutdown = match shutdown_signal() {
        Ok(shutdown) => Box::pin(shutdown),
        Err(err) => {
            eprintln!("error: cannot listen for SIGTERM and Ctrl-C: {err}");
            return ExitCode::from(1);
        }
    };
    // Starting can wait for PostgreSQL for a while; a node asked to stop
    // meanwhile stops, having accepted nothing.
    let app = tokio::select! {
        built = Application::build(config) => match built {
            Ok(app) => app,
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::from(1);
            }
        },
        () = &mut shutdown => {
            tracing::info!("asked to stop while starting; stopped");
            return ExitCode::SUCCESS;
        }
    };
    tracing::info!("listening on http://{}", app.local_addr());
    match app.run_until_stopped(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

/// Compiles stdin to stdout. On failure stderr says why, and the exit
/// status whose fault it was (see `WorkError`).
fn compile_worker(limits: &str) -> ExitCode {
    let limits: Limits = match serde_json::from_str(limits) {
        Ok(limits) => limits,
        Err(err) => {
            eprintln!("error: invalid --limits: {err}");
            return ExitCode::from(2);
        }
    };
    match hookgate::plugin::compile_worker(&limits, &mut std::io::stdin(), &mut std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(err.exit_code())
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed by this call,
/// not when the future is first polled: a signal that comes once the node
/// has said where it listens, however busy the runtime, must stop it
/// gracefully rather than kill it or be lost.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// Resolves on Ctrl-C, installed by this call as on Unix.
#[cfg(windows)]
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut ctrl_c = tokio::signal::windows::ctrl_c()?;
    Ok(async move {
        ctrl_c.recv().await;
    })
}
