//! The example plugins and the hostile fixtures, run through the real
//! runtime exactly as the server will run them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hookgate::model::{Event, Phase, Verdict};
use hookgate::plugin::{
    Compiler, Incoming, Limits, Outgoing, Plugin, PluginConfig, PluginError, Runtime, Transformed,
};
use serde_json::{Value, json};

use crate::fixtures;

fn runtime() -> Runtime {
    Runtime::new(
        Limits {
            max_concurrent_calls: 16,
            ..Limits::default()
        },
        None,
    )
    .expect("runtime starts")
}

async fn load(runtime: &Runtime, name: &str) -> Plugin {
    runtime
        .compile(fixtures::plugin(name))
        .await
        .unwrap_or_else(|e| panic!("{name} compiles: {e}"))
        .plugin
}

fn config(pairs: &[(&str, &str)]) -> Arc<PluginConfig> {
    Arc::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    )
}

fn event(object_type: &str, data: Value) -> Event {
    Event {
        id: "evt_test".into(),
        object_type: object_type.into(),
        action: "created".into(),
        phase: Phase::After,
        actor: Some("alice".into()),
        timestamp_ms: 1_700_000_000_000,
        data,
    }
}

fn request(event: &Event) -> Outgoing {
    Outgoing {
        headers: vec![("content-type".into(), "application/json".into())],
        body: event.envelope(),
    }
}

/// Runs `transform` and returns the JSON body sent on, failing on a skip.
async fn transformed_body(
    runtime: &Runtime,
    plugin: &Plugin,
    cfg: Arc<PluginConfig>,
    event: &Event,
) -> Value {
    let out = runtime
        .transform(plugin, cfg, event, request(event))
        .await
        .expect("transform succeeds");
    match out.value {
        Transformed::Send(req) => serde_json::from_slice(&req.body).expect("JSON body"),
        Transformed::Skip(reason) => panic!("unexpected skip: {reason}"),
    }
}

#[tokio::test]
async fn rate_policy_denies_a_rule_above_the_limit_and_names_it() {
    let rt = runtime();
    let plugin = load(&rt, "rate-policy").await;
    let policy = event(
        "policy",
        json!({"rules": [{"name": "steady", "rps": 50}, {"name": "burst", "rps": 500}]}),
    );
    let out = rt.decide(&plugin, config(&[]), &policy).await.unwrap();
    let Verdict::Deny(reason) = out.value else {
        panic!("expected a deny, got {:?}", out.value)
    };
    assert!(
        reason.contains("burst") && reason.contains("500") && reason.contains("100"),
        "{reason}"
    );
    assert!(out.fuel_used > 0);
}

#[tokio::test]
async fn rate_policy_allows_rules_within_the_configured_limit_and_other_objects() {
    let rt = runtime();
    let plugin = load(&rt, "rate-policy").await;
    let policy = event("policy", json!({"rules": [{"name": "burst", "rps": 500}]}));
    let relaxed = rt
        .decide(&plugin, config(&[("max_rps", "1000")]), &policy)
        .await;
    assert_eq!(relaxed.unwrap().value, Verdict::Allow);
    let app = event("app", json!({"rules": [{"name": "burst", "rps": 500}]}));
    assert_eq!(
        rt.decide(&plugin, config(&[]), &app).await.unwrap().value,
        Verdict::Allow
    );
}

#[tokio::test]
async fn rate_policy_reports_a_bad_max_rps_as_a_plugin_failure() {
    let rt = runtime();
    let plugin = load(&rt, "rate-policy").await;
    let policy = event("policy", json!({"rules": []}));
    let err = rt
        .decide(&plugin, config(&[("max_rps", "lots")]), &policy)
        .await
        .unwrap_err();
    let PluginError::Failed { code, message } = &err else {
        panic!("expected a plugin failure, got {err}")
    };
    assert_eq!(code, "bad-config");
    assert!(
        message.contains("max_rps") && message.contains("lots"),
        "{message}"
    );
}

