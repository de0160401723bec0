//! Test fixture: a plugin that misbehaves on demand, to prove the sandbox
//! holds.
//!
//! Config `mode` picks the misbehaviour, in every export (`forge-headers`
//! only in `transform`, where it sets headers only the host may set). Modes that report
//! something (`snoop`, `echo-config`) do so through the only channel a plugin
//! has: a deny reason from `decide` and `judge`, a skip reason from
//! `transform`. Without a mode, or with one an export does not know, the
//! plugin allows, agrees, or sends the request unchanged.

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::{env, fs};

use hookgate_sdk::{
    Decide, Event, Failure, Incoming, Judge, Level, Outgoing, Transform, Transformed, Verdict,
};
use serde_json::json;

/// Size of the `huge-output` body when config `bytes` is not set: well above
/// any sane cap on a request body.
const DEFAULT_HUGE_OUTPUT_BYTES: usize = 4 * 1024 * 1024;

struct Hostile;

impl Transform for Hostile {
    fn transform(_event: Event, request: Outgoing) -> Result<Transformed, Failure> {
        let mode = mode();
        let body = match mode.as_str() {
            "huge-output" => {
                let bytes = hookgate_sdk::config_parse("bytes", DEFAULT_HUGE_OUTPUT_BYTES)?;
                huge_json_string(bytes)
            }
            "bad-json" => b"not json at all".to_vec(),
            "forge-headers" => {
                let mut headers = request.headers;
                headers.extend(forged_headers());
                return Ok(Transformed::Send(Outgoing { headers, ..request }));
            }
            mode => {
                return Ok(match misbehave(mode)? {
                    Some(report) => Transformed::Skip(report),
                    None => Transformed::Send(request),
                });
            }
        };
        Ok(Transformed::Send(Outgoing { body, ..request }))
    }
}

impl Decide for Hostile {
    fn decide(_event: Event) -> Result<Verdict, Failure> {
        Ok(misbehave(&mode())?.map_or(Verdict::Allow, Verdict::Deny))
    }
}

impl Judge for Hostile {
    fn judge(_event: Event, response: Incoming, expected: Verdict) -> Result<Verdict, Failure> {
        Ok(match mode().as_str() {
            "judge-allow" => Verdict::Allow,
            "judge-deny" => Verdict::deny(format!("plugin overruled HTTP {}", response.status)),
            mode => misbehave(mode)?.map_or(expected, Verdict::Deny),
        })
    }
}

hookgate_sdk::export!(Hostile: Transform, Decide, Judge);

fn mode() -> String {
    hookgate_sdk::config("mode").unwrap_or_default()
}

/// Does what `mode` says, if it is a mode every export shares. Returns a
/// report for the modes that have something to say, `None` for the others.
fn misbehave(mode: &str) -> Result<Option<String>, Failure> {
    match mode {
        "loop" => spin(),
        "memory" => hoard(),
        "recurse" => {
            recurse(0);
            unreachable!("unbounded recursion returned")
        }
        "panic" => panic!("hostile plugin panicked on purpose"),
        "fail" => Err(Failure::new("boom", "hostile plugin failed on purpose")),
        "log-flood" => {
            flood_log();
            Ok(None)
        }
        "snoop" => {
            let report = snoop();
            hookgate_sdk::info!("hostile plugin saw {report}");
            Ok(Some(report))
        }
        "echo-config" => Ok(Some(hookgate_sdk::config_or("echo", "<none>"))),
        "count" => Ok(Some(count_calls().to_string())),
        _ => Ok(None),
    }
}

/// Counts calls in a static. The host runs every call in a fresh instance,
/// so this must always answer 1; anything more means state leaked.
fn count_calls() -> u32 {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    CALLS.fetch_add(1, Ordering::Relaxed) + 1
}

/// Burns fuel, or time, forever.
fn spin() -> ! {
    let mut count = 0_u64;
    loop {
        count = black_box(count.wrapping_add(1));
    }
}

/// Allocates 1 MiB after 1 MiB and writes to every byte, keeping it all, so
/// that the memory is really used and not just reserved.
fn hoard() -> ! {
    const CHUNK: usize = 1024 * 1024;
    let mut chunks = Vec::new();
    loop {
        chunks.push(black_box(vec![0xA5_u8; CHUNK]));
        black_box(&chunks);
    }
}

/// Recurses until the stack runs out. The work after the call keeps it from
/// becoming a loop. Frames are kept small so that the engine's own stack
/// limit is reached before the 1 MiB stack Rust keeps in linear memory.
#[expect(unconditional_recursion, reason = "exhausting the stack is the point")]
fn recurse(depth: u64) -> u64 {
    black_box(recurse(black_box(depth + 1))).wrapping_add(depth)
}

/// 100,000 lines of 10 KiB, about 1 GiB of log: the host must cap it.
fn flood_log() {
    let line = "x".repeat(10 * 1024);
    for _ in 0..100_000 {
        hookgate_sdk::log(Level::Info, &line);
    }
}

/// Headers only the host may set, with forged values: the host must drop
/// every one of them, and keep the plugin's ordinary header.
fn forged_headers() -> Vec<(String, String)> {
    [
        ("hookgate-causation", "evt_forged"),
        ("Host", "forged.example"),
        ("content-length", "1"),
        ("webhook-id", "msg_forged"),
        ("webhook-signature", "v1,forged"),
        ("transfer-encoding", "chunked"),
        ("x-plugin", "kept"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value.to_string()))
    .collect()
}

/// A JSON string of `bytes` bytes, quotes included: `"aaa…a"`.
fn huge_json_string(bytes: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(bytes.max(2));
    body.push(b'"');
    body.resize(bytes.max(2) - 1, b'a');
    body.push(b'"');
    body
}

/// Looks at the outside world and says what it saw, as a JSON object.
fn snoop() -> String {
    let passwd = fs::read_to_string("/etc/passwd").map(|text| format!("{} bytes", text.len()));
    json!({
        "read_file": outcome(passwd),
        "read_dir": outcome(list_dir("/")),
        "read_cwd": outcome(list_dir(".")),
        "home": env::var("HOME").ok(),
        "path": env::var("PATH").ok(),
        "env_count": env::vars_os().count(),
        "args_count": env::args_os().count(),
    })
    .to_string()
}

fn list_dir(path: &str) -> std::io::Result<String> {
    let names = fs::read_dir(path)?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok(names.join(", "))
}

fn outcome(result: std::io::Result<String>) -> String {
    match result {
        Ok(seen) => format!("ok: {seen}"),
        Err(error) => format!("error: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_output_is_a_json_string_of_exactly_the_requested_size() {
        let body = huge_json_string(10);
        assert_eq!(body, br#""aaaaaaaa""#);
        let text: String = serde_json::from_slice(&huge_json_string(1000)).unwrap();
        assert_eq!(text.len(), 998);
    }

    #[test]
    fn huge_output_is_still_json_when_asked_for_too_few_bytes() {
        assert_eq!(huge_json_string(0), br#""""#);
    }

    #[test]
    fn unknown_modes_do_nothing() {
        assert_eq!(misbehave(""), Ok(None));
        assert_eq!(misbehave("sulk"), Ok(None));
    }

    #[test]
    fn fail_mode_fails_with_code_boom() {
        assert_eq!(misbehave("fail").unwrap_err().code, "boom");
    }
}
