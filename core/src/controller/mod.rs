//! The reconcile pipeline, generic over the four kinds, and the controllers that run it.
//!
//! A kind only says what differs (`AmlKind`): its ARM type, how its spec becomes an ARM body (pure),
//! which outputs it reports. Everything else — credentials, observe/act, long-running operations,
//! status, finalizer, requeue — lives once in [`pipeline`].

pub mod credentials;
pub mod drift;
pub mod error;
pub mod fleet;
pub mod kinds;
pub mod owner;
pub mod pipeline;
pub mod plan;
pub mod protect;
pub mod resolve;
pub mod run;
pub mod secret_values;
pub mod secrets;
pub mod status;
pub mod tenancy;

pub use error::{Error, Retry};

use crate::arm::{ArmClient, ServicePrincipal};
use crate::crd::{CommonSpec, CommonStatus, CredentialsRef, DeletionPolicy, ManagementPolicy};
use kube::api::ApiResource;
use kube::runtime::events::Recorder;
use kube::{Client, Resource};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

/// Operator-wide settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// How often a converged object is checked against ARM (jittered by ±10%).
    pub resync: Duration,
    /// ARM api-version.
    pub api_version: String,
    /// Operator-wide default credentials Secret (namespace, name), used when neither
    /// `credentials.secretName` nor `aml-credentials` in the object's namespace exists.
    pub default_credentials: Option<(String, String)>,
    /// Which namespaces may use `default_credentials` (`--default-credentials-namespace-selector`):
    /// none by default. Per-namespace and per-object Secrets are not affected.
    pub default_credentials_namespaces: tenancy::NamespaceSelector,
    /// What an `AmlRoleAssignment` may grant (`--role-assignment-allow-roles`,
    /// `--role-assignment-scope-prefix`), checked before any ARM call.
    pub role_assignment_bounds: tenancy::RoleAssignmentBounds,
    /// Delay after a failure that needs a person (missing Secret, 403, quota).
    pub slow_retry: Duration,
    /// First delay of the exponential backoff for transient failures (doubles up to `max_backoff`).
    pub base_backoff: Duration,
    /// Upper bound of the backoff.
    pub max_backoff: Duration,
    /// Automatic retries of transiently failed ARM operations per generation; the next failure
    /// after that waits for a person (`Stalled`).
    pub max_operation_retries: u32,
    /// Objects reconciled at once per kind.
    pub concurrency: u16,
    /// How long a role assignment whose principal ARM does not know yet (`PrincipalNotFound`, Entra
    /// replicating a principal created moments ago) is retried with backoff before it is Stalled.
    pub principal_replication_grace: Duration,
    /// How often an endpoint's keys Secret is compared with ARM's `listKeys` (a POST, which ARM
    /// counts as a write) when nothing else calls for it: keys regenerated outside the operator
    /// show up within this period.
    pub keys_refresh: Duration,
    /// During a key rotation on request, the pause between publishing the new secondary key and
    /// regenerating the primary one, so clients move to the secondary key first.
    pub keys_rotation_grace: Duration,
    /// This cluster's name in the owner tag the operator leaves on every Azure resource it writes
    /// (`amloperator.io-owner: <cluster>/<namespace>/<name>`, see [`owner`]): operators of
    /// different clusters sharing a subscription must use different names.
    pub cluster_name: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            resync: Duration::from_secs(600),
            api_version: crate::arm::DEFAULT_API_VERSION.to_string(),
            default_credentials: None,
            default_credentials_namespaces: tenancy::NamespaceSelector::Nothing,
            role_assignment_bounds: tenancy::RoleAssignmentBounds::default(),
            slow_retry: Duration::from_secs(120),
            base_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(300),
            max_operation_retries: 8,
            concurrency: 16,
            principal_replication_grace: Duration::from_secs(300),
            keys_refresh: Duration::from_secs(3600),
            keys_rotation_grace: Duration::from_secs(120),
            cluster_name: owner::DEFAULT_CLUSTER_NAME.to_string(),
        }
    }
}

/// The controller name Events are reported by.
pub(crate) const REPORTER: &str = "aml-operator";

