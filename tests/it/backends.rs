//! One behaviour suite, two storage backends. A test written with
//! `backend_test!` runs twice: `name::sled` on embedded sled, and
//! `name::postgres` on a fresh database of the PostgreSQL server named by
//! `HOOKGATE_TEST_DATABASE_URL`. Without that variable the PostgreSQL runs
//! say loudly that they were skipped, except in CI (`CI` set), where they
//! fail.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use hookgate::store::{Changes, PgStore, SledStore, Store};
use sqlx::Connection;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Where a test's server keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sled,
    Postgres,
}

tokio::task_local! {
    static BACKEND: Backend;
}

/// Defines an async test that runs on every backend, as `NAME::sled` and
/// `NAME::postgres`.
macro_rules! backend_test {
    (async fn $name:ident() $body:block) => {
        mod $name {
            #[allow(unused_imports, reason = "the body uses its file's imports")]
            use super::*;

            #[tokio::test]
            async fn sled() {
                $crate::backends::run($crate::backends::Backend::Sled, async $body).await;
            }

            #[tokio::test]
            async fn postgres() {
                $crate::backends::run($crate::backends::Backend::Postgres, async $body).await;
            }
        }
    };
}
pub(crate) use backend_test;

/// Runs a test body with `backend`, or skips it (loudly) when PostgreSQL
/// is wanted and not configured.
pub(crate) async fn run(backend: Backend, test: impl Future<Output = ()>) {
    let _shared = match backend {
        Backend::Postgres => match postgres_url() {
            Some(_) => Some(SERVER.read().await),
            None => return,
        },
        Backend::Sled => None,
    };
    BACKEND.scope(backend, test).await;
}

/// The backend of the test running now: sled outside `backend_test!`.
pub(crate) fn current() -> Backend {
    BACKEND.try_with(|b| *b).unwrap_or(Backend::Sled)
}

/// The PostgreSQL server's URL, or `None` after saying that the tests
/// that need it are skipped. In CI, a missing URL fails instead.
pub(crate) fn postgres_url() -> Option<String> {
    let url = std::env::var("HOOKGATE_TEST_DATABASE_URL").ok();
    if url.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "HOOKGATE_TEST_DATABASE_URL is not set: CI runs every test on PostgreSQL too"
        );
        static SAID: OnceLock<()> = OnceLock::new();
        SAID.get_or_init(|| {
            // Straight to stderr: the test harness captures `eprintln!` of
            // tests that pass, and this must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "\nSKIPPED: the PostgreSQL runs of the end-to-end tests (and the cluster \
                 tests), because HOOKGATE_TEST_DATABASE_URL is not set. Set it to a server \
                 where the role may create databases, such as \
                 postgres://hookgate:hookgate@127.0.0.1:5432/hookgate\n"
            );
        });
    }
    url
}

/// Tests on PostgreSQL share the server; one that restarts it takes it
/// for itself.
static SERVER: RwLock<()> = RwLock::const_new(());

/// The server, shared with other tests.
pub(crate) async fn share_server() -> RwLockReadGuard<'static, ()> {
    SERVER.read().await
}

/// The server, for this test alone: no other PostgreSQL test runs while
/// the guard lives.
pub(crate) async fn own_server() -> RwLockWriteGuard<'static, ()> {
    SERVER.write().await
}

/// A store on the current backend, with its data in `dir`, as a node
/// built from the library's parts uses it.
pub(crate) async fn open_store(dir: &Path) -> Store {
    let changes = Changes::default();
    match current() {
        Backend::Sled => Store::new(
            Arc::new(SledStore::open(dir, changes.clone()).unwrap()),
            changes,
        ),
        Backend::Postgres => {
            let url = database_for(dir).await;
            let backend = PgStore::connect(&url, changes.clone(), "library_test".into());
            Store::new(Arc::new(backend.await.unwrap()), changes)
        }
    }
}

/// Databases made for data directories, so that a test restarting its
/// server on the same directory finds the same database.
fn made() -> &'static Mutex<HashMap<PathBuf, String>> {
    static MADE: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
    MADE.get_or_init(Mutex::default)
}

/// Hours a test database is kept before a later run drops it.
const KEEP_HOURS: u64 = 2;

/// The URL of a fresh database on the test server, for the server whose
/// data lives in `data_dir`: the same one every time for one directory.
pub(crate) async fn database_for(data_dir: &Path) -> String {
    let server = postgres_url().expect("the PostgreSQL runs have a server");
    if let Some(url) = made().lock().unwrap().get(data_dir) {
        return url.clone();
    }
    let url = fresh_database(&server).await;
    made()
        .lock()
        .unwrap()
        .insert(data_dir.to_path_buf(), url.clone());
    url
}

/// Creates a database, named with its creation time so that later runs
/// drop it once it is old, and returns its URL.
pub(crate) async fn fresh_database(server: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let name = format!(
        "hg_test_{now}_{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let mut admin = sqlx::PgConnection::connect(server)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {server}: {e}"));
    drop_old_databases(&mut admin, now).await;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create a test database (may the role CREATEDB?): {e}"));
    let mut url = url::Url::parse(server).unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

async fn drop_old_databases(admin: &mut sqlx::PgConnection, now: u64) {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.set(()).is_err() {
        return;
    }
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'hg_test_%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    for name in names {
        let made_at: u64 = name
            .split('_')
            .nth(2)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        if made_at + KEEP_HOURS * 3600 < now {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut *admin)
                .await;
        }
    }
}
