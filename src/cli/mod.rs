//! `aml-operator plan | apply | import`: the operator without a cluster.
//!
//! Manifests are stored in an in-memory API server ([`crate::localkube`]) and driven through the same
//! pipeline the controllers run, so `plan` and `apply` decide exactly what the operator would.
//! Azure is real ARM (flags and `AZURE_*` variables) or, when nothing is configured, the built-in
//! emulator started in-process.
//!
//! * [`plan()`]: what applying would change, per object; never writes to ARM.
//! * [`apply()`]: reconciles every object until Ready (or deletes them all with `--delete`).
//! * [`import()`]: writes manifests for resources that already exist in Azure.

mod apply;
pub mod import;
mod kinds;
mod manifests;
mod plan;

pub use apply::{ApplyReport, Outcome, Progress, apply};
pub use import::{ImportReport, import};
pub use kinds::registry;
pub use manifests::{Loaded, Manifest, load};
pub use plan::{PlanReport, plan};

use crate::arm::{ArmClient, CloudConfig, Secret as SecretValue};
use crate::controller::tenancy::{NamespaceSelector, RoleAssignmentBounds};
use crate::controller::{Config, Context};
use crate::crd::{DEFAULT_CREDENTIALS_SECRET, ManagementPolicy};
use crate::emulator::{Emulator, EmulatorConfig, Principal};
use crate::localkube::LocalKube;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Subscription id the embedded emulator's principal defaults to (the README's and the examples').
pub const EMBEDDED_SUBSCRIPTION: &str = "11111111-2222-3333-4444-555555555555";

/// Namespace of the credentials Secret the CLI builds from `AZURE_*` (or for the embedded
/// emulator); it is the operator-wide default, so a Secret in the manifests still wins.
pub const CLI_CREDENTIALS_NAMESPACE: &str = "aml-operator";

/// Help text on where `plan`, `apply` and `import` get Azure and credentials from.
pub const CREDENTIALS_HELP: &str = "Azure: --arm-endpoint / AML_ARM_ENDPOINT (default: public ARM). Credentials: a Secret \
among the manifests (the object's namespace, `aml-credentials` unless spec.credentials names another; \
see examples/secret.yaml.template), else AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and \
AZURE_SUBSCRIPTION_ID. With none of these, the built-in ARM emulator is started and used.";

/// Where the embedded emulator looks for Microsoft's ARM schemas when `AML_ARM_SPECS` is not set.
const EMBEDDED_SPECS: &str = "../shared/arm-specs";

/// How long an operation takes in the embedded emulator.
const EMBEDDED_OPERATION: Duration = Duration::from_millis(300);

/// Flags shared by `plan`, `apply` and `import`: where ARM is (the names and variables of `run`)
/// and the service principal from the environment.
#[derive(clap::Args, Clone)]
pub struct ArmArgs {
    /// ARM endpoint. When neither this, `AZURE_*` credentials nor a Secret in the manifests are
    /// given, the built-in emulator is started and used.
    #[arg(long, env = "AML_ARM_ENDPOINT")]
    pub arm_endpoint: Option<String>,
    /// Entra authority host (default: the public cloud's).
    #[arg(long, env = "AZURE_AUTHORITY_HOST")]
    pub authority_host: Option<String>,
    /// Extra trusted CA (PEM): a corporate proxy or an emulator.
    #[arg(long, env = "AML_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// ARM api-version.
    #[arg(long, default_value = crate::arm::DEFAULT_API_VERSION)]
    pub api_version: String,
    /// Tenant of the service principal (normally from `AZURE_TENANT_ID`).
    #[arg(long, env = "AZURE_TENANT_ID", hide = true)]
    pub azure_tenant_id: Option<String>,
    /// Client id of the service principal (normally from `AZURE_CLIENT_ID`).
    #[arg(long, env = "AZURE_CLIENT_ID", hide = true)]
    pub azure_client_id: Option<String>,
    /// Client secret of the service principal; set it through `AZURE_CLIENT_SECRET`, not a flag.
    #[arg(long, env = "AZURE_CLIENT_SECRET", hide = true, hide_env_values = true, value_parser = parse_secret)]
    pub azure_client_secret: Option<SecretValue>,
    /// Default subscription (normally from `AZURE_SUBSCRIPTION_ID`).
    #[arg(long, env = "AZURE_SUBSCRIPTION_ID", hide = true)]
    pub azure_subscription_id: Option<String>,
}

