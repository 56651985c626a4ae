//! ARM template schema validation.
//!
//! Checks request bodies against Microsoft's ARM template JSON schemas
//! (`arm-template-schemas/schemas/<api-version>/Microsoft.MachineLearningServices.json`, and the
//! schemas of the other resources the operator writes: role assignments and the workspace
//! dependencies a workspace from nothing creates — storage account, key vault, Log Analytics
//! workspace, Application Insights component) and loads the official request/response examples. The spec folder lives outside the repository (see
//! [`specs_dir`]); nothing here copies or edits those files: the two known quirks of the schemas are
//! repaired on the in-memory JSON at load time (see [`SchemaValidator::load`]), and so is a third,
//! the shape of a model version's flavors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use jsonschema::error::ValidationErrorKind;
use jsonschema::{Draft, Registry, ValidationError, Validator};
use serde_json::Value;

/// The api-version the operator speaks (and whose schemas [`shared`] loads).
pub const API_VERSION: &str = "2024-10-01";

/// The environment variable that overrides where the arm-specs folder is.
pub const SPECS_ENV: &str = "AML_ARM_SPECS";

/// The environment variable that turns a missing arm-specs folder into a test failure.
pub const REQUIRE_SPECS_ENV: &str = "AML_REQUIRE_ARM_SPECS";

/// The URI under which ARM template schemas `$ref` the shared definitions.
const COMMON_DEFINITIONS_URI: &str =
    "https://schema.management.azure.com/schemas/common/definitions.json";

/// The pattern of ARM template expressions (`"[...]"`), the alternative offered next to nearly
/// every property; an error against it says nothing about what the body meant.
const EXPRESSION_PATTERN: &str = r"^\[([^\[].*)?\]$";

/// How many problems a validation message lists at most.
const MAX_REPORTED: usize = 5;

/// The ML resource types this module validates, with their `resourceDefinitions` key: the four
/// the operator manages and a workspace's assets (FACTS §11).
const RESOURCE_DEFINITIONS: [(&str, &str); 11] = [
    ("Microsoft.MachineLearningServices/workspaces", "workspaces"),
    (
        "Microsoft.MachineLearningServices/workspaces/computes",
        "workspaces_computes",
    ),
    (
        "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
        "workspaces_onlineEndpoints",
    ),
    (
        "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments",
        "workspaces_onlineEndpoints_deployments",
    ),
    ("Microsoft.MachineLearningServices/workspaces/models", "workspaces_models"),
    ("Microsoft.MachineLearningServices/workspaces/models/versions", "workspaces_models_versions"),
    ("Microsoft.MachineLearningServices/workspaces/environments", "workspaces_environments"),
    (
        "Microsoft.MachineLearningServices/workspaces/environments/versions",
        "workspaces_environments_versions",
    ),
    ("Microsoft.MachineLearningServices/workspaces/codes", "workspaces_codes"),
    ("Microsoft.MachineLearningServices/workspaces/codes/versions", "workspaces_codes_versions"),
    ("Microsoft.MachineLearningServices/workspaces/datastores", "workspaces_datastores"),
];

/// The role-assignment resource type, validated against
/// `schemas/2022-04-01/Microsoft.Authorization.json#/resourceDefinitions/roleAssignments`.
pub const ROLE_ASSIGNMENTS: &str = "Microsoft.Authorization/roleAssignments";

/// The other resources the operator writes besides the ML ones, each validated by its own schema:
/// resource type, api-version, schema file under `arm-template-schemas/schemas/<api-version>/`
/// and `resourceDefinitions` key (role assignments; the workspace dependencies, FACTS §10).
pub const OTHER_SCHEMAS: [(&str, &str, &str, &str); 5] = [
    (ROLE_ASSIGNMENTS, "2022-04-01", "Microsoft.Authorization.json", "roleAssignments"),
    ("Microsoft.Storage/storageAccounts", "2023-05-01", "Microsoft.Storage.json", "storageAccounts"),
    ("Microsoft.KeyVault/vaults", "2023-07-01", "Microsoft.KeyVault.json", "vaults"),
    ("Microsoft.OperationalInsights/workspaces", "2022-10-01", "Microsoft.OperationalInsights.json", "workspaces"),
    ("Microsoft.Insights/components", "2020-02-02", "Microsoft.Insights.Application.json", "components"),
];

