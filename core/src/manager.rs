//! `aml-operator run`: the controller manager.

use crate::arm::limit::RateLimits;
use crate::arm::{ArmClient, CloudConfig};
use crate::leader::{LeaderConfig, run_when_leader};
use crate::shutdown::{Shutdown, bounded};
use crate::controller::tenancy::{NamespaceSelector, RoleAssignmentBounds};
use crate::controller::{Config, Context, kinds, run, secrets, tenancy};
use crate::health;
use kube::Client;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::{info, warn};

/// Flags of `aml-operator run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// ARM endpoint (public cloud by default; the emulator's URL to try it without Azure).
    #[arg(long, env = "AML_ARM_ENDPOINT", default_value = "https://management.azure.com")]
    pub arm_endpoint: String,
    /// Entra authority host.
    #[arg(long, env = "AZURE_AUTHORITY_HOST", default_value = "https://login.microsoftonline.com/")]
    pub authority_host: String,
    /// Extra trusted CA (PEM) for every outbound client: a corporate proxy or the emulator.
    #[arg(long, env = "AML_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Seconds between checks of a converged object against ARM (jittered ±10%).
    #[arg(long, env = "AML_RESYNC_SECONDS", default_value_t = 600)]
    pub resync_seconds: u64,
    /// Seconds after which an endpoint's keys Secret is compared with ARM's keys again (one
    /// `listKeys` POST, which ARM counts as a write). A Secret that is missing or was edited by
    /// someone else is repaired at once, whatever this says.
    #[arg(long, env = "AML_KEYS_REFRESH_SECONDS", default_value_t = 3600)]
    pub keys_refresh_seconds: u64,
    /// This cluster's name in the owner tag (`amloperator.io-owner: <cluster>/<namespace>/<name>`)
    /// left on every Azure resource the operator writes: an object whose resource is tagged by
    /// another object (here or in another cluster) is Stalled instead of writing over it. Give every
    /// cluster whose operator shares a subscription with another its own name.
    #[arg(long, env = "AML_CLUSTER_NAME", default_value = crate::controller::owner::DEFAULT_CLUSTER_NAME)]
    pub cluster_name: String,
    /// Operator-wide default credentials Secret, as namespace/name.
    #[arg(long, env = "AML_DEFAULT_CREDENTIALS")]
    pub default_credentials: Option<String>,
    /// Which namespaces may use the default credentials: a Kubernetes label selector on namespaces
    /// (`team in (a,b)`, `aml-operator.io/default-credentials=allowed`), `*` for every namespace
    /// (the behaviour before this flag). Empty (the default): no namespace; objects without a
    /// Secret of their own are then Stalled with reason DefaultCredentialsNotAllowed.
    #[arg(long, env = "AML_DEFAULT_CREDENTIALS_NAMESPACE_SELECTOR", default_value = "")]
    pub default_credentials_namespace_selector: String,
    /// Roles an AmlRoleAssignment may grant (comma-separated or repeated; the whole allowlist):
    /// AzureMLDataScientist, AzureMLComputeOperator, AzureMLRegistryUser, Reader, Contributor,
    /// Owner, UserAccessAdministrator, RoleBasedAccessControlAdministrator, Custom (any other
    /// roleDefinitionId), or * for all.
    #[arg(
        long,
        env = "AML_ROLE_ASSIGNMENT_ALLOW_ROLES",
        value_delimiter = ',',
        default_value = "AzureMLDataScientist,AzureMLComputeOperator,AzureMLRegistryUser,Reader,Contributor"
    )]
    pub role_assignment_allow_roles: Vec<String>,
    /// An ARM id prefix an AmlRoleAssignment's scopeId may be under (repeatable or
    /// comma-separated; compared segment by segment, case-insensitively; `/` for every scope).
    /// None by default: only workspaceRef and computeRef scopes.
    #[arg(long, env = "AML_ROLE_ASSIGNMENT_SCOPE_PREFIXES", value_delimiter = ',')]
    pub role_assignment_scope_prefix: Vec<String>,
    /// Only watch this namespace (all namespaces when omitted).
    #[arg(long, env = "AML_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// ARM api-version.
    #[arg(long, default_value = crate::arm::DEFAULT_API_VERSION)]
    pub api_version: String,
    /// TCP address of /metrics, /healthz and /readyz; empty: none (then ask them over
    /// --health-socket).
    #[arg(long, env = "AML_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: String,
    /// Also serve /metrics, /healthz and /readyz on this Unix socket, for `aml-operator probe`
    /// (the chart's exec probes: no port, so several hostNetwork replicas can share a node).
    #[arg(long, env = "AML_HEALTH_SOCKET")]
    pub health_socket: Option<PathBuf>,
    /// Reconcile only while holding the leader Lease (use with more than one replica).
    #[arg(long, env = "AML_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(long, default_value = "aml-operator")]
    pub lease_name: String,
    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME", default_value = "aml-operator")]
    pub identity: String,
    /// Client-side ARM budget: sustained reads per second per (subscription, client id).
    #[arg(long, env = "AML_ARM_READ_RATE", default_value_t = 20)]
    pub arm_read_rate: u32,
    /// Client-side ARM budget: sustained writes and deletes per second per (subscription, client id).
    #[arg(long, env = "AML_ARM_WRITE_RATE", default_value_t = 8)]
    pub arm_write_rate: u32,
    /// Objects reconciled at once per kind.
    #[arg(long, env = "AML_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// On SIGTERM or SIGINT: seconds in-flight reconciles may take to finish before they are
    /// abandoned (safe: their ARM operations are recorded in status). Keep it below the pod's
    /// terminationGracePeriodSeconds; the chart sets that from this.
    #[arg(long, env = "AML_SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 10)]
    pub shutdown_timeout_seconds: u64,
}