fn parse_secret(s: &str) -> Result<SecretValue, String> {
    Ok(SecretValue::new(s.to_string()))
}

impl Default for ArmArgs {
    fn default() -> Self {
        ArmArgs {
            arm_endpoint: None,
            authority_host: None,
            ca_file: None,
            api_version: crate::arm::DEFAULT_API_VERSION.to_string(),
            azure_tenant_id: None,
            azure_client_id: None,
            azure_client_secret: None,
            azure_subscription_id: None,
        }
    }
}

impl std::fmt::Debug for ArmArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmArgs")
            .field("arm_endpoint", &self.arm_endpoint)
            .field("authority_host", &self.authority_host)
            .field("ca_file", &self.ca_file)
            .field("api_version", &self.api_version)
            .field("azure_tenant_id", &self.azure_tenant_id)
            .field("azure_client_id", &self.azure_client_id)
            .field("azure_client_secret", &self.azure_client_secret.as_ref().map(|_| "<redacted>"))
            .field("azure_subscription_id", &self.azure_subscription_id)
            .finish()
    }
}

impl ArmArgs {
    /// The service principal from `AZURE_*`, if any is set; an error when only some are.
    fn env_principal(&self) -> Result<Option<CliPrincipal>, CliError> {
        match (&self.azure_tenant_id, &self.azure_client_id, &self.azure_client_secret) {
            (None, None, None) => Ok(None),
            (Some(tenant), Some(client), Some(secret)) => Ok(Some(CliPrincipal {
                tenant_id: tenant.clone(),
                client_id: client.clone(),
                client_secret: secret.clone(),
                subscription_id: self.azure_subscription_id.clone(),
            })),
            _ => Err(CliError::Config(
                "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET must be set together".into(),
            )),
        }
    }
}

/// Flags of `aml-operator plan`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PlanArgs {
    /// Manifest files or folders (searched recursively for *.yaml and *.yml).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Where ARM is.
    #[command(flatten)]
    pub arm: ArmArgs,
}

/// Flags of `aml-operator apply`.
#[derive(clap::Args, Debug, Clone)]
pub struct ApplyArgs {
    /// Manifest files or folders (searched recursively for *.yaml and *.yml).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Delete the Azure resources of the manifests instead (children first).
    #[arg(long)]
    pub delete: bool,
    /// With `--delete`: manifests read only to find where the deleted objects' parents are in
    /// Azure (to delete one deployment, give its endpoint and workspace here); never deleted.
    #[arg(long, value_name = "FILE_OR_FOLDER", requires = "delete", num_args = 1..)]
    pub context: Vec<PathBuf>,
    /// Give up after this long: `90s`, `10m`, `1h` or seconds.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Where ARM is.
    #[command(flatten)]
    pub arm: ArmArgs,
}

impl Default for ApplyArgs {
    fn default() -> Self {
        ApplyArgs { files: Vec::new(), delete: false, context: Vec::new(), timeout: Duration::from_secs(600), arm: ArmArgs::default() }
    }
}

/// Flags of `aml-operator import`.
#[derive(clap::Args, Debug, Clone)]
pub struct ImportArgs {
    /// Subscription to read.
    #[arg(long)]
    pub subscription: String,
    /// Resource group to read.
    #[arg(long)]
    pub resource_group: String,
    /// Only this workspace (and what it holds).
    #[arg(long)]
    pub workspace: Option<String>,
    /// `managementPolicy` of the written manifests: `Observe` (never writes to Azure) or `Manage`.
    #[arg(long, default_value = "Observe", value_parser = parse_management_policy)]
    pub management_policy: ManagementPolicy,
    /// Write one file per object into this folder instead of printing a YAML stream.
    #[arg(short = 'o', long = "output-dir")]
    pub output_dir: Option<PathBuf>,
    /// Where ARM is.
    #[command(flatten)]
    pub arm: ArmArgs,
}

/// Parses `90s`, `10m`, `1h`, `500ms` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number.parse().map_err(|_| format!("{s:?} is not a duration (e.g. 90s, 10m, 1h)"))?;
    let factor = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("{s:?} has an unknown unit (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(n * factor).map_err(|_| format!("{s:?} is out of range"))
}

fn parse_management_policy(s: &str) -> Result<ManagementPolicy, String> {
    match s.to_ascii_lowercase().as_str() {
        "observe" => Ok(ManagementPolicy::Observe),
        "manage" => Ok(ManagementPolicy::Manage),
        _ => Err(format!("{s:?} is not a management policy (Observe or Manage)")),
    }
}