/// Everything a reconcile needs, shared by all controllers.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// ARM client.
    pub arm: ArmClient,
    /// Settings.
    pub config: Config,
    /// Event recorder.
    pub recorder: Recorder,
    /// Consecutive failures per object uid, for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Locations of parents given by ARM id, learned once.
    locations: Mutex<HashMap<String, String>>,
    /// Per object uid, the last generation this process sent an ARM write for: a resource found
    /// failed afterwards is that write's failure, even when its answer was lost.
    writes: Mutex<HashMap<String, i64>>,
    /// Objects per principal against the fleet bound.
    pub fleet: fleet::Fleet,
    /// The operator's own writes to credentials Secrets, which wake nothing.
    pub own_secret_writes: secrets::OwnWrites,
    /// Namespace labels, for the default credentials' namespace selector.
    pub namespaces: tenancy::Namespaces,
}

impl Context {
    /// A context for the controllers.
    pub fn new(client: Client, arm: ArmClient, config: Config) -> Self {
        let recorder = Recorder::new(client.clone(), REPORTER.into());
        let fleet = fleet::Fleet::new(arm.rate_limits().reads_per_second, config.resync);
        Context {
            client,
            arm,
            config,
            recorder,
            failures: Mutex::new(HashMap::new()),
            locations: Mutex::new(HashMap::new()),
            writes: Mutex::new(HashMap::new()),
            fleet,
            own_secret_writes: secrets::OwnWrites::default(),
            namespaces: tenancy::Namespaces::default(),
        }
    }

    /// Records one more consecutive failure for `uid` and returns the count.
    pub(crate) fn note_failure(&self, uid: &str) -> u32 {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(uid.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// The cached location of the ARM resource `id`.
    pub(crate) fn cached_location(&self, id: &str) -> Option<String> {
        self.locations.lock().unwrap_or_else(|e| e.into_inner()).get(&id.to_ascii_lowercase()).cloned()
    }

    /// Remembers the location of the ARM resource `id`.
    pub(crate) fn cache_location(&self, id: &str, location: &str) {
        self.locations.lock().unwrap_or_else(|e| e.into_inner()).insert(id.to_ascii_lowercase(), location.to_string());
    }

    /// Records that an ARM write for `uid` at `generation` is about to be sent.
    pub(crate) fn note_write(&self, uid: &str, generation: i64) {
        self.writes.lock().unwrap_or_else(|e| e.into_inner()).insert(uid.to_string(), generation);
    }

    /// Whether this process sent an ARM write for `uid` at `generation`.
    pub(crate) fn wrote_at(&self, uid: &str, generation: i64) -> bool {
        self.writes.lock().unwrap_or_else(|e| e.into_inner()).get(uid) == Some(&generation)
    }

    /// Forgets everything this process remembers of `uid`: its object is gone (without this,
    /// a cluster that creates and deletes objects all day would grow the maps forever).
    pub(crate) fn forget(&self, uid: &str) {
        self.writes.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
        self.fleet.forget(uid);
    }

    /// Forgets the failures of `uid` after a success.
    pub(crate) fn note_success(&self, uid: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
    }
}

/// The operator-level settings every kind's spec carries.
#[derive(Clone, Copy, Debug)]
pub struct Policies<'a> {
    /// `spec.azureName`, if set.
    pub azure_name: Option<&'a str>,
    /// `spec.credentials`.
    pub credentials: Option<&'a CredentialsRef>,
    /// `spec.deletionPolicy` with the default applied.
    pub deletion: DeletionPolicy,
    /// `spec.managementPolicy` with the default applied.
    pub management: ManagementPolicy,
}

/// Where an object lives in ARM, resolved from its spec, credentials and parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Subscription id.
    pub subscription: String,
    /// Resource group.
    pub resource_group: String,
    /// Azure name of the resource.
    pub name: String,
    /// Full ARM id.
    pub arm_id: String,
    /// Location inherited or declared.
    pub location: String,
}

/// A kind of object another object can name in its spec: a parent, or an asset a deployment uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParentKind {
    /// An `AmlWorkspace` in the same namespace.
    Workspace,
    /// An `AmlOnlineEndpoint` in the same namespace.
    Endpoint,
    /// An `AmlCompute` in the same namespace.
    Compute,
    /// An `AmlModelVersion` in the same namespace.
    Model,
    /// An `AmlEnvironmentVersion` in the same namespace.
    Environment,
    /// An `AmlCodeVersion` in the same namespace.
    Code,
    /// An `AmlDatastore` in the same namespace.
    Datastore,
}

