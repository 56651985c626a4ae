//! The asset versions on the pipeline (AmlModelVersion, AmlEnvironmentVersion, AmlCodeVersion):
//! children of a workspace at `{workspace}/{models|environments|codes}/{name}/versions/{version}`.
//! ARM creates the asset's container with its first version.
//!
//! A version cannot change in Azure except its description, tags, properties, archive flag and
//! stage: admission refuses edits of the rest, and a version that already exists in Azure with
//! other content (made elsewhere) is a `VersionConflict`, never overwritten. Deleting a version
//! that a deployment in the namespace still uses waits for that deployment.

use crate::arm::{ServicePrincipal, ids};
use crate::controller::{
    AmlKind, BoxFuture, Context, DeleteGate, Error, ParentKind, ParentRef, Reference, Refined, Resolved, Target, drift,
    workspace_parent,
};
use crate::crd::{AmlCodeVersion, AmlEnvironmentVersion, AmlModelVersion, AmlOnlineDeployment, AssetSpec, CommonSpec, CommonStatus};
use kube::api::ApiResource;
use kube::{Api, ResourceExt};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Spec fields that are operator settings or the version's address, not ARM `properties`.
const NOT_PROPERTIES: &[&str] =
    &["azureName", "credentials", "deletionPolicy", "managementPolicy", "workspaceRef", "workspaceId", "version", "datastoreRef", "path"];

/// What differs between the three asset kinds.
trait Asset: AmlKind + Serialize {
    /// The collection segment under the workspace (`models`).
    const SEGMENT: &'static str;
    /// The kind of object a deployment names it as.
    const AS_REFERENCE: ParentKind;
    /// JSON pointers of the body that cannot change in an existing version.
    const IMMUTABLE: &'static [&'static str];
    /// Kinds of objects the version uses (a model's datastore).
    const REFERENCE_KINDS: &'static [ParentKind] = &[];
    /// The objects the version uses.
    fn references(&self) -> Vec<Reference<'_>> {
        Vec::new()
    }
    /// The spec fields every asset version has.
    fn asset(&self) -> &AssetSpec;
    /// `spec.version`.
    fn version(&self) -> &str;
    /// The body completed with what resolution found of the objects the version uses. Default:
    /// nothing to add.
    fn with_references(&self, _resolved: &Resolved, body: Value) -> Value {
        body
    }
}

impl Asset for AmlModelVersion {
    const SEGMENT: &'static str = "models";
    const AS_REFERENCE: ParentKind = ParentKind::Model;
    const REFERENCE_KINDS: &'static [ParentKind] = &[ParentKind::Datastore];
    fn references(&self) -> Vec<Reference<'_>> {
        self.spec.datastore_ref.iter().map(|r| Reference { kind: ParentKind::Datastore, name: &r.name, field: DATASTORE_FIELD }).collect()
    }
    const IMMUTABLE: &'static [&'static str] =
        &["/properties/modelUri", "/properties/modelType", "/properties/flavors", "/properties/jobName"];
    fn asset(&self) -> &AssetSpec {
        &self.spec.asset
    }
    fn version(&self) -> &str {
        &self.spec.version
    }
    /// A model in a datastore object: its URI names the datastore's Azure name.
    fn with_references(&self, resolved: &Resolved, mut body: Value) -> Value {
        if let (Some(id), Some(path)) = (resolved.references.get(DATASTORE_FIELD), &self.spec.path) {
            let datastore = id.rsplit('/').next().unwrap_or_default();
            body["properties"]["modelUri"] = json!(format!("azureml://datastores/{datastore}/paths/{}", path.trim_start_matches('/')));
        }
        body
    }
}

/// The spec field of a model version that names its datastore.
const DATASTORE_FIELD: &str = "spec.datastoreRef";

impl Asset for AmlEnvironmentVersion {
    const SEGMENT: &'static str = "environments";
    const AS_REFERENCE: ParentKind = ParentKind::Environment;
    const IMMUTABLE: &'static [&'static str] = &[
        "/properties/image",
        "/properties/build",
        "/properties/condaFile",
        "/properties/inferenceConfig",
        "/properties/osType",
    ];
    fn asset(&self) -> &AssetSpec {
        &self.spec.asset
    }
    fn version(&self) -> &str {
        &self.spec.version
    }
}

impl Asset for AmlCodeVersion {
    const SEGMENT: &'static str = "codes";
    const AS_REFERENCE: ParentKind = ParentKind::Code;
    const IMMUTABLE: &'static [&'static str] = &["/properties/codeUri"];
    fn asset(&self) -> &AssetSpec {
        &self.spec.asset
    }
    fn version(&self) -> &str {
        &self.spec.version
    }
}