/// Errors that stop a CLI command (per-object problems are reported, not returned).
#[derive(thiserror::Error, Debug)]
pub enum CliError {
    /// Bad flags or environment.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A manifest could not be read or understood.
    #[error("{0}")]
    Manifest(String),
    /// Reading a file or folder failed.
    #[error("cannot read {path}")]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing output failed.
    #[error("cannot write {what}")]
    Write {
        /// What was being written.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The ARM client could not be built.
    #[error("cannot build the ARM client")]
    Arm(#[source] Box<crate::arm::Error>),
    /// An ARM read needed by `import` failed.
    #[error("ARM read of {path} failed")]
    ArmRead {
        /// The collection or resource read.
        path: String,
        /// The cause.
        #[source]
        source: Box<crate::arm::Error>,
    },
    /// The embedded emulator could not start.
    #[error("cannot start the embedded ARM emulator")]
    Emulator(#[source] crate::emulator::EmulatorError),
    /// A manifest cannot be turned into YAML.
    #[error("cannot render YAML")]
    Yaml(#[source] serde_yaml::Error),
}

/// A service principal the CLI was given (`AZURE_*`, or the embedded emulator's). It only ever
/// becomes a Secret in the local API server, read by the pipeline like any other. Debug redacts
/// the secret.
#[derive(Clone, Debug)]
pub struct CliPrincipal {
    /// Entra tenant id.
    pub tenant_id: String,
    /// Application (client) id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: SecretValue,
    /// Default subscription.
    pub subscription_id: Option<String>,
}

/// Where ARM is and which principal the CLI brings when the manifests bring no Secret. Tests build
/// one for an emulator they started, so several commands share one Azure.
#[derive(Clone, Debug)]
pub struct ArmSetup {
    /// Endpoint, authority and CA.
    pub cloud: CloudConfig,
    /// Stored as the operator-wide default credentials (`aml-operator/aml-credentials`).
    pub principal: Option<CliPrincipal>,
    /// ARM api-version.
    pub api_version: String,
    /// Whether ARM is an emulator: waits are capped at 2 s and backoff is short.
    pub emulator: bool,
}

impl ArmSetup {
    /// ARM as the running `emulator`, whose CA is in `ca_file`, with its default principal and
    /// `subscription` as the default subscription.
    pub fn for_emulator(emulator: &Emulator, ca_file: PathBuf, subscription: &str) -> Self {
        let p = Principal::default();
        ArmSetup {
            cloud: CloudConfig {
                arm_endpoint: emulator.arm_endpoint(),
                authority_host: emulator.authority_host(),
                ca_file: Some(ca_file),
                ..CloudConfig::default()
            },
            principal: Some(CliPrincipal {
                tenant_id: p.tenant_id,
                client_id: p.client_id,
                client_secret: SecretValue::new(p.client_secret),
                subscription_id: Some(subscription.to_string()),
            }),
            api_version: crate::arm::DEFAULT_API_VERSION.to_string(),
            emulator: true,
        }
    }
}

/// The embedded emulator of one command; dropping it stops the emulator and removes its CA file.
struct Embedded {
    _emulator: Emulator,
    ca_file: PathBuf,
}

impl Drop for Embedded {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

/// One command's world: the in-memory API server, the controller context, and the embedded
/// emulator when there is one.
pub(crate) struct Session {
    pub kube: LocalKube,
    pub ctx: Arc<Context>,
    pub setup: ArmSetup,
    _embedded: Option<Embedded>,
}

impl Session {
    /// Chooses ARM (`given`, else the flags, else the embedded emulator, announced on the first
    /// line of `out` after `banner_prefix`) and builds the context.
    pub async fn start(
        args: &ArmArgs,
        manifests_have_secret: bool,
        given: Option<ArmSetup>,
        out: &mut (dyn Write + Send),
        banner_prefix: &str,
    ) -> Result<Session, CliError> {
        crate::install_crypto_provider();
        let env_principal = args.env_principal()?;
        let (setup, embedded) = match given {
            Some(setup) => (setup, None),
            None if args.arm_endpoint.is_some() || env_principal.is_some() || manifests_have_secret => {
                let cloud = CloudConfig {
                    arm_endpoint: args.arm_endpoint.clone().unwrap_or_else(|| crate::arm::DEFAULT_ARM_ENDPOINT.into()),
                    authority_host: args.authority_host.clone().unwrap_or_else(|| crate::arm::DEFAULT_AUTHORITY_HOST.into()),
                    ca_file: args.ca_file.clone(),
                    ..CloudConfig::default()
                };
                let setup = ArmSetup { cloud, principal: env_principal, api_version: args.api_version.clone(), emulator: false };
                (setup, None)
            }
            None => {
                static SESSIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
                let n = SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let ca_file = std::env::temp_dir().join(format!("aml-operator-cli-{}-{n}-ca.pem", std::process::id()));
                // Bodies are checked against Microsoft's schemas when they are at hand
                // ($AML_ARM_SPECS, else ../shared/arm-specs), as the tests check them.
                let specs = crate::armspec::specs_dir(std::path::Path::new(EMBEDDED_SPECS));
                let validator = specs.as_deref().map(crate::emulator::schema_validator).transpose().map_err(CliError::Emulator)?;
                let emulator = Emulator::start(EmulatorConfig {
                    operation_duration: EMBEDDED_OPERATION,
                    retry_after_secs: 0,
                    ca_file: Some(ca_file.clone()),
                    validator,
                    ..EmulatorConfig::default()
                })
                .await
                .map_err(CliError::Emulator)?;
                say(out, &format!("{banner_prefix}using the embedded ARM emulator at {} (no Azure configured)", emulator.arm_endpoint()))?;
                let validation = match &specs {
                    Some(dir) => format!("it validates request bodies against Microsoft's ARM schemas in {}", dir.display()),
                    None => format!(
                        "it does not validate request bodies: no ARM schemas at {EMBEDDED_SPECS} (set {})",
                        crate::armspec::SPECS_ENV
                    ),
                };
                say(out, &format!("{banner_prefix}{validation}"))?;
                let mut setup = ArmSetup::for_emulator(&emulator, ca_file.clone(), EMBEDDED_SUBSCRIPTION);
                setup.api_version = args.api_version.clone();
                (setup, Some(Embedded { _emulator: emulator, ca_file }))
            }
        };
        let arm = ArmClient::new(&setup.cloud).map_err(|e| CliError::Arm(Box::new(e)))?;
        let (kube, client) = LocalKube::new();
        // The CLI acts with the user's own credentials: the operator's tenancy bounds do not apply.
        let mut config = Config {
            api_version: setup.api_version.clone(),
            default_credentials_namespaces: NamespaceSelector::Everything,
            role_assignment_bounds: RoleAssignmentBounds::unbounded(),
            cluster_name: crate::controller::owner::CLI_CLUSTER_NAME.into(),
            ..Config::default()
        };
        if setup.emulator {
            config.base_backoff = Duration::from_millis(500);
            config.max_backoff = Duration::from_secs(5);
        }
        if let Some(p) = &setup.principal {
            kube.put(credentials_secret(p));
            config.default_credentials = Some((CLI_CREDENTIALS_NAMESPACE.into(), DEFAULT_CREDENTIALS_SECRET.into()));
        }
        let ctx = Arc::new(Context::new(client, arm, config));
        Ok(Session { kube, ctx, setup, _embedded: embedded })
    }

    /// Longest single wait: short against an emulator, ARM's own otherwise.
    pub fn cap(&self, d: Duration) -> Duration {
        if self.setup.emulator { d.min(Duration::from_secs(2)) } else { d }
    }
}

/// The Secret the CLI stores for a principal it was given.
fn credentials_secret(p: &CliPrincipal) -> Secret {
    let mut data = std::collections::BTreeMap::new();
    data.insert("tenantId".to_string(), ByteString(p.tenant_id.as_bytes().to_vec()));
    data.insert("clientId".to_string(), ByteString(p.client_id.as_bytes().to_vec()));
    data.insert("clientSecret".to_string(), ByteString(p.client_secret.expose().as_bytes().to_vec()));
    if let Some(s) = &p.subscription_id {
        data.insert("subscriptionId".to_string(), ByteString(s.as_bytes().to_vec()));
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(DEFAULT_CREDENTIALS_SECRET.into()),
            namespace: Some(CLI_CREDENTIALS_NAMESPACE.into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    }
}

/// Writes one line of output.
pub(crate) fn say(out: &mut (dyn Write + Send), line: &str) -> Result<(), CliError> {
    writeln!(out, "{line}").map_err(|source| CliError::Write { what: "output".into(), source })
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_take_common_units() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("42"), Ok(Duration::from_secs(42)));
        assert!(parse_duration("10 days").is_err());
    }
}