impl ParentKind {
    /// The API resource of this kind.
    pub fn resource(self) -> ApiResource {
        match self {
            ParentKind::Workspace => ApiResource::erase::<crate::crd::AmlWorkspace>(&()),
            ParentKind::Endpoint => ApiResource::erase::<crate::crd::AmlOnlineEndpoint>(&()),
            ParentKind::Compute => ApiResource::erase::<crate::crd::AmlCompute>(&()),
            ParentKind::Model => ApiResource::erase::<crate::crd::AmlModelVersion>(&()),
            ParentKind::Environment => ApiResource::erase::<crate::crd::AmlEnvironmentVersion>(&()),
            ParentKind::Code => ApiResource::erase::<crate::crd::AmlCodeVersion>(&()),
            ParentKind::Datastore => ApiResource::erase::<crate::crd::AmlDatastore>(&()),
        }
    }
}

/// An object this object uses besides its parent, named in its spec (a deployment's model,
/// environment and code): it must be Ready before the object is written, and its ARM id is what
/// the object sends ARM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reference<'a> {
    /// Which kind.
    pub kind: ParentKind,
    /// Its `metadata.name`.
    pub name: &'a str,
    /// The spec field that names it, for messages (`spec.modelRef`).
    pub field: &'static str,
}

/// How a child's spec names its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParentRef<'a> {
    /// A parent object in the same namespace (`workspaceRef` / `endpointRef`).
    Object {
        /// Which kind.
        kind: ParentKind,
        /// Its `metadata.name`.
        name: &'a str,
    },
    /// The ARM id of a parent not managed here (`workspaceId`).
    ArmId(&'a str),
}

/// A resolved, ready parent.
#[derive(Clone, Debug, PartialEq)]
pub struct Parent {
    /// ARM id of the parent resource.
    pub arm_id: String,
    /// Subscription of the parent.
    pub subscription: String,
    /// Resource group of the parent.
    pub resource_group: String,
    /// Location of the parent.
    pub location: String,
    /// Owner reference to the parent object (None for a parent given by ARM id).
    pub owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
}

/// What the pipeline resolved before building the body: the principal and the parent, if any.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The service principal (from the object's, its parent's or the default Secret).
    pub principal: ServicePrincipal,
    /// The ready parent, for children.
    pub parent: Option<Parent>,
    /// The ARM ids of the ready objects [`AmlKind::references`] names, by spec field.
    pub references: std::collections::BTreeMap<&'static str, String>,
}

/// The body after a kind's IO-dependent refinements, and anything the kind is still waiting for.
#[derive(Clone, Debug, Default)]
pub struct Refined {
    /// The body to converge ARM to now.
    pub body: Value,
    /// When set, the object is not Ready even once ARM matches `body`: (reason, message).
    pub waiting: Option<(String, String)>,
}

/// Whether a kind's dependency hook may write to ARM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DependencyMode {
    /// Create what is missing, repair drift, wait until ready (a reconcile under `Manage`).
    Ensure,
    /// Only read (`plan`, and `managementPolicy: Observe`).
    ReadOnly,
}

/// A dependency as `plan` sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedDependency {
    /// ARM resource type, e.g. `Microsoft.Storage/storageAccounts`.
    pub resource_type: &'static str,
    /// Its ARM id.
    pub arm_id: String,
    /// Whether it exists in Azure now (else applying creates it).
    pub exists: bool,
    /// JSON pointers where it differs from what the operator wants (applying repairs them).
    pub drifted: Vec<String>,
}

/// What a kind's dependency hook found or did.
#[derive(Clone, Debug, Default)]
pub struct Dependencies {
    /// The body, completed with the dependencies' ids.
    pub body: Value,
    /// Set while a dependency is not ready: the object's own resource is not written yet
    /// (reason, message).
    pub pending: Option<(String, String)>,
    /// Status fields the kind owns beside ARM's outputs (camelCase name -> value).
    pub status: Map<String, Value>,
    /// For `plan`: each dependency the kind manages.
    pub planned: Vec<PlannedDependency>,
}