#[tokio::test]
async fn app_defaults_fills_in_a_missing_language_with_java() {
    let rt = runtime();
    let plugin = load(&rt, "app-defaults").await;
    let app = event("app", json!({"name": "weather"}));
    let body = transformed_body(&rt, &plugin, config(&[]), &app).await;
    assert_eq!(body["data"], json!({"name": "weather", "language": "Java"}));
    assert_eq!(body["event_id"], "evt_test", "the envelope is kept");
}

#[tokio::test]
async fn app_defaults_uses_its_config_and_never_overwrites() {
    let rt = runtime();
    let plugin = load(&rt, "app-defaults").await;
    let cfg = config(&[("field", "tier"), ("value", "gold")]);
    let app = event("app", json!({"name": "weather", "tier": "silver"}));
    let body = transformed_body(&rt, &plugin, cfg.clone(), &app).await;
    assert_eq!(body["data"]["tier"], "silver");
    let bare = event("app", json!({"name": "weather"}));
    let body = transformed_body(&rt, &plugin, cfg, &bare).await;
    assert_eq!(body["data"]["tier"], "gold");
    let api = event("api", json!({"name": "maps"}));
    let body = transformed_body(&rt, &plugin, config(&[]), &api).await;
    assert_eq!(
        body["data"],
        json!({"name": "maps"}),
        "other objects pass unchanged"
    );
}

#[tokio::test]
async fn redact_removes_configured_fields_at_any_depth() {
    let rt = runtime();
    let plugin = load(&rt, "redact").await;
    let dev = event(
        "developer",
        json!({"name": "bo", "password": "hunter2", "@metadata": {"x": 1},
               "accounts": [{"password": "p", "id": 7}], "nested": {"deep": {"password": "q"}}}),
    );
    let body = transformed_body(&rt, &plugin, config(&[]), &dev).await;
    assert_eq!(
        body["data"],
        json!({"name": "bo", "accounts": [{"id": 7}], "nested": {"deep": {}}})
    );
    let custom = transformed_body(&rt, &plugin, config(&[("fields", "name, id")]), &dev).await;
    assert!(custom["data"].get("name").is_none());
    assert_eq!(custom["data"]["accounts"], json!([{"password": "p"}]));
}

#[tokio::test]
async fn slack_format_writes_a_chat_message_and_a_header() {
    let rt = runtime();
    let plugin = load(&rt, "slack-format").await;
    let app = event("app", json!({"name": "weather-app"}));
    let out = rt
        .transform(&plugin, config(&[]), &app, request(&app))
        .await
        .unwrap();
    let Transformed::Send(req) = out.value else {
        panic!("slack-format sends")
    };
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(
        body,
        json!({"text": "app \"weather-app\" was created by alice"})
    );
    assert!(
        req.headers
            .contains(&("x-hookgate-format".into(), "slack".into())),
        "{:?}",
        req.headers
    );
}

#[tokio::test]
async fn content_filter_skips_unless_the_pointer_matches() {
    let rt = runtime();
    let plugin = load(&rt, "content-filter").await;
    let cfg = config(&[("pointer", "/env"), ("equals", "prod")]);
    let prod = event("app", json!({"env": "prod"}));
    let out = rt
        .transform(&plugin, cfg.clone(), &prod, request(&prod))
        .await
        .unwrap();
    assert_eq!(out.value, Transformed::Send(request(&prod)));
    let dev = event("app", json!({"env": "dev"}));
    let out = rt
        .transform(&plugin, cfg.clone(), &dev, request(&dev))
        .await
        .unwrap();
    let Transformed::Skip(reason) = out.value else {
        panic!("dev events are skipped")
    };
    assert!(
        reason.contains("/env") && reason.contains("dev"),
        "{reason}"
    );
    let numeric = config(&[("pointer", "/limits/0"), ("equals", "5")]);
    let five = event("app", json!({"limits": [5]}));
    let out = rt
        .transform(&plugin, numeric, &five, request(&five))
        .await
        .unwrap();
    assert!(
        matches!(out.value, Transformed::Send(_)),
        "5 equals the JSON number 5"
    );
}