/// The version's ARM id under its resolved workspace; assets have no location of their own.
fn target<K: Asset>(obj: &K, resolved: &Resolved) -> Result<Target, Error> {
    let parent = resolved
        .parent
        .as_ref()
        .ok_or_else(|| Error::InvalidSpec("an asset version needs its workspace: set workspaceRef or workspaceId".into()))?;
    let name = crate::controller::azure_name(obj);
    let container = ids::child_id(&parent.arm_id, K::SEGMENT, &name);
    Ok(Target {
        subscription: parent.subscription.clone(),
        resource_group: parent.resource_group.clone(),
        arm_id: ids::child_id(&container, "versions", obj.version()),
        name,
        location: String::new(),
    })
}

/// The body: the spec's asset fields as ARM `properties` (tags live there too, not at the top).
fn desired<K: Asset>(obj: &K) -> Result<Value, Error> {
    let Value::Object(spec) = serde_json::to_value(obj).map_err(|e| Error::InvalidSpec(e.to_string()))?["spec"].take() else {
        return Err(Error::InvalidSpec("spec is not an object".into()));
    };
    let properties: Map<String, Value> = spec.into_iter().filter(|(k, _)| !NOT_PROPERTIES.contains(&k.as_str())).collect();
    Ok(json!({ "properties": properties }))
}

/// A version that exists in Azure with other content than the spec's (made elsewhere, or the
/// version number reused) is never overwritten: ARM would refuse it, and it is someone's model.
fn refine<K: Asset>(target: &Target, desired: Value, actual: Option<&Value>) -> Result<Refined, Error> {
    if let Some(actual) = actual {
        let conflicting = drift::immutable_hits(&drift::drifted::<K>(&desired, actual), K::IMMUTABLE);
        if !conflicting.is_empty() {
            return Err(Error::VersionConflict { arm_id: target.arm_id.clone(), fields: conflicting });
        }
    }
    Ok(Refined { body: desired, waiting: None })
}

/// The deployments in the object's namespace that use it (by reference, or by its ARM id) and
/// are not gone: deleting the version waits for them.
async fn delete_gate<K: Asset>(obj: &K, ctx: &Context, arm_id: &str) -> Result<DeleteGate, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let deployments: Api<AmlOnlineDeployment> = Api::namespaced(ctx.client.clone(), &ns);
    let list = deployments
        .list(&Default::default())
        .await
        .map_err(|source| Error::Kube { what: "listing the deployments that may use this version", source })?;
    let users: Vec<String> = list.items.iter().filter(|d| d.uses(K::AS_REFERENCE, &name, arm_id)).map(|d| d.name_any()).collect();
    Ok(wait_for_users("AmlOnlineDeployment", &users, &ns, &format!("uses this {}", K::SEGMENT.trim_end_matches('s'))))
}

/// Whether a delete waits for the objects of `kind` named in `users` that still use the object
/// (`uses`, e.g. "uses this model"): proceed when there are none.
pub(super) fn wait_for_users(kind: &str, users: &[String], ns: &str, uses: &str) -> DeleteGate {
    if users.is_empty() {
        return DeleteGate::Proceed;
    }
    let (them, are) = if users.len() == 1 { ("it is", "that one") } else { ("they are", "those") };
    DeleteGate::Wait {
        reason: crate::controller::error::reason::WAITING_FOR_USERS,
        message: format!(
            "{kind} {} in namespace {ns} still {uses}; the delete waits until {them} gone or no longer use it (delete or change {are} first)",
            users.join(", ")
        ),
    }
}

/// The pointer in a deployment's spec that names an asset of `kind` (for the watch that wakes a
/// waiting delete when a deployment changes).
fn reference_pointer(kind: ParentKind) -> &'static str {
    match kind {
        ParentKind::Environment => "/spec/environmentRef/name",
        ParentKind::Code => "/spec/codeConfiguration/codeRef/name",
        _ => "/spec/modelRef/name",
    }
}

