//! What one plugin call can see: a locked-down WASI context, the `host`
//! imports, captured stdio and a memory limiter. A fresh [`Sandbox`] backs
//! every call, so nothing leaks from one event to the next.
//!
//! Sockets and HTTP are linked, because the standard libraries of Python and
//! JavaScript guests import them whatever the plugin does, but they reach
//! nothing: every address is refused and every request denied.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::bindings::{self, Level};

/// Longest log line kept from a plugin. Guest input is hostile, so every
/// string it hands the host is clamped before it reaches the log.
const MAX_LOG_LINE: usize = 4 * 1024;
/// Log lines kept per call; the rest are counted and dropped, so a chatty
/// plugin cannot flood the host's log.
const MAX_LOG_LINES: u32 = 100;
/// Log calls after which the plugin is stopped: every call copies its text
/// out of the guest, so an endless stream of them is a denial of service.
const MAX_LOG_CALLS: u32 = 1000;
/// Bytes of stdout and of stderr kept per call.
const MAX_STDIO: usize = 16 * 1024;

/// Per-call store state.
pub(crate) struct Sandbox {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    deny_http: DenyHttp,
    table: ResourceTable,
    config: Arc<BTreeMap<String, String>>,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) stdout: CappedPipe,
    pub(crate) stderr: CappedPipe,
    logs_dropped: u32,
    logs_kept: u32,
}

impl Sandbox {
    pub(crate) fn new(config: Arc<BTreeMap<String, String>>, memory_limit: usize) -> Self {
        let stdout = CappedPipe::default();
        let stderr = CappedPipe::default();
        // The builder's defaults are already closed: no preopened dirs, no
        // env, no args, all socket addresses denied and no name lookups.
        // They are spelled out here because they are the security boundary.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Sandbox {
            wasi,
            http: WasiHttpCtx::new(),
            deny_http: DenyHttp,
            table: ResourceTable::new(),
            config,
            limiter: MemoryLimiter::new(memory_limit),
            stdout,
            stderr,
            logs_dropped: 0,
            logs_kept: 0,
        }
    }

    /// Sends what the plugin printed to the host log, and reports dropped lines.
    pub(crate) fn flush_output(&self) {
        for (stream, pipe) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let text = pipe.text();
            if !text.is_empty() {
                tracing::debug!(target: "hookgate::plugin::guest", stream, "{}", text.trim_end());
            }
        }
        if self.logs_dropped > 0 {
            tracing::warn!(
                target: "hookgate::plugin::guest",
                dropped = self.logs_dropped,
                "plugin logged more than {MAX_LOG_LINES} lines in one call; the rest were dropped"
            );
        }
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Sandbox {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.deny_http,
        }
    }
}

/// `wasi:http/outgoing-handler` for plugins: the guest may build a request,
/// but sending it fails with `HTTP-request-denied`. Plugins reach the
/// network only through the callback's own request, which the host sends.
struct DenyHttp;

impl WasiHttpHooks for DenyHttp {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _io: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        Box::new(std::future::ready(Err(
            wasmtime_wasi_http::Error::HttpRequestDenied,
        )))
    }
}

impl bindings::hookgate::plugin::types::Host for Sandbox {}

impl bindings::hookgate::plugin::host::Host for Sandbox {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        if self.logs_kept >= MAX_LOG_LINES {
            self.logs_dropped += 1;
            if self.logs_kept + self.logs_dropped > MAX_LOG_CALLS {
                wasmtime::bail!(
                    "plugin flooded the log: more than {MAX_LOG_CALLS} lines in one call"
                );
            }
            return Ok(());
        }
        self.logs_kept += 1;
        let message = clamp(&message, MAX_LOG_LINE);
        match level {
            Level::Trace => tracing::trace!(target: "hookgate::plugin::guest", "{message}"),
            Level::Debug => tracing::debug!(target: "hookgate::plugin::guest", "{message}"),
            Level::Info => tracing::info!(target: "hookgate::plugin::guest", "{message}"),
            Level::Warn => tracing::warn!(target: "hookgate::plugin::guest", "{message}"),
            Level::Error => tracing::error!(target: "hookgate::plugin::guest", "{message}"),
        }
        Ok(())
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}

/// Contract 0.1.0's `host` is 0.2.0's, under its old name.
impl bindings::v0_1::hookgate::plugin::host::Host for Sandbox {
    fn log(&mut self, level: bindings::v0_1::Level, message: String) -> wasmtime::Result<()> {
        use bindings::v0_1::Level as Old;
        let level = match level {
            Old::Trace => Level::Trace,
            Old::Debug => Level::Debug,
            Old::Info => Level::Info,
            Old::Warn => Level::Warn,
            Old::Error => Level::Error,
        };
        bindings::hookgate::plugin::host::Host::log(self, level, message)
    }

    fn config(&mut self, key: String) -> Option<String> {
        bindings::hookgate::plugin::host::Host::config(self, key)
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub(crate) fn clamp(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Refuses linear-memory growth past the limit and remembers that it did,
/// so that the guest's resulting abort is reported as a memory limit rather
/// than an anonymous trap.
pub(crate) struct MemoryLimiter {
    limit: usize,
    pub(crate) hit: bool,
}

impl MemoryLimiter {
    fn new(limit: usize) -> Self {
        MemoryLimiter { limit, hit: false }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.limit;
        self.hit |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; 100k is far beyond any real plugin.
        Ok(desired <= 100_000)
    }
}

/// A stdout/stderr sink that keeps the first [`MAX_STDIO`] bytes and
/// silently discards the rest. Discarding rather than failing matters: a
/// guest whose `println!` fails would panic, turning chatty into broken.
#[derive(Clone, Default)]
pub(crate) struct CappedPipe(Arc<Mutex<Vec<u8>>>);

impl CappedPipe {
    /// What the guest wrote, without terminal escape sequences or other
    /// control characters, which have no place in a log or an error text.
    pub(crate) fn text(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        plain(&String::from_utf8_lossy(&buf))
    }
}

/// `text` without ANSI escape sequences (`ESC [ … final`) and control
/// characters other than newline and tab.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // A CSI sequence ends at its first byte in '@'..='~'; a lone
                // ESC takes the next character with it.
                if chars.next() == Some('[') {
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                }
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for CappedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut buf = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        let room = MAX_STDIO.saturating_sub(buf.len());
        buf.extend_from_slice(&data[..data.len().min(room)]);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn colour_codes_and_control_characters_are_removed() {
        assert_eq!(
            plain("\u{1b}[1;31mTypeError\u{1b}[0m: bad\r\n\tat x\u{7}"),
            "TypeError: bad\n\tat x"
        );
        assert_eq!(plain("plain text"), "plain text");
    }
}