#[tokio::test]
async fn content_filter_without_a_pointer_is_a_config_failure() {
    let rt = runtime();
    let plugin = load(&rt, "content-filter").await;
    let app = event("app", json!({}));
    let err = rt
        .transform(&plugin, config(&[]), &app, request(&app))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PluginError::Failed { code, .. } if code == "bad-config"),
        "{err}"
    );
}

async fn hostile_decide(rt: &Runtime, mode: &str) -> Result<Verdict, PluginError> {
    let plugin = load(rt, "hostile").await;
    let e = event("app", json!({}));
    rt.decide(&plugin, config(&[("mode", mode)]), &e)
        .await
        .map(|o| o.value)
}

/// After a hostile call, the same runtime must still serve a normal one.
async fn still_serves(rt: &Runtime) {
    let plugin = load(rt, "rate-policy").await;
    let e = event("policy", json!({"rules": []}));
    assert_eq!(
        rt.decide(&plugin, config(&[]), &e).await.unwrap().value,
        Verdict::Allow
    );
}

#[tokio::test]
async fn infinite_loop_runs_out_of_fuel() {
    let rt = runtime();
    let started = std::time::Instant::now();
    let err = hostile_decide(&rt, "loop").await.unwrap_err();
    assert_eq!(
        err,
        PluginError::OutOfFuel {
            limit: Limits::default().fuel
        }
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    still_serves(&rt).await;
}

#[tokio::test]
async fn infinite_loop_with_plenty_of_fuel_hits_the_deadline() {
    let rt = Runtime::new(
        Limits {
            fuel: u64::MAX / 2,
            deadline: Duration::from_millis(50),
            max_concurrent_calls: 4,
            ..Limits::default()
        },
        None,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = hostile_decide(&rt, "loop").await.unwrap_err();
    assert_eq!(err, PluginError::DeadlineExceeded { limit_ms: 50 });
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    still_serves(&rt).await;
}

#[tokio::test]
async fn memory_bomb_hits_the_memory_limit() {
    let rt = runtime();
    let err = hostile_decide(&rt, "memory").await.unwrap_err();
    assert_eq!(err, PluginError::MemoryLimit { limit: 32 << 20 });
    still_serves(&rt).await;
}

#[tokio::test]
async fn deep_recursion_overflows_the_stack() {
    let rt = runtime();
    let err = hostile_decide(&rt, "recurse").await.unwrap_err();
    assert_eq!(err, PluginError::StackOverflow);
    still_serves(&rt).await;
}

#[tokio::test]
async fn huge_output_is_refused_with_its_size() {
    let rt = runtime();
    let plugin = load(&rt, "hostile").await;
    let e = event("app", json!({}));
    let err = rt
        .transform(&plugin, config(&[("mode", "huge-output")]), &e, request(&e))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PluginError::OutputTooLarge { size, limit } if size > 4 << 20 && limit == 1 << 20),
        "{err}"
    );
    still_serves(&rt).await;
}

#[tokio::test]
async fn huge_input_is_refused_before_the_plugin_runs() {
    let rt = runtime();
    let plugin = load(&rt, "rate-policy").await;
    let big = event("policy", json!({"blob": "x".repeat(2 << 20)}));
    let err = rt.decide(&plugin, config(&[]), &big).await.unwrap_err();
    assert!(
        matches!(err, PluginError::InputTooLarge { limit, .. } if limit == 1 << 20),
        "{err}"
    );
}

#[tokio::test]
async fn panic_is_a_trap_that_quotes_the_guest() {
    let rt = runtime();
    let err = hostile_decide(&rt, "panic").await.unwrap_err();
    let PluginError::Trap {
        guest: Some(guest), ..
    } = &err
    else {
        panic!("expected a trap with the guest's message, got {err:?}")
    };
    assert!(
        guest.contains("hostile plugin panicked on purpose"),
        "{guest}"
    );
    assert!(err.to_string().contains("panicked on purpose"));
    still_serves(&rt).await;
}

