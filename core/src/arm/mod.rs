//! Azure Resource Manager client: Entra ID tokens, ARM REST calls, long-running operations and a
//! single error classification. No Kubernetes types live here.
//!
//! * [`ArmClient`] sends one ARM request per call and never sleeps or polls on its own: writes
//!   return a [`WriteOutcome`]/[`DeleteOutcome`]/[`PostOutcome`] that may carry an [`Operation`],
//!   which the caller stores and later hands to [`ArmClient::poll`].
//! * Tokens come from `azure_identity`: a `ClientSecretCredential` for a client secret, a
//!   `ClientAssertionCredential` for a certificate (an RS256 assertion built here) or workload
//!   identity (the federated token file, re-read per request); one credential per (tenant, client,
//!   credential) cached inside the client; `azure_identity` refreshes a token 5 minutes before it
//!   expires.
//! * Every failure is an [`Error`] with a [`ErrorClass`] (what to do next) and a bounded
//!   PascalCase [`Error::reason`] (for conditions, events and metric labels).

mod auth;
mod client;
mod error;
pub mod ids;
pub mod limit;
mod lro;
#[cfg(test)]
mod props;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use client::{ArmClient, ArmStats};
pub use error::{
    ArmError, CODE_CANCELED_WITHOUT_ERROR, CODE_FAILED_WITHOUT_ERROR, Error, ErrorClass, FailureClass,
    OPERATION_FAILURE_CLASSES, failure_class, reason,
};
pub use lro::{
    DeleteOutcome, Operation, OperationKind, PollOutcome, PostOutcome, WriteOutcome,
    parse_retry_after,
};

/// The Microsoft.MachineLearningServices api-version the operator targets.
pub const DEFAULT_API_VERSION: &str = "2024-10-01";

/// Public-cloud ARM endpoint.
pub const DEFAULT_ARM_ENDPOINT: &str = "https://management.azure.com";

/// Public-cloud Entra ID authority host.
pub const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com/";

/// Default timeout of one HTTP request (ARM or token endpoint).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Wait used when ARM sends no (or an unreadable) `Retry-After`: the ARM RPC's documented client
/// default (async-api-reference, step 3). Also used for a 429 without `Retry-After`.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Which cloud to talk to and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudConfig {
    /// ARM base URL, e.g. `https://management.azure.com`; also the token audience
    /// (scope `{arm_endpoint}/.default`).
    pub arm_endpoint: String,
    /// Entra ID authority host, e.g. `https://login.microsoftonline.com/`; must be HTTPS.
    pub authority_host: String,
    /// PEM file with extra trusted roots (a corporate proxy or the emulator), added to the
    /// platform's roots for both ARM and token requests.
    pub ca_file: Option<PathBuf>,
    /// Timeout of one HTTP request, connect to last body byte.
    pub timeout: Duration,
    /// Client-side ARM budget per (subscription, client id).
    pub rate_limits: limit::RateLimits,
}

impl Default for CloudConfig {
    fn default() -> Self {
        Self {
            arm_endpoint: DEFAULT_ARM_ENDPOINT.to_string(),
            authority_host: DEFAULT_AUTHORITY_HOST.to_string(),
            ca_file: None,
            timeout: DEFAULT_TIMEOUT,
            rate_limits: limit::RateLimits::default(),
        }
    }
}

/// A secret string (client secret, key). `Debug` and `Display` print `<redacted>`; only
/// [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret value; never log or format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// How a service principal proves its identity to Entra ID.
///
/// `Debug` redacts secret values and PEM contents; the token file path is shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientCredential {
    /// A client secret (Secret key `clientSecret`).
    Secret(Secret),
    /// A PEM holding the certificate and its unencrypted RSA private key (Secret key
    /// `clientCertificate`; PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`). Tokens are requested
    /// with an RS256 client assertion signed by that key. Encrypted keys
    /// (`clientCertificatePassword`) are not supported.
    Certificate {
        /// The PEM text.
        pem: Secret,
    },
    /// Workload identity: a federated service-account token read from `token_file` (the file named
    /// by `AZURE_FEDERATED_TOKEN_FILE`) at every token request, since the kubelet rotates it.
    WorkloadIdentity {
        /// Path of the projected service-account token.
        token_file: PathBuf,
    },
}

impl ClientCredential {
    /// Where this credential comes from, for messages: the Secret key or environment variable.
    pub fn origin(&self) -> &'static str {
        match self {
            ClientCredential::Secret(_) => "clientSecret",
            ClientCredential::Certificate { .. } => "clientCertificate",
            ClientCredential::WorkloadIdentity { .. } => "AZURE_FEDERATED_TOKEN_FILE",
        }
    }
}

/// Service principal credentials (from a Kubernetes Secret). Debug redacts the credential.
#[derive(Clone, Debug)]
pub struct ServicePrincipal {
    /// Entra tenant (directory) id.
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// How the principal authenticates.
    pub credential: ClientCredential,
    /// Default subscription for resources that do not name one.
    pub subscription_id: Option<String>,
}