/// How a kind sends an update.
#[derive(Clone, Debug, PartialEq)]
pub enum UpdateRequest {
    /// PUT the whole body.
    Put(Value),
    /// PATCH this partial body (e.g. a compute's scale settings).
    Patch(Value),
}

/// A boxed future borrowed for `'a`.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What a kind adds to the generic pipeline.
pub trait AmlKind:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// ARM resource type, e.g. `Microsoft.MachineLearningServices/workspaces`.
    const ARM_TYPE: &'static str;

    /// The JSON pointer of the resource's tag map, where the owner tag goes ([`owner`]): `/tags`
    /// (the default), `/properties/tags` for asset versions and datastores; `None` for a resource
    /// without tags (a role assignment, whose ARM name is derived from what it grants: two objects
    /// asking for the same grant are the same grant).
    const OWNER_TAG: Option<&'static str> = Some("/tags");

    /// The ARM api-version of this kind's requests. Default: the operator's ML api-version
    /// (`--api-version`); a kind of another resource provider names its own.
    fn arm_api_version(config: &Config) -> &str {
        &config.api_version
    }

    /// The spec fields every kind has (`azureName`, `credentials`, the policies).
    fn common_spec(&self) -> &CommonSpec;

    /// The operator-level settings of the spec, with defaults applied.
    fn policies(&self) -> Policies<'_> {
        let common = self.common_spec();
        Policies {
            azure_name: common.azure_name.as_deref(),
            credentials: common.credentials.as_ref(),
            deletion: common.deletion_policy.unwrap_or_default(),
            management: common.management_policy.unwrap_or_default(),
        }
    }

    /// The status fields every kind shares, if status exists.
    fn common_status(&self) -> Option<&CommonStatus>;

    /// Kinds of parent objects this kind can name (watched, so children start when parents are ready).
    const PARENT_KINDS: &'static [ParentKind] = &[];

    /// A child kind this kind waits for, to watch as well, with the JSON pointer of the child's
    /// reference to this kind's object (an endpoint's traffic waits for its deployments).
    fn watched_children() -> Option<(ApiResource, &'static str)> {
        None
    }

    /// The parent this object names, if it is a child.
    fn parent(&self) -> Option<ParentRef<'_>> {
        None
    }

    /// Kinds of objects this kind can use besides its parent (watched like parents, so an object
    /// starts as soon as what it uses is ready).
    const REFERENCE_KINDS: &'static [ParentKind] = &[];

    /// The objects this object uses besides its parent ([`Reference`]). Default: none.
    fn references(&self) -> Vec<Reference<'_>> {
        Vec::new()
    }

    /// Whether this object names `name` of `kind`, as its parent or as something it uses.
    fn names(&self, kind: ParentKind, name: &str) -> bool {
        self.parent() == Some(ParentRef::Object { kind, name }) || self.references().iter().any(|r| r.kind == kind && r.name == name)
    }

    /// Resolves the ARM location of the object (pure), from the principal and the ready parent.
    fn target(&self, resolved: &Resolved) -> Result<Target, Error>;

    /// The ARM request body for the spec (pure). Holds only what the user set, which is what drift
    /// detection compares against ARM.
    fn desired(&self, target: &Target) -> Result<Value, Error>;

    /// Kind-specific status outputs taken from ARM's answer (camelCase status field -> value).
    fn outputs(arm: &Value) -> Map<String, Value>;

    /// IO-dependent refinements of the desired body (read a password Secret, drop traffic to
    /// deployments that do not exist yet). `actual` is ARM's current answer. Default: none.
    fn refine<'a>(
        &'a self,
        _ctx: &'a Context,
        _resolved: &'a Resolved,
        _target: &'a Target,
        desired: Value,
        _actual: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<Refined, Error>> {
        Box::pin(async move { Ok(Refined { body: desired, waiting: None }) })
    }

    /// Other Azure resources the object's own resource needs and the kind creates when the spec
    /// does not name them (a workspace's storage account, key vault, Log Analytics workspace and
    /// Application Insights component). Runs after the observation and before [`AmlKind::refine`];
    /// completes the body with their ids. Under [`DependencyMode::ReadOnly`] it only reads.
    /// Default: none.
    fn dependencies<'a>(
        &'a self,
        _ctx: &'a Context,
        _resolved: &'a Resolved,
        _target: &'a Target,
        desired: Value,
        _actual: Option<&'a Value>,
        _mode: DependencyMode,
    ) -> BoxFuture<'a, Result<Dependencies, Error>> {
        Box::pin(async move { Ok(Dependencies { body: desired, ..Dependencies::default() }) })
    }

    /// Deletes what [`AmlKind::dependencies`] created, once the object's own resource is gone
    /// (cleanup under `deletionPolicy: Delete`). Returns [`Error::DeletePending`] until all of
    /// it is gone. Default: nothing to delete.
    fn delete_dependencies<'a>(&'a self, _ctx: &'a Context, _sp: &'a ServicePrincipal) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }

    /// Work after ARM matches the spec (write an endpoint's keys Secret, rotate its keys).
    /// `Some(d)`: work is under way (an ARM operation it never awaits): reconcile again within `d`
    /// instead of at the resync period. Default: none.
    fn after_converged<'a>(
        &'a self,
        _ctx: &'a Context,
        _resolved: &'a Resolved,
        _target: &'a Target,
        _actual: &'a Value,
    ) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        Box::pin(async { Ok(None) })
    }

    /// JSON pointers of maps the spec owns whole (tags, environment variables, ...): when the
    /// desired body holds one, a key ARM holds there that the body does not is drift, and the write
    /// that follows removes it (PUT replaces the map; so does ARM's PATCH of `tags`). A map the body
    /// does not hold stays unmanaged. Lists need no entry: drift compares them whole. Default: none.
    fn owned_maps() -> &'static [&'static str] {
        &[]
    }

    /// JSON pointers ARM never returns (secrets): left out of drift detection.
    fn write_only_paths() -> &'static [&'static str] {
        &[]
    }

    /// Values of the body the object takes from Secrets of its namespace and ARM never returns (a
    /// datastore's account key): read before any ARM call (a missing one is `SecretNotFound`, with
    /// no ARM call), set at their pointers (which [`AmlKind::write_only_paths`] holds), and
    /// written again exactly when their digest differs from `status.secretDigest`, the digest of
    /// what was last written (a GET cannot show whether Azure holds the current value). Their
    /// Secrets wake the object when they change. Default: none.
    fn secret_values(&self) -> Vec<SecretValue<'_>> {
        Vec::new()
    }

    /// Bounds the cluster admin set on what this object may ask of Azure, checked at the start of
    /// apply, before credentials are read and before any ARM call or token request (a role
    /// assignment's role and scope: [`tenancy::RoleAssignmentBounds`]). Default: none.
    fn within_bounds(&self, _config: &Config) -> Result<(), Error> {
        Ok(())
    }

    /// JSON pointers of the ARM body that cannot change in place (e.g. `/location`): a difference
    /// under one of them means the resource must be recreated. Used by `plan`. Default: none.
    fn immutable_paths() -> &'static [&'static str] {
        &[]
    }

    /// How to send an update, given the drifted paths. Default: PUT the whole body.
    fn update_request(&self, desired: &Value, _drifted: &[String]) -> UpdateRequest {
        UpdateRequest::Put(desired.clone())
    }

    /// When ARM has nothing at the target id: an existing resource elsewhere that already is what
    /// the spec describes, to adopt instead of creating (a role assignment granted under another
    /// name). Called before a create and by `plan`. Default: none.
    fn locate<'a>(
        &'a self,
        _ctx: &'a Context,
        _resolved: &'a Resolved,
        _target: &'a Target,
    ) -> BoxFuture<'a, Result<Option<Value>, Error>> {
        Box::pin(async { Ok(None) })
    }

    /// What a refused PUT/PATCH (`verb` is `create` or `update`) means for this kind: `Ok(body)` is
    /// an existing ARM resource that already is what the spec describes, adopted instead of written
    /// (a role assignment granted under another name answers 409 `RoleAssignmentExists`); `Err` is
    /// the error to report, which a kind may classify more precisely. Default: the ARM error as is.
    fn write_failed<'a>(
        &'a self,
        _ctx: &'a Context,
        _resolved: &'a Resolved,
        target: &'a Target,
        verb: &'static str,
        error: crate::arm::Error,
    ) -> BoxFuture<'a, Result<Value, Error>> {
        Box::pin(async move { Err(Error::Arm { action: verb, arm_id: target.arm_id.clone(), source: error }) })
    }

    /// Extra query parameters for DELETE (computes need `underlyingResourceAction`).
    fn delete_query() -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// Whether ARM would take a DELETE of `arm_id` now. A kind whose deletes depend on another
    /// resource's state says so here, so the delete waits instead of being refused: a deployment
    /// that still receives traffic waits for its endpoint. Default: go ahead.
    fn delete_gate<'a>(
        &'a self,
        _ctx: &'a Context,
        _sp: &'a ServicePrincipal,
        _arm_id: &'a str,
    ) -> BoxFuture<'a, Result<DeleteGate, Error>> {
        Box::pin(async { Ok(DeleteGate::Proceed) })
    }
}

