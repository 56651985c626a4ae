//! `aml-operator run`: the controller manager.

use crate::arm::{ArmClient, CloudConfig};
use crate::controller::{AmlKind, Config, Context, ParentRef, pipeline, resolve};
use crate::crd::{AmlOnlineDeployment, AmlOnlineEndpoint, AmlWorkspace};
use axum::{Router, routing::get};
use futures::StreamExt;
use kube::api::DynamicObject;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt};
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
    /// Operator-wide default credentials Secret, as namespace/name.
    #[arg(long, env = "AML_DEFAULT_CREDENTIALS")]
    pub default_credentials: Option<String>,
    /// Only watch this namespace (all namespaces when omitted).
    #[arg(long, env = "AML_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// ARM api-version.
    #[arg(long, default_value = crate::arm::DEFAULT_API_VERSION)]
    pub api_version: String,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "AML_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: String,
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
        Ok(Config {
            resync: Duration::from_secs(self.resync_seconds.max(10)),
            api_version: self.api_version.clone(),
            default_credentials,
            ..Config::default()
        })
    }

    /// The cloud these flags select.
    pub fn cloud(&self) -> CloudConfig {
        CloudConfig {
            arm_endpoint: self.arm_endpoint.clone(),
            authority_host: self.authority_host.clone(),
            ca_file: self.ca_file.clone(),
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
    #[error("cannot listen on {0}")]
    Listen(String, #[source] std::io::Error),
}

/// Runs the controllers until Ctrl-C / SIGTERM.
pub async fn run(args: RunArgs) -> Result<(), ManagerError> {
    let config = args.config().map_err(ManagerError::Config)?;
    let client = Client::try_default().await.map_err(ManagerError::Kube)?;
    let arm = ArmClient::new(&args.cloud()).map_err(ManagerError::Arm)?;
    let ctx = Arc::new(Context::new(client, arm, config));
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(&args.metrics_addr)
        .await
        .map_err(|e| ManagerError::Listen(args.metrics_addr.clone(), e))?;
    let health = health_router(ready.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, health).await {
            warn!(error = %e, "health server stopped");
        }
    });
    info!(arm_endpoint = %args.arm_endpoint, namespace = ?args.namespace, "starting controllers");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    tokio::select! {
        _ = run_controllers(ctx, args.namespace.as_deref(), ready) => {},
        _ = shutdown => info!("shutting down"),
    }
    Ok(())
}

fn health_router(ready: Arc<AtomicBool>) -> Router {
    Router::new().route("/healthz", get(|| async { "ok" })).route(
        "/readyz",
        get(move || {
            let ready = ready.clone();
            async move {
                if ready.load(Ordering::Relaxed) {
                    (axum::http::StatusCode::OK, "ok")
                } else {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
                }
            }
        }),
    )
}

/// Runs every controller on `ctx` until they stop. Used by `run` and by the end-to-end tests.
/// `ready` turns true once every controller's cache has synced.
pub async fn run_controllers(ctx: Arc<Context>, namespace: Option<&str>, ready: Arc<AtomicBool>) {
    let synced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // One per kind joined below.
    let kinds = 3;
    let mark = |synced: Arc<std::sync::atomic::AtomicUsize>, ready: Arc<AtomicBool>| {
        move || {
            if synced.fetch_add(1, Ordering::SeqCst) + 1 == kinds {
                ready.store(true, Ordering::Relaxed);
            }
        }
    };
    futures::join!(
        kind_controller::<AmlWorkspace>(ctx.clone(), namespace, mark(synced.clone(), ready.clone())),
        kind_controller::<AmlOnlineEndpoint>(ctx.clone(), namespace, mark(synced.clone(), ready.clone())),
        kind_controller::<AmlOnlineDeployment>(ctx.clone(), namespace, mark(synced.clone(), ready.clone())),
    );
}

/// The controller of one kind: watches its objects and, for children, their parents, so a child
/// starts as soon as its parent becomes ready.
async fn kind_controller<K: AmlKind>(ctx: Arc<Context>, namespace: Option<&str>, on_synced: impl FnOnce() + Send + 'static) {
    let objects: Api<K> = match namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let mut controller = Controller::new(objects, watcher::Config::default().any_semantic());
    let store = controller.store();
    for parent in K::PARENT_KINDS {
        let resource = resolve::parent_resource(*parent);
        let parents: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, &resource),
            None => Api::all_with(ctx.client.clone(), &resource),
        };
        let store = store.clone();
        let kind = *parent;
        controller = controller.watches_with(parents, resource, watcher::Config::default().any_semantic(), move |p: DynamicObject| {
            let ns = p.namespace();
            let name = p.name_any();
            store
                .state()
                .into_iter()
                .filter(|c| c.namespace() == ns && c.parent() == Some(ParentRef::Object { kind, name: &name }))
                .map(|c| ObjectRef::from_obj(&*c))
                .collect::<Vec<_>>()
        });
    }
    let ready_store = controller.store();
    tokio::spawn(async move {
        if ready_store.wait_until_ready().await.is_ok() {
            on_synced();
        }
    });
    controller
        .shutdown_on_signal()
        .run(pipeline::reconcile::<K>, pipeline::error_policy::<K>, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(kind = %K::kind(&()), error = %e, "reconcile ended with an error");
            }
        })
        .await;
}