impl RunArgs {
    /// The controller settings these flags describe.
    pub fn config(&self) -> Result<Config, String> {
        let default_credentials = match &self.default_credentials {
            None => None,
            Some(s) => match s.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() => Some((ns.to_string(), name.to_string())),
                _ => return Err(format!("--default-credentials must be namespace/name, got {s:?}")),
            },
        };
        let default_credentials_namespaces = NamespaceSelector::parse(&self.default_credentials_namespace_selector)
            .map_err(|e| format!("--default-credentials-namespace-selector: {e}"))?;
        let role_assignment_bounds = RoleAssignmentBounds::parse(&self.role_assignment_allow_roles, &self.role_assignment_scope_prefix)?;
        let cluster_name = self.cluster_name.trim().to_string();
        if cluster_name.is_empty() || cluster_name.contains('/') || cluster_name.chars().any(|c| "<>%&\\?".contains(c)) || cluster_name.len() > 63 {
            return Err(format!("--cluster-name must be 1 to 63 characters without / < > % & \\ ?, got {:?}", self.cluster_name));
        }
        Ok(Config {
            cluster_name,
            resync: Duration::from_secs(self.resync_seconds.max(10)),
            keys_refresh: Duration::from_secs(self.keys_refresh_seconds.max(60)),
            api_version: self.api_version.clone(),
            default_credentials,
            default_credentials_namespaces,
            role_assignment_bounds,
            concurrency: self.concurrency,
            ..Config::default()
        })
    }

    /// The cloud these flags select.
    pub fn cloud(&self) -> CloudConfig {
        CloudConfig {
            arm_endpoint: self.arm_endpoint.clone(),
            authority_host: self.authority_host.clone(),
            ca_file: self.ca_file.clone(),
            rate_limits: RateLimits {
                reads_per_second: self.arm_read_rate.max(1),
                read_burst: self.arm_read_rate.max(1) * 10,
                writes_per_second: self.arm_write_rate.max(1),
                write_burst: self.arm_write_rate.max(1) * 20,
            },
            ..CloudConfig::default()
        }
    }
}