/// Failures while loading schemas or examples from the arm-specs folder.
#[derive(thiserror::Error, Debug)]
pub enum SpecError {
    /// A spec file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// A spec file is not valid JSON.
    #[error("{} is not valid JSON", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse failure.
        #[source]
        source: serde_json::Error,
    },
    /// The schema file lacks a `resourceDefinitions` entry this module needs.
    #[error("{} has no resourceDefinitions/{definition}", path.display())]
    MissingDefinition {
        /// The schema file.
        path: PathBuf,
        /// The missing `resourceDefinitions` key.
        definition: String,
    },
    /// The schema documents could not be registered for `$ref` resolution.
    #[error("cannot register the ARM template schemas")]
    Registry {
        /// The registry failure.
        #[source]
        source: jsonschema::ReferencingError,
    },
    /// A resource definition could not be compiled into a validator.
    #[error("cannot compile the schema of resourceDefinitions/{definition}")]
    Compile {
        /// The `resourceDefinitions` key.
        definition: String,
        /// The compilation failure.
        #[source]
        source: Box<ValidationError<'static>>,
    },
    /// An example file does not have the expected shape.
    #[error("{} is not a usable example: {reason}", path.display())]
    Example {
        /// The example file.
        path: PathBuf,
        /// What is missing.
        reason: &'static str,
    },
}

/// Where the arm-specs folder is: `$AML_ARM_SPECS`, else `default`; `None` when that folder is absent.
pub fn specs_dir(default: &Path) -> Option<PathBuf> {
    let dir = candidate_dir(default);
    dir.is_dir().then_some(dir)
}

/// The folder [`specs_dir`] would look at, whether or not it exists.
fn candidate_dir(default: &Path) -> PathBuf {
    match std::env::var_os(SPECS_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => default.to_path_buf(),
    }
}

/// Validates ARM request bodies against the ARM template JSON schemas of one api-version.
///
/// Holds one compiled validator per supported resource type; `Send + Sync`, cheap to share.
pub struct SchemaValidator {
    api_version: String,
    /// Per resource type: the compiled validator and the api-version its schema describes.
    validators: HashMap<&'static str, (Validator, String)>,
}

