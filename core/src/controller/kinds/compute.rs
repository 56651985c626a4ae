//! AmlCompute on the pipeline: a child of a workspace. The body is built from the spec (pure); the
//! administrator password and SSH key of a cluster are read from Secrets in `refine`, only when a
//! PUT may follow, and never count as drift (ARM does not return them). A change of scale settings
//! alone is one PATCH; deleting sends `underlyingResourceAction=Delete`.

use crate::controller::{child_target, secret_values, workspace_parent};
use crate::controller::{
    AmlKind, BoxFuture, Context, Error, ParentKind, ParentRef, Refined, Resolved, Target, UpdateRequest,
    drift,
};
use crate::crd::compute::AmlComputeSettings;
use crate::crd::{AmlCompute, CommonSpec, CommonStatus, ComputeType, ManagementPolicy};
use kube::ResourceExt;
use serde_json::{Map, Value, json};

/// Where the cluster's scale settings sit in the body (and in ARM's answer).
const SCALE_SETTINGS: &str = "/properties/properties/scaleSettings";
/// Where the administrator password goes (ARM never returns it).
const ADMIN_PASSWORD: &str = "/properties/properties/userAccountCredentials/adminUserPassword";
/// Where the administrator SSH public key goes (ARM never returns it).
const ADMIN_SSH_KEY: &str = "/properties/properties/userAccountCredentials/adminUserSshPublicKey";

impl AmlKind for AmlCompute {
    const ARM_TYPE: &'static str = "Microsoft.MachineLearningServices/workspaces/computes";
    const PARENT_KINDS: &'static [ParentKind] = &[ParentKind::Workspace];

    fn common_spec(&self) -> &CommonSpec {
        &self.spec.common
    }

    fn common_status(&self) -> Option<&CommonStatus> {
        self.status.as_ref().map(|s| &s.common)
    }

    fn parent(&self) -> Option<ParentRef<'_>> {
        workspace_parent(self.spec.workspace_ref.as_ref().map(|r| r.name.as_str()), self.spec.workspace_id.as_deref())
    }

    fn target(&self, resolved: &Resolved) -> Result<Target, Error> {
        child_target(self, resolved, "computes", self.spec.location.as_deref(), "a compute needs its workspace: set workspaceRef or workspaceId")
    }

    fn desired(&self, target: &Target) -> Result<Value, Error> {
        let spec = &self.spec;
        let type_properties = match (spec.compute_type, &spec.aml_compute, &spec.compute_instance) {
            (ComputeType::AmlCompute, Some(cluster), None) => cluster_properties(cluster)?,
            (ComputeType::ComputeInstance, None, Some(instance)) => to_object(instance)?,
            (t, _, _) => {
                return Err(Error::InvalidSpec(format!(
                    "computeType {} needs exactly the {} settings",
                    t.as_str(),
                    match t {
                        ComputeType::AmlCompute => "amlCompute",
                        ComputeType::ComputeInstance => "computeInstance",
                    }
                )));
            }
        };
        let mut properties = Map::new();
        properties.insert("computeType".into(), json!(spec.compute_type.as_str()));
        if let Some(d) = &spec.description {
            properties.insert("description".into(), json!(d));
        }
        if let Some(d) = spec.disable_local_auth {
            properties.insert("disableLocalAuth".into(), json!(d));
        }
        properties.insert("properties".into(), Value::Object(type_properties));

        let mut body = Map::new();
        body.insert("location".into(), json!(target.location));
        if let Some(tags) = &spec.tags {
            body.insert("tags".into(), json!(tags));
        }
        if let Some(identity) = &spec.identity {
            body.insert("identity".into(), identity.to_arm());
        }
        body.insert("properties".into(), Value::Object(properties));
        Ok(Value::Object(body))
    }

    fn outputs(arm: &Value) -> Map<String, Value> {
        let mut out = Map::new();
        for key in ["state", "allocationState", "currentNodeCount", "targetNodeCount"] {
            if let Some(v) = arm.pointer(&format!("/properties/properties/{key}")).filter(|v| !v.is_null()) {
                out.insert(key.into(), v.clone());
            }
        }
        let errors: Vec<Value> = arm
            .pointer("/properties/provisioningErrors")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(error_text).map(Value::String).collect())
            .unwrap_or_default();
        if !errors.is_empty() {
            out.insert("provisioningErrors".into(), Value::Array(errors));
        }
        out
    }

    fn refine<'a>(
        &'a self,
        ctx: &'a Context,
        _resolved: &'a Resolved,
        _target: &'a Target,
        mut desired: Value,
        actual: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<Refined, Error>> {
        Box::pin(async move {
            let credentials = self.spec.aml_compute.as_ref().and_then(|c| c.user_account_credentials.as_ref());
            let Some(credentials) = credentials else {
                return Ok(Refined { body: desired, waiting: None });
            };
            let retag = actual.is_some_and(|a| crate::controller::owner::needs_tag(self, &ctx.config, a));
            if self.policies().management == ManagementPolicy::Observe || !(may_put(&desired, actual) || retag) {
                // No PUT follows, so the secrets are not needed (ARM never returns them to compare).
                return Ok(Refined { body: desired, waiting: None });
            }
            let ns = self.namespace().unwrap_or_default();
            for (reference, pointer, what) in [
                (&credentials.admin_user_password_secret_ref, ADMIN_PASSWORD, "adminUserPasswordSecretRef"),
                (&credentials.admin_user_ssh_public_key_secret_ref, ADMIN_SSH_KEY, "adminUserSshPublicKeySecretRef"),
            ] {
                let Some(reference) = reference else { continue };
                let value = secret_values::read(ctx, &ns, reference, &format!("amlCompute.userAccountCredentials.{what}")).await?;
                let (parent, field) = pointer.rsplit_once('/').unwrap_or((pointer, ""));
                if let Some(Value::Object(creds)) = desired.pointer_mut(parent) {
                    creds.insert(field.to_string(), Value::String(value));
                }
            }
            Ok(Refined { body: desired, waiting: None })
        })
    }

    fn immutable_paths() -> &'static [&'static str] {
        &[
            "/location",
            "/properties/computeType",
            "/properties/disableLocalAuth",
            "/properties/properties/vmSize",
            "/properties/properties/vmPriority",
            "/properties/properties/osType",
            "/properties/properties/subnet",
            "/properties/properties/enableNodePublicIp",
            "/properties/properties/isolatedNetwork",
        ]
    }

    fn owned_maps() -> &'static [&'static str] {
        &["/tags", "/identity/userAssignedIdentities"]
    }

    fn write_only_paths() -> &'static [&'static str] {
        &[ADMIN_PASSWORD, ADMIN_SSH_KEY]
    }

    fn update_request(&self, desired: &Value, drifted: &[String]) -> UpdateRequest {
        let scale_only = self.spec.compute_type == ComputeType::AmlCompute
            && !drifted.is_empty()
            && drifted.iter().all(|p| is_scale_path(p));
        match desired.pointer(SCALE_SETTINGS) {
            Some(scale) if scale_only => {
                UpdateRequest::Patch(json!({"properties": {"properties": {"scaleSettings": scale}}}))
            }
            _ => UpdateRequest::Put(desired.clone()),
        }
    }

    fn delete_query() -> &'static [(&'static str, &'static str)] {
        &[("underlyingResourceAction", "Delete")]
    }
}

