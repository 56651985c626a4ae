//! `Microsoft.Authorization/roleAssignments` (api-version 2022-04-01) at every scope the emulator
//! knows: PUT, GET, DELETE of one assignment and the list at a scope (`$filter=atScope()` and
//! `$filter=principalId eq '{id}'`), as `arm-specs/FACTS.md` §9 describes.
//!
//! Scopes: every subscription and resource group exists (as for the ML resources), management
//! groups too, resources of other providers are assumed to exist (the emulator does not model
//! them), and an ML resource must exist. Writes are synchronous (201/200, no operation). ARM's
//! rules: one assignment per (scope, role, principal) — another name for the same grant is 409
//! `RoleAssignmentExists`; a name is unique in the tenant and its principal, scope and role cannot
//! change (400 `RoleAssignmentUpdateNotPermitted`); a principal listed with
//! [`super::Emulator::principal_not_found`] is 400 `PrincipalNotFound` for its next attempts.
//! Deleting an ML resource deletes the assignments at and under it.

use serde_json::{Map, Value, json};

use super::call::{ArmCall, unknown_type};
use super::model::{Address, PROVIDER, ResId};
use super::reply::Reply;
use super::util::rfc3339;

/// The resource type.
pub(crate) const TYPE: &str = "Microsoft.Authorization/roleAssignments";
/// The provider path of assignments under a scope.
const SEGMENT: &str = "providers/Microsoft.Authorization/roleAssignments";
const PRINCIPAL_TYPES: [&str; 5] = ["User", "Group", "ServicePrincipal", "ForeignGroup", "Device"];

/// `{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`.
pub(crate) fn id(scope: &str, name: &str) -> String {
    format!("{}/{SEGMENT}/{name}", scope.trim_end_matches('/'))
}

/// The store key of an assignment (its lowercased id).
pub(crate) fn key(scope: &str, name: &str) -> String {
    id(scope, name).to_ascii_lowercase()
}