impl std::fmt::Debug for SchemaValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaValidator")
            .field("api_version", &self.api_version)
            .field(
                "resource_types",
                &self.validators.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl SchemaValidator {
    /// Loads `arm-template-schemas/schemas/<api_version>/Microsoft.MachineLearningServices.json` and
    /// compiles the `workspaces`, `workspaces_computes`, `workspaces_onlineEndpoints` and
    /// `workspaces_onlineEndpoints_deployments` resource definitions and those of a workspace's
    /// assets (`workspaces_models[_versions]`, `workspaces_environments[_versions]`,
    /// `workspaces_codes[_versions]`, `workspaces_datastores`), as JSON Schema draft 4.
    ///
    /// The role assignments and workspace dependencies of [`OTHER_SCHEMAS`] are loaded too, each from its own
    /// api-version's schema file.
    ///
    /// Two repairs are applied to the loaded JSON (the files are never touched):
    /// - every definition written `allOf: [base, {oneOf: [...]}]` loses `additionalProperties: false`
    ///   on its base, which otherwise rejects every subtype field of a discriminated union;
    /// - `FlavorData` gets back the `data` level the swagger gives it (see `repair_flavor_data`);
    /// - `const` (draft 6, ignored by draft 4) becomes the equivalent one-value `enum`, so union
    ///   branches are told apart by their discriminator.
    pub fn load(specs_dir: &Path, api_version: &str) -> Result<Self, SpecError> {
        let schemas = specs_dir.join("arm-template-schemas").join("schemas");
        let main_path = schemas
            .join(api_version)
            .join("Microsoft.MachineLearningServices.json");
        let mut main = read_json(&main_path)?;
        let mut common = read_json(&schemas.join("common").join("definitions.json"))?;
        relax_union_bases(&mut main);
        repair_flavor_data(&mut main);
        const_to_enum(&mut main);
        const_to_enum(&mut common);

        let main_uri = document_uri(&main).unwrap_or_else(|| {
            format!("https://schema.management.azure.com/schemas/{api_version}/Microsoft.MachineLearningServices.json")
        });
        let definitions = main.get("resourceDefinitions").and_then(Value::as_object);
        for (_, definition) in RESOURCE_DEFINITIONS {
            if definitions.is_none_or(|d| !d.contains_key(definition)) {
                return Err(SpecError::MissingDefinition {
                    path: main_path,
                    definition: definition.to_string(),
                });
            }
        }

        let registry = Registry::options()
            .draft(Draft::Draft4)
            .build([
                (main_uri.clone(), Draft::Draft4.create_resource(main)),
                (
                    COMMON_DEFINITIONS_URI.to_string(),
                    Draft::Draft4.create_resource(common.clone()),
                ),
            ])
            .map_err(|source| SpecError::Registry { source })?;

        let mut validators = HashMap::new();
        for (resource_type, definition) in RESOURCE_DEFINITIONS {
            let validator = compile(&registry, &main_uri, definition)?;
            validators.insert(resource_type, (validator, api_version.to_string()));
        }
        for (resource_type, version, file, definition) in OTHER_SCHEMAS {
            let path = schemas.join(version).join(file);
            let mut document = read_json(&path)?;
            const_to_enum(&mut document);
            let uri = document_uri(&document)
                .unwrap_or_else(|| format!("https://schema.management.azure.com/schemas/{version}/{file}"));
            if document.pointer(&format!("/resourceDefinitions/{definition}")).is_none() {
                return Err(SpecError::MissingDefinition { path, definition: definition.to_string() });
            }
            let registry = Registry::options()
                .draft(Draft::Draft4)
                .build([
                    (uri.clone(), Draft::Draft4.create_resource(document)),
                    (COMMON_DEFINITIONS_URI.to_string(), Draft::Draft4.create_resource(common.clone())),
                ])
                .map_err(|source| SpecError::Registry { source })?;
            validators.insert(resource_type, (compile(&registry, &uri, definition)?, version.to_string()));
        }
        Ok(Self {
            api_version: api_version.to_string(),
            validators,
        })
    }

    /// The api-version whose schemas were loaded.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// The api-version of `resource_type`'s schema (the ML api-version, or a dependency's own).
    pub fn api_version_of(&self, resource_type: &str) -> Option<&str> {
        self.validators.get(resource_type).map(|(_, v)| v.as_str())
    }

    /// Validates a PUT body for `resource_type` (e.g. `Microsoft.MachineLearningServices/workspaces/computes`)
    /// named `name` (the last segment of the ARM id).
    ///
    /// The schema sees the body plus `name`, `type` and `apiVersion`, as in an ARM template. On failure
    /// the message has one line per problem (at most five), each starting with the instance path, e.g.
    /// `/properties/properties/scaleSettings/maxNodeCount: is a required property`. Values from the
    /// body are never echoed (they may be secrets). Members set to `null` count as absent, as the
    /// swagger's `x-nullable` says (the official datastore example sends `"properties": null`);
    /// the template schemas cannot say so.
    pub fn validate(&self, resource_type: &str, name: &str, body: &Value) -> Result<(), String> {
        let Some((validator, api_version)) = self.validators.get(resource_type) else {
            return Err(format!("unsupported resource type {resource_type}"));
        };
        let Some(fields) = body.as_object() else {
            return Err("/: the request body must be a JSON object".to_string());
        };
        let mut instance = fields.clone();
        instance.values_mut().for_each(drop_nulls);
        instance.retain(|_, v| !v.is_null());
        instance.insert("name".to_string(), Value::from(name));
        instance.insert("type".to_string(), Value::from(resource_type));
        instance.insert("apiVersion".to_string(), Value::from(api_version.as_str()));
        let instance = Value::Object(instance);

        let mut issues = Vec::new();
        for error in validator.iter_errors(&instance) {
            issues.extend(explain(&error));
        }
        if issues.is_empty() {
            return Ok(());
        }
        let mut lines: Vec<String> = Vec::new();
        let said_elsewhere = |i: &Issue| {
            issues
                .iter()
                .any(|other| other.kind != IssueKind::Summary && other.path == i.path)
        };
        for issue in issues
            .iter()
            .filter(|i| i.kind != IssueKind::Summary || !said_elsewhere(i))
        {
            let line = format!("{}: {}", issue.display_path(), issue.message);
            if !lines.contains(&line) {
                lines.push(line);
            }
        }
        let total = lines.len();
        lines.truncate(MAX_REPORTED);
        if total > MAX_REPORTED {
            lines.push(format!("... and {} more", total - MAX_REPORTED));
        }
        Err(lines.join("\n"))
    }
}

/// Removes the members whose value is `null` from every object in `value`.
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Compiles `resourceDefinitions/{definition}` of the document registered at `uri`.
fn compile(registry: &Registry, uri: &str, definition: &str) -> Result<Validator, SpecError> {
    let root = serde_json::json!({ "$ref": format!("{uri}#/resourceDefinitions/{definition}") });
    jsonschema::options()
        .with_draft(Draft::Draft4)
        .with_registry(registry.clone())
        .build(&root)
        .map_err(|source| SpecError::Compile { definition: definition.to_string(), source: Box::new(source) })
}

/// A validator for [`API_VERSION`] loaded once per folder for the whole process (tests share it).
pub fn shared(specs_dir: &Path) -> Result<&'static SchemaValidator, SpecError> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, &'static SchemaValidator>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    // Loading while holding the lock makes concurrent callers wait instead of loading twice;
    // a poisoned lock only means another loader panicked, the map itself is still consistent.
    let mut map = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(validator) = map.get(specs_dir) {
        return Ok(validator);
    }
    let validator: &'static SchemaValidator =
        Box::leak(Box::new(SchemaValidator::load(specs_dir, API_VERSION)?));
    map.insert(specs_dir.to_path_buf(), validator);
    Ok(validator)
}