/// Errors that stop the manager.
#[derive(thiserror::Error, Debug)]
pub enum ManagerError {
    /// Bad flags.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// No Kubernetes client.
    #[error("cannot build a Kubernetes client (is KUBECONFIG or in-cluster config available?)")]
    Kube(#[source] kube::Error),
    /// No ARM client.
    #[error("cannot build the ARM client")]
    Arm(#[source] crate::arm::Error),
    /// The health server could not bind.
    #[error(transparent)]
    Listen(#[from] health::ListenError),
    /// Leader election failed.
    #[error("leader election failed")]
    Leader(#[source] crate::leader::LeaderError),
    /// The SIGTERM / SIGINT handlers could not be installed.
    #[error("cannot listen for SIGTERM and SIGINT")]
    Signals(#[source] std::io::Error),
    /// A second SIGTERM / SIGINT arrived while shutting down.
    #[error("second signal: exited without waiting for in-flight reconciles or releasing the Lease")]
    Forced,
}

/// Runs the controllers until SIGTERM or SIGINT; then stops taking new work, lets in-flight
/// reconciles finish (at most `--shutdown-timeout-seconds`), releases the leader Lease and returns
/// `Ok`. A second signal returns [`ManagerError::Forced`] at once.
pub async fn run(args: RunArgs) -> Result<(), ManagerError> {
    let shutdown = Shutdown::on_signals().map_err(ManagerError::Signals)?;
    let forced = shutdown.forced();
    tokio::select! {
        r = run_until(args, shutdown) => r,
        _ = forced => Err(ManagerError::Forced),
    }
}

/// [`run`] with the shutdown it obeys given (tests trigger it themselves).
pub async fn run_until(args: RunArgs, shutdown: Shutdown) -> Result<(), ManagerError> {
    let config = args.config().map_err(ManagerError::Config)?;
    let client = Client::try_default().await.map_err(ManagerError::Kube)?;
    let arm = ArmClient::new(&args.cloud()).map_err(ManagerError::Arm)?;
    if let Some((ns, name)) = &config.default_credentials {
        match &config.default_credentials_namespaces {
            NamespaceSelector::Nothing => warn!(
                secret = %format!("{ns}/{name}"),
                "--default-credentials is set but no namespace may use it: --default-credentials-namespace-selector is empty (set it to a label selector, or to * for every namespace as before)"
            ),
            selector => info!(secret = %format!("{ns}/{name}"), %selector, "default credentials: namespaces selected"),
        }
    }
    let ctx = Arc::new(Context::new(client.clone(), arm, config));
    let ready = Arc::new(AtomicBool::new(false));
    let metrics_addr = Some(args.metrics_addr.as_str()).filter(|a| !a.is_empty());
    health::serve(metrics_addr, args.health_socket.as_deref(), ready.clone()).await.map_err(ManagerError::Listen)?;
    info!(arm_endpoint = %args.arm_endpoint, namespace = ?args.namespace, leader_elect = args.leader_elect, "starting");
    let timeout = Duration::from_secs(args.shutdown_timeout_seconds);
    let namespace = args.namespace.clone();
    let standby_ready = ready.clone();
    let work = move |shutdown: Shutdown| {
        let ctx = ctx.clone();
        let namespace = namespace.clone();
        let ready = ready.clone();
        async move {
            let controllers = run_controllers_until(ctx, namespace.as_deref(), ready, shutdown.clone());
            bounded(controllers, &shutdown, timeout).await;
        }
    };
    if args.leader_elect {
        let leader = LeaderConfig {
            lease_name: args.lease_name.clone(),
            namespace: args.lease_namespace.clone(),
            identity: args.identity.clone(),
            duration_seconds: 15,
            grace_seconds: 5,
        };
        run_when_leader(client, leader, standby_ready, shutdown, work).await.map_err(ManagerError::Leader)?;
    } else {
        work(shutdown).await;
    }
    info!("stopped");
    Ok(())
}

/// Runs every controller on `ctx` until they stop. Used by the benchmarks and the in-process
/// tests. `ready` turns true once every controller's cache has synced.
pub async fn run_controllers(ctx: Arc<Context>, namespace: Option<&str>, ready: Arc<AtomicBool>) {
    run_controllers_until(ctx, namespace, ready, Shutdown::never()).await;
}

/// Runs every controller on `ctx` (one per kind of [`kinds::ALL`]) until `shutdown` is
/// requested; then they take no new work and this returns once their in-flight reconciles have
/// finished.
pub async fn run_controllers_until(ctx: Arc<Context>, namespace: Option<&str>, ready: Arc<AtomicBool>, shutdown: Shutdown) {
    // One watch of Secrets (metadata only) for all kinds; each controller maps its changes to the
    // objects of its own store. It stops with the controllers.
    let (secret_changes, _) = tokio::sync::broadcast::channel(1024);
    let watch = secrets::watch_changes(ctx.clone(), namespace.map(str::to_string), secret_changes.clone());
    // Namespace labels, while the default credentials are limited by a label selector: a
    // namespace whose labels change its right to them wakes its objects.
    let namespaces = tenancy::watch_namespaces(ctx.clone(), namespace.map(str::to_string), secret_changes.clone());
    let requested = shutdown.requested();
    tokio::spawn(async move {
        tokio::select! {
            _ = futures::future::join(watch, namespaces) => {},
            _ = requested => {},
        }
    });
    let synced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let controllers = kinds::ALL.iter().map(|kind| {
        let (synced, ready) = (synced.clone(), ready.clone());
        let on_synced = Box::new(move || {
            if synced.fetch_add(1, Ordering::SeqCst) + 1 == kinds::ALL.len() {
                ready.store(true, Ordering::Relaxed);
            }
        });
        let controller = run::Shared { ctx: ctx.clone(), namespace: namespace.map(str::to_string), secret_changes: secret_changes.clone(), shutdown: shutdown.clone() };
        kind.run(controller, on_synced)
    });
    futures::future::join_all(controllers).await;
}