#[tokio::test]
async fn snooping_plugin_sees_no_files_env_or_args() {
    let rt = runtime();
    let Verdict::Deny(report) = hostile_decide(&rt, "snoop").await.unwrap() else {
        panic!("snoop reports through a deny")
    };
    let seen: Value = serde_json::from_str(&report).expect("report is JSON");
    assert!(
        seen["read_file"].as_str().unwrap().starts_with("error"),
        "{seen}"
    );
    assert!(
        seen["read_dir"].as_str().unwrap().starts_with("error"),
        "{seen}"
    );
    assert_eq!(seen["home"], Value::Null);
    assert_eq!(seen["path"], Value::Null);
    assert_eq!(seen["env_count"], 0);
    assert_eq!(seen["args_count"], 0);
}

#[tokio::test]
async fn transform_returning_non_json_is_refused() {
    let rt = runtime();
    let plugin = load(&rt, "hostile").await;
    let e = event("app", json!({}));
    let err = rt
        .transform(&plugin, config(&[("mode", "bad-json")]), &e, request(&e))
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::InvalidJson { .. }), "{err}");
}

#[tokio::test]
async fn plugin_failure_keeps_its_code_and_message() {
    let rt = runtime();
    let err = hostile_decide(&rt, "fail").await.unwrap_err();
    assert_eq!(
        err,
        PluginError::Failed {
            code: "boom".into(),
            message: "hostile plugin failed on purpose".into()
        }
    );
}

#[tokio::test]
async fn log_flood_is_stopped_with_a_clear_error() {
    let rt = runtime();
    let err = hostile_decide(&rt, "log-flood").await.unwrap_err();
    assert!(
        matches!(&err, PluginError::Trap { message, .. } if message.contains("flooded the log")),
        "{err:?}"
    );
    still_serves(&rt).await;
}

#[tokio::test]
async fn config_reaches_the_plugin_through_the_host_import() {
    let rt = runtime();
    let plugin = load(&rt, "hostile").await;
    let e = event("app", json!({}));
    let cfg = config(&[("mode", "echo-config"), ("echo", "hello from config")]);
    let out = rt.decide(&plugin, cfg, &e).await.unwrap();
    assert_eq!(out.value, Verdict::Deny("hello from config".into()));
}

#[tokio::test]
async fn no_state_survives_from_one_call_to_the_next() {
    // Pooled memory slots are reused, resetting only the pages a call
    // dirtied; every call must still start from the original image.
    let rt = runtime();
    for call in 1..=20 {
        let verdict = hostile_decide(&rt, "count").await.unwrap();
        assert_eq!(
            verdict,
            Verdict::Deny("1".into()),
            "call {call}: a fresh instance per call"
        );
    }
}

#[tokio::test]
async fn judge_can_override_the_hosts_verdict() {
    let rt = runtime();
    let plugin = load(&rt, "hostile").await;
    let e = event("app", json!({}));
    let response = Incoming {
        status: 500,
        headers: vec![],
        body: b"{}".to_vec(),
    };
    let expected = Verdict::Deny("status 500".into());
    // With no mode, hostile's judge agrees with the host.
    let out = rt
        .judge(&plugin, config(&[]), &e, response.clone(), expected.clone())
        .await;
    assert_eq!(out.unwrap().value, expected);
    // In echo-config mode it answers with the configured text instead.
    let cfg = config(&[("mode", "echo-config"), ("echo", "overridden")]);
    let out = rt
        .judge(&plugin, cfg, &e, response, expected)
        .await
        .unwrap();
    assert_eq!(out.value, Verdict::Deny("overridden".into()));
}