/// Loads an official example (relative to `<specs_dir>/2024-10-01/examples/`, or to `specs_dir` when
/// it starts with `2024-10-01/`): the request body (`parameters.body` or `parameters.parameters`) and
/// the `200` (else `201`) response body when there is one.
pub fn load_example(specs_dir: &Path, relative: &str) -> Result<(Value, Option<Value>), SpecError> {
    let path = if relative.starts_with(&format!("{API_VERSION}/")) {
        specs_dir.join(relative)
    } else {
        specs_dir.join(API_VERSION).join("examples").join(relative)
    };
    let mut example = read_json(&path)?;
    let parameters = example.get_mut("parameters").and_then(Value::as_object_mut);
    let Some(request) =
        parameters.and_then(|p| p.remove("body").or_else(|| p.remove("parameters")))
    else {
        return Err(SpecError::Example {
            path,
            reason: "no parameters.body or parameters.parameters",
        });
    };
    let response = ["200", "201"].into_iter().find_map(|status| {
        example
            .get_mut("responses")
            .and_then(|r| r.get_mut(status))
            .and_then(|r| r.get_mut("body"))
            .map(Value::take)
    });
    Ok((request, response))
}

fn read_json(path: &Path) -> Result<Value, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| SpecError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// The document's draft-4 `id` without its empty fragment.
fn document_uri(document: &Value) -> Option<String> {
    let id = document.get("id")?.as_str()?;
    let id = id.trim_end_matches('#');
    (!id.is_empty()).then(|| id.to_string())
}

