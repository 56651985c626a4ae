//! One authenticated ARM request being handled, and what every handler shares: the settings,
//! operation bookkeeping (start, status and result URLs) and ARM's common error answers.
//!
//! Handlers (`ml`, `providers`, `authz`, `operations`) import from here; the router builds an
//! [`ArmCall`] and dispatches to them.

use std::time::{Instant, SystemTime};

use serde_json::Value;

use super::BodyValidator;
use super::catalog::Catalog;
use super::model::{PROVIDER, RenderCtx, ResId};
use super::reply::Reply;
use super::state::{OpKind, OpOverride, OpStatus, Operation, State};
use super::util::{guid, normalize_location};

/// `x-ms-async-operation-timeout` the ML service sends for endpoint and deployment writes.
pub(crate) const ASYNC_OPERATION_TIMEOUT: &str = "PT1H";

/// Settings the ARM handlers need from the emulator configuration.
pub(crate) struct ArmSettings<'a> {
    pub(crate) operation_duration: std::time::Duration,
    pub(crate) retry_after_secs: u64,
    pub(crate) validator: Option<&'a BodyValidator>,
    pub(crate) catalog: &'a Catalog,
}

/// One authenticated ARM request being handled under the state lock.
pub(crate) struct ArmCall<'a> {
    pub(crate) st: &'a mut State,
    pub(crate) settings: ArmSettings<'a>,
    /// `https://host:port` the client used (for operation URLs).
    pub(crate) base: String,
    pub(crate) api_version: String,
    pub(crate) query: std::collections::HashMap<String, String>,
    pub(crate) tenant_id: String,
    pub(crate) client_id: String,
    pub(crate) now: SystemTime,
}

pub(crate) fn not_found(id: &ResId) -> Reply {
    let kind = id.kind();
    Reply::arm_error(
        404,
        "ResourceNotFound",
        format!(
            "The Resource '{}/{}' under resource group '{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            kind.type_name(),
            id.chain
                .iter()
                .map(|(_, n)| n.as_str())
                .collect::<Vec<_>>()
                .join("/"),
            id.rg
        ),
    )
}

pub(crate) fn parent_not_found(parent: &ResId) -> Reply {
    Reply::arm_error(
        404,
        "ParentResourceNotFound",
        format!(
            "Can not perform requested operation on nested resource. Parent resource '{}' not found.",
            parent
                .chain
                .iter()
                .map(|(_, n)| n.as_str())
                .collect::<Vec<_>>()
                .join("/")
        ),
    )
}

pub(crate) fn conflict(id: &ResId) -> Reply {
    Reply::arm_error(
        409,
        "AnotherOperationInProgress",
        format!(
            "Another operation is in progress on resource '{}'. Wait for it to complete and retry.",
            id.canonical()
        ),
    )
}

/// 404 for a type the emulator does not serve.
pub(crate) fn unknown_type(type_path: &str, api_version: &str) -> Reply {
    Reply::arm_error(
        404,
        "InvalidResourceType",
        format!(
            "The resource type '{type_path}' could not be found in the namespace '{PROVIDER}' for api version '{api_version}'."
        ),
    )
}

impl ArmCall<'_> {
    pub(crate) fn ctx(&self) -> RenderCtx<'_> {
        RenderCtx {
            tenant_id: &self.tenant_id,
            client_id: &self.client_id,
            now: self.now,
        }
    }

    /// The first ancestor of `id` that does not exist.
    pub(crate) fn missing_parent(&self, id: &ResId) -> Option<ResId> {
        let mut ancestors = Vec::new();
        let mut cur = id.parent();
        while let Some(p) = cur {
            cur = p.parent();
            ancestors.push(p);
        }
        ancestors
            .into_iter()
            .rev()
            .find(|p| self.st.get(&p.key()).is_none())
    }

    pub(crate) fn status_url(&self, sub: &str, location: &str, op_id: &str) -> String {
        format!(
            "{}/subscriptions/{sub}/providers/{PROVIDER}/locations/{location}/operations/{op_id}?api-version={}",
            self.base, self.api_version
        )
    }

    pub(crate) fn result_url(&self, sub: &str, location: &str, op_id: &str) -> String {
        self.result_url_of(PROVIDER, sub, location, op_id)
    }

    /// The `Location` URL of an operation, under the resource's own provider namespace.
    pub(crate) fn result_url_of(&self, provider: &str, sub: &str, location: &str, op_id: &str) -> String {
        format!(
            "{}/subscriptions/{sub}/providers/{provider}/locations/{location}/operationResults/{op_id}?api-version={}",
            self.base, self.api_version
        )
    }

    /// Registers a running operation on the resource at `key`; returns its id and location.
    pub(crate) fn start_op(&mut self, id: &ResId, kind: OpKind) -> (String, String) {
        let key = id.key();
        let location = self
            .st
            .get(&key)
            .and_then(|r| r.body.get("location"))
            .and_then(Value::as_str)
            .map(normalize_location)
            .unwrap_or_else(|| "global".to_owned());
        let op_id = guid();
        let forced = self.st.pending_override.take();
        let runs = match &forced {
            Some(OpOverride::Outlast(d)) => *d,
            _ => self.settings.operation_duration,
        };
        self.st.operations.insert(
            op_id.clone(),
            Operation {
                id: op_id.clone(),
                sub: id.sub.clone(),
                location: location.clone(),
                resource_key: key.clone(),
                kind,
                started: self.now,
                due: Instant::now() + runs,
                status: OpStatus::InProgress,
                ended: None,
                error: None,
                tenant_id: self.tenant_id.clone(),
                client_id: self.client_id.clone(),
                forced,
            },
        );
        if let Some(res) = self.st.resources.get_mut(&key) {
            res.op = Some(op_id.clone());
        }
        (op_id, location)
    }

    pub(crate) fn with_retry_after(&self, reply: Reply) -> Reply {
        reply.header("Retry-After", self.settings.retry_after_secs.to_string())
    }

    pub(crate) fn parse_body(body: &[u8]) -> Result<Value, Reply> {
        match serde_json::from_slice::<Value>(body) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err(Reply::arm_error(
                400,
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: the body must be a JSON object.",
            )),
            Err(err) => Err(Reply::arm_error(
                400,
                "InvalidRequestContent",
                format!("The request content was invalid and could not be deserialized: '{err}'."),
            )),
        }
    }

}
