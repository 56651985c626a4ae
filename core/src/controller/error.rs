//! One error type for the reconcile pipeline, classified once: every variant has a reason (condition,
//! event and metric label) and a requeue policy.

use crate::arm::{self, ErrorClass, FailureClass};
use std::time::Duration;

/// Reasons the pipeline sets itself (the others come from [`Error::reason`] and [`arm::reason`]).
pub mod reason {
    /// An ARM operation failed in a way a person must fix: `Stalled=True` until the spec changes
    /// or the retry annotation gets a new value.
    pub const OPERATION_FAILED: &str = "ArmOperationFailed";
    /// An ARM operation failed transiently: `Reconciling=True` until the automatic retry.
    pub const OPERATION_FAILED_RETRYING: &str = "ArmOperationFailedRetrying";
    /// ARM does not offer the resource type in the spec's location.
    pub const LOCATION_NOT_AVAILABLE: &str = "LocationNotAvailable";
    /// The region does not offer the spec's VM size or instance type.
    pub const VM_SIZE_NOT_SUPPORTED: &str = "VmSizeNotSupported";
    /// The spec's tags break ARM's tag limits.
    pub const INVALID_TAGS: &str = "InvalidTags";
    /// A child whose parent object is missing or not ready: it waits, and the parent's watch wakes it.
    pub const WAITING_FOR_PARENT: &str = "WaitingForParent";
    /// A deployment whose `spec.modelRef` names a model version object that is missing or not Ready.
    pub const WAITING_FOR_MODEL: &str = "WaitingForModel";
    /// A deployment whose `spec.environmentRef` names an environment version object that is missing or not Ready.
    pub const WAITING_FOR_ENVIRONMENT: &str = "WaitingForEnvironment";
    /// A deployment whose `spec.codeConfiguration.codeRef` names a code version object that is missing or not Ready.
    pub const WAITING_FOR_CODE: &str = "WaitingForCode";
    /// A model version whose `spec.datastoreRef` names a datastore object that is missing or not Ready.
    pub const WAITING_FOR_DATASTORE: &str = "WaitingForDatastore";
    /// Deleting an object another object of the namespace still uses (a model version a deployment
    /// serves, a datastore a model version reads from) waits for those users.
    pub const WAITING_FOR_USERS: &str = "WaitingForUsers";
    /// ARM refused a deployment that names a model, environment or code ARM does not have.
    pub const ASSET_NOT_FOUND: &str = "AssetNotFound";
    /// A version exists in Azure with other content than the spec's; it is never overwritten.
    pub const VERSION_CONFLICT: &str = "VersionConflict";
    /// The Azure resource's owner tag names another object: nothing is written, a delete leaves it.
    pub const OWNED_BY_ANOTHER_OBJECT: &str = "OwnedByAnotherObject";
    /// An endpoint whose `traffic` or `mirrorTraffic` names deployments that cannot be routed yet:
    /// its deployments go ahead meanwhile (resolution reads it from the parent's Ready condition).
    pub const WAITING_FOR_DEPLOYMENTS: &str = "WaitingForDeployments";
    /// An object that would use the operator-wide default credentials in a namespace the
    /// admin's `--default-credentials-namespace-selector` does not select.
    pub const DEFAULT_CREDENTIALS_NOT_ALLOWED: &str = "DefaultCredentialsNotAllowed";
    /// A role assignment whose role is not in `--role-assignment-allow-roles`.
    pub const ROLE_NOT_ALLOWED: &str = "RoleNotAllowed";
    /// A role assignment whose `scopeId` is under no `--role-assignment-scope-prefix`.
    pub const SCOPE_NOT_ALLOWED: &str = "ScopeNotAllowed";
}

