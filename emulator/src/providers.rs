//! Handlers for a workspace's dependencies (FACTS §10): storage accounts, key vaults, Log
//! Analytics workspaces and Application Insights components — their PUT, the globally unique
//! names, `checkNameAvailability`, soft-deleted vaults — and the checks a workspace makes of them.

use serde_json::{Value, json};

use super::call::{ArmCall, unknown_type};
use super::model::{Kind, ResId, render};
use super::reply::Reply;
use super::state::{OpKind, Resource};
use super::util::{get_path, rfc3339};

impl ArmCall<'_> {
    /// PUT of a workspace dependency, answered as its service does (FACTS §10): a storage account
    /// is created by a long-running operation (202 + `Location`), a vault answers 201 while it
    /// registers its DNS name, a Log Analytics workspace answers 201 `Creating`, a component is
    /// created at once (200). An update is applied at once.
    pub(crate) fn put_dependency(&mut self, id: &ResId, body: &Value, existing: Option<Value>) -> Reply {
        let kind = id.kind();
        let key = id.key();
        if let Some(old) = &existing {
            let rendered = render(id, body, Some(old), "Succeeded", &self.ctx());
            if let Some(res) = self.st.resources.get_mut(&key) {
                res.body = rendered.clone();
            }
            return Reply::json(200, rendered);
        }
        let initial = match kind {
            Kind::StorageAccount | Kind::LogAnalytics => "Creating",
            Kind::KeyVault => "RegisteringDns",
            _ => "Succeeded",
        };
        let rendered = render(id, body, None, initial, &self.ctx());
        self.st.resources.insert(
            key,
            Resource {
                id: id.clone(),
                body: rendered.clone(),
                op: None,
                keys: None,
                secrets: None,
            },
        );
        match kind {
            Kind::StorageAccount => {
                let (op_id, location) = self.start_op(id, OpKind::Put);
                self.with_retry_after(Reply::empty(202)).header(
                    "Location",
                    self.result_url_of(kind.provider(), &id.sub, &location, &op_id),
                )
            }
            Kind::KeyVault | Kind::LogAnalytics => {
                let _ = self.start_op(id, OpKind::Put);
                Reply::json(201, rendered)
            }
            _ => Reply::json(200, rendered),
        }
    }


    /// A workspace's storage account and key vault must exist (and have finished provisioning), as
    /// ARM requires. Checked for ids in resource groups where the emulator holds dependencies;
    /// ids elsewhere (tests that name resources the emulator never saw) are taken on trust.
    pub(crate) fn check_dependencies(&self, body: &Value) -> Result<(), Reply> {
        for (field, what, want) in [
            ("storageAccount", "storage account", Kind::StorageAccount),
            ("keyVault", "key vault", Kind::KeyVault),
        ] {
            let Some(dep) = get_path(body, &format!("properties/{field}")).and_then(Value::as_str)
            else {
                continue;
            };
            let Some(dep_id) = ResId::parse(dep).filter(|d| d.kind() == want) else {
                continue;
            };
            match self.st.get(&dep_id.key()) {
                Some(res) => {
                    let state = get_path(&res.body, "properties/provisioningState")
                        .and_then(Value::as_str)
                        .unwrap_or("Succeeded");
                    if state != "Succeeded" {
                        return Err(Reply::arm_error(
                            400,
                            "BadRequest",
                            format!(
                                "The {what} '{dep}' of the workspace is in provisioning state '{state}'; create the workspace once it has succeeded."
                            ),
                        ));
                    }
                }
                None if self.plays_dependencies(&dep_id.sub, &dep_id.rg) => {
                    return Err(Reply::arm_error(
                        400,
                        "BadRequest",
                        format!(
                            "The {what} '{dep}' given in properties.{field} does not exist. Create it before the workspace."
                        ),
                    ));
                }
                None => {}
            }
        }
        Ok(())
    }

    /// Whether the emulator holds any workspace dependency in this resource group.
    fn plays_dependencies(&self, sub: &str, rg: &str) -> bool {
        self.st.resources.values().any(|r| {
            r.id.kind().is_dependency()
                && r.id.sub.eq_ignore_ascii_case(sub)
                && r.id.rg.eq_ignore_ascii_case(rg)
        })
    }

    /// Why a globally unique name cannot be used by `id`, if it cannot: another resource of the
    /// type has it, anywhere, or a soft-deleted vault holds it.
    fn name_held(&self, kind: Kind, name: &str, except_key: Option<&str>) -> Option<(&'static str, String)> {
        if !kind.global_names() {
            return None;
        }
        let taken = self.st.resources.iter().any(|(k, r)| {
            r.id.kind() == kind && r.id.name().eq_ignore_ascii_case(name) && Some(k.as_str()) != except_key
        });
        match kind {
            Kind::StorageAccount if taken => Some((
                "StorageAccountAlreadyTaken",
                format!("The storage account named {name} is already taken."),
            )),
            Kind::KeyVault if taken => Some((
                "VaultAlreadyExists",
                format!("The vault name '{name}' is already in use. Vault names are globally unique so it is possible that the name is already taken."),
            )),
            Kind::KeyVault if self.st.deleted_vaults.contains_key(&name.to_ascii_lowercase()) => Some((
                "ConflictError",
                format!("A vault with the same name already exists in deleted state. You need to either recover or purge existing key vault. Vault name: '{name}'."),
            )),
            _ => None,
        }
    }

    pub(crate) fn check_global_name(&self, id: &ResId) -> Result<(), Reply> {
        match self.name_held(id.kind(), id.name(), Some(&id.key())) {
            Some((code, message)) => Err(Reply::arm_error(409, code, message)),
            None => Ok(()),
        }
    }

    /// A workspace-based component's Log Analytics workspace must exist.
    pub(crate) fn check_log_analytics(&self, body: &Value) -> Result<(), Reply> {
        let Some(law) = get_path(body, "properties/WorkspaceResourceId").and_then(Value::as_str) else {
            return Err(Reply::arm_error(
                400,
                "BadRequest",
                "properties.WorkspaceResourceId is required to create an application with this API version.",
            ));
        };
        match ResId::parse(law).filter(|l| l.kind() == Kind::LogAnalytics) {
            Some(l) if self.st.get(&l.key()).is_some() => Ok(()),
            _ => Err(Reply::arm_error(
                400,
                "BadRequest",
                format!("The Log Analytics workspace '{law}' given in properties.WorkspaceResourceId does not exist."),
            )),
        }
    }

    /// `checkNameAvailability` of `Microsoft.Storage` and `Microsoft.KeyVault`.
    pub(crate) fn check_name(&self, provider: &str, raw: &[u8]) -> Reply {
        let kind = if provider.eq_ignore_ascii_case("Microsoft.Storage") {
            Kind::StorageAccount
        } else if provider.eq_ignore_ascii_case("Microsoft.KeyVault") {
            Kind::KeyVault
        } else {
            return unknown_type(&format!("{provider}/checkNameAvailability"), &self.api_version);
        };
        let body = match Self::parse_body(raw) {
            Ok(b) => b,
            Err(reply) => return reply,
        };
        let Some(name) = body.get("name").and_then(Value::as_str) else {
            return Reply::arm_error(400, "InvalidRequestContent", "The request content is missing the required property 'name'.");
        };
        let ty = body.get("type").and_then(Value::as_str).unwrap_or_default();
        if !ty.eq_ignore_ascii_case(kind.type_name()) {
            return Reply::arm_error(
                400,
                "InvalidRequestContent",
                format!("The property 'type' must be '{}'.", kind.type_name()),
            );
        }
        if !kind.name_is_valid(name) {
            return Reply::json(
                200,
                json!({"nameAvailable": false, "reason": "AccountNameInvalid", "message": format!("{name} is not a valid name. {}", kind.name_rule())}),
            );
        }
        match self.name_held(kind, name, None) {
            Some((_, message)) => Reply::json(
                200,
                json!({"nameAvailable": false, "reason": "AlreadyExists", "message": message}),
            ),
            None => Reply::json(200, json!({"nameAvailable": true})),
        }
    }

    /// A soft-deleted vault, as `GET .../locations/{location}/deletedVaults/{name}` shows it.
    pub(crate) fn deleted_vault(&self, sub: &str, name: &str) -> Reply {
        match self.st.deleted_vaults.get(&name.to_ascii_lowercase()) {
            Some(d) if d.sub.eq_ignore_ascii_case(sub) => Reply::json(
                200,
                json!({
                    "id": format!("/subscriptions/{sub}/providers/Microsoft.KeyVault/locations/{}/deletedVaults/{name}", d.location),
                    "name": name,
                    "type": "Microsoft.KeyVault/deletedVaults",
                    "properties": {
                        "vaultId": d.vault_id,
                        "location": d.location,
                        "deletionDate": rfc3339(d.deleted),
                        "scheduledPurgeDate": rfc3339(d.deleted + std::time::Duration::from_secs(90 * 24 * 3600)),
                        "tags": d.tags,
                        "purgeProtectionEnabled": false,
                    },
                }),
            ),
            _ => Reply::arm_error(404, "ResourceNotFound", format!("The deleted vault '{name}' was not found.")),
        }
    }
}
