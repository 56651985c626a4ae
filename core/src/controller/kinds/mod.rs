//! The operator's kinds, in one table: the CRDs (`aml-operator crds`, `crds/`, the chart), manifest
//! parsing, the controllers the manager runs and the CLI's plan/apply/import all read [`ALL`], built
//! from the one list of kinds, `crd::for_each_kind` (from which Secret protection also takes the
//! kinds' API resources, below this table). Each kind's part of the pipeline is a file of this
//! folder (an `AmlKind` implementation: what differs). Adding a kind is its own files
//! (`crd/<kind>.rs` with its `Definition`, `controller/kinds/<kind>.rs` with its `AmlKind`) and its
//! name in `crd::for_each_kind`.

pub mod assets;
pub mod compute;
pub mod datastore;
pub mod dependencies;
pub mod deployment;
pub mod endpoint;
pub mod endpoint_keys;
pub mod role_assignment;
pub mod workspace;

use super::plan::{self, Planned};
use super::run::{self, Shared};
use super::{AmlKind, BoxFuture, Context, Error, ParentRef, pipeline};
use crate::crd::{
    AmlCodeVersion, AmlCompute, AmlDatastore, AmlEnvironmentVersion, AmlModelVersion, AmlOnlineDeployment, AmlOnlineEndpoint,
    AmlRoleAssignment, AmlWorkspace, DeletionPolicy, Definition, ManagementPolicy,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::ApiResource;
use kube::runtime::controller::Action;
use serde_json::Value;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, LazyLock, Mutex};

macro_rules! rows {
    ($($kind:ident),*) => { &[$(&Row::<$kind>(PhantomData)),*] };
}

/// Every kind, parents before children: one row per name of [`crate::crd::for_each_kind`].
pub static ALL: &[&dyn Kind] = crate::crd::for_each_kind!(rows);

/// The row of `kind` (e.g. `AmlWorkspace`).
pub fn find(kind: &str) -> Option<&'static dyn Kind> {
    ALL.iter().copied().find(|k| k.name() == kind)
}

/// Every CRD this operator serves, generated from the Rust types.
pub fn crds() -> Vec<CustomResourceDefinition> {
    ALL.iter().map(|k| k.crd()).collect()
}

/// Deserializes a manifest of one of our kinds into its Rust type: the same check the controller's
/// watcher makes. Errors name the kind, the field's path and what did not fit.
pub fn parse(manifest: &Value) -> Result<(), String> {
    let Some(kind) = manifest["kind"].as_str().filter(|k| !k.is_empty()) else {
        return Err("kind is missing or not a string: the manifest must name an amloperator.io kind".to_string());
    };
    let row = find(kind).ok_or_else(|| format!("{kind}: {kind:?} is not an amloperator.io kind"))?;
    row.parse(manifest).map_err(|e| format!("{kind}: {e}"))
}

/// What one reconcile returned, with the requeue the controller would use on failure.
pub struct Reconciled {
    /// The pipeline's result.
    pub result: Result<(), Error>,
    /// When the controller would run it again (`error_policy` for failures).
    pub action: Action,
}

/// One kind, type-erased: what the parts of the operator that work on every kind need of it.
pub trait Kind: Send + Sync {
    /// `kind`, e.g. `AmlWorkspace`.
    fn name(&self) -> &'static str;
    /// Its API resource (group, version, kind, plural).
    fn resource(&self) -> ApiResource;
    /// Its CRD, generated from the Rust type.
    fn crd(&self) -> CustomResourceDefinition;
    /// Whether `obj` is a valid object of this kind (the typed spec parses); the error names the
    /// field's path.
    fn parse(&self, obj: &Value) -> Result<(), String>;
    /// The parent object `obj` names: (kind, name) in the same namespace.
    fn parent(&self, obj: &Value) -> Option<(String, String)>;
    /// Whether deleting `obj` leaves its Azure resource in place (Orphan or Observe).
    fn keeps_azure(&self, obj: &Value) -> bool;
    /// Plans `obj` (see [`plan::plan`]).
    fn plan<'a>(&'a self, obj: &'a Value, ctx: &'a Context) -> BoxFuture<'a, Planned>;
    /// Reconciles `obj` once, as the controller would.
    fn reconcile(&self, obj: Value, ctx: Arc<Context>) -> BoxFuture<'static, Result<Reconciled, String>>;
    /// Runs this kind's controller until `shared.shutdown`; `on_synced` once its cache has synced.
    fn run(&self, shared: Shared, on_synced: Box<dyn FnOnce() + Send>) -> BoxFuture<'static, ()>;
}

struct Row<K>(PhantomData<fn() -> K>);

/// A kind's schema as a validator (`None` when its CRD has no schema to build one from).
type Schema = Option<Arc<jsonschema::Validator>>;

/// The kinds' schemas, by kind, built at the first refusal of each kind.
static SCHEMAS: LazyLock<Mutex<HashMap<&'static str, Schema>>> = LazyLock::new(Default::default);

fn validator(kind: &'static str, crd: impl FnOnce() -> CustomResourceDefinition) -> Schema {
    // A poisoned lock only means a panic elsewhere while inserting; the map is still valid.
    let mut schemas = SCHEMAS.lock().unwrap_or_else(|e| e.into_inner());
    schemas
        .entry(kind)
        .or_insert_with(|| {
            let crd = crd();
            let schema = crd.spec.versions.first()?.schema.as_ref()?.open_api_v3_schema.as_ref()?;
            jsonschema::validator_for(&serde_json::to_value(schema).ok()?).ok().map(Arc::new)
        })
        .clone()
}

