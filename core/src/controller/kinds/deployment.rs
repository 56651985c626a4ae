//! AmlOnlineDeployment on the pipeline: a managed deployment under its endpoint.
//!
//! The instance count is ARM's `sku.capacity` (`{name: "Default", capacity: N}`, as the Azure ML SDK
//! sends it); a change of only the instance count or tags is sent as a PATCH, anything else as a PUT.
//! When ARM reports the deployment `Failed`, the pipeline shows ARM's error (e.g. `OutOfQuota`,
//! `ImageBuildFailure`) in the Ready condition and does not write again until the spec changes.

use crate::controller::child_target;
use crate::controller::{
    AmlKind, BoxFuture, Context, DeleteGate, Error, ParentKind, ParentRef, Reference, Refined, Resolved, Target, UpdateRequest,
};
use crate::arm::ServicePrincipal;
use crate::arm::ids;
use crate::crd::{AmlOnlineDeployment, CommonSpec, CommonStatus};
use serde_json::{Map, Value, json};

/// Spec fields that are operator settings, envelope fields or renamed, not deployment `properties`.
const NOT_PROPERTIES: &[&str] = &[
    "azureName",
    "endpointRef",
    "credentials",
    "deletionPolicy",
    "managementPolicy",
    "tags",
    "instanceCount",
    "modelRef",
    "environmentRef",
];

/// Where the ARM id of each object a deployment names goes in its body, by the spec field that
/// names it.
const REFERENCED_AT: &[(&str, &str)] = &[
    ("spec.modelRef", "/properties/model"),
    ("spec.environmentRef", "/properties/environmentId"),
    ("spec.codeConfiguration.codeRef", "/properties/codeConfiguration/codeId"),
];

impl AmlOnlineDeployment {
    /// Whether this deployment uses the asset version `name` of `kind` (an object in its
    /// namespace), by reference or by its ARM id `arm_id`.
    pub fn uses(&self, kind: ParentKind, name: &str, arm_id: &str) -> bool {
        let by_id = match kind {
            ParentKind::Model => self.spec.model.as_deref(),
            ParentKind::Environment => self.spec.environment_id.as_deref(),
            ParentKind::Code => self.spec.code_configuration.as_ref().and_then(|c| c.code_id.as_deref()),
            _ => None,
        };
        self.names(kind, name) || by_id.is_some_and(|id| id.eq_ignore_ascii_case(arm_id))
    }
}

/// Top-level body fields ARM's PATCH of a deployment accepts (`PartialMinimalTrackedResourceWithSku`).
const PATCHABLE: &[&str] = &["sku", "tags"];

impl AmlKind for AmlOnlineDeployment {
    const ARM_TYPE: &'static str = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments";
    const PARENT_KINDS: &'static [ParentKind] = &[ParentKind::Endpoint];
    const REFERENCE_KINDS: &'static [ParentKind] = &[ParentKind::Model, ParentKind::Environment, ParentKind::Code];