/// What failed in a reconcile, one variant per failing step.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// The Secret named by `credentials.secretName` (or the default) does not exist.
    #[error(
        "credentials Secret {namespace}/{name} not found: create it with keys tenantId, clientId, clientSecret and subscriptionId"
    )]
    CredentialsNotFound { namespace: String, name: String },
    /// The object would use the operator-wide default credentials, and its namespace is not
    /// selected by `--default-credentials-namespace-selector`.
    #[error(
        "namespace {namespace} may not use the operator-wide default credentials: its labels do not match the selector {selector} the cluster admin set (--default-credentials-namespace-selector, chart value credentials.default.namespaceSelector); create a Secret aml-credentials in {namespace} (or name one in spec.credentials.secretName), or ask the admin to label the namespace so that it matches"
    )]
    DefaultCredentialsNotAllowed { namespace: String, selector: String },
    /// An `AmlRoleAssignment` asks for a role or a scope outside the bounds the admin set.
    #[error("{0}")]
    RoleAssignmentOutOfBounds(crate::controller::tenancy::OutOfBounds),
    /// The Secret exists but lacks a key.
    #[error("credentials Secret {namespace}/{name} has no usable key {key}: add it (tenantId, clientId, and clientSecret or clientCertificate, are required)")]
    CredentialsInvalid { namespace: String, name: String, key: &'static str },
    /// No subscription id in the spec, the Secret or the parent.
    #[error("no subscription id for {namespace}/{name}: set spec.subscriptionId or the subscriptionId key of the credentials Secret")]
    NoSubscription { namespace: String, name: String },
    /// A Secret the spec references (e.g. a compute's admin password) is missing or unusable.
    #[error("{0}")]
    SecretNotFound(String),
    /// A parent given by ARM id lives in a subscription the credentials are not for, and ARM refused.
    #[error(
        "the parent {arm_id} is in subscription {parent} but the credentials are for subscription {credentials}, and ARM does not show it: grant the service principal access to subscription {parent}, use credentials for it, or fix workspaceId"
    )]
    ParentInAnotherSubscription { arm_id: String, parent: String, credentials: String },
    /// The spec cannot be turned into a valid ARM request.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// A workspace to create names no storage account or key vault and may not create one.
    #[error("spec.{field} is not set and spec.createDependencies is false: set spec.{field} to the ARM id of an existing {what}, or remove createDependencies: false to let the operator create one")]
    DependencyMissing { field: &'static str, what: &'static str },
    /// The (global) name of a dependency to create is taken elsewhere.
    #[error("the {what} name {name} is not available ({detail}): set spec.dependencyNames.{field} to another name, or spec.{field} to the ARM id of an existing {what}")]
    DependencyNameTaken { what: &'static str, field: &'static str, name: String, detail: String },
    /// A dependency the operator created ended in a failed state.
    #[error("the {what} {arm_id} that the operator created for this workspace is in provisioning state {state}: delete it in Azure to have it created again, or name an existing {what} in the spec")]
    DependencyFailed { what: &'static str, arm_id: String, state: String },
    /// An ARM request failed.
    #[error("ARM {action} of {arm_id} failed")]
    Arm {
        action: &'static str,
        arm_id: String,
        #[source]
        source: arm::Error,
    },
    /// ARM does not know the principal of a role assignment. Right after the principal was created
    /// this is Entra replication and is retried with backoff; after the grace period a person must
    /// check the principal (`stalled`).
    #[error("{}", principal_not_found(.principal_id, *.stalled))]
    PrincipalNotFound {
        principal_id: String,
        stalled: bool,
        #[source]
        source: arm::Error,
    },
    /// The operator's own principal may not write role assignments at the scope (403).
    #[error(
        "the operator's service principal may not create role assignments at {scope}: it lacks Microsoft.Authorization/roleAssignments/write; grant it Owner, User Access Administrator or Role Based Access Control Administrator on the scope or above (Contributor cannot assign roles)"
    )]
    RoleAssignmentForbidden {
        scope: String,
        #[source]
        source: arm::Error,
    },
    /// An ARM long-running operation ended Failed or Canceled (or ARM reports the resource so).
    #[error("ARM {action} of {arm_id} ended without success: {code}: {message}")]
    OperationFailed { action: String, arm_id: String, code: String, message: String, class: FailureClass },
    /// The Kubernetes API refused or failed a call.
    #[error("Kubernetes API call failed ({what})")]
    Kube {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    /// ARM is still deleting the resource, or the delete waits; the finalizer stays.
    #[error("waiting for ARM to delete {arm_id}")]
    DeletePending {
        arm_id: String,
        retry_after: Duration,
        /// The reason, when the delete waits for another resource's state (a delete gate: a
        /// deployment its endpoint still routes traffic to) rather than for ARM or the parent.
        gate: Option<&'static str>,
    },
    /// An asset version exists in Azure with other content than the spec's: a version cannot
    /// change, and someone else's version is never overwritten.
    #[error(
        "{arm_id} already exists in Azure with other content ({}): a version cannot change; give this object a new spec.version, or delete that version in Azure if it is not needed",
        fields.iter().map(|f| f.trim_start_matches("/properties/")).collect::<Vec<_>>().join(", ")
    )]
    VersionConflict { arm_id: String, fields: Vec<String> },
    /// The Azure resource carries the owner tag of another object (of this cluster or another):
    /// nothing is written for this object, and deleting it leaves the resource alone.
    #[error(
        "{arm_id} belongs to {owner} (its Azure tag {tag} says so): one Azure resource has one owner, so this object writes nothing to it; give this object another spec.azureName (or resource group), or delete the other object, or, if that object no longer exists, remove the tag {tag} from the resource in Azure to let this object adopt it"
    )]
    OwnedByAnotherObject { arm_id: String, owner: String, tag: &'static str },
    /// The finalizer helper itself failed (adding or removing the finalizer).
    #[error("cannot update the finalizer")]
    FinalizerPatch(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

fn principal_not_found(principal_id: &str, stalled: bool) -> String {
    if stalled {
        format!(
            "principal {principal_id} does not exist in the directory: check spec.principalId (the Microsoft Entra object id, not an application's client id) and spec.principalType"
        )
    } else {
        format!(
            "principal {principal_id} is not in the directory yet (Microsoft Entra replicates a principal created moments ago within minutes); retrying"
        )
    }
}

/// How the controller retries an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Exponential backoff with jitter.
    Backoff,
    /// Exactly after this long (ARM's Retry-After, or a pending delete's poll interval).
    After(Duration),
    /// A person must act: retry slowly (a Secret may appear, a role may be granted).
    Slow,
    /// Nothing changes until the spec changes.
    AwaitChange,
}

impl Error {
    /// Static PascalCase reason used for the Ready condition, the event and the metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::CredentialsNotFound { .. } => "CredentialsNotFound",
            Error::CredentialsInvalid { .. } => "CredentialsInvalid",
            Error::DefaultCredentialsNotAllowed { .. } => reason::DEFAULT_CREDENTIALS_NOT_ALLOWED,
            Error::RoleAssignmentOutOfBounds(crate::controller::tenancy::OutOfBounds::Role { .. }) => reason::ROLE_NOT_ALLOWED,
            Error::RoleAssignmentOutOfBounds(crate::controller::tenancy::OutOfBounds::Scope { .. }) => reason::SCOPE_NOT_ALLOWED,
            Error::NoSubscription { .. } => "SubscriptionUnknown",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::DependencyMissing { .. } => "DependencyMissing",
            Error::DependencyNameTaken { .. } => "DependencyNameTaken",
            Error::DependencyFailed { .. } => "DependencyFailed",
            Error::SecretNotFound(_) => "SecretNotFound",
            Error::ParentInAnotherSubscription { .. } => "ParentInAnotherSubscription",
            Error::Arm { arm_id, source, .. } => refusal_of(arm_id, source).map_or_else(|| source.reason(), |r| r.reason),
            Error::OperationFailed { class: FailureClass::Transient, .. } => reason::OPERATION_FAILED_RETRYING,
            Error::OperationFailed { class: FailureClass::NeedsPerson, arm_id, code, message, .. } => {
                refusal(arm_id, code, message, None).map_or(reason::OPERATION_FAILED, |r| r.reason)
            }
            Error::PrincipalNotFound { .. } => "PrincipalNotFound",
            Error::RoleAssignmentForbidden { .. } => crate::arm::reason::AUTHORIZATION_FAILED,
            Error::Kube { .. } => "KubernetesApiError",
            Error::DeletePending { .. } => "Deleting",
            Error::VersionConflict { .. } => reason::VERSION_CONFLICT,
            Error::OwnedByAnotherObject { .. } => reason::OWNED_BY_ANOTHER_OBJECT,
            Error::FinalizerPatch(_) => "FinalizerError",
        }
    }

    /// Whether a person must act before this can succeed (kstatus `Stalled`).
    pub fn is_stalled(&self) -> bool {
        match self {
            Error::CredentialsNotFound { .. }
            | Error::CredentialsInvalid { .. }
            | Error::DefaultCredentialsNotAllowed { .. }
            | Error::RoleAssignmentOutOfBounds(_)
            | Error::NoSubscription { .. }
            | Error::InvalidSpec(_)
            | Error::DependencyMissing { .. }
            | Error::DependencyNameTaken { .. }
            | Error::DependencyFailed { .. }
            | Error::SecretNotFound(_)
            | Error::ParentInAnotherSubscription { .. }
            | Error::OperationFailed { class: FailureClass::NeedsPerson, .. }
            | Error::RoleAssignmentForbidden { .. }
            | Error::VersionConflict { .. }
            | Error::OwnedByAnotherObject { .. } => true,
            Error::PrincipalNotFound { stalled, .. } => *stalled,
            Error::Arm { arm_id, source, .. } => source.class() == ErrorClass::NeedsPerson || refusal_of(arm_id, source).is_some(),
            _ => false,
        }
    }

    /// The retry policy for this error.
    pub fn retry(&self) -> Retry {
        match self {
            // Role and scope are immutable; new bounds mean a restarted operator, which reconciles
            // every object anyway.
            Error::InvalidSpec(_) | Error::DependencyMissing { .. } | Error::RoleAssignmentOutOfBounds(_) => Retry::AwaitChange,
            // A label change wakes the namespace's objects at once (tenancy::watch_namespaces);
            // the slow retry covers a missed one.
            Error::DefaultCredentialsNotAllowed { .. }
            | Error::CredentialsNotFound { .. }
            | Error::DependencyNameTaken { .. }
            | Error::DependencyFailed { .. }
            | Error::CredentialsInvalid { .. }
            | Error::NoSubscription { .. }
            | Error::SecretNotFound(_)
            | Error::ParentInAnotherSubscription { .. }
            | Error::OperationFailed { class: FailureClass::NeedsPerson, .. }
            | Error::RoleAssignmentForbidden { .. }
            | Error::VersionConflict { .. }
            | Error::OwnedByAnotherObject { .. } => Retry::Slow,
            Error::OperationFailed { class: FailureClass::Transient, .. } => Retry::Backoff,
            Error::PrincipalNotFound { stalled: true, .. } => Retry::Slow,
            Error::PrincipalNotFound { stalled: false, .. } => Retry::Backoff,
            Error::DeletePending { retry_after, .. } => Retry::After(*retry_after),
            // ARM refused what the spec asks for: writing it again changes nothing until the spec
            // changes (or, for quota, the retry annotation says the quota was raised; both wake
            // the object).
            Error::Arm { arm_id, source, .. } if refusal_of(arm_id, source).is_some() => Retry::AwaitChange,
            Error::Arm { source, .. } => match source.class() {
                ErrorClass::Throttled(d) => Retry::After(d),
                ErrorClass::NeedsPerson => Retry::Slow,
                ErrorClass::Transient | ErrorClass::Conflict | ErrorClass::NotFound => Retry::Backoff,
            },
            _ => Retry::Backoff,
        }
    }

    /// A message for a person: this error and its causes, one sentence each. Secret values never
    /// reach error types, so this is safe to put in conditions and events.
    pub fn message(&self) -> String {
        let mut out = self.to_string();
        let refusal = match self {
            Error::Arm { arm_id, source, .. } => refusal_of(arm_id, source),
            Error::OperationFailed { arm_id, code, message, class: FailureClass::NeedsPerson, .. } => {
                refusal(arm_id, code, message, None)
            }
            _ => None,
        };
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            let text = s.to_string();
            if !text.is_empty() && !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            source = s.source();
        }
        // What to change comes first: it is what a person reads in `kubectl get` and events.
        match refusal {
            Some(r) => format!("{}. {out}", r.hint),
            None => out,
        }
    }
}

