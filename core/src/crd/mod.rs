//! The custom resources: one file per kind plus the types they share.

pub mod assets;
pub mod common;
pub mod compute;
pub mod datastore;
pub mod deployment;
pub mod endpoint;
pub mod role_assignment;
pub mod workspace;

pub use assets::{AmlCodeVersion, AmlEnvironmentVersion, AmlModelVersion, AssetSpec, AssetStatus};
pub use common::*;
pub use datastore::{AmlDatastore, AmlDatastoreSpec, AmlDatastoreStatus};
pub use compute::{AmlCompute, AmlComputeSpec, AmlComputeStatus, ComputeType};
pub use deployment::{AmlOnlineDeployment, AmlOnlineDeploymentSpec, AmlOnlineDeploymentStatus};
pub use endpoint::{AmlOnlineEndpoint, AmlOnlineEndpointSpec, AmlOnlineEndpointStatus};
pub use role_assignment::{AmlRoleAssignment, AmlRoleAssignmentSpec, AmlRoleAssignmentStatus, BuiltInRole, PrincipalType};
pub use workspace::{AmlWorkspace, AmlWorkspaceSpec, AmlWorkspaceStatus, CreatedDependencies, DependencyNames};

use kube::CustomResourceExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

/// The operator's kinds, parents before children: the one list of them. `for_each_kind!(m)`
/// expands to `m!(AmlWorkspace, AmlCompute, ...)`, so each layer builds what it needs from the same
/// list: the API resources here, the table of kinds in `controller::kinds`. Adding a kind is its
/// own files and one name here.
macro_rules! for_each_kind {
    ($m:ident) => {
        $m!(
            AmlWorkspace,
            AmlCompute,
            AmlDatastore,
            AmlModelVersion,
            AmlEnvironmentVersion,
            AmlCodeVersion,
            AmlOnlineEndpoint,
            AmlOnlineDeployment,
            AmlRoleAssignment
        )
    };
}
pub(crate) use for_each_kind;

/// The API resource of every kind.
pub fn resources() -> Vec<kube::api::ApiResource> {
    macro_rules! erased {
        ($($kind:ident),*) => { vec![$(kube::api::ApiResource::erase::<$kind>(&())),*] };
    }
    for_each_kind!(erased)
}

/// How a kind's CRD is generated: the derived schema plus the rules every kind shares, with the
/// kind's own ARM name rule and its optional fields that cannot be added or removed. Implemented
/// in each kind's file; the list of kinds is [`for_each_kind`].
pub trait Definition: CustomResourceExt {
    /// How the kind's ARM name is chosen (and checked at admission).
    const NAMING: Naming;
    /// Optional spec fields that can be neither added nor removed after creation.
    const PRESENCE_IMMUTABLE: &'static [&'static str] = &[];

    /// The CRD, generated from the Rust type with the shared rules added.
    fn definition() -> CustomResourceDefinition {
        with_common_rules(Self::crd(), Self::NAMING, Self::PRESENCE_IMMUTABLE)
    }
}

