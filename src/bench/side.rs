//! The Kubernetes side of a benchmark run: the in-memory [`LocalKube`] (default), or a real cluster
//! named by `AML_E2E_KUBECONFIG` (CRDs installed, a fresh namespace per phase, removed afterwards).

use super::BenchError;
use super::kinds::{KindGen, is_ready};
use crate::emulator::Principal;
use crate::localkube::{LocalKube, RequestCounts};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use futures::{StreamExt, TryStreamExt};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Field manager of the benchmark's own writes.
const MANAGER: &str = "aml-operator-bench";
/// Namespace of the objects on LocalKube.
const LOCAL_NAMESPACE: &str = "bench";

/// Where the objects live.
pub(crate) enum Side {
    /// The in-memory API server, in this process.
    Local { kube: LocalKube, client: Client },
    /// A real cluster; `namespace` was created for this phase.
    Cluster { client: Client, kubeconfig: PathBuf, namespace: String },
}

impl Side {
    /// A fresh in-memory API server (call recording off: only counts are kept).
    pub(crate) fn local() -> Side {
        let (kube, client) = LocalKube::new();
        kube.set_record_calls(false);
        Side::Local { kube, client }
    }

    /// The cluster of `kubeconfig`: CRDs applied, a fresh namespace `aml-bench-<phase>-<pid>`.
    pub(crate) async fn cluster(kubeconfig: &Path, phase: &str) -> Result<Side, BenchError> {
        let file = Kubeconfig::read_from(kubeconfig).map_err(|source| BenchError::Kubeconfig(kubeconfig.to_path_buf(), source))?;
        let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
            .await
            .map_err(|source| BenchError::Kubeconfig(kubeconfig.to_path_buf(), source))?;
        let client = Client::try_from(config).map_err(|source| BenchError::Kube { what: "building the cluster client", source })?;
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in crate::controller::kinds::crds() {
            let name = crd.name_any();
            crds.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&crd))
                .await
                .map_err(|source| BenchError::Kube { what: "installing a CRD", source })?;
            wait_for(&format!("CRD {name} established"), Duration::from_secs(60), || {
                let crds = crds.clone();
                let name = name.clone();
                async move {
                    let crd = crds.get(&name).await.ok()?;
                    crd.status?.conditions?.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(())
                }
            })
            .await?;
        }
        let namespace = format!("aml-bench-{phase}-{}", std::process::id());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace, "labels": {"app.kubernetes.io/part-of": "aml-operator-bench"}}}))
            .map_err(BenchError::Json)?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .map_err(|source| BenchError::Kube { what: "creating the benchmark namespace", source })?;
        Ok(Side::Cluster { client, kubeconfig: kubeconfig.to_path_buf(), namespace })
    }

    /// The client the in-process controllers use.
    pub(crate) fn client(&self) -> Client {
        match self {
            Side::Local { client, .. } | Side::Cluster { client, .. } => client.clone(),
        }
    }

    /// Namespace of the objects.
    pub(crate) fn namespace(&self) -> &str {
        match self {
            Side::Local { .. } => LOCAL_NAMESPACE,
            Side::Cluster { namespace, .. } => namespace,
        }
    }

    /// What the controllers watch: every namespace on LocalKube, the phase's namespace on a cluster.
    pub(crate) fn watch_namespace(&self) -> Option<&str> {
        match self {
            Side::Local { .. } => None,
            Side::Cluster { namespace, .. } => Some(namespace),
        }
    }

    /// Requests the API server served, when it is LocalKube.
    pub(crate) fn counts(&self) -> Option<RequestCounts> {
        match self {
            Side::Local { kube, .. } => Some(kube.request_counts()),
            Side::Cluster { .. } => None,
        }
    }

    /// The in-memory server, when it is one.
    pub(crate) fn local_kube(&self) -> Option<&LocalKube> {
        match self {
            Side::Local { kube, .. } => Some(kube),
            Side::Cluster { .. } => None,
        }
    }

    /// The kubeconfig of a real cluster.
    pub(crate) fn kubeconfig(&self) -> Option<&Path> {
        match self {
            Side::Local { .. } => None,
            Side::Cluster { kubeconfig, .. } => Some(kubeconfig),
        }
    }

    /// Stores the credentials Secret `aml-credentials` for the emulator's principal.
    pub(crate) async fn credentials(&self, subscription: &str) -> Result<(), BenchError> {
        let p = Principal::default();
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "aml-credentials", "namespace": self.namespace()},
            "stringData": {"tenantId": p.tenant_id, "clientId": p.client_id, "clientSecret": p.client_secret, "subscriptionId": subscription}
        }))
        .map_err(BenchError::Json)?;
        match self {
            Side::Local { kube, .. } => {
                // LocalKube stores what it is given: turn stringData into data, as the API server does.
                let mut v = serde_json::to_value(&secret).map_err(BenchError::Json)?;
                let data: serde_json::Map<String, Value> = v["stringData"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, s)| {
                                let bytes = k8s_openapi::ByteString(s.as_str().unwrap_or_default().as_bytes().to_vec());
                                (k.clone(), serde_json::to_value(bytes).unwrap_or(Value::Null))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                v["data"] = Value::Object(data);
                if let Some(m) = v.as_object_mut() {
                    m.remove("stringData");
                }
                kube.put(v);
                Ok(())
            }
            Side::Cluster { client, namespace, .. } => {
                Api::<Secret>::namespaced(client.clone(), namespace)
                    .create(&PostParams::default(), &secret)
                    .await
                    .map_err(|source| BenchError::Kube { what: "creating the credentials Secret", source })?;
                Ok(())
            }
        }
    }

    /// Creates one object.
    pub(crate) async fn create(&self, obj: Value) -> Result<(), BenchError> {
        match self {
            Side::Local { kube, .. } => {
                kube.put(obj);
                Ok(())
            }
            Side::Cluster { client, namespace, .. } => {
                let (api, name) = dynamic_api(client, namespace, &obj)?;
                api.patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(&obj))
                    .await
                    .map_err(|source| BenchError::Kube { what: "creating a benchmark object", source })?;
                Ok(())
            }
        }
    }

    /// How many objects of `kinds` are Ready.
    pub(crate) async fn ready(&self, kinds: &[KindGen]) -> Result<usize, BenchError> {
        let mut n = 0;
        for k in kinds {
            n += match self {
                Side::Local { kube, .. } => kube.count(&k.collection(Some(self.namespace())), is_ready),
                Side::Cluster { client, namespace, .. } => {
                    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &api_resource(k.kind, k.plural));
                    let mut ready = 0;
                    let mut lp = ListParams::default().limit(500);
                    loop {
                        let page = api.list(&lp).await.map_err(|source| BenchError::Kube { what: "listing benchmark objects", source })?;
                        for o in &page.items {
                            ready += usize::from(serde_json::to_value(o).is_ok_and(|v| is_ready(&v)));
                        }
                        match page.metadata.continue_.filter(|c| !c.is_empty()) {
                            Some(c) => lp = lp.continue_token(&c),
                            None => break,
                        }
                    }
                    ready
                }
            };
        }
        Ok(n)
    }

    /// Removes what the phase made on a cluster, in bounded time. Nothing to do on LocalKube.
    ///
    /// The benchmark's Azure resources live in its own emulator, which goes away with the phase, so
    /// they are released rather than deleted: the operator is stopped first (the caller's job), each
    /// object's finalizer (and the credentials Secret's) is removed, then the namespace is deleted.
    /// Waiting for the operator to delete thousands of resources at ARM's write budget would
    /// measure nothing and take minutes.
    pub(crate) async fn finish(&self, kinds: &[KindGen]) -> Result<(), BenchError> {
        let Side::Cluster { client, namespace, .. } = self else { return Ok(()) };
        let started = Instant::now();
        let released = std::sync::atomic::AtomicUsize::new(0);
        // Each object is released (its finalizer removed) and deleted by this benchmark, 32 at a
        // time: the namespace controller deletes a collection one object after another (about 15
        // a second on a busy 2-core machine, ten minutes for 5,000 objects and their Events).
        let release = serde_json::json!({"metadata": {"finalizers": null}});
        let gone = |r: Result<(), kube::Error>, what: &'static str| match r {
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            other => other.map_err(|source| BenchError::Kube { what, source }),
        };
        for k in kinds {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &api_resource(k.kind, k.plural));
            for_each_name(&api, |name| {
                let api = api.clone();
                let release = &release;
                released.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async move {
                    gone(api.patch(&name, &PatchParams::default(), &Patch::Merge(release)).await.map(drop), "releasing a benchmark object")?;
                    gone(api.delete(&name, &DeleteParams::default()).await.map(drop), "deleting a benchmark object")
                }
            })
            .await?;
        }
        let events: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ApiResource::erase::<k8s_openapi::api::events::v1::Event>(&()));
        for_each_name(&events, |name| {
            let events = events.clone();
            async move { gone(events.delete(&name, &DeleteParams::default()).await.map(drop), "deleting a benchmark event") }
        })
        .await?;
        // The operator also holds the credentials Secret while objects use it.
        let secret = Api::<Secret>::namespaced(client.clone(), namespace).patch("aml-credentials", &PatchParams::default(), &Patch::Merge(&release)).await;
        gone(secret.map(drop), "releasing the credentials Secret")?;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        namespaces
            .delete(namespace, &DeleteParams::default())
            .await
            .map_err(|source| BenchError::Kube { what: "deleting the benchmark namespace", source })?;
        wait_for("benchmark namespace removed", Duration::from_secs(300), || {
            let namespaces = namespaces.clone();
            let ns = namespace.clone();
            async move { namespaces.get_opt(&ns).await.ok()?.is_none().then_some(()) }
        })
        .await?;
        let phase = namespace.trim_start_matches("aml-bench-").split('-').next().unwrap_or_default().to_string();
        CLEANUPS.lock().unwrap_or_else(|e| e.into_inner()).push((phase, released.into_inner(), started.elapsed()));
        Ok(())
    }
}

