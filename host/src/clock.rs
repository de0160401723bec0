//! Time, injected. Retry schedules, leases, retention and timestamps all
//! read the time from a [`Clock`], so that tests can move it forward
//! instead of sleeping through real seconds.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

/// A source of the current time, and of waiting for a time to come.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;

    /// Resolves once [`Clock::now_ms`] has reached `at_ms`.
    fn sleep_until(&self, at_ms: u64) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// A shared clock, as services hold it.
pub type SharedClock = Arc<dyn Clock>;

/// The system's clock: what the server runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn sleep_until(&self, at_ms: u64) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let wait = at_ms.saturating_sub(self.now_ms());
        Box::pin(tokio::time::sleep(Duration::from_millis(wait)))
    }
}

/// A clock that moves only when told to, for tests of schedules and
/// leases. It starts at the system time; clones share it.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Manual>);

#[derive(Debug)]
struct Manual {
    now: AtomicU64,
    moved: Notify,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock(Arc::new(Manual {
            now: AtomicU64::new(SystemClock.now_ms()),
            moved: Notify::new(),
        }))
    }
}

impl ManualClock {
    /// Moves the clock forward, waking whoever waits for a time now passed.
    pub fn advance(&self, by: Duration) {
        self.0
            .now
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
        self.0.moved.notify_waiters();
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.now.load(Ordering::SeqCst)
    }

    fn sleep_until(&self, at_ms: u64) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let manual = self.0.clone();
        Box::pin(async move {
            loop {
                // Registered before the check, so an advance in between
                // is not missed.
                let moved = manual.moved.notified();
                if manual.now.load(Ordering::SeqCst) >= at_ms {
                    return;
                }
                moved.await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_it_passes_their_time() {
        let clock = ManualClock::default();
        let start = clock.now_ms();
        let sleeper = tokio::spawn(clock.sleep_until(start + 5_000));
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(4));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "4 s is not 5");
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woken by the advance")
            .unwrap();
        assert_eq!(clock.now_ms(), start + 5_000);
    }
}
