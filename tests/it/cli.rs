//! `hookgate plugin check` and `hookgate plugin run`, as a user runs them.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::fixtures;

fn hookgate(args: &[&str]) -> Output {
    let cache = tempfile::tempdir().unwrap();
    hookgate_cached(args, cache.path())
}

/// Runs the CLI with its compile cache in `cache`.
fn hookgate_cached(args: &[&str], cache: &Path) -> Output {
    Command::new(fixtures::hookgate_bin())
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .output()
        .expect("hookgate runs")
}

fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "hookgate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn write_json(dir: &Path, name: &str, value: Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

fn plugin(name: &str) -> String {
    fixtures::plugin_path(name).to_str().unwrap().to_string()
}

#[test]
fn plugin_check_prints_exports_imports_and_size() {
    let report = stdout_json(&hookgate(&["plugin", "check", &plugin("redact")]));
    assert_eq!(report["exports"], json!(["transform"]));
    assert!(report["size"].as_u64().unwrap() > 1000);
    assert_eq!(report["sha256"].as_str().unwrap().len(), 64);
    let imports = report["imports"].as_array().unwrap();
    assert!(
        imports.iter().any(|i| i == "hookgate:plugin/host@0.2.0"),
        "{imports:?}"
    );
}

#[test]
fn plugin_check_of_a_core_module_fails_with_a_build_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("core.wasm");
    std::fs::write(&path, wat::parse_str("(module)").unwrap()).unwrap();
    let out = hookgate(&["plugin", "check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a component") && stderr.contains("wasm32-wasip2"),
        "{stderr}"
    );
}

#[test]
fn plugin_run_decide_prints_the_verdict_duration_and_fuel() {
    let dir = tempfile::tempdir().unwrap();
    let event = write_json(
        dir.path(),
        "event.json",
        json!({"object_type": "policy", "action": "created", "phase": "before",
               "data": {"rules": [{"name": "burst", "rps": 500}]}}),
    );
    let report = stdout_json(&hookgate(&[
        "plugin",
        "run",
        &plugin("rate-policy"),
        "--event",
        &event,
        "--hook",
        "decide",
    ]));
    assert_eq!(report["hook"], "decide");
    assert_eq!(report["result"]["verdict"], "deny");
    assert!(
        report["result"]["reason"]
            .as_str()
            .unwrap()
            .contains("burst")
    );
    assert!(report["fuel_used"].as_u64().unwrap() > 0);
    assert!(report["duration_us"].as_u64().is_some());
    assert!(
        report["event_id"].as_str().unwrap().starts_with("evt_"),
        "an id is filled in"
    );

    let relaxed = stdout_json(&hookgate(&[
        "plugin",
        "run",
        &plugin("rate-policy"),
        "--event",
        &event,
        "--config",
        "max_rps=1000",
    ]));
    assert_eq!(relaxed["result"], json!({"verdict": "allow"}));
}

#[test]
fn plugin_run_transform_shows_the_new_body() {
    let dir = tempfile::tempdir().unwrap();
    let event = write_json(
        dir.path(),
        "event.json",
        json!({"id": "evt_fixed", "object_type": "app", "action": "created", "phase": "after",
               "actor": "alice", "data": {"name": "weather-app"}}),
    );
    let report = stdout_json(&hookgate(&[
        "plugin",
        "run",
        &plugin("slack-format"),
        "--event",
        &event,
        "--hook",
        "transform",
    ]));
    assert_eq!(report["event_id"], "evt_fixed");
    assert_eq!(
        report["result"]["send"]["body"],
        json!({"text": "app \"weather-app\" was created by alice"})
    );
}