/// The first error of `obj` against its kind's schema that lies deeper than `serde_path` (dotted,
/// as serde names it), as `path: message`; `None` when the schema names no deeper field (serde's
/// message is then the precise one). An error on a null comes last: the schema marks optional
/// fields `nullable`, which JSON Schema does not know.
fn schema_error(validator: &jsonschema::Validator, obj: &Value, serde_path: &str) -> Option<String> {
    let mut on_null = None;
    for err in validator.iter_errors(obj) {
        let path: Vec<String> = err
            .instance_path
            .to_string()
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect();
        let path = path.join(".");
        let deeper = path.len() > serde_path.len()
            && (serde_path.is_empty() || path.starts_with(&format!("{serde_path}.")));
        if !deeper {
            continue;
        }
        let named = format!("{path}: {err}");
        if !err.instance.is_null() {
            return Some(named);
        }
        on_null.get_or_insert(named);
    }
    on_null
}

fn typed<K: AmlKind>(obj: &Value) -> Result<K, String> {
    crate::crd::from_value(obj.clone())
}

impl<K: AmlKind + Definition> Kind for Row<K> {
    fn name(&self) -> &'static str {
        // `Resource::kind` of a derived CRD borrows a static string.
        match K::kind(&()) {
            std::borrow::Cow::Borrowed(s) => s,
            std::borrow::Cow::Owned(_) => "Unknown",
        }
    }

    fn resource(&self) -> ApiResource {
        ApiResource::erase::<K>(&())
    }

    fn crd(&self) -> CustomResourceDefinition {
        K::definition()
    }

    fn parse(&self, obj: &Value) -> Result<(), String> {
        let Err(serde) = typed::<K>(obj) else { return Ok(()) };
        // serde loses the path inside `#[serde(flatten)]` fields ("spec: invalid type..." for
        // `spec.azureName`); the kind's own schema names the field then.
        let serde_path = serde.split_once(": ").map_or("", |(path, _)| path);
        let named = validator(self.name(), K::definition).and_then(|v| schema_error(&v, obj, serde_path));
        Err(named.unwrap_or(serde))
    }

    fn parent(&self, obj: &Value) -> Option<(String, String)> {
        let o = typed::<K>(obj).ok()?;
        match o.parent()? {
            ParentRef::Object { kind, name } => Some((kind.resource().kind, name.to_string())),
            ParentRef::ArmId(_) => None,
        }
    }

    fn keeps_azure(&self, obj: &Value) -> bool {
        typed::<K>(obj).is_ok_and(|o| {
            let p = o.policies();
            p.deletion == DeletionPolicy::Orphan || p.management == ManagementPolicy::Observe
        })
    }

    fn plan<'a>(&'a self, obj: &'a Value, ctx: &'a Context) -> BoxFuture<'a, Planned> {
        Box::pin(async move {
            match typed::<K>(obj) {
                Ok(o) => plan::plan(&o, ctx).await,
                Err(e) => Planned::blocked("InvalidSpec", e),
            }
        })
    }

    fn reconcile(&self, obj: Value, ctx: Arc<Context>) -> BoxFuture<'static, Result<Reconciled, String>> {
        let obj = typed::<K>(&obj);
        Box::pin(async move {
            let obj = Arc::new(obj?);
            Ok(match pipeline::reconcile(obj.clone(), ctx.clone()).await {
                Ok(action) => Reconciled { result: Ok(()), action },
                Err(e) => {
                    let action = pipeline::error_policy(obj, &e, ctx);
                    Reconciled { result: Err(e), action }
                }
            })
        })
    }

    fn run(&self, shared: Shared, on_synced: Box<dyn FnOnce() + Send>) -> BoxFuture<'static, ()> {
        Box::pin(run::kind_controller::<K, _, _>(shared, on_synced, pipeline::reconcile::<K>, pipeline::error_policy::<K>))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_one_row_with_its_own_crd() {
        let names: Vec<&str> = ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            [
                "AmlWorkspace",
                "AmlCompute",
                "AmlDatastore",
                "AmlModelVersion",
                "AmlEnvironmentVersion",
                "AmlCodeVersion",
                "AmlOnlineEndpoint",
                "AmlOnlineDeployment",
                "AmlRoleAssignment"
            ]
        );
        for k in ALL {
            let crd = k.crd();
            assert_eq!(crd.spec.names.kind, k.name());
            assert_eq!(crd.spec.names.plural, k.resource().plural);
            assert_eq!(find(k.name()).map(|f| f.name()), Some(k.name()));
        }
        assert!(find("Widget").is_none());
        // Secret protection reads the same list below this table.
        let resources: Vec<String> = crate::crd::resources().into_iter().map(|r| r.kind).collect();
        assert_eq!(resources, names);
    }

    #[test]
    fn parse_names_the_kind_and_the_field() {
        let bad = serde_json::json!({"apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace", "metadata": {"name": "w"}, "spec": {"resourceGroup": 3}});
        let err = parse(&bad).unwrap_err();
        assert!(err.starts_with("AmlWorkspace: ") && err.contains("resourceGroup"), "{err}");
        // A field of a flattened part of the spec (serde alone says only "spec: ...").
        let bad = serde_json::json!({"apiVersion": "amloperator.io/v1alpha1", "kind": "AmlModelVersion", "metadata": {"name": "m"},
            "spec": {"workspaceRef": {"name": "w"}, "azureName": true, "modelUri": "azureml://x"}});
        let err = parse(&bad).unwrap_err();
        assert!(err.starts_with("AmlModelVersion: spec.azureName: "), "{err}");
        assert!(parse(&serde_json::json!({"kind": 1})).unwrap_err().contains("kind is missing"));
        let unknown = serde_json::json!({"kind": "Widget"});
        assert!(parse(&unknown).unwrap_err().contains("not an amloperator.io kind"));
    }
}
