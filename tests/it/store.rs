//! What the backends promise, checked on the store itself: plugin records,
//! as the nodes sharing a database rely on, and closing, as the next node
//! started on sled's directory relies on.

use std::sync::{Arc, Mutex};

use hookgate::model::{PluginRecord, PluginState};
use hookgate::store::{Change, StoreError};

use crate::backends::{self, backend_test};

backend_test! {
    async fn a_plugin_versions_first_recorded_outcome_stands_and_only_ready_is_announced() {
        let dir = tempfile::tempdir().unwrap();
        let store = backends::open_store(dir.path()).await;
        let heard = Arc::new(Mutex::new(Vec::new()));
        let hearing = heard.clone();
        store.changes().subscribe(move |change| {
            if let Change::PluginReady { .. } = change {
                hearing.lock().unwrap().push(change.clone());
            }
        });
        let compiling = PluginRecord {
            id: "plg_settles".into(),
            tenant_id: "ten_settles".into(),
            name: "settles".into(),
            version: 0,
            sha256: "0".repeat(64),
            size: 4,
            exports: vec!["decide".into()],
            created_at: 0,
            state: PluginState::Compiling,
            error: None,
        };
        let plugins = store.plugins();
        let stored = plugins
            .insert_plugin(compiling.clone(), b"\0asm".to_vec())
            .await
            .unwrap();
        let failed = PluginRecord {
            state: PluginState::Failed,
            error: Some("compiling needed too much memory".into()),
            ..stored.clone()
        };
        let ready = PluginRecord {
            state: PluginState::Ready,
            ..stored.clone()
        };
        // Two nodes finish compiling it: the first outcome recorded stands.
        assert!(plugins.update_plugin(&ready).await.unwrap());
        assert!(!plugins.update_plugin(&failed).await.unwrap());
        assert!(!plugins.update_plugin(&ready).await.unwrap());
        let now = plugins.plugin("ten_settles", "plg_settles").await.unwrap();
        assert_eq!(now.map(|r| r.state), Some(PluginState::Ready));
        assert_eq!(
            *heard.lock().unwrap(),
            [Change::PluginReady {
                tenant: "ten_settles".into(),
                id: "plg_settles".into()
            }],
            "announced ready once"
        );

        // One that failed first stays failed, and is never announced.
        let other = PluginRecord {
            id: "plg_fails".into(),
            name: "fails".into(),
            ..compiling
        };
        let stored = plugins.insert_plugin(other, b"\0asm".to_vec()).await.unwrap();
        let failed = PluginRecord {
            state: PluginState::Failed,
            error: Some("it does not compile".into()),
            ..stored.clone()
        };
        assert!(plugins.update_plugin(&failed).await.unwrap());
        let ready = PluginRecord {
            state: PluginState::Ready,
            ..stored
        };
        assert!(!plugins.update_plugin(&ready).await.unwrap());
        let now = plugins.plugin("ten_settles", "plg_fails").await.unwrap();
        assert_eq!(now.map(|r| r.state), Some(PluginState::Failed));
        assert_eq!(heard.lock().unwrap().len(), 1, "a failure is not announced");
    }
}

/// A node stopping closes its store while tasks winding down may still
/// hold it; the directory must be free once `close` returns, or the node
/// started next on it fails to open it.
#[tokio::test]
async fn a_closed_sled_store_frees_its_directory_while_still_held() {
    let dir = tempfile::tempdir().unwrap();
    let store = backends::open_store(dir.path()).await;
    let held = store.clone();
    let run = held.callbacks().record_health("cb_held", true, 1).await;
    assert_eq!(run.unwrap().consecutive_failures, 1);
    store.close().await.unwrap();

    let reopened = backends::open_store(dir.path()).await;
    assert!(
        matches!(
            held.callbacks().record_health("cb_held", true, 2).await,
            Err(StoreError::Closed)
        ),
        "the closed store writes nothing more"
    );
    let run = reopened.callbacks().record_health("cb_held", true, 3).await;
    assert_eq!(
        run.unwrap().consecutive_failures,
        2,
        "the first failure was kept"
    );
    reopened.close().await.unwrap();
}