#[tokio::test]
async fn every_hostile_mode_at_once_leaves_the_host_serving() {
    let rt = runtime();
    let modes = [
        "loop",
        "memory",
        "recurse",
        "panic",
        "fail",
        "log-flood",
        "snoop",
    ];
    let calls = modes.map(|mode| {
        let rt = rt.clone();
        tokio::spawn(async move { hostile_decide(&rt, mode).await })
    });
    for (mode, call) in modes.into_iter().zip(calls) {
        let result = call.await.expect("no call panics the host");
        let harmless = mode == "snoop";
        assert_eq!(result.is_ok(), harmless, "{mode}: {result:?}");
    }
    still_serves(&rt).await;
}

#[tokio::test]
async fn core_module_is_rejected_with_a_build_hint() {
    let rt = runtime();
    let module = wat::parse_str("(module (func (export \"decide\")))").unwrap();
    let err = rt
        .compile(module)
        .await
        .err()
        .expect("a core module is refused");
    assert_eq!(err, PluginError::NotAComponent);
    assert!(err.to_string().contains("--target wasm32-wasip2"));
}

#[tokio::test]
async fn sockets_are_linked_but_reach_no_address() {
    let rt = runtime();
    let probe = load(&rt, "net-probe").await;
    assert!(
        probe
            .info()
            .imports
            .iter()
            .any(|i| i.starts_with("wasi:sockets/")),
        "{:?}",
        probe.info().imports
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let err = rt
        .decide(&probe, config(&[("addr", &addr)]), &event("app", json!({})))
        .await
        .expect_err("the connection is refused");
    let PluginError::Failed { code, message } = &err else {
        panic!("expected the plugin's own failure, got {err}")
    };
    assert_eq!(code, "no-network");
    assert!(message.contains(&addr), "{message}");
    assert!(
        listener.accept().is_err(),
        "the listener was reached from the sandbox"
    );
}

#[tokio::test]
async fn an_import_outside_wasi_0_2_and_the_contract_is_rejected_by_name() {
    let rt = runtime();
    for import in ["acme:db/query@1.0.0", "wasi:http/incoming-handler@0.2.0"] {
        let component =
            wat::parse_str(format!(r#"(component (import "{import}" (instance)))"#)).unwrap();
        let err = rt
            .compile(component)
            .await
            .err()
            .expect("the import is refused");
        assert_eq!(
            err,
            PluginError::ForbiddenImport {
                import: import.into()
            }
        );
        assert!(err.to_string().contains(import), "{err}");
    }
}

#[tokio::test]
async fn a_component_that_cannot_fit_a_pool_slot_is_refused_naming_the_limit() {
    let rt = runtime();
    let instances = "(core instance (instantiate $m))".repeat(40);
    let component = wat::parse_str(format!("(component (core module $m) {instances})")).unwrap();
    let problems = rt
        .check(component)
        .await
        .err()
        .expect("40 core instances do not fit");
    let text = problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("40 core module instances") && text.contains("maximum of 32"),
        "{text}"
    );
}

#[tokio::test]
async fn component_without_the_hooks_is_rejected_naming_the_export() {
    let rt = runtime();
    let empty = wat::parse_str("(component)").unwrap();
    let err = rt
        .compile(empty)
        .await
        .err()
        .expect("no exports is refused");
    assert_eq!(err, PluginError::NoHooks);
    assert!(
        err.to_string().contains("hookgate:plugin/decide@0.2.0"),
        "{err}"
    );
}

#[tokio::test]
async fn a_hook_interface_with_the_wrong_signature_fails_to_compile_naming_it() {
    let rt = runtime();
    // `decide` is there, but takes no event.
    let wrong = wat::parse_str(
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $f (canon lift (core func $i "f")))
            (instance $decide (export "decide" (func $f)))
            (export "hookgate:plugin/decide@0.2.0" (instance $decide)))"#,
    )
    .unwrap();
    assert_eq!(rt.validate(&wrong).unwrap().exports, ["decide"]);
    let err = rt.compile(wrong).await.err().expect("a wrong signature");
    assert_eq!(err.code(), "export_mismatch", "{err}");
    assert!(err.to_string().contains("type-checking `decide`"), "{err}");
}