/// An ARM refusal of what the spec asks for, recognised by ARM's error: the reason for the
/// condition, and what a person should change (naming the spec field).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Condition, event and metric reason.
    pub reason: &'static str,
    /// What to change, e.g. `spec.location: ...`.
    pub hint: String,
}

fn refusal_of(arm_id: &str, err: &arm::Error) -> Option<Refusal> {
    let e = err.arm()?;
    if e.status == 429 {
        return None;
    }
    refusal(arm_id, &e.code, &e.message, e.target.as_deref())
}

/// Recognises the ARM refusals a person fixes in the spec or with more quota (the emulator
/// answers them as ARM does, see `emulator::catalog`): a type not offered in the location, a VM
/// size or instance type not offered in the region, a core quota too small, tags beyond ARM's
/// limits. `arm_id` is the refused resource: a compute, a deployment, a workspace or one of its
/// dependencies.
pub fn refusal(arm_id: &str, code: &str, message: &str, target: Option<&str>) -> Option<Refusal> {
    let id = arm_id.to_ascii_lowercase();
    let is = |c: &str| code.eq_ignore_ascii_case(c);
    let compute = id.contains("/computes/");
    let deployment = id.contains("/deployments/");
    if is("LocationNotAvailableForResourceType") || (is("NoRegisteredProviderFound") && message.contains("location")) {
        let wanted = quoted_after(message, "location '").unwrap_or_default();
        let listed = quoted_after(message, "regions for the resource type is '")
            .or_else(|| quoted_after(message, "supported locations are '"))
            .map(|l| l.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default();
        let field = if compute || deployment || id.contains("/onlineendpoints/") {
            "spec.location (or, when it is not set, the workspace's spec.location this object inherits)"
        } else {
            "spec.location"
        };
        let choices = if listed.is_empty() { String::new() } else { format!(": {}", a_few(&listed, 12)) };
        return Some(Refusal {
            reason: reason::LOCATION_NOT_AVAILABLE,
            hint: format!(
                "{field}: Azure does not offer this resource type in '{wanted}'; choose a region where it is offered{choices}. The location cannot change in place: delete the object and apply it again with the new spec.location"
            ),
        });
    }
    let sizes_listed = message.contains("SupportedVMSizes");
    let size_target = target.is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t.ends_with("vmsize") || t.ends_with("instancetype")
    });
    if (compute || deployment) && (sizes_listed || size_target || message.contains("not a supported VM size")) {
        let supported: Vec<String> = message
            .split("SupportedVMSizes: ")
            .nth(1)
            .map(|rest| rest.split([';', ')']).next().unwrap_or_default())
            .map(|list| list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        let asked = quoted_after(message, "vmSize '").or_else(|| quoted_after(message, "Instance type '")).unwrap_or_default();
        let some = if supported.is_empty() { String::new() } else { format!("; supported sizes include {}", a_few(&supported, 5)) };
        let hint = if compute {
            format!(
                "spec.amlCompute.vmSize (spec.computeInstance.vmSize for a ComputeInstance): '{asked}' is not offered in this region{some}. The VM size cannot change in place: delete the object and apply it again with a supported size"
            )
        } else {
            format!("spec.instanceType: '{asked}' is not offered in this region{some}; set spec.instanceType to a supported size")
        };
        return Some(Refusal { reason: reason::VM_SIZE_NOT_SUPPORTED, hint });
    }
    if is("QuotaExceeded") || is("OutOfQuota") || is("InsufficientQuota") {
        let number = |label: &str| -> Option<u64> {
            let rest = message.split(label).nth(1)?;
            rest.trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        };
        let family = message.split("exceeding approved ").nth(1).and_then(|r| r.split(" Cores quota").next()).filter(|f| !f.contains(' '));
        let region = message.split("Location: ").nth(1).and_then(|r| r.split([',', ' ', '.']).next()).filter(|r| !r.is_empty());
        let field = if compute {
            "lower spec.amlCompute.scaleSettings.maxNodeCount (or choose a VM size of another family)"
        } else if deployment {
            "lower spec.instanceCount (or choose an instance type of another family)"
        } else {
            "ask for less"
        };
        let numbers = match (family, region, number("Current Limit:"), number("Current Usage:"), number("Additional Required:")) {
            (Some(family), Some(region), Some(limit), Some(usage), Some(asked)) => format!(
                "the {family} dedicated-core quota in {region} has {} of {limit} cores left and this asks for {asked}; ",
                limit.saturating_sub(usage)
            ),
            _ => "a quota is too small for this; ".to_string(),
        };
        return Some(Refusal {
            reason: arm::reason::QUOTA_EXCEEDED,
            hint: format!(
                "Quota: {numbers}{field}, or request more (Azure portal, Quotas, Machine learning: the VM family in this region; https://learn.microsoft.com/azure/machine-learning/how-to-manage-quotas) and then set the annotation {} to a new value to retry",
                crate::crd::RETRY_ANNOTATION
            ),
        });
    }
    if deployment && let Some(field) = missing_asset(message) {
        return Some(Refusal {
            reason: reason::ASSET_NOT_FOUND,
            hint: format!(
                "{field} names an asset Azure does not have in this workspace: create it first (an object named in {} does that here) or fix the id",
                match field {
                    "spec.model" => "spec.modelRef",
                    "spec.environmentId" => "spec.environmentRef",
                    _ => "spec.codeConfiguration.codeRef",
                }
            ),
        });
    }
    if id.contains("/versions/") && message.contains("cannot be changed") {
        return Some(Refusal {
            reason: reason::VERSION_CONFLICT,
            hint: "This version already exists in Azure with other content and cannot change: give the object a new spec.version".to_string(),
        });
    }
    if code.to_ascii_lowercase().starts_with("invalidtag") {
        return Some(Refusal {
            reason: reason::INVALID_TAGS,
            hint: "spec.tags: Azure takes at most 50 tags, one of them the operator's owner tag (so at most 49 in spec.tags), names of at most 512 characters without < > % & \\ ? /, and values of at most 256 characters; fix spec.tags".to_string(),
        });
    }
    None
}

