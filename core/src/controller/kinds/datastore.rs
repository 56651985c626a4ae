//! AmlDatastore on the pipeline: a child of a workspace at `{workspace}/datastores/{name}`,
//! written synchronously. Its secret (account key, SAS token, client secret) is one of the kind's
//! [`AmlKind::secret_values`]: read from its Secret before any ARM call, never compared (ARM never
//! returns it), and written again exactly when its digest changes. Deleting a datastore that a
//! model version of the namespace still reads from waits for that model version.

use crate::arm::ServicePrincipal;
use crate::controller::{
    AmlKind, BoxFuture, Context, DeleteGate, Error, ParentKind, ParentRef, Resolved, SecretValue, Target, child_target,
    workspace_parent,
};
use crate::crd::datastore::StorageCredentialsType;
use crate::crd::{AmlDatastore, AmlModelVersion, CommonSpec, CommonStatus};
use kube::api::ApiResource;
use kube::{Api, ResourceExt};
use serde_json::{Map, Value, json};

/// Spec fields that are operator settings, the parent, or the credentials (built below).
const NOT_PROPERTIES: &[&str] =
    &["azureName", "credentials", "deletionPolicy", "managementPolicy", "workspaceRef", "workspaceId", "storageCredentials"];

/// Where each credentials type's secret goes in the body.
fn secret_pointer(t: StorageCredentialsType) -> Option<&'static str> {
    match t {
        StorageCredentialsType::None => None,
        StorageCredentialsType::AccountKey => Some("/properties/credentials/secrets/key"),
        StorageCredentialsType::Sas => Some("/properties/credentials/secrets/sasToken"),
        StorageCredentialsType::ServicePrincipal => Some("/properties/credentials/secrets/clientSecret"),
    }
}

impl AmlKind for AmlDatastore {
    const ARM_TYPE: &'static str = "Microsoft.MachineLearningServices/workspaces/datastores";
    const OWNER_TAG: Option<&'static str> = Some("/properties/tags");
    const PARENT_KINDS: &'static [ParentKind] = &[ParentKind::Workspace];

    fn common_spec(&self) -> &CommonSpec {
        &self.spec.item.common
    }

    fn common_status(&self) -> Option<&CommonStatus> {
        self.status.as_ref().map(|s| &s.common)
    }