/// Every cleanup of this process so far (phase, objects, time), for the report.
static CLEANUPS: std::sync::Mutex<Vec<(String, usize, Duration)>> = std::sync::Mutex::new(Vec::new());

/// The cleanups recorded so far.
pub(crate) fn cleanups() -> Vec<(String, usize, Duration)> {
    CLEANUPS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Runs `each` on the name of every object in `api`'s collection, 32 at a time.
async fn for_each_name<F, Fut>(api: &Api<DynamicObject>, each: F) -> Result<(), BenchError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), BenchError>>,
{
    let names = object_names(api).await?;
    futures::stream::iter(names).map(each).buffer_unordered(32).try_collect::<Vec<()>>().await.map(drop)
}

/// Names of every object in `api`'s collection, page by page.
async fn object_names(api: &Api<DynamicObject>) -> Result<Vec<String>, BenchError> {
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(500);
    loop {
        let page = api.list_metadata(&lp).await.map_err(|source| BenchError::Kube { what: "listing benchmark objects", source })?;
        names.extend(page.items.iter().map(|o| o.name_any()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => return Ok(names),
        }
    }
}

fn api_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "amloperator.io".into(),
        version: "v1alpha1".into(),
        api_version: super::kinds::API_VERSION.into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn dynamic_api(client: &Client, namespace: &str, obj: &Value) -> Result<(Api<DynamicObject>, String), BenchError> {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let plural = format!("{}s", kind.to_lowercase());
    let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    if name.is_empty() {
        return Err(BenchError::Config("a generated object has no metadata.name".into()));
    }
    Ok((Api::namespaced_with(client.clone(), namespace, &api_resource(kind, &plural)), name))
}

/// Polls `check` every 250 ms until it returns Some, or fails after `timeout`.
pub(crate) async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, BenchError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            return Err(BenchError::Timeout(format!("{what} (after {timeout:?})")));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
