//! One source of shutdown for the whole process: SIGTERM (what the kubelet sends) or SIGINT
//! (Ctrl-C) asks every controller and the leader loop to stop; a second signal asks to exit at once.
//!
//! The controllers get [`Shutdown::requested`] through kube's `Controller::graceful_shutdown_on`,
//! so they stop taking new work and let in-flight reconciles finish; [`bounded`] caps how long
//! that may take. The leader loop waits for the controllers, then releases its Lease.

use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// How far a shutdown has gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Running,
    /// Stop taking new work, finish in-flight work, release the Lease, exit.
    Graceful,
    /// Exit now.
    Forced,
}

/// A cheap, cloneable view of the process's shutdown state.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<Phase>,
}

/// Requests a shutdown of every [`Shutdown`] made with it (see [`Shutdown::new`]).
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<Phase>,
}

impl ShutdownTrigger {
    /// Asks for a graceful shutdown: no new reconciles, in-flight ones finish, the Lease is released.
    pub fn graceful(&self) {
        self.tx.send_if_modified(|p| {
            let changed = *p < Phase::Graceful;
            if changed {
                *p = Phase::Graceful;
            }
            changed
        });
    }

    /// Asks to exit at once, without waiting for anything.
    pub fn force(&self) {
        self.tx.send_replace(Phase::Forced);
    }
}

impl Shutdown {
    /// A shutdown and the trigger that requests it (tests, and the signal listener).
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(Phase::Running);
        (ShutdownTrigger { tx }, Shutdown { rx })
    }

    /// A shutdown that is never requested.
    pub fn never() -> Shutdown {
        let (trigger, shutdown) = Shutdown::new();
        // Keep the channel open for the life of the process so waiters wait instead of ending.
        std::mem::forget(trigger);
        shutdown
    }

    /// Listens for SIGTERM and SIGINT: the first requests a graceful shutdown, the second a forced
    /// one. Needs a Tokio runtime.
    ///
    /// # Errors
    /// When the signal handlers cannot be installed.
    pub fn on_signals() -> std::io::Result<Shutdown> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let (trigger, shutdown) = Shutdown::new();
        tokio::spawn(async move {
            let mut next = async || -> &'static str {
                tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                }
            };
            let first = next().await;
            info!(signal = first, "shutdown requested: no new reconciles, finishing in-flight ones; a second signal exits at once");
            trigger.graceful();
            let second = next().await;
            warn!(signal = second, "second signal: exiting at once");
            trigger.force();
        });
        Ok(shutdown)
    }

    /// Whether a shutdown has been requested.
    pub fn is_requested(&self) -> bool {
        *self.rx.borrow() >= Phase::Graceful
    }

    /// Resolves once a shutdown (graceful or forced) is requested; never when the trigger is gone
    /// without one.
    pub fn requested(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        self.reached(Phase::Graceful)
    }

    /// Resolves once an exit at once (a second signal) is requested.
    pub fn forced(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        self.reached(Phase::Forced)
    }

    fn reached(&self, phase: Phase) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.rx.clone();
        async move {
            if rx.wait_for(|p| *p >= phase).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Runs `work` to its end, but once `shutdown` is requested gives it at most `timeout` more; then
/// drops it (abandoning in-flight reconciles is safe: their ARM operations are recorded in status,
/// so the next leader resumes polling them instead of writing again).
pub async fn bounded(work: impl Future<Output = ()>, shutdown: &Shutdown, timeout: Duration) {
    let requested = shutdown.requested();
    tokio::pin!(work);
    tokio::select! {
        _ = &mut work => return,
        _ = requested => {}
    }
    if tokio::time::timeout(timeout, work).await.is_err() {
        warn!(timeout_seconds = timeout.as_secs_f64(), "in-flight reconciles did not finish in time: abandoning them");
    }
}