#[tokio::test]
async fn oversized_component_is_rejected() {
    let rt = Runtime::new(
        Limits {
            max_component_bytes: 1024,
            max_concurrent_calls: 1,
            ..Limits::default()
        },
        None,
    )
    .unwrap();
    let err = rt
        .compile(fixtures::plugin("rate-policy"))
        .await
        .err()
        .expect("too big");
    assert!(
        matches!(err, PluginError::TooLarge { limit: 1024, .. }),
        "{err}"
    );
}

/// A component that passes upload validation (as a 0.1.0 plugin) and takes
/// long and much memory to compile: `functions` functions, each adding up
/// 3,000 copies of its parameter. With 200, compiling takes about 0.5 s and
/// peaks at about 130 MiB (a Rust example: 0.15 s, 100 MiB).
fn heavy_component(functions: usize) -> Vec<u8> {
    let body = format!("{}{}", " local.get 0".repeat(3000), " i32.add".repeat(2999));
    let funcs: String = (0..functions)
        .map(|_| format!("(func (param i32) (result i32) {body})"))
        .collect();
    wat::parse_str(format!(
        r#"(component
            (core module $m (func (export "f")) {funcs})
            (core instance $i (instantiate $m))
            (func $f (canon lift (core func $i "f")))
            (export "transform" (func $f))
            (export "decide" (func $f))
            (export "judge" (func $f)))"#
    ))
    .expect("the heavy component assembles")
}

/// A runtime that compiles in worker processes, as `serve` does.
fn worker_runtime(limits: Limits) -> Runtime {
    let limits = Limits {
        max_concurrent_calls: 1,
        ..limits
    };
    Runtime::with_compiler(limits, None, Compiler::Worker(fixtures::hookgate_bin()))
        .expect("runtime starts")
}

#[tokio::test]
async fn what_a_compile_worker_compiles_runs_here() {
    let rt = worker_runtime(Limits::default());
    let prepared = rt.compile(fixtures::plugin("rate-policy")).await.unwrap();
    assert!(prepared.compiled);
    let policy = event("policy", json!({"rules": [{"name": "burst", "rps": 500}]}));
    let verdict = rt.decide(&prepared.plugin, config(&[]), &policy).await;
    assert!(
        matches!(verdict.unwrap().value, Verdict::Deny(_)),
        "the worker's code runs in this process"
    );
}

#[tokio::test]
async fn a_compilation_past_its_memory_limit_is_stopped_naming_the_limit() {
    let rt = worker_runtime(Limits {
        compile_memory_bytes: 64 << 20,
        ..Limits::default()
    });
    let err = rt
        .compile(heavy_component(200))
        .await
        .err()
        .expect("compiling it needs about 130 MiB");
    assert!(
        matches!(err, PluginError::CompileMemory { limit_mib: 64 }),
        "{err}"
    );
    assert!(
        err.to_string().contains("plugin.compile_memory_mib"),
        "{err}"
    );
}

#[tokio::test]
async fn a_compilation_past_its_time_limit_is_stopped_naming_the_limit() {
    let rt = worker_runtime(Limits {
        // Less than a worker takes to start, however fast the machine.
        compile_timeout: Duration::from_millis(5),
        ..Limits::default()
    });
    let err = rt
        .compile(heavy_component(200))
        .await
        .err()
        .expect("a worker cannot finish in 5 ms");
    assert!(
        matches!(err, PluginError::CompileTimeout { limit } if limit == Duration::from_millis(5)),
        "{err}"
    );
    assert!(err.to_string().contains("longer than 5ms"), "{err}");
}