/// How a kind's ARM name is chosen.
#[derive(Clone, Copy, Debug)]
pub enum Naming {
    /// `spec.azureName`, else `metadata.name`, checked against the ARM name rule at admission.
    Arm(&'static NameRule),
    /// Derived by the operator (a role assignment's GUID): `spec.azureName` is refused with this
    /// message, and `metadata.name` is any Kubernetes name.
    Derived(&'static str),
}

/// A kind's ARM name rule: what ARM accepts as the resource's name.
#[derive(Clone, Copy, Debug)]
pub struct NameRule {
    /// What the name names, for messages ("workspace").
    pub what: &'static str,
    /// The ARM name pattern (from the 2024-10-01 spec where it has one).
    pub pattern: &'static str,
    /// The pattern in words, for the message a refused name gets.
    pub explained: &'static str,
}

impl NameRule {
    /// Whether `name` is a name ARM accepts for this kind.
    pub fn accepts(&self, name: &str) -> bool {
        // The JSON-schema validator the ARM schema checks use; it evaluates `pattern` as ARM does.
        jsonschema::is_valid(&serde_json::json!({"type": "string", "pattern": self.pattern}), &serde_json::json!(name))
    }
}

/// Adds what [`CommonSpec`] needs but cannot carry itself, since the flattened struct's own
/// schema-level keys are dropped by the flattening: the kind's name pattern on `spec.azureName`,
/// the rule that `azureName` cannot be added or removed, and a rule on the whole object that
/// checks `metadata.name` against the ARM name rule when `azureName` is not set (only a rule on
/// the root schema can see `metadata.name`). For a [`Naming::Derived`] kind: one rule refusing
/// `azureName` instead.
///
/// And for each optional field in `presence_immutable`: the rule that it can be neither added nor
/// removed after creation (the rule that its value cannot change sits on the field itself).
fn with_common_rules(mut crd: CustomResourceDefinition, naming: Naming, presence_immutable: &[&str]) -> CustomResourceDefinition {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::ValidationRule;
    let rule = |rule: String, message: String| ValidationRule { rule, message: Some(message), ..ValidationRule::default() };
    for version in &mut crd.spec.versions {
        if let Some(spec) = spec_schema(version) {
            let rules = spec.x_kubernetes_validations.get_or_insert_with(Vec::new);
            for field in presence_immutable {
                rules.push(rule(
                    format!("has(self.{field}) == has(oldSelf.{field})"),
                    format!("{field} is immutable: it cannot be added or removed after creation"),
                ));
            }
        }
    }
    let name = match naming {
        Naming::Arm(name) => name,
        Naming::Derived(why) => {
            for version in &mut crd.spec.versions {
                if let Some(spec) = spec_schema(version) {
                    spec.x_kubernetes_validations.get_or_insert_with(Vec::new).insert(0, rule("!has(self.azureName)".into(), why.into()));
                }
            }
            return crd;
        }
    };
    let quoted = name.pattern.replace('\\', "\\\\");
    for version in &mut crd.spec.versions {
        let Some(root) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) else { continue };
        root.x_kubernetes_validations.get_or_insert_with(Vec::new).push(rule(
            format!("has(self.spec.azureName) || self.metadata.name.matches('{quoted}')"),
            format!(
                "metadata.name is not a valid Azure {} name ({}): set spec.azureName to a name that is, or rename the object",
                name.what, name.explained
            ),
        ));
        let Some(spec) = root.properties.as_mut().and_then(|p| p.get_mut("spec")) else { continue };
        spec.x_kubernetes_validations.get_or_insert_with(Vec::new).insert(
            0,
            rule(
                "has(self.azureName) == has(oldSelf.azureName)".into(),
                "azureName is immutable: it cannot be added or removed after creation".into(),
            ),
        );
        if let Some(azure_name) = spec.properties.as_mut().and_then(|p| p.get_mut("azureName")) {
            azure_name.pattern = Some(name.pattern.to_string());
        }
    }
    crd
}

/// The schema of `spec` in one version of a CRD.
fn spec_schema(
    version: &mut k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionVersion,
) -> Option<&mut k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps> {
    version.schema.as_mut()?.open_api_v3_schema.as_mut()?.properties.as_mut()?.get_mut("spec")
}

/// The CRDs as one multi-document YAML stream (what `aml-operator crds` prints and `crds/` holds).
pub fn to_yaml(crds: Vec<CustomResourceDefinition>) -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in crds {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

/// The files `crds/` must hold: (file name, YAML), one per CRD.
pub fn files(crds: Vec<CustomResourceDefinition>) -> Result<Vec<(String, String)>, serde_yaml::Error> {
    crds.into_iter()
        .map(|crd| {
            let name = format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unknown"));
            Ok((name, format!("{}{}", GENERATED_HEADER, serde_yaml::to_string(&crd)?)))
        })
        .collect()
}

/// First line of every generated CRD file.
pub const GENERATED_HEADER: &str = "# Generated by `aml-operator crds --out-dir crds`. Do not edit.\n";

/// Writes every CRD into `dir`, one file each (what `aml-operator crds --out-dir DIR` does).
pub fn write_files(dir: &std::path::Path, crds: Vec<CustomResourceDefinition>) -> Result<Vec<std::path::PathBuf>, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, yaml) in files(crds)? {
        let path = dir.join(name);
        std::fs::write(&path, yaml)?;
        written.push(path);
    }
    Ok(written)
}

/// Deserializes `value` as `T`; an error names the path of the field that does not fit, as the
/// API server would (`spec.identity.userAssignedIdentities: invalid type: map, expected a sequence`).
pub fn from_value<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| match e.path().to_string().as_str() {
        "." => e.inner().to_string(),
        path => format!("{path}: {}", e.inner()),
    })
}