/// A value of the ARM body taken from a Secret key ([`AmlKind::secret_values`]).
#[derive(Clone, Copy, Debug)]
pub struct SecretValue<'a> {
    /// The Secret key (in the object's namespace).
    pub reference: &'a crate::crd::SecretKeyRef,
    /// Where the value goes in the body.
    pub pointer: &'static str,
    /// The spec field that names the Secret, for messages.
    pub field: &'static str,
}

/// Sets `pointer` in `body` to `value`, making the objects on the way.
pub(crate) fn set_pointer(body: &mut Value, pointer: &str, value: Value) {
    let mut at = body;
    let mut keys = pointer.split('/').skip(1).peekable();
    while let Some(key) = keys.next() {
        if !at.is_object() {
            *at = Value::Object(Map::new());
        }
        let Value::Object(map) = at else { return };
        if keys.peek().is_none() {
            map.insert(key.to_string(), value);
            return;
        }
        at = map.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
    }
}

/// What [`AmlKind::delete_gate`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteGate {
    /// Send the DELETE.
    Proceed,
    /// The resource is already gone with its parent (ARM deletes children with their parent).
    Gone,
    /// ARM would refuse the DELETE now: wait, with this reason and message.
    Wait {
        /// PascalCase reason for the conditions.
        reason: &'static str,
        /// What the object waits for.
        message: String,
    },
}