/// Gives `FlavorData` (a model version's `flavors` values) the swagger's shape, `{data: {string:
/// string}}`: the template schema has lost the `data` level (it reads `{string: string}`) and so
/// refuses the official `ModelVersion/createOrUpdate.json` example and every MLflow model.
/// Returns whether it was repaired.
fn repair_flavor_data(document: &mut Value) -> bool {
    let Some(flavor) = document.pointer_mut("/definitions/FlavorData") else {
        return false;
    };
    if flavor.pointer("/properties/data").is_some() {
        return false;
    }
    *flavor = serde_json::json!({
        "type": "object",
        "properties": {
            "data": {
                "description": "Model flavor-specific data.",
                "type": "object",
                "additionalProperties": {"type": "string"}
            }
        }
    });
    true
}

/// Drops `additionalProperties: false` from the base of every definition shaped
/// `allOf: [base, {oneOf: [...]}]`; returns how many bases were relaxed.
fn relax_union_bases(document: &mut Value) -> usize {
    let Some(definitions) = document
        .get_mut("definitions")
        .and_then(Value::as_object_mut)
    else {
        return 0;
    };
    let mut relaxed = 0;
    for definition in definitions.values_mut() {
        let Some([base, union]) = definition
            .get_mut("allOf")
            .and_then(Value::as_array_mut)
            .map(Vec::as_mut_slice)
        else {
            continue;
        };
        if union.get("oneOf").is_none() {
            continue;
        }
        if let Some(base) = base.as_object_mut()
            && base.get("additionalProperties") == Some(&Value::Bool(false))
        {
            base.remove("additionalProperties");
            relaxed += 1;
        }
    }
    relaxed
}

/// Rewrites every `const: v` keyword into `enum: [v]`, walking only schema positions (so a property
/// that happens to be called `const` is left alone).
fn const_to_enum(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if let Some(value) = object.remove("const") {
        object
            .entry("enum")
            .or_insert_with(|| Value::Array(vec![value]));
    }
    for (keyword, child) in object.iter_mut() {
        match keyword.as_str() {
            "properties"
            | "patternProperties"
            | "definitions"
            | "resourceDefinitions"
            | "dependencies" => {
                if let Some(map) = child.as_object_mut() {
                    map.values_mut().for_each(const_to_enum);
                }
            }
            "allOf" | "anyOf" | "oneOf" => {
                if let Some(list) = child.as_array_mut() {
                    list.iter_mut().for_each(const_to_enum);
                }
            }
            "items" => match child {
                Value::Array(list) => list.iter_mut().for_each(const_to_enum),
                other => const_to_enum(other),
            },
            "additionalProperties" | "additionalItems" | "not" => const_to_enum(child),
            _ => {}
        }
    }
}

/// One reportable problem: where (JSON pointer into the validated object) and what.
#[derive(Debug)]
struct Issue {
    path: String,
    message: String,
    kind: IssueKind,
    /// For [`IssueKind::SingleEnum`]: the one value the branch wanted.
    wanted: Option<Value>,
}

/// What a union branch's problem says about whether the branch was the one the body meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IssueKind {
    /// The value is not an ARM template expression: the expression alternative, not the body's intent.
    NotExpression,
    /// A one-value `enum` (a discriminator such as `computeType`) does not match.
    SingleEnum,
    /// Every branch of a union had a mismatching discriminator: the allowed values, gathered.
    /// Dropped when another problem is reported at the same path (usually the base's own enum).
    Summary,
    /// Anything else.
    Other,
}

impl Issue {
    fn depth(&self) -> usize {
        self.path.matches('/').count()
    }