macro_rules! asset_kind {
    ($kind:ty, $arm_type:literal) => {
        impl AmlKind for $kind {
            const ARM_TYPE: &'static str = $arm_type;
            const OWNER_TAG: Option<&'static str> = Some("/properties/tags");
            const PARENT_KINDS: &'static [ParentKind] = &[ParentKind::Workspace];

            fn common_spec(&self) -> &CommonSpec {
                &self.asset().item.common
            }

            fn common_status(&self) -> Option<&CommonStatus> {
                self.status.as_ref().map(|s| &s.common)
            }

            fn parent(&self) -> Option<ParentRef<'_>> {
                let a = &self.asset().item;
                workspace_parent(a.workspace_ref.as_ref().map(|r| r.name.as_str()), a.workspace_id.as_deref())
            }

            fn watched_children() -> Option<(ApiResource, &'static str)> {
                Some((ApiResource::erase::<AmlOnlineDeployment>(&()), reference_pointer(<$kind as Asset>::AS_REFERENCE)))
            }

            fn target(&self, resolved: &Resolved) -> Result<Target, Error> {
                target(self, resolved)
            }

            fn desired(&self, _target: &Target) -> Result<Value, Error> {
                desired(self)
            }

            fn outputs(_arm: &Value) -> Map<String, Value> {
                Map::new()
            }

            fn refine<'a>(
                &'a self,
                _ctx: &'a Context,
                resolved: &'a Resolved,
                target: &'a Target,
                desired: Value,
                actual: Option<&'a Value>,
            ) -> BoxFuture<'a, Result<Refined, Error>> {
                let desired = self.with_references(resolved, desired);
                Box::pin(async move { refine::<$kind>(target, desired, actual) })
            }

            const REFERENCE_KINDS: &'static [ParentKind] = <$kind as Asset>::REFERENCE_KINDS;

            fn references(&self) -> Vec<Reference<'_>> {
                <$kind as Asset>::references(self)
            }

            /// The asset's own tags are a map the spec owns; its `properties` are not (Azure ML
            /// adds its own).
            fn owned_maps() -> &'static [&'static str] {
                &["/properties/tags"]
            }

            fn immutable_paths() -> &'static [&'static str] {
                <$kind as Asset>::IMMUTABLE
            }

            fn delete_gate<'a>(
                &'a self,
                ctx: &'a Context,
                _sp: &'a ServicePrincipal,
                arm_id: &'a str,
            ) -> BoxFuture<'a, Result<DeleteGate, Error>> {
                Box::pin(delete_gate(self, ctx, arm_id))
            }
        }
    };
}

asset_kind!(AmlModelVersion, "Microsoft.MachineLearningServices/workspaces/models/versions");
asset_kind!(AmlEnvironmentVersion, "Microsoft.MachineLearningServices/workspaces/environments/versions");
asset_kind!(AmlCodeVersion, "Microsoft.MachineLearningServices/workspaces/codes/versions");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::Parent;
    use kube::api::ObjectMeta;

    const WS: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w";

    fn model(spec: Value) -> AmlModelVersion {
        AmlModelVersion {
            metadata: ObjectMeta { name: Some("sklearn-model-1".into()), ..Default::default() },
            spec: serde_json::from_value(spec).expect("valid spec"),
            status: None,
        }
    }

    fn resolved() -> Resolved {
        Resolved {
            principal: crate::arm::ServicePrincipal {
                tenant_id: "t".into(),
                client_id: "c".into(),
                credential: crate::arm::ClientCredential::Secret(crate::arm::Secret::new("s".into())),
                subscription_id: Some("s".into()),
            },
            parent: Some(Parent {
                arm_id: WS.into(),
                subscription: "s".into(),
                resource_group: "rg".into(),
                location: "eastus".into(),
                owner: None,
            }),
            references: Default::default(),
        }
    }

    #[test]
    fn a_version_lives_under_its_container_and_sends_only_asset_fields() {
        let m = model(json!({"workspaceRef": {"name": "w"}, "azureName": "sklearn-model", "version": "1",
            "modelUri": "azureml://datastores/workspaceblobstore/paths/model/", "modelType": "custom_model",
            "description": "d", "tags": {"team": "a"}, "deletionPolicy": "Orphan"}));
        let t = m.target(&resolved()).unwrap();
        assert_eq!(t.arm_id, format!("{WS}/models/sklearn-model/versions/1"));
        assert_eq!(t.location, "");
        assert_eq!(
            m.desired(&t).unwrap(),
            json!({"properties": {"modelUri": "azureml://datastores/workspaceblobstore/paths/model/", "modelType": "custom_model",
                "description": "d", "tags": {"team": "a"}}})
        );
    }

    #[test]
    fn other_content_under_the_same_version_is_a_conflict_and_a_new_description_is_not() {
        let m = model(json!({"workspaceRef": {"name": "w"}, "version": "1", "modelUri": "https://a/b", "description": "new"}));
        let t = m.target(&resolved()).unwrap();
        let body = m.desired(&t).unwrap();
        let same_files = json!({"properties": {"modelUri": "https://a/b", "description": "old", "provisioningState": "Succeeded"}});
        assert!(refine::<AmlModelVersion>(&t, body.clone(), Some(&same_files)).is_ok());
        let other_files = json!({"properties": {"modelUri": "https://a/other", "description": "new"}});
        match refine::<AmlModelVersion>(&t, body, Some(&other_files)) {
            Err(Error::VersionConflict { fields, .. }) => assert_eq!(fields, ["/properties/modelUri"]),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
}