    fn references(&self) -> Vec<Reference<'_>> {
        let spec = &self.spec;
        let code = spec.code_configuration.as_ref().and_then(|c| c.code_ref.as_ref());
        [
            (ParentKind::Model, spec.model_ref.as_ref(), "spec.modelRef"),
            (ParentKind::Environment, spec.environment_ref.as_ref(), "spec.environmentRef"),
            (ParentKind::Code, code, "spec.codeConfiguration.codeRef"),
        ]
        .into_iter()
        .filter_map(|(kind, r, field)| r.map(|r| Reference { kind, name: &r.name, field }))
        .collect()
    }

    /// The ARM ids of the model, environment and code objects the spec names go where ARM takes
    /// them (resolution found them Ready).
    fn refine<'a>(
        &'a self,
        _ctx: &'a Context,
        resolved: &'a Resolved,
        _target: &'a Target,
        mut desired: Value,
        _actual: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<Refined, Error>> {
        for (field, pointer) in REFERENCED_AT {
            if let Some(id) = resolved.references.get(field) {
                crate::controller::set_pointer(&mut desired, pointer, json!(id));
            }
        }
        Box::pin(async move { Ok(Refined { body: desired, waiting: None }) })
    }

    fn common_spec(&self) -> &CommonSpec {
        &self.spec.common
    }

    /// ARM refuses (400) to delete a deployment its endpoint still routes live or mirrored traffic
    /// to. Wait for the endpoint instead: its own spec change, or its deletion (which takes its
    /// deployments with it), whichever comes — never a refused DELETE.
    fn delete_gate<'a>(&'a self, ctx: &'a Context, sp: &'a ServicePrincipal, arm_id: &'a str) -> BoxFuture<'a, Result<DeleteGate, Error>> {
        Box::pin(async move {
            let Some((endpoint_id, name)) = arm_id.rsplit_once(&format!("/{}/", ids::DEPLOYMENTS)) else {
                return Ok(DeleteGate::Proceed);
            };
            let read_error = |source| Error::Arm { action: "read", arm_id: endpoint_id.to_string(), source };
            let Some(endpoint) = ctx.arm.get(sp, endpoint_id, &ctx.config.api_version).await.map_err(read_error)? else {
                return Ok(DeleteGate::Gone);
            };
            let routed = |map: &str| -> i64 {
                endpoint
                    .pointer(&format!("/properties/{map}"))
                    .and_then(Value::as_object)
                    .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.as_i64()))
                    .unwrap_or(0)
            };
            let (live, mirrored) = (routed("traffic"), routed("mirrorTraffic"));
            if live > 0 || mirrored > 0 {
                return Ok(DeleteGate::Wait {
                    reason: "WaitingForTrafficRemoval",
                    message: format!(
                        "The endpoint still routes {live}% of live and {mirrored}% of mirrored traffic to this deployment; ARM deletes it once the endpoint's traffic leaves it (edit the endpoint's spec.traffic) or the endpoint is deleted"
                    ),
                });
            }
            Ok(DeleteGate::Proceed)
        })
    }

    fn common_status(&self) -> Option<&CommonStatus> {
        self.status.as_ref().map(|s| &s.common)
    }

    fn parent(&self) -> Option<ParentRef<'_>> {
        Some(ParentRef::Object { kind: ParentKind::Endpoint, name: &self.spec.endpoint_ref.name })
    }

    fn target(&self, resolved: &Resolved) -> Result<Target, Error> {
        child_target(self, resolved, ids::DEPLOYMENTS, None, "spec.endpointRef names no ready endpoint")
    }

    fn desired(&self, target: &Target) -> Result<Value, Error> {
        let spec = serde_json::to_value(&self.spec).map_err(|e| Error::InvalidSpec(e.to_string()))?;
        let Value::Object(mut props) = spec else {
            return Err(Error::InvalidSpec("spec is not an object".into()));
        };
        for key in NOT_PROPERTIES {
            props.remove(*key);
        }
        if let Some(Value::Object(code)) = props.get_mut("codeConfiguration") {
            code.remove("codeRef");
        }
        props.insert("endpointComputeType".into(), json!("Managed"));
        let mut body = json!({ "location": target.location, "properties": props });
        if let Some(tags) = &self.spec.tags {
            body["tags"] = json!(tags);
        }
        if let Some(n) = self.spec.instance_count {
            body["sku"] = json!({ "name": "Default", "capacity": n });
        }
        Ok(body)
    }

    fn immutable_paths() -> &'static [&'static str] {
        &["/location", "/properties/endpointComputeType"]
    }

    /// ARM's `properties.properties` dictionary is add-only ("can be added, but not removed or
    /// altered"), so the spec does not offer it and it is not owned.
    fn owned_maps() -> &'static [&'static str] {
        &["/tags", "/properties/environmentVariables"]
    }

    fn outputs(arm: &Value) -> Map<String, Value> {
        let mut out = Map::new();
        if let Some(n) = arm.pointer("/sku/capacity").and_then(Value::as_i64) {
            out.insert("instanceCount".into(), json!(n));
        }
        out
    }

    fn update_request(&self, desired: &Value, drifted: &[String]) -> UpdateRequest {
        let patchable = |path: &String| PATCHABLE.iter().any(|f| path == &format!("/{f}") || path.starts_with(&format!("/{f}/")));
        if drifted.is_empty() || !drifted.iter().all(patchable) {
            return UpdateRequest::Put(desired.clone());
        }
        let mut patch = Map::new();
        for field in PATCHABLE {
            if let Some(v) = desired.get(*field) {
                patch.insert((*field).into(), v.clone());
            }
        }
        UpdateRequest::Patch(Value::Object(patch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn deployment(spec: Value) -> AmlOnlineDeployment {
        AmlOnlineDeployment {
            metadata: ObjectMeta { name: Some("blue".into()), ..Default::default() },
            spec: serde_json::from_value(spec).expect("valid spec"),
            status: None,
        }
    }

    fn target() -> Target {
        Target {
            subscription: "s".into(),
            resource_group: "rg".into(),
            name: "blue".into(),
            arm_id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w/onlineEndpoints/e/deployments/blue".into(),
            location: "eastus".into(),
        }
    }

    #[test]
    fn instance_count_becomes_the_sku_and_operator_fields_stay_out() {
        let d = deployment(json!({"endpointRef": {"name": "e"}, "instanceCount": 3, "instanceType": "Standard_DS3_v2",
            "deletionPolicy": "Orphan", "tags": {"a": "b"}}));
        let body = d.desired(&target()).unwrap();
        assert_eq!(body["sku"], json!({"name": "Default", "capacity": 3}));
        assert_eq!(body["tags"], json!({"a": "b"}));
        assert_eq!(body["properties"], json!({"endpointComputeType": "Managed", "instanceType": "Standard_DS3_v2"}));
    }

    #[test]
    fn scaling_alone_is_a_patch_and_anything_else_a_put() {
        let d = deployment(json!({"endpointRef": {"name": "e"}, "instanceCount": 2, "model": "m"}));
        let body = d.desired(&target()).unwrap();
        assert_eq!(
            d.update_request(&body, &["/sku/capacity".into()]),
            UpdateRequest::Patch(json!({"sku": {"name": "Default", "capacity": 2}}))
        );
        assert!(matches!(d.update_request(&body, &["/sku/capacity".into(), "/properties/model".into()]), UpdateRequest::Put(_)));
    }
}