    /// The path for a message: one line whatever the map keys hold (control characters escaped).
    fn display_path(&self) -> String {
        if self.path.is_empty() {
            "/".to_string()
        } else if self.path.chars().any(char::is_control) {
            self.path.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
        } else {
            self.path.clone()
        }
    }
}

/// Turns one validation error into the problems worth reporting: union failures (`oneOf`, `anyOf`)
/// are replaced by the problems of the branch the body most plausibly meant.
fn explain(error: &ValidationError<'_>) -> Vec<Issue> {
    let path = error.instance_path.as_str();
    match &error.kind {
        ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } => {
            match best_branch(path, context) {
                Some(issues) => issues,
                None => vec![issue(error)],
            }
        }
        ValidationErrorKind::Required { property } => {
            let property = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_string);
            vec![Issue {
                path: format!("{path}/{}", escape_pointer(&property)),
                message: "is a required property".to_string(),
                kind: IssueKind::Other,
                wanted: None,
            }]
        }
        _ => vec![issue(error)],
    }
}

fn issue(error: &ValidationError<'_>) -> Issue {
    let (kind, wanted) = match &error.kind {
        ValidationErrorKind::Pattern { pattern } if pattern == EXPRESSION_PATTERN => {
            (IssueKind::NotExpression, None)
        }
        ValidationErrorKind::Enum { options } => match options.as_array().map(Vec::as_slice) {
            Some([only]) => (IssueKind::SingleEnum, Some(only.clone())),
            _ => (IssueKind::Other, None),
        },
        _ => (IssueKind::Other, None),
    };
    Issue {
        path: error.instance_path.as_str().to_string(),
        // Masked: the body may carry secrets (passwords, keys), so its values are never echoed.
        message: error.masked_with("value").to_string(),
        kind,
        wanted,
    }
}

