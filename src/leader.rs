//! Leader election on a `coordination.k8s.io` Lease (kube-lease-manager): with several replicas only
//! the holder reconciles; losing the lease stops its controllers; a standby takes over when the
//! holder stops renewing (crash) or releases the lease (shutdown).

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::{info, warn};

/// Where the lease lives and who we are.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// Lease name.
    pub lease_name: String,
    /// Lease namespace (the operator's own).
    pub namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// Seconds a lease is valid without renewal.
    pub duration_seconds: u64,
    /// Extra seconds before a standby may take an expired lease.
    pub grace_seconds: u64,
}

/// Leader election failed.
#[derive(thiserror::Error, Debug)]
pub enum LeaderError {
    /// The lease could not be created or read.
    #[error("cannot use Lease {namespace}/{name}")]
    Lease {
        namespace: String,
        name: String,
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    /// The lease watcher stopped.
    #[error("the lease watcher stopped")]
    WatcherStopped,
}

/// Runs `work()` while this process holds the lease and stops it (drops its future) when the lease
/// is lost; then waits to become leader again. Returns only on error.
///
/// `ready` is set while this replica is a healthy standby (so rollouts of a multi-replica
/// Deployment proceed); `work` is expected to clear and set it itself once its caches synced.
pub async fn run_when_leader<F, Fut>(
    client: Client,
    config: LeaderConfig,
    ready: Arc<AtomicBool>,
    mut work: F,
) -> Result<(), LeaderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let manager = LeaseManagerBuilder::new(client, &config.lease_name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_duration(config.duration_seconds)
        .with_grace(config.grace_seconds)
        .build()
        .await
        .map_err(|source| LeaderError::Lease {
            namespace: config.namespace.clone(),
            name: config.lease_name.clone(),
            source,
        })?;
    let (mut leading, _watcher) = manager.watch().await;
    loop {
        ready.store(true, Ordering::Relaxed);
        while !*leading.borrow_and_update() {
            leading.changed().await.map_err(|_| LeaderError::WatcherStopped)?;
        }
        info!(identity = %config.identity, lease = %config.lease_name, "acquired leadership: starting controllers");
        ready.store(false, Ordering::Relaxed);
        let task = tokio::spawn(work());
        let lost = loop {
            if leading.changed().await.is_err() {
                break Err(LeaderError::WatcherStopped);
            }
            if !*leading.borrow_and_update() {
                break Ok(());
            }
        };
        task.abort();
        warn!(identity = %config.identity, "lost leadership: controllers stopped");
        lost?;
    }
}
