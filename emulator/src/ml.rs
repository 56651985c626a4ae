//! Handlers of the resource routes: GET, list, PUT, PATCH, DELETE and POST actions of every
//! resource kind, with the Microsoft.MachineLearningServices rules (workspaces, computes, online
//! endpoints and deployments). A workspace dependency's PUT and the checks that involve other
//! providers are in `providers`.

use serde_json::{Value, json};

use super::call::{
    ASYNC_OPERATION_TIMEOUT, ArmCall, conflict, not_found, parent_not_found, unknown_type,
};
use super::catalog;
use super::model::{Kind, ResId, render, user_part};
use super::reply::Reply;
use super::state::{DeletedVault, OpKind, OpOverride, Resource};
use super::util::{get_path, merge_patch, normalize_location, random_token, set_path, unix_secs};

impl ArmCall<'_> {
    pub(crate) fn get(&self, id: &ResId) -> Reply {
        if let Some(parent) = self.missing_parent(id) {
            return parent_not_found(&parent);
        }
        match self.st.get(&id.key()) {
            Some(res) => Reply::json(200, res.body.clone()),
            None => not_found(id),
        }
    }

    pub(crate) fn list(&self, sub: &str, rg: &str, parent: Option<&ResId>, kind: Kind) -> Reply {
        let prefix = match parent {
            Some(p) => {
                if let Some(missing) = self
                    .missing_parent(p)
                    .or_else(|| self.st.get(&p.key()).is_none().then(|| p.clone()))
                {
                    return parent_not_found(&missing);
                }
                p.key()
            }
            None => format!("/subscriptions/{sub}/resourcegroups/{rg}/providers/{}", kind.provider())
                .to_ascii_lowercase(),
        };
        let value: Vec<Value> = self
            .st
            .children(&prefix, kind)
            .into_iter()
            .map(|r| r.body.clone())
            .collect();
        Reply::json(200, json!({ "value": value }))
    }


    pub(crate) fn put(&mut self, id: &ResId, raw: &[u8]) -> Reply {
        let kind = id.kind();
        if !kind.name_is_valid(id.name()) {
            let code = match kind {
                Kind::StorageAccount => "AccountNameInvalid",
                Kind::KeyVault => "VaultNameNotValid",
                _ => "InvalidResourceName",
            };
            return Reply::arm_error(
                400,
                code,
                format!(
                    "Resource name '{}' is invalid for type '{}'. {}",
                    id.name(),
                    kind.type_name(),
                    kind.name_rule()
                ),
            );
        }
        if let Some(parent) = self.missing_parent(id) {
            return parent_not_found(&parent);
        }
        let body = match Self::parse_body(raw) {
            Ok(b) => b,
            Err(reply) => return reply,
        };
        if body
            .get("location")
            .and_then(Value::as_str)
            .is_none_or(|l| l.trim().is_empty())
        {
            return Reply::arm_error(
                400,
                "LocationRequired",
                "The location property is required for this definition.",
            );
        }
        // ARM's own checks, before the resource provider sees the request: the type must be
        // offered in the region, and the tags within ARM's limits.
        if let Some(location) = body.get("location").and_then(Value::as_str)
            && let Err(reply) = self.settings.catalog.check_location(kind, location)
        {
            return reply;
        }
        if let Err(reply) = catalog::check_tags(&body) {
            return reply;
        }
        if let Some(validator) = self.settings.validator
            && let Err(message) = validator(kind.type_name(), id.name(), &body)
        {
            return Reply::arm_error(400, "InvalidRequestContent", message)
                .with_target(&id.canonical());
        }
        if let Err(reply) = required_properties(kind, &body) {
            return reply;
        }
        let key = id.key();
        if self.st.busy(&key) {
            return conflict(id);
        }
        let existing = self.st.get(&key).map(|r| r.body.clone());
        if let Some(old) = &existing
            && let Err(reply) = immutables(kind, old, &body)
        {
            return reply;
        }
        if kind == Kind::OnlineEndpoint
            && let Err(reply) = self.check_traffic(id, &body)
        {
            return reply;
        }
        if kind == Kind::Workspace
            && let Err(reply) = self.check_dependencies(&body)
        {
            return reply;
        }
        if let Err(reply) = self.check_offer(id, &body) {
            return reply;
        }
        if kind == Kind::OnlineDeployment
            && let Err(reply) = self.check_asset_references(id, &body)
        {
            return reply;
        }
        // A compute whose VM size the region does not offer is accepted, then fails (below).
        let refused = (kind == Kind::Compute).then(|| self.unsupported_vm_size(&body)).flatten();
        if existing.is_none()
            && let Err(reply) = self.check_global_name(id)
        {
            return reply;
        }
        if kind == Kind::AppInsights
            && let Err(reply) = self.check_log_analytics(&body)
        {
            return reply;
        }
        if kind.is_dependency() {
            return self.put_dependency(id, &body, existing);
        }

        let provisioning = if existing.is_some() {
            "Updating"
        } else {
            "Creating"
        };
        let rendered = render(id, &body, existing.as_ref(), provisioning, &self.ctx());
        if let Some(old) = &existing {
            let succeeded = get_path(old, "properties/provisioningState").and_then(Value::as_str)
                == Some("Succeeded");
            if succeeded && user_part(kind, old) == user_part(kind, &rendered) {
                return Reply::json(200, old.clone());
            }
        }
        let initial_keys = (kind == Kind::OnlineEndpoint)
            .then(|| {
                let k = |f: &str| {
                    get_path(&body, &format!("properties/keys/{f}"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                match (k("primaryKey"), k("secondaryKey")) {
                    (None, None) => None,
                    (p, s) => Some((
                        p.unwrap_or_else(|| random_token(32)),
                        s.unwrap_or_else(|| random_token(32)),
                    )),
                }
            })
            .flatten();
        let entry = self.st.resources.entry(key).or_insert_with(|| Resource {
            id: id.clone(),
            body: Value::Null,
            op: None,
            keys: None,
            secrets: None,
        });
        entry.body = rendered.clone();
        if kind == Kind::OnlineEndpoint {
            if let Some(keys) = initial_keys {
                entry.keys = Some(keys);
            } else if entry.keys.is_none() {
                entry.keys = Some((random_token(32), random_token(32)));
            }
        }
        if let Some(error) = refused {
            self.st.pending_override = Some(OpOverride::Refuse(error));
        }
        let (op_id, location) = self.start_op(id, OpKind::Put);
        match kind {
            Kind::Workspace => self
                .with_retry_after(Reply::empty(202))
                .header("Location", self.result_url(&id.sub, &location, &op_id)),
            Kind::Compute => self.with_retry_after(Reply::json(201, rendered)).header(
                "Azure-AsyncOperation",
                self.status_url(&id.sub, &location, &op_id),
            ),
            Kind::OnlineEndpoint | Kind::OnlineDeployment => self
                .with_retry_after(Reply::json(201, rendered))
                .header(
                    "Azure-AsyncOperation",
                    self.status_url(&id.sub, &location, &op_id),
                )
                .header("x-ms-async-operation-timeout", ASYNC_OPERATION_TIMEOUT),
            _ => Reply::json(200, rendered),
        }
    }

    /// What the resource provider refuses at once about sizes and quota: an online deployment's
    /// instance type the region does not offer (400 `BadArgument`, the code Azure ML gives a
    /// deployment's invalid arguments, FACTS §4, with the supported sizes as details), and a
    /// dedicated compute whose nodes x vCPUs exceed what is left of its VM family's core quota in
    /// the region (400 `QuotaExceeded`, see [`Catalog::check_quota`]). Usage counts the nodes
    /// other computes of the subscription in that region keep allocated: a cluster's
    /// `minNodeCount`, a compute instance's one node.
    fn check_offer(&self, id: &ResId, body: &Value) -> Result<(), Reply> {
        let catalog = self.settings.catalog;
        let location = body.get("location").and_then(Value::as_str).unwrap_or_default();
        match id.kind() {
            Kind::OnlineDeployment => {
                let Some(instance_type) = get_path(body, "properties/instanceType").and_then(Value::as_str) else {
                    return Ok(());
                };
                if catalog.vm_size(instance_type, location).is_some() {
                    return Ok(());
                }
                Err(Reply::json(
                    400,
                    json!({"error": {
                        "code": "BadArgument",
                        "message": format!(
                            "Instance type '{instance_type}' is not supported for managed online deployments in location '{}'. Choose a supported instance type.",
                            normalize_location(location)
                        ),
                        "target": "properties.instanceType",
                        "details": [{"code": "SupportedVMSizes", "message": catalog.vm_sizes_in(location).join(", ")}],
                    }}),
                ))
            }
            Kind::Compute => {
                let Some((size, nodes)) = dedicated_cores(body) else {
                    return Ok(());
                };
                let Some(size) = catalog.vm_size(size, location) else {
                    return Ok(()); // refused asynchronously, see `unsupported_vm_size`
                };
                let region = normalize_location(location);
                let key = id.key();
                let in_use: u64 = self
                    .st
                    .resources
                    .iter()
                    .filter(|(k, r)| **k != key && r.id.kind() == Kind::Compute && r.id.sub.eq_ignore_ascii_case(&id.sub))
                    .filter(|(_, r)| r.body.get("location").and_then(Value::as_str).map(normalize_location) == Some(region.clone()))
                    .filter_map(|(_, r)| {
                        let (other, _) = dedicated_cores(&r.body)?;
                        let other = catalog.vm_size(other, location)?;
                        let allocated = match get_path(&r.body, "properties/computeType").and_then(Value::as_str) {
                            Some("ComputeInstance") => 1,
                            _ => get_path(&r.body, "properties/properties/scaleSettings/minNodeCount").and_then(Value::as_u64).unwrap_or(0),
                        };
                        other.family.eq_ignore_ascii_case(&size.family).then(|| allocated.saturating_mul(u64::from(other.cores)))
                    })
                    .sum();
                catalog.check_quota(&size.family, location, in_use, nodes.saturating_mul(u64::from(size.cores)))
            }
            _ => Ok(()),
        }
    }

    /// The error a compute create fails with when its VM size is not offered in its region.
    fn unsupported_vm_size(&self, body: &Value) -> Option<Value> {
        let size = get_path(body, "properties/properties/vmSize").and_then(Value::as_str)?;
        let location = body.get("location").and_then(Value::as_str).unwrap_or_default();
        let catalog = self.settings.catalog;
        catalog
            .vm_size(size, location)
            .is_none()
            .then(|| catalog.unsupported_vm_size(size, location, "properties.properties.vmSize"))
    }

    /// Endpoint traffic may only name deployments of this endpoint that exist and succeeded
    /// (or, when already routed, are still being updated).
    fn check_traffic(&self, id: &ResId, body: &Value) -> Result<(), Reply> {
        for (field, max_sum) in [("traffic", 100), ("mirrorTraffic", 50)] {
            let Some(map) =
                get_path(body, &format!("properties/{field}")).and_then(Value::as_object)
            else {
                continue;
            };
            let mut sum = 0u64;
            for (deployment, percent) in map {
                let Some(percent) = percent.as_u64().filter(|p| *p <= 100) else {
                    return Err(Reply::arm_error(
                        400,
                        "BadRequest",
                        format!(
                            "The {field} value for deployment '{deployment}' must be an integer between 0 and 100."
                        ),
                    ));
                };
                sum += percent;
                let key = format!(
                    "{}/deployments/{}",
                    id.key(),
                    deployment.to_ascii_lowercase()
                );
                let state = self
                    .st
                    .get(&key)
                    .and_then(|r| get_path(&r.body, "properties/provisioningState"))
                    .and_then(Value::as_str);
                // Deployments already routed keep their traffic while they update or scale;
                // newly routed ones must have finished provisioning.
                let already_routed = self
                    .st
                    .get(&id.key())
                    .and_then(|ep| get_path(&ep.body, &format!("properties/{field}")))
                    .and_then(Value::as_object)
                    .is_some_and(|old| old.keys().any(|k| k.eq_ignore_ascii_case(deployment)));
                match state {
                    Some("Succeeded") => {}
                    Some(other) if already_routed && other != "Deleting" && other != "Failed" => {}
                    Some(other) => {
                        return Err(Reply::arm_error(
                            400,
                            "BadRequest",
                            format!(
                                "Deployment '{deployment}' of endpoint '{}' is in provisioning state '{other}'; {field} can only be routed to deployments in state 'Succeeded'.",
                                id.name()
                            ),
                        ));
                    }
                    None => {
                        return Err(Reply::arm_error(
                            400,
                            "BadRequest",
                            format!(
                                "The {field} of endpoint '{}' references deployment '{deployment}', which does not exist.",
                                id.name()
                            ),
                        ));
                    }
                }
            }
            let sum_ok = if field == "traffic" {
                map.is_empty() || sum == 0 || sum == 100
            } else {
                sum <= max_sum
            };
            if !sum_ok {
                return Err(Reply::arm_error(
                    400,
                    "BadRequest",
                    format!(
                        "The {field} values of endpoint '{}' sum to {sum}; they must sum to {}.",
                        id.name(),
                        if field == "traffic" {
                            "100"
                        } else {
                            "at most 50"
                        }
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn patch(&mut self, id: &ResId, raw: &[u8]) -> Reply {
        let kind = id.kind();
        if let Some(parent) = self.missing_parent(id) {
            return parent_not_found(&parent);
        }
        let key = id.key();
        let Some(existing) = self.st.get(&key).map(|r| r.body.clone()) else {
            return not_found(id);
        };
        let patch = match Self::parse_body(raw) {
            Ok(b) => b,
            Err(reply) => return reply,
        };
        if self.st.busy(&key) {
            return conflict(id);
        }
        let mut merged = user_part(kind, &existing);
        merge_patch(&mut merged, &patch);
        // ARM's PATCH replaces `tags` as a whole (it is not a JSON merge patch of the map).
        if let Some(tags) = patch.get("tags").filter(|t| t.is_object())
            && let Some(m) = merged.as_object_mut()
        {
            m.insert("tags".into(), tags.clone());
        }
        if let Err(reply) = immutables(kind, &existing, &merged) {
            return reply;
        }
        if let Err(reply) = catalog::check_tags(&merged) {
            return reply;
        }
        if let Err(reply) = self.check_offer(id, &merged) {
            return reply;
        }
        let rendered = render(id, &merged, Some(&existing), "Updating", &self.ctx());
        let succeeded = get_path(&existing, "properties/provisioningState").and_then(Value::as_str)
            == Some("Succeeded");
        if succeeded && user_part(kind, &existing) == user_part(kind, &rendered) {
            return Reply::json(200, existing);
        }
        if kind.is_dependency() {
            let done = render(id, &merged, Some(&existing), "Succeeded", &self.ctx());
            if let Some(res) = self.st.resources.get_mut(&key) {
                res.body = done.clone();
            }
            return Reply::json(200, done);
        }
        if let Some(res) = self.st.resources.get_mut(&key) {
            res.body = rendered.clone();
        }
        let (op_id, location) = self.start_op(id, OpKind::Put);
        match kind {
            Kind::Compute => self.with_retry_after(Reply::json(200, rendered)).header(
                "Azure-AsyncOperation",
                self.status_url(&id.sub, &location, &op_id),
            ),
            Kind::Workspace => self
                .with_retry_after(Reply::empty(202))
                .header("Location", self.result_url(&id.sub, &location, &op_id)),
            Kind::OnlineEndpoint | Kind::OnlineDeployment => self
                .with_retry_after(Reply::empty(202))
                .header("Location", self.result_url(&id.sub, &location, &op_id))
                .header("x-ms-async-operation-timeout", ASYNC_OPERATION_TIMEOUT),
            _ => Reply::json(200, rendered),
        }
    }

    pub(crate) fn delete(&mut self, id: &ResId) -> Reply {
        let kind = id.kind();
        if kind == Kind::Compute {
            let action = self
                .query
                .get("underlyingresourceaction")
                .map(String::as_str)
                .unwrap_or_default();
            if !(action.eq_ignore_ascii_case("Delete") || action.eq_ignore_ascii_case("Detach")) {
                return Reply::arm_error(
                    400,
                    "BadRequest",
                    "The query parameter 'underlyingResourceAction' is required and must be 'Delete' or 'Detach'.",
                );
            }
        }
        let key = id.key();
        if self.st.get(&key).is_none() {
            return Reply::empty(204);
        }
        if self.st.busy(&key) {
            return conflict(id);
        }
        if kind == Kind::OnlineDeployment
            && let Some(reply) = self.traffic_blocks_delete(id)
        {
            return reply;
        }
        if matches!(kind, Kind::StorageAccount | Kind::KeyVault | Kind::AppInsights) {
            // Synchronous deletes (200); a vault is soft-deleted and keeps its name reserved.
            if let Some(res) = self.st.resources.remove(&key)
                && kind == Kind::KeyVault
            {
                let location = res.body.get("location").and_then(Value::as_str).unwrap_or_default().to_owned();
                self.st.deleted_vaults.insert(
                    id.name().to_ascii_lowercase(),
                    DeletedVault {
                        sub: id.sub.clone(),
                        vault_id: id.canonical(),
                        location,
                        deleted: self.now,
                        tags: res.body.get("tags").cloned().unwrap_or(Value::Null),
                    },
                );
            }
            return Reply::empty(200);
        }
        for k in self.st.subtree(&key) {
            if let Some(res) = self.st.resources.get_mut(&k) {
                set_path(
                    &mut res.body,
                    "properties/provisioningState",
                    Value::from("Deleting"),
                );
            }
        }
        let (op_id, location) = self.start_op(id, OpKind::Delete);
        let reply = self
            .with_retry_after(Reply::empty(202))
            .header("Location", self.result_url_of(kind.provider(), &id.sub, &location, &op_id));
        match kind {
            Kind::Compute => reply.header(
                "Azure-AsyncOperation",
                self.status_url(&id.sub, &location, &op_id),
            ),
            Kind::OnlineEndpoint => {
                reply.header("x-ms-async-operation-timeout", ASYNC_OPERATION_TIMEOUT)
            }
            _ => reply,
        }
    }

    /// A deployment that still receives (mirror) traffic cannot be deleted.
    fn traffic_blocks_delete(&self, id: &ResId) -> Option<Reply> {
        let endpoint = self.st.get(&id.parent()?.key())?;
        for field in ["traffic", "mirrorTraffic"] {
            let Some(map) =
                get_path(&endpoint.body, &format!("properties/{field}")).and_then(Value::as_object)
            else {
                continue;
            };
            let percent = map
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(id.name()))
                .and_then(|(_, p)| p.as_u64())
                .unwrap_or(0);
            if percent > 0 {
                return Some(Reply::arm_error(
                    400,
                    "BadRequest",
                    format!(
                        "Deployment '{}' receives {percent}% of the endpoint's {field}; set it to 0 before deleting the deployment.",
                        id.name()
                    ),
                ));
            }
        }
        None
    }

    pub(crate) fn action(&mut self, id: &ResId, action: &str, raw: &[u8]) -> Reply {
        let kind = id.kind();
        if let Some(parent) = self.missing_parent(id) {
            return parent_not_found(&parent);
        }
        let key = id.key();
        let action_lower = action.to_ascii_lowercase();
        let known = match kind {
            Kind::OnlineEndpoint => {
                ["listkeys", "regeneratekeys", "token"].contains(&action_lower.as_str())
            }
            Kind::Compute => {
                ["start", "stop", "restart", "listnodes"].contains(&action_lower.as_str())
            }
            _ => false,
        };
        if !known {
            return unknown_type(&format!("{}/{action}", kind.type_name()), &self.api_version);
        }
        let Some(res) = self.st.get(&key) else {
            return not_found(id);
        };
        match action_lower.as_str() {
            "listkeys" => {
                let (primary, secondary) = res.keys.clone().unwrap_or_default();
                Reply::json(
                    200,
                    json!({"primaryKey": primary, "secondaryKey": secondary}),
                )
            }
            "token" => {
                let now = unix_secs(self.now);
                Reply::json(
                    200,
                    json!({
                        "accessToken": format!("emu-aml.{}", random_token(32)),
                        "tokenType": "Bearer",
                        "expiryTimeUtc": now + 3600,
                        "refreshAfterTimeUtc": now + 1800,
                    }),
                )
            }
            "listnodes" => Reply::json(200, json!({"nodes": [], "nextLink": null})),
            "regeneratekeys" => {
                let body = match Self::parse_body(raw) {
                    Ok(b) => b,
                    Err(reply) => return reply,
                };
                let key_type = body
                    .get("keyType")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let secondary = if key_type.eq_ignore_ascii_case("Primary") {
                    false
                } else if key_type.eq_ignore_ascii_case("Secondary") {
                    true
                } else {
                    return Reply::arm_error(
                        400,
                        "BadRequest",
                        "'keyType' must be 'Primary' or 'Secondary'.",
                    );
                };
                if self.st.busy(&key) {
                    return conflict(id);
                }
                let value = body
                    .get("keyValue")
                    .and_then(Value::as_str)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned);
                let (op_id, location) =
                    self.start_op(id, OpKind::RegenerateKey { secondary, value });
                self.with_retry_after(Reply::empty(202))
                    .header("Location", self.result_url(&id.sub, &location, &op_id))
            }
            _ => {
                let is_instance = get_path(&res.body, "properties/computeType")
                    .and_then(Value::as_str)
                    == Some("ComputeInstance");
                if !is_instance {
                    return Reply::arm_error(
                        400,
                        "BadRequest",
                        format!(
                            "The action '{action}' is only supported for compute type 'ComputeInstance'."
                        ),
                    );
                }
                if self.st.busy(&key) {
                    return conflict(id);
                }
                let (during, after) = match action_lower.as_str() {
                    "start" => ("Starting", "Running"),
                    "stop" => ("Stopping", "Stopped"),
                    _ => ("Restarting", "Running"),
                };
                if let Some(res) = self.st.resources.get_mut(&key) {
                    set_path(
                        &mut res.body,
                        "properties/properties/state",
                        Value::from(during),
                    );
                }
                let (op_id, location) = self.start_op(id, OpKind::ComputeState(after));
                self.with_retry_after(Reply::empty(202))
                    .header("Location", self.result_url(&id.sub, &location, &op_id))
                    .header(
                        "Azure-AsyncOperation",
                        self.status_url(&id.sub, &location, &op_id),
                    )
            }
        }
    }
}

/// A dedicated compute's VM size and the most nodes it may run (an AmlCompute's `maxNodeCount`, a
/// compute instance's one); `None` for low-priority clusters (their own quota) and computes
/// without a size.
fn dedicated_cores(body: &Value) -> Option<(&str, u64)> {
    let props = get_path(body, "properties/properties")?;
    let size = props.get("vmSize").and_then(Value::as_str)?;
    if props.get("vmPriority").and_then(Value::as_str).is_some_and(|p| p.eq_ignore_ascii_case("LowPriority")) {
        return None;
    }
    match get_path(body, "properties/computeType").and_then(Value::as_str) {
        Some("ComputeInstance") => Some((size, 1)),
        Some("AmlCompute") => Some((size, props.pointer("/scaleSettings/maxNodeCount").and_then(Value::as_u64).unwrap_or(0))),
        _ => None,
    }
}

/// Required properties and enums the ARM schema enforces, checked even without a validator.
fn required_properties(kind: Kind, body: &Value) -> Result<(), Reply> {
    let field = |path: &str| get_path(body, path).and_then(Value::as_str);
    let bad = |message: String| Err(Reply::arm_error(400, "InvalidRequestContent", message));
    match kind {
        Kind::Workspace | Kind::LogAnalytics => Ok(()),
        // A workspace asset's rules are in `assets` (its PUT does not come here).
        Kind::ModelContainer
        | Kind::ModelVersion
        | Kind::EnvironmentContainer
        | Kind::EnvironmentVersion
        | Kind::CodeContainer
        | Kind::CodeVersion
        | Kind::Datastore => Ok(()),
        Kind::StorageAccount => match (field("kind"), field("sku/name")) {
            (Some(_), Some(_)) => Ok(()),
            _ => bad("The request content is missing the required properties 'kind' and 'sku.name'.".into()),
        },
        Kind::KeyVault => match (field("properties/tenantId"), field("properties/sku/name")) {
            (Some(_), Some(_)) => Ok(()),
            _ => bad("The request content is missing the required properties 'properties.tenantId' and 'properties.sku'.".into()),
        },
        Kind::AppInsights => match (field("kind"), field("properties/Application_Type")) {
            (Some(_), Some(_)) => Ok(()),
            _ => bad("The request content is missing the required properties 'kind' and 'properties.Application_Type'.".into()),
        },
        Kind::Compute => match field("properties/computeType") {
            Some(_) => Ok(()),
            None => bad("The request content is missing the required property 'properties.computeType'.".into()),
        },
        Kind::OnlineEndpoint => match field("properties/authMode") {
            Some(m) if ["AMLToken", "Key", "AADToken"].iter().any(|a| a.eq_ignore_ascii_case(m)) => Ok(()),
            Some(m) => bad(format!("The value '{m}' of 'properties.authMode' is not one of AMLToken, Key, AADToken.")),
            None => bad("The request content is missing the required property 'properties.authMode'.".into()),
        },
        Kind::OnlineDeployment => match field("properties/endpointComputeType") {
            Some(t) if ["Managed", "Kubernetes"].iter().any(|a| a.eq_ignore_ascii_case(t)) => Ok(()),
            Some(t) => bad(format!("The value '{t}' of 'properties.endpointComputeType' is not one of Managed, Kubernetes.")),
            None => bad("The request content is missing the required property 'properties.endpointComputeType'.".into()),
        },
    }
}

/// Changes the service refuses on an existing resource.
pub(crate) fn immutables(kind: Kind, old: &Value, new: &Value) -> Result<(), Reply> {
    let old_loc = old
        .get("location")
        .and_then(Value::as_str)
        .map(normalize_location);
    let new_loc = new
        .get("location")
        .and_then(Value::as_str)
        .map(normalize_location);
    if let (Some(old_loc), Some(new_loc)) = (&old_loc, &new_loc)
        && old_loc != new_loc
    {
        return Err(Reply::arm_error(
            400,
            "InvalidResourceLocation",
            format!(
                "The resource '{}' already exists in location '{old_loc}'. A resource with the same name cannot be created in location '{new_loc}'.",
                old.get("name").and_then(Value::as_str).unwrap_or_default()
            ),
        ));
    }
    let fixed: &[&str] = match kind {
        Kind::Workspace => &[
            "properties/storageAccount",
            "properties/keyVault",
            "properties/hbiWorkspace",
        ],
        Kind::Compute => &[
            "properties/computeType",
            "properties/computeLocation",
            "properties/properties/vmSize",
            "properties/properties/vmPriority",
        ],
        Kind::OnlineEndpoint | Kind::KeyVault | Kind::LogAnalytics => &[],
        // A version's own rule (409, what changed) is in `assets`.
        Kind::ModelContainer
        | Kind::ModelVersion
        | Kind::EnvironmentContainer
        | Kind::EnvironmentVersion
        | Kind::CodeContainer
        | Kind::CodeVersion => &[],
        Kind::Datastore => &[
            "properties/datastoreType",
            "properties/accountName",
            "properties/containerName",
            "properties/filesystem",
            "properties/fileShareName",
            "properties/endpoint",
            "properties/protocol",
        ],
        Kind::OnlineDeployment => &["properties/endpointComputeType"],
        Kind::StorageAccount => &["kind"],
        Kind::AppInsights => &["properties/Application_Type"],
    };
    for path in fixed {
        let (Some(a), Some(b)) = (get_path(old, path), get_path(new, path)) else {
            continue;
        };
        let same = match (a.as_str(), b.as_str()) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => a == b,
        };
        if !same {
            let property = path.replace('/', ".");
            return Err(Reply::arm_error(
                400,
                "BadRequest",
                format!(
                    "The property '{property}' cannot be changed once the resource has been created."
                ),
            ));
        }
    }
    Ok(())
}
