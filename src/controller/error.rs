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
}

/// What failed in a reconcile, one variant per failing step.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// The Secret named by `credentials.secretName` (or the default) does not exist.
    #[error(
        "credentials Secret {namespace}/{name} not found: create it with keys tenantId, clientId, clientSecret and subscriptionId"
    )]
    CredentialsNotFound { namespace: String, name: String },
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
    /// The finalizer helper failed around apply or cleanup.
    #[error("finalizer {0}")]
    Finalizer(&'static str, #[source] Box<Error>),
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
            Error::NoSubscription { .. } => "SubscriptionUnknown",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::DependencyMissing { .. } => "DependencyMissing",
            Error::DependencyNameTaken { .. } => "DependencyNameTaken",
            Error::DependencyFailed { .. } => "DependencyFailed",
            Error::SecretNotFound(_) => "SecretNotFound",
            Error::ParentInAnotherSubscription { .. } => "ParentInAnotherSubscription",
            Error::Arm { source, .. } => source.reason(),
            Error::OperationFailed { class: FailureClass::Transient, .. } => reason::OPERATION_FAILED_RETRYING,
            Error::OperationFailed { class: FailureClass::NeedsPerson, .. } => reason::OPERATION_FAILED,
            Error::PrincipalNotFound { .. } => "PrincipalNotFound",
            Error::RoleAssignmentForbidden { .. } => crate::arm::reason::AUTHORIZATION_FAILED,
            Error::Kube { .. } => "KubernetesApiError",
            Error::DeletePending { .. } => "Deleting",
            Error::Finalizer(_, inner) => inner.reason(),
            Error::FinalizerPatch(_) => "FinalizerError",
        }
    }

    /// The innermost pipeline error (unwraps the finalizer wrapper).
    pub fn root(&self) -> &Error {
        match self {
            Error::Finalizer(_, inner) => inner.root(),
            other => other,
        }
    }

    /// Whether a person must act before this can succeed (kstatus `Stalled`).
    pub fn is_stalled(&self) -> bool {
        match self.root() {
            Error::CredentialsNotFound { .. }
            | Error::CredentialsInvalid { .. }
            | Error::NoSubscription { .. }
            | Error::InvalidSpec(_)
            | Error::DependencyMissing { .. }
            | Error::DependencyNameTaken { .. }
            | Error::DependencyFailed { .. }
            | Error::SecretNotFound(_)
            | Error::ParentInAnotherSubscription { .. }
            | Error::OperationFailed { class: FailureClass::NeedsPerson, .. }
            | Error::RoleAssignmentForbidden { .. } => true,
            Error::PrincipalNotFound { stalled, .. } => *stalled,
            Error::Arm { source, .. } => source.class() == ErrorClass::NeedsPerson,
            _ => false,
        }
    }

    /// The retry policy for this error.
    pub fn retry(&self) -> Retry {
        match self.root() {
            Error::InvalidSpec(_) | Error::DependencyMissing { .. } => Retry::AwaitChange,
            Error::CredentialsNotFound { .. }
            | Error::DependencyNameTaken { .. }
            | Error::DependencyFailed { .. }
            | Error::CredentialsInvalid { .. }
            | Error::NoSubscription { .. }
            | Error::SecretNotFound(_)
            | Error::ParentInAnotherSubscription { .. }
            | Error::OperationFailed { class: FailureClass::NeedsPerson, .. }
            | Error::RoleAssignmentForbidden { .. } => Retry::Slow,
            Error::OperationFailed { class: FailureClass::Transient, .. } => Retry::Backoff,
            Error::PrincipalNotFound { stalled: true, .. } => Retry::Slow,
            Error::PrincipalNotFound { stalled: false, .. } => Retry::Backoff,
            Error::DeletePending { retry_after, .. } => Retry::After(*retry_after),
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
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            let text = s.to_string();
            if !text.is_empty() && !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            source = s.source();
        }
        out
    }
}