#[test]
fn plugin_run_judge_reads_the_response_file() {
    let dir = tempfile::tempdir().unwrap();
    let event = write_json(
        dir.path(),
        "event.json",
        json!({"object_type": "app", "action": "updated", "phase": "before", "data": {}}),
    );
    let response = write_json(
        dir.path(),
        "response.json",
        json!({"status": 503, "body": "down"}),
    );
    let report = stdout_json(&hookgate(&[
        "plugin",
        "run",
        &plugin("hostile"),
        "--event",
        &event,
        "--hook",
        "judge",
        "--response",
        &response,
    ]));
    // Without a mode, hostile's judge agrees with the host.
    assert_eq!(report["result"]["verdict"], "deny");
    assert!(report["result"]["reason"].as_str().unwrap().contains("503"));
}

#[test]
fn plugin_run_of_a_hook_the_plugin_lacks_names_what_it_exports() {
    let dir = tempfile::tempdir().unwrap();
    let event = write_json(
        dir.path(),
        "event.json",
        json!({"object_type": "app", "action": "updated", "phase": "before", "data": {}}),
    );
    let out = hookgate(&["plugin", "run", &plugin("redact"), "--event", &event]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not export the `decide` hook; it exports transform"),
        "{stderr}"
    );
}

#[test]
fn plugin_run_exits_nonzero_with_the_error_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let event = write_json(
        dir.path(),
        "event.json",
        json!({"object_type": "app", "action": "created", "phase": "before", "data": {}}),
    );
    let out = hookgate(&[
        "plugin",
        "run",
        &plugin("hostile"),
        "--event",
        &event,
        "--config",
        "mode=loop",
        "--fuel",
        "1000000",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ran out of fuel after 1000000 units"),
        "{stderr}"
    );
}

#[test]
fn plugin_run_with_a_malformed_event_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let event = write_json(dir.path(), "event.json", json!({"object_type": "app"}));
    let out = hookgate(&["plugin", "run", &plugin("redact"), "--event", &event]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("event.json") && stderr.contains("missing field"),
        "{stderr}"
    );
}

#[test]
fn plugin_wit_prints_the_contract_the_host_was_built_against() {
    let out = hookgate(&["plugin", "wit"]);
    assert!(out.status.success());
    let wit =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit/plugin.wit"))
            .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), wit);
}

#[test]
fn plugin_check_reports_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.wasm");
    let component = wat::parse_str(
        r#"(component
            (import "acme:db/query@1.0.0" (instance))
            (import "wasi:keyvalue/store@0.2.0" (instance)))"#,
    )
    .unwrap();
    std::fs::write(&path, component).unwrap();
    let out = hookgate(&["plugin", "check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 3, "two imports and no hook: {stderr}");
    assert!(errors[0].contains("acme:db/query@1.0.0"), "{stderr}");
    assert!(errors[1].contains("wasi:keyvalue/store@0.2.0"), "{stderr}");
    assert!(errors[2].contains("exports no hook"), "{stderr}");
}

#[test]
fn plugin_check_names_a_memory_limit_below_what_the_plugin_starts_with() {
    let out = hookgate(&[
        "plugin",
        "check",
        "--memory-mib",
        "1",
        &plugin("rate-policy"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bytes of memory to start, over its memory limit of 1048576 bytes"),
        "{stderr}"
    );
}

#[test]
fn plugin_run_and_check_compile_a_plugin_once_into_the_local_cache() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let event = write_json(
        dir.path(),
        "event.json",
        json!({"object_type": "app", "action": "created", "phase": "before", "data": {}}),
    );
    let path = plugin("rate-policy");
    let first = stdout_json(&hookgate_cached(
        &["plugin", "run", &path, "--event", &event],
        cache.path(),
    ));
    assert_eq!(first["compiled"], true);
    let again = stdout_json(&hookgate_cached(
        &["plugin", "run", &path, "--event", &event],
        cache.path(),
    ));
    assert_eq!(
        again["compiled"], false,
        "the second run loads from the cache"
    );
    let checked = stdout_json(&hookgate_cached(&["plugin", "check", &path], cache.path()));
    assert_eq!(checked["compiled"], false);
    assert!(cache.path().join("hookgate/plugins").is_dir());
}