fn is_scale_path(p: &str) -> bool {
    p == SCALE_SETTINGS || p.strip_prefix(SCALE_SETTINGS).is_some_and(|rest| rest.starts_with('/'))
}

/// Whether the pipeline may PUT `desired`: the compute is absent, or differs from it in more than
/// its scale settings (those go by PATCH, without credentials).
fn may_put(desired: &Value, actual: Option<&Value>) -> bool {
    let Some(actual) = actual else { return true };
    let drifted = drift::drifted::<AmlCompute>(desired, actual);
    drifted.iter().any(|p| !is_scale_path(p))
}

/// The cluster's ARM properties: the spec's settings, with credentials reduced to the user name
/// (the password and key are added from Secrets by `refine`).
fn cluster_properties(cluster: &AmlComputeSettings) -> Result<Map<String, Value>, Error> {
    let mut props = to_object(cluster)?;
    if let Some(creds) = &cluster.user_account_credentials {
        props.insert("userAccountCredentials".into(), json!({"adminUserName": creds.admin_user_name}));
    }
    Ok(props)
}

fn to_object(v: &impl serde::Serialize) -> Result<Map<String, Value>, Error> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::InvalidSpec("compute settings are not an object".into())),
        Err(e) => Err(Error::InvalidSpec(e.to_string())),
    }
}

/// One entry of ARM's `provisioningErrors` (`{error: {code, message}}`) as `code: message`.
fn error_text(e: &Value) -> Option<String> {
    let e = e.get("error").unwrap_or(e);
    let code = e.get("code")?.as_str()?;
    let message = e.get("message").and_then(Value::as_str).unwrap_or_default();
    Some(format!("{code}: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_paths_are_recognised_exactly() {
        assert!(is_scale_path("/properties/properties/scaleSettings/maxNodeCount"));
        assert!(is_scale_path("/properties/properties/scaleSettings"));
        assert!(!is_scale_path("/properties/properties/scaleSettingsX"));
        assert!(!is_scale_path("/properties/description"));
    }

    #[test]
    fn provisioning_errors_become_code_and_message() {
        let arm = json!({"properties": {"provisioningErrors": [
            {"error": {"code": "QuotaExceeded", "message": "not enough cores"}},
        ], "properties": {"currentNodeCount": 2, "allocationState": "Steady", "errors": null}}});
        let out = AmlCompute::outputs(&arm);
        assert_eq!(out["provisioningErrors"], json!(["QuotaExceeded: not enough cores"]));
        assert_eq!(out["currentNodeCount"], json!(2));
        assert_eq!(out["allocationState"], json!("Steady"));
        assert!(!out.contains_key("state"));
    }
}