    fn parent(&self) -> Option<ParentRef<'_>> {
        workspace_parent(self.spec.item.workspace_ref.as_ref().map(|r| r.name.as_str()), self.spec.item.workspace_id.as_deref())
    }

    /// A model version that reads from this datastore (`datastoreRef`) makes its delete wait.
    fn watched_children() -> Option<(ApiResource, &'static str)> {
        Some((ApiResource::erase::<AmlModelVersion>(&()), "/spec/datastoreRef/name"))
    }

    fn target(&self, resolved: &Resolved) -> Result<Target, Error> {
        let mut target = child_target(self, resolved, "datastores", None, "a datastore needs its workspace: set workspaceRef or workspaceId")?;
        // Datastores have no location of their own.
        target.location = String::new();
        Ok(target)
    }

    fn desired(&self, _target: &Target) -> Result<Value, Error> {
        let Value::Object(spec) = serde_json::to_value(&self.spec).map_err(|e| Error::InvalidSpec(e.to_string()))? else {
            return Err(Error::InvalidSpec("spec is not an object".into()));
        };
        let mut properties: Map<String, Value> = spec.into_iter().filter(|(k, _)| !NOT_PROPERTIES.contains(&k.as_str())).collect();
        let c = &self.spec.storage_credentials;
        let mut credentials = json!({"credentialsType": c.credentials_type});
        for (field, value) in [("clientId", &c.client_id), ("tenantId", &c.tenant_id), ("authorityUrl", &c.authority_url), ("resourceUrl", &c.resource_url)] {
            if let Some(v) = value {
                credentials[field] = json!(v);
            }
        }
        if c.credentials_type != StorageCredentialsType::None {
            // The value itself is one of the secret values, set by the pipeline before a write.
            credentials["secrets"] = json!({"secretsType": c.credentials_type});
        }
        properties.insert("credentials".into(), credentials);
        Ok(json!({ "properties": properties }))
    }

    fn secret_values(&self) -> Vec<SecretValue<'_>> {
        let c = &self.spec.storage_credentials;
        match (&c.secret_ref, secret_pointer(c.credentials_type)) {
            (Some(reference), Some(pointer)) => vec![SecretValue { reference, pointer, field: "spec.storageCredentials.secretRef" }],
            _ => Vec::new(),
        }
    }

    fn write_only_paths() -> &'static [&'static str] {
        &["/properties/credentials/secrets/key", "/properties/credentials/secrets/sasToken", "/properties/credentials/secrets/clientSecret"]
    }

    fn owned_maps() -> &'static [&'static str] {
        &["/properties/tags"]
    }

    fn immutable_paths() -> &'static [&'static str] {
        &[
            "/properties/datastoreType",
            "/properties/accountName",
            "/properties/containerName",
            "/properties/filesystem",
            "/properties/fileShareName",
            "/properties/endpoint",
            "/properties/protocol",
            "/properties/subscriptionId",
            "/properties/resourceGroup",
        ]
    }

    fn outputs(arm: &Value) -> Map<String, Value> {
        let mut out = Map::new();
        if let Some(d) = arm.pointer("/properties/isDefault").and_then(Value::as_bool) {
            out.insert("isDefault".into(), json!(d));
        }
        out
    }

    fn delete_gate<'a>(&'a self, ctx: &'a Context, _sp: &'a ServicePrincipal, _arm_id: &'a str) -> BoxFuture<'a, Result<DeleteGate, Error>> {
        Box::pin(async move {
            let ns = self.namespace().unwrap_or_default();
            let name = self.name_any();
            let models: Api<AmlModelVersion> = Api::namespaced(ctx.client.clone(), &ns);
            let list = models
                .list(&Default::default())
                .await
                .map_err(|source| Error::Kube { what: "listing the model versions that may read from this datastore", source })?;
            let users: Vec<String> =
                list.items.iter().filter(|m| m.names(ParentKind::Datastore, &name)).map(|m| m.name_any()).collect();
            Ok(super::assets::wait_for_users("AmlModelVersion", &users, &ns, "reads from this datastore"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn datastore(spec: Value) -> AmlDatastore {
        AmlDatastore {
            metadata: ObjectMeta { name: Some("training-data".into()), ..Default::default() },
            spec: serde_json::from_value(spec).expect("valid spec"),
            status: None,
        }
    }

    fn target() -> Target {
        Target {
            subscription: "s".into(),
            resource_group: "rg".into(),
            name: "training-data".into(),
            arm_id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w/datastores/training-data".into(),
            location: String::new(),
        }
    }

    #[test]
    fn the_body_names_the_secret_type_but_holds_no_secret_and_the_secret_is_a_secret_value() {
        let d = datastore(json!({"workspaceRef": {"name": "w"}, "datastoreType": "AzureBlob", "accountName": "teamadata",
            "containerName": "training", "description": "d",
            "storageCredentials": {"credentialsType": "AccountKey", "secretRef": {"name": "teamadata-key", "key": "key"}}}));
        assert_eq!(
            d.desired(&target()).unwrap(),
            json!({"properties": {"datastoreType": "AzureBlob", "accountName": "teamadata", "containerName": "training", "description": "d",
                "credentials": {"credentialsType": "AccountKey", "secrets": {"secretsType": "AccountKey"}}}})
        );
        let values = d.secret_values();
        assert_eq!(values.len(), 1);
        assert_eq!((values[0].reference.name.as_str(), values[0].pointer), ("teamadata-key", "/properties/credentials/secrets/key"));
        assert!(AmlDatastore::write_only_paths().contains(&values[0].pointer));

        let none = datastore(json!({"workspaceRef": {"name": "w"}, "datastoreType": "AzureDataLakeGen2", "accountName": "lake",
            "filesystem": "raw", "storageCredentials": {"credentialsType": "None"}}));
        assert!(none.secret_values().is_empty());
        assert_eq!(none.desired(&target()).unwrap()["properties"]["credentials"], json!({"credentialsType": "None"}));
    }
}