/// Whether `s` is a GUID (any case).
pub(crate) fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The trailing GUID of a role definition id, lowercased.
fn role_guid(role_definition_id: &str) -> String {
    role_definition_id.trim_end_matches('/').rsplit('/').next().unwrap_or_default().to_ascii_lowercase()
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn bad(code: &str, message: impl Into<String>) -> Reply {
    Reply::arm_error(400, code, message)
}

impl ArmCall<'_> {
    /// Dispatches a role-assignment route.
    pub(crate) fn role_assignments(&mut self, scope: &str, name: Option<&str>, method: &str, body: &[u8]) -> Reply {
        if let Err(reply) = self.scope_exists(scope) {
            return reply;
        }
        match (name, method) {
            (None, "GET") => self.list_assignments(scope),
            (Some(name), "GET") => match self.st.role_assignments.get(&key(scope, name)) {
                Some(a) => Reply::json(200, a.clone()),
                None => Reply::arm_error(404, "RoleAssignmentNotFound", format!("The role assignment '{name}' is not found.")),
            },
            (Some(name), "PUT") => self.put_assignment(scope, name, body),
            (Some(name), "DELETE") => match self.st.role_assignments.remove(&key(scope, name)) {
                Some(a) => Reply::json(200, a),
                None => Reply::empty(204),
            },
            (_, other) => Reply::arm_error(
                405,
                "MethodNotAllowed",
                format!("The HTTP method '{other}' is not supported for this resource."),
            ),
        }
    }

    /// Every subscription, resource group, management group and other provider's resource
    /// exists; an ML resource must be stored.
    fn scope_exists(&self, scope: &str) -> Result<(), Reply> {
        let segs: Vec<&str> = scope.split('/').filter(|s| !s.is_empty()).collect();
        let eq = |i: usize, w: &str| segs.get(i).is_some_and(|s| s.eq_ignore_ascii_case(w));
        let known = match segs.len() {
            2 => eq(0, "subscriptions"),
            4 => (eq(0, "subscriptions") && eq(2, "resourceGroups")) || (eq(0, "providers") && eq(1, "Microsoft.Management")),
            _ => eq(0, "subscriptions") && eq(2, "resourceGroups") && eq(4, "providers") && segs.len() >= 8,
        };
        if !known {
            return Err(bad("InvalidScope", format!("The scope '{scope}' is not a valid scope for a role assignment.")));
        }
        if !eq(5, PROVIDER) {
            return Ok(());
        }
        match ResId::parse(scope) {
            Some(id) if self.st.get(&id.key()).is_some() => Ok(()),
            Some(id) => Err(Reply::arm_error(
                404,
                "ResourceNotFound",
                format!("The Resource '{}/{}' under resource group '{}' was not found.", id.kind().type_name(), id.name(), id.rg),
            )),
            None => match Address::parse(scope) {
                Address::UnknownType { type_path } => Err(unknown_type(&type_path, &self.api_version)),
                _ => Err(bad("InvalidScope", format!("The scope '{scope}' is not a valid scope for a role assignment."))),
            },
        }
    }

    fn put_assignment(&mut self, scope: &str, name: &str, raw: &[u8]) -> Reply {
        if !is_guid(name) {
            return bad(
                "InvalidRoleAssignmentId",
                format!("The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."),
            );
        }
        let body: Value = match serde_json::from_slice(raw) {
            Ok(v @ Value::Object(_)) => v,
            _ => return bad("InvalidRequestContent", "The request content was invalid and could not be deserialized."),
        };
        if let Some(validator) = self.settings.validator
            && let Err(message) = validator(TYPE, name, &body)
        {
            return bad("InvalidRequestContent", message);
        }
        let props = body.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
        let field = |k: &str| props.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let (role_id, principal) = (field("roleDefinitionId"), field("principalId"));
        for (k, v) in [("roleDefinitionId", &role_id), ("principalId", &principal)] {
            if v.is_empty() {
                return bad("InvalidRequestContent", format!("The request content is missing the required property 'properties.{k}'."));
            }
        }
        if !role_id.to_ascii_lowercase().contains("/providers/microsoft.authorization/roledefinitions/") || !is_guid(&role_guid(&role_id)) {
            return bad("InvalidRoleDefinitionId", format!("The role definition ID '{role_id}' is not valid."));
        }
        let principal_type = match props.get("principalType").and_then(Value::as_str) {
            None => "User".to_owned(),
            Some(t) => match PRINCIPAL_TYPES.iter().find(|p| p.eq_ignore_ascii_case(t)) {
                Some(p) => (*p).to_owned(),
                None => return bad("InvalidRequestContent", format!("The value '{t}' of 'properties.principalType' is not valid.")),
            },
        };
        let lower_principal = principal.to_ascii_lowercase();
        if let Some(left) = self.st.unknown_principals.get_mut(&lower_principal)
            && *left > 0
        {
            *left -= 1;
            return bad(
                "PrincipalNotFound",
                format!(
                    "Principal {} does not exist in the directory {}. Check that you have the correct principal ID. If you are creating this principal and then immediately assigning a role, this error might be related to a replication delay. In this case, set the role assignment principalType property to a value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype",
                    principal.replace('-', ""),
                    self.tenant_id
                ),
            );
        }
        let scope = scope.trim_end_matches('/');
        let k = key(scope, name);
        let lname = format!("/{}", name.to_ascii_lowercase());
        // A name is unique in the tenant, and names one grant for good.
        let same_name = self.st.role_assignments.iter().find(|(other, _)| other.ends_with(&lname)).map(|(kk, a)| (kk.clone(), a.clone()));
        if let Some((other_key, old)) = &same_name
            && (*other_key != k
                || !text(old, "/properties/principalId").eq_ignore_ascii_case(&principal)
                || role_guid(text(old, "/properties/roleDefinitionId")) != role_guid(&role_id))
        {
            return bad(
                "RoleAssignmentUpdateNotPermitted",
                "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
            );
        }
        // One assignment per (scope, role, principal).
        let duplicate = self.st.role_assignments.iter().find(|(other, a)| {
            **other != k
                && text(a, "/properties/scope").eq_ignore_ascii_case(scope)
                && text(a, "/properties/principalId").eq_ignore_ascii_case(&principal)
                && role_guid(text(a, "/properties/roleDefinitionId")) == role_guid(&role_id)
        });
        if let Some((_, existing)) = duplicate {
            return Reply::arm_error(
                409,
                "RoleAssignmentExists",
                format!("The role assignment already exists. The ID of the existing role assignment is {}.", text(existing, "/name").replace('-', "")),
            );
        }
        let now = rfc3339(self.now);
        let mut properties = Map::new();
        properties.insert("roleDefinitionId".into(), json!(role_id));
        properties.insert("principalId".into(), json!(principal));
        properties.insert("principalType".into(), json!(principal_type));
        properties.insert("scope".into(), json!(scope));
        for optional in ["description", "condition", "conditionVersion", "delegatedManagedIdentityResourceId"] {
            if let Some(v) = props.get(optional).filter(|v| !v.is_null()) {
                properties.insert(optional.into(), v.clone());
            }
        }
        if properties.contains_key("condition") && !properties.contains_key("conditionVersion") {
            properties.insert("conditionVersion".into(), json!("2.0"));
        }
        let (created_on, created_by, status) = match &same_name {
            Some((_, old)) => (text(old, "/properties/createdOn").to_owned(), text(old, "/properties/createdBy").to_owned(), 200),
            None => (now.clone(), self.client_id.clone(), 201),
        };
        properties.insert("createdOn".into(), json!(created_on));
        properties.insert("updatedOn".into(), json!(now));
        properties.insert("createdBy".into(), json!(created_by));
        properties.insert("updatedBy".into(), json!(self.client_id));
        let assignment = json!({"properties": properties, "id": id(scope, name), "type": TYPE, "name": name});
        self.st.role_assignments.insert(k, assignment.clone());
        Reply::json(status, assignment)
    }

    /// At, above and below the scope; `atScope()`: at and above only; `principalId eq '{id}'`: that
    /// principal's only.
    fn list_assignments(&self, scope: &str) -> Reply {
        let filter = self.query.get("$filter").cloned().unwrap_or_default();
        let lower_filter = filter.to_ascii_lowercase();
        let at_scope = lower_filter.contains("atscope()");
        let principal = lower_filter
            .split("principalid eq ")
            .nth(1)
            .map(|rest| rest.trim_start().trim_start_matches('\'').split('\'').next().unwrap_or_default().to_owned());
        let scope = scope.trim_end_matches('/').to_ascii_lowercase();
        let value: Vec<Value> = self
            .st
            .role_assignments
            .values()
            .filter(|a| {
                let theirs = text(a, "/properties/scope").to_ascii_lowercase();
                let above_or_at = theirs == scope || scope.starts_with(&format!("{theirs}/"));
                let below = theirs.starts_with(&format!("{scope}/"));
                (above_or_at || (!at_scope && below))
                    && principal.as_deref().is_none_or(|p| text(a, "/properties/principalId").eq_ignore_ascii_case(p))
            })
            .cloned()
            .collect();
        Reply::json(200, json!({ "value": value }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_guids() {
        assert!(is_guid("f6c7c914-8db3-469d-8ca1-694a8f32e121") && !is_guid("f6c7c914"));
    }
}
