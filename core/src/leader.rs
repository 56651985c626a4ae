//! Leader election on a `coordination.k8s.io` Lease (kube-lease-manager): with several replicas only
//! the holder reconciles; losing the lease stops its controllers; a standby takes over when the
//! holder stops renewing (crash: after the lease expires) or releases the lease (shutdown: at once).
//!
//! kube-lease-manager's standby only looks at a lease held by someone else again when that lease
//! expires. So a standby here also watches the Lease object, and when it sees the lease without a
//! holder (released) it rebuilds its manager, which reads the lease afresh and takes it.

use crate::shutdown::Shutdown;
use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::{debug, info, warn};

/// How long releasing the lease on shutdown may take before the process exits without it (the
/// lease then expires on its own).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);
/// First and longest pause after a failed lease read or renewal.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

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
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
        /// What kube-lease-manager reported.
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
}

/// Runs `work(shutdown)` while this process holds the lease and stops it (drops its future) when
/// the lease is lost; then waits to become leader again.
///
/// Returns `Ok` once `shutdown` is requested: a standby returns at once; a leader waits for `work`
/// to end (it is given `shutdown` and is expected to end within a bound of its own once it is
/// requested, see [`crate::shutdown::bounded`]), keeps renewing meanwhile, then releases the lease
/// so a standby takes over without waiting for it to expire.
///
/// `ready` is set while this replica is a healthy standby (so rollouts of a multi-replica
/// Deployment proceed); `work` is expected to clear and set it itself once its caches synced.
pub async fn run_when_leader<F, Fut>(
    client: Client,
    config: LeaderConfig,
    ready: Arc<AtomicBool>,
    shutdown: Shutdown,
    mut work: F,
) -> Result<(), LeaderError>
where
    F: FnMut(Shutdown) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut manager = build(&client, &config).await?;
    loop {
        ready.store(true, Ordering::Relaxed);
        // Standby: wait for the lease, taking it as soon as its holder releases it.
        {
            let mut released = std::pin::pin!(lease_released(&client, &config));
            let mut pause = RETRY_MIN;
            loop {
                enum Next {
                    Lead,
                    Released,
                    Stop,
                }
                let next = tokio::select! {
                    biased;
                    _ = shutdown.requested() => Next::Stop,
                    leading = lock_state_change(&manager, &mut pause) => if leading { Next::Lead } else { continue },
                    Some(()) = released.next() => Next::Released,
                };
                match next {
                    Next::Lead => break,
                    Next::Stop => {
                        info!(identity = %config.identity, "shutdown requested while standby");
                        return Ok(());
                    }
                    Next::Released => {
                        debug!(identity = %config.identity, lease = %config.lease_name, "lease released by its holder: taking it now");
                        match build(&client, &config).await {
                            Ok(fresh) => manager = fresh,
                            Err(e) => warn!(error = %e, "cannot re-read the released lease; waiting for it to expire instead"),
                        }
                    }
                }
            }
        }

        info!(identity = %config.identity, lease = %config.lease_name, "acquired leadership: starting controllers");
        ready.store(false, Ordering::Relaxed);
        let mut task = tokio::spawn(work(shutdown.clone()));
        let mut pause = RETRY_MIN;
        let still_leading = loop {
            tokio::select! {
                _ = &mut task => break true,
                leading = lock_state_change(&manager, &mut pause) => if !leading { break false },
            }
        };
        if !still_leading {
            task.abort();
            warn!(identity = %config.identity, "lost leadership: controllers stopped");
            continue;
        }
        if !shutdown.is_requested() {
            warn!(identity = %config.identity, "controllers stopped on their own: releasing the lease");
        }
        match tokio::time::timeout(RELEASE_TIMEOUT, manager.release()).await {
            Ok(Ok(())) => info!(identity = %config.identity, lease = %config.lease_name, "released the lease"),
            Ok(Err(e)) => warn!(error = %e, "cannot release the lease; a standby takes it when it expires"),
            Err(_) => warn!("releasing the lease timed out; a standby takes it when it expires"),
        }
        return Ok(());
    }
}

/// A lease manager for `config`; reads (or creates) the lease.
async fn build(client: &Client, config: &LeaderConfig) -> Result<LeaseManager, LeaderError> {
    LeaseManagerBuilder::new(client.clone(), &config.lease_name)
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
        })
}

/// Keeps the lease renewed (when held) or tries to take it (when free or expired) until this
/// replica's lock state changes; returns the new state. Errors (the API server unreachable) are
/// logged and retried with backoff, as kube-lease-manager's own watch loop does.
async fn lock_state_change(manager: &LeaseManager, pause: &mut Duration) -> bool {
    loop {
        match manager.changed().await {
            Ok(leading) => {
                *pause = RETRY_MIN;
                return leading;
            }
            Err(e) => {
                warn!(error = %e, retry_seconds = pause.as_secs(), "leader election: cannot read or renew the lease");
                tokio::time::sleep(*pause).await;
                *pause = (*pause * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Yields each time the lease is seen without a holder (released) or deleted. Watch errors are
/// retried with backoff; a standby that cannot watch still takes the lease when it expires.
fn lease_released(client: &Client, config: &LeaderConfig) -> impl Stream<Item = ()> + Send + use<> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let name = config.lease_name.clone();
    let selector = format!("metadata.name={name}");
    watcher(leases, watcher::Config::default().fields(&selector))
        .default_backoff()
        .filter_map(move |event| {
            let released = match event {
                Ok(watcher::Event::Apply(lease) | watcher::Event::InitApply(lease)) if lease.metadata.name.as_deref() == Some(&name) => {
                    lease.spec.and_then(|s| s.holder_identity).is_none_or(|h| h.is_empty())
                }
                Ok(watcher::Event::Delete(lease)) => lease.metadata.name.as_deref() == Some(&name),
                Ok(_) => false,
                Err(e) => {
                    debug!(error = %e, "watching the lease failed; retrying");
                    false
                }
            };
            std::future::ready(released.then_some(()))
        })
}