/// The Azure name of an object: `spec.azureName`, else `metadata.name`.
pub fn azure_name<K: AmlKind>(obj: &K) -> String {
    obj.policies()
        .azure_name
        .map(str::to_string)
        .or_else(|| obj.meta().name.clone())
        .unwrap_or_default()
}

/// The parent a workspace child names: `workspaceRef` (an object here) or `workspaceId`.
pub fn workspace_parent<'a>(workspace_ref: Option<&'a str>, workspace_id: Option<&'a str>) -> Option<ParentRef<'a>> {
    match (workspace_ref, workspace_id) {
        (Some(name), _) => Some(ParentRef::Object { kind: ParentKind::Workspace, name }),
        (None, Some(id)) => Some(ParentRef::ArmId(id)),
        (None, None) => None,
    }
}

/// Where a child lives: under its resolved parent, as `{parent}/{segment}/{name}`, in `location`
/// or else the parent's. `missing` says what to set when there is no parent.
pub fn child_target<K: AmlKind>(
    obj: &K,
    resolved: &Resolved,
    segment: &str,
    location: Option<&str>,
    missing: &str,
) -> Result<Target, Error> {
    let parent = resolved.parent.as_ref().ok_or_else(|| Error::InvalidSpec(missing.to_string()))?;
    let name = azure_name(obj);
    Ok(Target {
        subscription: parent.subscription.clone(),
        resource_group: parent.resource_group.clone(),
        arm_id: crate::arm::ids::child_id(&parent.arm_id, segment, &name),
        name,
        location: location.map(str::to_string).unwrap_or_else(|| parent.location.clone()),
    })
}

/// The principal's subscription, or an error naming where to set one.
pub fn subscription_of<K: AmlKind>(obj: &K, spec_subscription: Option<&str>, sp: &ServicePrincipal) -> Result<String, Error> {
    use kube::ResourceExt;
    spec_subscription
        .map(str::to_string)
        .or_else(|| sp.subscription_id.clone())
        .ok_or_else(|| Error::NoSubscription { namespace: obj.namespace().unwrap_or_default(), name: obj.name_any() })
}