/// The spec field of a deployment whose asset ARM does not have, from ARM's error details
/// (`ModelNotFound: Model container with name: m not found.`).
fn missing_asset(message: &str) -> Option<&'static str> {
    [("ModelNotFound", "spec.model"), ("EnvironmentNotFound", "spec.environmentId"), ("CodeNotFound", "spec.codeConfiguration.codeId")]
        .into_iter()
        .find(|(code, _)| message.contains(code))
        .map(|(_, field)| field)
}

/// The text between `'` after `prefix` and the next `'`.
fn quoted_after<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = text.split(prefix).nth(1)?;
    rest.split('\'').next()
}

/// The first `n` items, and how many more there are.
fn a_few(items: &[String], n: usize) -> String {
    let shown = items.iter().take(n).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > n { format!("{shown} (and {} more)", items.len() - n) } else { shown }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WS: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w";

    #[test]
    fn refusals_name_the_field_and_other_errors_are_left_alone() {
        // ARM's other wording of an unsupported region names the locations too.
        let r = refusal(
            WS,
            "NoRegisteredProviderFound",
            "No registered resource provider found for location 'mars'. The supported locations are 'eastus, westeurope'.",
            None,
        )
        .expect("a location refusal");
        assert_eq!(r.reason, reason::LOCATION_NOT_AVAILABLE);
        assert!(r.hint.starts_with("spec.location:") && r.hint.contains("'mars'") && r.hint.contains("eastus, westeurope"), "{}", r.hint);
        // Without the numbers, a quota refusal still says how to get more.
        let r = refusal(&format!("{WS}/computes/c"), "OutOfQuota", "not enough cores", None).expect("quota");
        assert_eq!(r.reason, arm::reason::QUOTA_EXCEEDED);
        assert!(r.hint.contains("maxNodeCount") && r.hint.contains(crate::crd::RETRY_ANNOTATION), "{}", r.hint);
        // A size refusal is known by its target even without the sizes listed.
        let r = refusal(&format!("{WS}/onlineEndpoints/e/deployments/d"), "BadArgument", "Instance type 'x' is bad.", Some("properties.instanceType"));
        assert_eq!(r.map(|r| r.reason), Some(reason::VM_SIZE_NOT_SUPPORTED));
        // Not refusals of the spec: left to their own classification.
        assert!(refusal(WS, "MissingSubscriptionRegistration", "register", None).is_none());
        assert!(refusal(WS, "BadArgument", "the model is missing", None).is_none());
        assert!(refusal(&format!("{WS}/computes/c"), "InternalServerError", "oops", None).is_none());
    }
}
