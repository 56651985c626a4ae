//! AmlWorkspace on the pipeline: ARM location, body and outputs; its dependencies are in
//! [`super::dependencies`].

use crate::controller::subscription_of;
use super::dependencies;
use crate::controller::{AmlKind, BoxFuture, Context, Dependencies, DependencyMode, Error, Resolved, Target, azure_name};
use crate::arm::ServicePrincipal;
use crate::crd::{AmlWorkspace, CommonSpec, CommonStatus};
use serde_json::{Map, Value, json};

/// Spec fields that are operator settings or envelope fields, not workspace `properties`.
const NOT_PROPERTIES: &[&str] = &[
    "azureName",
    "resourceGroup",
    "subscriptionId",
    "credentials",
    "deletionPolicy",
    "managementPolicy",
    "location",
    "tags",
    "sku",
    "kind",
    "identity",
    "sharedPrivateLinkResources",
    "createDependencies",
    "dependencyNames",
];

impl AmlKind for AmlWorkspace {
    const ARM_TYPE: &'static str = "Microsoft.MachineLearningServices/workspaces";

    fn common_spec(&self) -> &CommonSpec {
        &self.spec.common
    }

    fn common_status(&self) -> Option<&CommonStatus> {
        self.status.as_ref().map(|s| &s.common)
    }

    fn target(&self, resolved: &Resolved) -> Result<Target, Error> {
        let subscription = subscription_of(self, self.spec.subscription_id.as_deref(), &resolved.principal)?;
        let name = azure_name(self);
        let arm_id = crate::arm::ids::workspace_id(&subscription, &self.spec.resource_group, &name);
        Ok(Target {
            subscription,
            resource_group: self.spec.resource_group.clone(),
            name,
            arm_id,
            location: self.spec.location.clone(),
        })
    }

    fn desired(&self, target: &Target) -> Result<Value, Error> {
        let spec = serde_json::to_value(&self.spec).map_err(|e| Error::InvalidSpec(e.to_string()))?;
        let Value::Object(mut fields) = spec else {
            return Err(Error::InvalidSpec("spec is not an object".into()));
        };
        let mut body = Map::new();
        body.insert("location".into(), json!(target.location));
        for key in ["tags", "sku", "kind"] {
            if let Some(v) = fields.get(key) {
                body.insert(key.into(), v.clone());
            }
        }
        if let Some(identity) = &self.spec.identity {
            body.insert("identity".into(), identity.to_arm());
        }
        for key in NOT_PROPERTIES {
            fields.remove(*key);
        }
        if let Some(links) = &self.spec.shared_private_link_resources {
            let arm: Vec<Value> = links
                .iter()
                .map(|l| {
                    let mut props = serde_json::to_value(l).unwrap_or_else(|_| json!({}));
                    if let Value::Object(m) = &mut props {
                        m.remove("name");
                    }
                    json!({ "name": l.name, "properties": props })
                })
                .collect();
            fields.insert("sharedPrivateLinkResources".into(), Value::Array(arm));
        }
        body.insert("properties".into(), Value::Object(fields));
        Ok(Value::Object(body))
    }

    /// Tags, user-assigned identities and the managed network's outbound rules (the rules Azure adds
    /// itself, category `Required`/`Recommended`/`Dependency`, are never removed).
    fn owned_maps() -> &'static [&'static str] {
        &["/tags", "/identity/userAssignedIdentities", "/properties/managedNetwork/outboundRules"]
    }

    fn dependencies<'a>(
        &'a self,
        ctx: &'a Context,
        resolved: &'a Resolved,
        target: &'a Target,
        desired: Value,
        actual: Option<&'a Value>,
        mode: DependencyMode,
    ) -> BoxFuture<'a, Result<Dependencies, Error>> {
        Box::pin(dependencies::ensure(self, ctx, resolved, target, desired, actual, mode))
    }

    fn delete_dependencies<'a>(&'a self, ctx: &'a Context, sp: &'a ServicePrincipal) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(dependencies::delete(self, ctx, sp))
    }

    fn immutable_paths() -> &'static [&'static str] {
        &[
            "/location",
            "/kind",
            "/properties/storageAccount",
            "/properties/keyVault",
            "/properties/hbiWorkspace",
            "/properties/encryption/keyVaultProperties/keyVaultArmId",
        ]
    }

    fn outputs(arm: &Value) -> Map<String, Value> {
        let mut out = Map::new();
        for key in ["workspaceId", "discoveryUrl", "mlFlowTrackingUri"] {
            if let Some(v) = arm.pointer(&format!("/properties/{key}")).filter(|v| !v.is_null()) {
                out.insert(key.into(), v.clone());
            }
        }
        out
    }
}