/// Picks the branch of a failed union that the body most plausibly meant: not one whose
/// discriminator (a one-value enum on a direct child) mismatches, not the template-expression
/// alternative, then the one whose problems reach deepest; the first on a tie. When every branch
/// has a mismatching discriminator, the answer is that discriminator with all its allowed values.
fn best_branch(union_path: &str, branches: &[Vec<ValidationError<'static>>]) -> Option<Vec<Issue>> {
    let union_depth = union_path.matches('/').count();
    let is_discriminator = |i: &Issue| {
        i.kind == IssueKind::SingleEnum
            && i.depth() == union_depth + 1
            && i.path.starts_with(union_path)
    };
    let mut best: Option<((bool, bool, usize), Vec<Issue>)> = None;
    let mut discriminators: Vec<(String, Vec<Value>)> = Vec::new();
    for branch in branches {
        let issues: Vec<Issue> = branch.iter().flat_map(explain).collect();
        if issues.is_empty() {
            continue;
        }
        for issue in issues.iter().filter(|i| is_discriminator(i)) {
            let Some(wanted) = &issue.wanted else {
                continue;
            };
            match discriminators
                .iter_mut()
                .find(|(path, _)| *path == issue.path)
            {
                Some((_, values)) if values.contains(wanted) => {}
                Some((_, values)) => values.push(wanted.clone()),
                None => discriminators.push((issue.path.clone(), vec![wanted.clone()])),
            }
        }
        let wrong_discriminator = issues.iter().any(is_discriminator);
        let expression_only = issues.iter().all(|i| i.kind == IssueKind::NotExpression);
        let depth = issues.iter().map(Issue::depth).max().unwrap_or(0);
        let score = (!wrong_discriminator, !expression_only, depth);
        if best
            .as_ref()
            .is_none_or(|(best_score, _)| score > *best_score)
        {
            best = Some((score, issues));
        }
    }
    match best {
        Some(((false, _, _), _)) if !discriminators.is_empty() => Some(
            discriminators
                .into_iter()
                .map(|(path, values)| Issue {
                    path,
                    message: format!("value is not one of {}", list_values(&values)),
                    kind: IssueKind::Summary,
                    wanted: None,
                })
                .collect(),
        ),
        other => other.map(|(_, issues)| issues),
    }
}

/// `"a", "b" or "c"`.
fn list_values(values: &[Value]) -> String {
    let shown: Vec<String> = values.iter().map(Value::to_string).collect();
    match shown.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

/// Escapes a JSON pointer segment (`~` and `/`).
fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `Some(dir)` when the arm-specs folder is present (`../shared/arm-specs` from the repository
    /// root, two levels above this crate); panics instead of skipping when `AML_REQUIRE_ARM_SPECS=1`.
    fn specs_dir_for_tests() -> Option<PathBuf> {
        let default = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/arm-specs"));
        if let Some(dir) = specs_dir(default) {
            return Some(dir);
        }
        let message =
            format!("skipping: arm-specs not found at {} (set {SPECS_ENV})", candidate_dir(default).display());
        assert!(!std::env::var(REQUIRE_SPECS_ENV).is_ok_and(|v| v == "1"), "{message}");
        eprintln!("{message}");
        None
    }

    #[test]
    fn relaxes_only_union_bases() {
        let mut doc = json!({"definitions": {
            "Union": {"allOf": [{"additionalProperties": false, "properties": {}}, {"oneOf": [{}]}]},
            "Plain": {"additionalProperties": false},
            "RefBase": {"allOf": [{"$ref": "#/definitions/Plain"}, {"properties": {}}]}
        }});
        assert_eq!(relax_union_bases(&mut doc), 1);
        assert_eq!(
            doc["definitions"]["Union"]["allOf"][0],
            json!({"properties": {}})
        );
        assert_eq!(
            doc["definitions"]["Plain"],
            json!({"additionalProperties": false})
        );
    }

    #[test]
    fn const_becomes_enum_but_properties_named_const_survive() {
        let mut schema = json!({"properties": {
            "kind": {"const": "A"},
            "const": {"type": "string"}
        }, "oneOf": [{"const": 1}]});
        const_to_enum(&mut schema);
        assert_eq!(schema["properties"]["kind"], json!({"enum": ["A"]}));
        assert_eq!(schema["properties"]["const"], json!({"type": "string"}));
        assert_eq!(schema["oneOf"][0], json!({"enum": [1]}));
    }

    #[test]
    fn the_real_schema_has_37_union_bases_to_relax() {
        let Some(dir) = specs_dir_for_tests() else {
            return;
        };
        let path = dir
            .join("arm-template-schemas/schemas/2024-10-01/Microsoft.MachineLearningServices.json");
        let mut doc = read_json(&path).unwrap();
        assert_eq!(relax_union_bases(&mut doc), 37);
        assert_eq!(relax_union_bases(&mut doc), 0, "idempotent");
        const_to_enum(&mut doc);
        assert!(
            !doc.to_string().contains("\"const\":"),
            "every const keyword was rewritten"
        );
    }

    #[test]
    fn flavor_data_gets_its_data_level_back() {
        let mut doc = json!({"definitions": {"FlavorData": {"additionalProperties": {"type": "string"}, "properties": {}, "type": "object"}}});
        assert!(repair_flavor_data(&mut doc));
        assert_eq!(doc["definitions"]["FlavorData"]["properties"]["data"]["type"], "object");
        assert!(!repair_flavor_data(&mut doc), "idempotent");
    }

    #[test]
    fn lists_values_like_a_sentence() {
        assert_eq!(
            list_values(&[json!("A"), json!("B"), json!("C")]),
            r#""A", "B" or "C""#
        );
        assert_eq!(list_values(&[json!(1)]), "1");
    }

    #[test]
    fn document_uri_drops_the_empty_fragment() {
        assert_eq!(
            document_uri(&json!({"id": "https://example.com/a.json#"})).as_deref(),
            Some("https://example.com/a.json")
        );
        assert_eq!(document_uri(&json!({})), None);
    }
}