#[tokio::test]
async fn a_runtime_compiles_one_component_at_a_time() {
    // A fuel setting no other test uses marks this runtime's workers.
    let limits = Limits {
        fuel: 123_454_321,
        ..Limits::default()
    };
    let rt = worker_runtime(limits);
    let (a, b) = (heavy_component(200), heavy_component(201));
    let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let watching = most.clone();
    let watcher = tokio::spawn(async move {
        loop {
            let running = workers_with("123454321").len();
            watching.fetch_max(running, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let (first, second) = tokio::join!(rt.compile(a), rt.compile(b));
    watcher.abort();
    // Both compile; then linking tells that their hooks take no arguments.
    for result in [first, second] {
        let err = result.err().expect("the heavy component does not link");
        assert_eq!(err.code(), "export_mismatch", "{err}");
    }
    assert_eq!(
        most.load(std::sync::atomic::Ordering::Relaxed),
        1,
        "one worker at a time"
    );
}

#[tokio::test]
async fn a_compile_worker_yields_the_cores_to_plugin_calls() {
    // A fuel setting no other test uses marks this runtime's workers.
    let rt = worker_runtime(Limits {
        fuel: 123_454_322,
        ..Limits::default()
    });
    // The highest niceness a worker was seen at: a worker sets it as it
    // starts, so an early look may still see the server's.
    let seen = Arc::new(std::sync::Mutex::new(None));
    let watching = seen.clone();
    let watcher = tokio::spawn(async move {
        loop {
            for pid in workers_with("123454322") {
                if let Some(niceness) = niceness(&pid) {
                    let mut seen = watching.lock().unwrap();
                    *seen = Some(seen.map_or(niceness, |high: i64| high.max(niceness)));
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let compiled = rt.compile(heavy_component(202)).await;
    watcher.abort();
    assert_eq!(compiled.err().map(|e| e.code()), Some("export_mismatch"));
    assert_eq!(
        *seen.lock().unwrap(),
        Some(10),
        "compiling runs 10 below the server's priority"
    );
}

/// The process ids of compile workers with `marker` in their command line.
fn workers_with(marker: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| {
            std::fs::read(entry.path().join("cmdline")).is_ok_and(|cmdline| {
                let cmdline = String::from_utf8_lossy(&cmdline);
                cmdline.contains("compile-worker") && cmdline.contains(marker)
            })
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

/// A process's niceness, the 19th field of `/proc/PID/stat`.
fn niceness(pid: &str) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The second field, the command, is in parentheses and may hold spaces.
    let after_command = &stat[stat.rfind(')')? + 2..];
    after_command.split_whitespace().nth(16)?.parse().ok()
}

#[tokio::test]
async fn identical_bytes_are_compiled_once_into_the_nodes_own_cache() {
    let cache = tempfile::tempdir().unwrap();
    let limits = Limits::default();
    let rt = Runtime::new(limits.clone(), Some(cache.path().to_path_buf())).unwrap();
    let wasm = fixtures::plugin("rate-policy");
    let first = rt.compile(wasm.clone()).await.unwrap();
    assert!(first.compiled);
    assert_eq!(first.plugin.info().exports, ["decide"]);
    let files: Vec<_> = std::fs::read_dir(cache.path()).unwrap().collect();
    assert_eq!(
        files.len(),
        1,
        "one compiled copy, named by sha256 and engine"
    );

    // A restarted node (a new runtime) reads its own copy back.
    let restarted = Runtime::new(limits, Some(cache.path().to_path_buf())).unwrap();
    let again = restarted.compile(wasm).await.unwrap();
    assert!(!again.compiled, "identical bytes are not compiled again");
    assert_eq!(again.plugin.info(), first.plugin.info());
    let policy = event("policy", json!({"rules": [{"name": "burst", "rps": 500}]}));
    assert!(matches!(
        restarted
            .decide(&again.plugin, config(&[]), &policy)
            .await
            .unwrap()
            .value,
        Verdict::Deny(_)
    ));

    // A copy that does not load is dropped and compiled again.
    let path = std::fs::read_dir(cache.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&path, b"not a compiled component").unwrap();
    let recompiled = restarted
        .compile(fixtures::plugin("rate-policy"))
        .await
        .unwrap();
    assert!(recompiled.compiled);
}
