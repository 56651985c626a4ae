//! The ARM template schema validator against Microsoft's own examples and against bodies ARM rejects.

use crate::support;

use std::path::Path;
use std::time::Instant;

use aml_operator::armspec::{self, SchemaValidator, SpecError, load_example};
use serde_json::{Value, json};

const WORKSPACES: &str = "Microsoft.MachineLearningServices/workspaces";
const COMPUTES: &str = "Microsoft.MachineLearningServices/workspaces/computes";
const ENDPOINTS: &str = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints";
const DEPLOYMENTS: &str =
    "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments";

/// The createOrUpdate examples: file, resource type, the name the example's URL parameters give.
const CREATE_EXAMPLES: [(&str, &str, &str); 7] = [
    ("Workspace/create.json", WORKSPACES, "workspaceName"),
    (
        "Compute/createOrUpdate/AmlCompute.json",
        COMPUTES,
        "computeName",
    ),
    (
        "Compute/createOrUpdate/BasicAmlCompute.json",
        COMPUTES,
        "computeName",
    ),
    (
        "Compute/createOrUpdate/ComputeInstance.json",
        COMPUTES,
        "computeName",
    ),
    (
        "Compute/createOrUpdate/ComputeInstanceMinimal.json",
        COMPUTES,
        "computeName",
    ),
    (
        "Workspace/OnlineEndpoint/createOrUpdate.json",
        ENDPOINTS,
        "endpointName",
    ),
    (
        "OnlineDeployment/ManagedOnlineDeployment/createOrUpdate.json",
        DEPLOYMENTS,
        "deploymentName",
    ),
];

fn validator(dir: &Path) -> &'static SchemaValidator {
    armspec::shared(dir).expect("the 2024-10-01 schemas load")
}

/// The resource name an example's URL carries (e.g. `parameters.computeName`).
fn example_name(dir: &Path, file: &str, parameter: &str) -> String {
    let path = dir.join("2024-10-01/examples").join(file);
    let example: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    example["parameters"][parameter]
        .as_str()
        .unwrap()
        .to_string()
}

fn example_body(dir: &Path, file: &str) -> Value {
    load_example(dir, file).unwrap().0
}

fn assert_rejected(result: Result<(), String>, path: &str, words: &str) -> String {
    let message = result.expect_err("the body must be rejected");
    eprintln!("{message}");
    assert!(
        message
            .lines()
            .any(|line| line.starts_with(&format!("{path}: ")) && line.contains(words)),
        "expected a line `{path}: ...{words}...` in:\n{message}"
    );
    assert!(message.lines().count() <= 6, "too many lines:\n{message}");
    message
}

#[test]
fn every_create_example_validates() {
    let Some(dir) = support::specs_dir_for_tests() else {
        return;
    };
    let validator = validator(&dir);
    for (file, resource_type, parameter) in CREATE_EXAMPLES {
        let name = example_name(&dir, file, parameter);
        let body = example_body(&dir, file);
        if let Err(message) = validator.validate(resource_type, &name, &body) {
            panic!("{file} ({resource_type} {name}) was rejected:\n{message}");
        }
    }
}

#[test]
fn load_compiles_the_four_definitions_and_reports_its_time() {
    let Some(dir) = support::specs_dir_for_tests() else {
        return;
    };
    let started = Instant::now();
    let validator = SchemaValidator::load(&dir, "2024-10-01").unwrap();
    eprintln!("SchemaValidator::load took {:?}", started.elapsed());
    assert_eq!(validator.api_version(), "2024-10-01");
    let body = example_body(&dir, "Workspace/create.json");
    assert_eq!(
        validator.validate(WORKSPACES, "testworkspace", &body),
        Ok(())
    );
}

#[test]
fn the_validator_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SchemaValidator>();
}

#[test]
fn shared_returns_the_same_validator_for_a_folder() {
    let Some(dir) = support::specs_dir_for_tests() else {
        return;
    };
    let first = validator(&dir);
    let second = validator(&dir);
    assert!(std::ptr::eq(first, second));
}

#[test]
fn bad_workspace_name_is_rejected() {
    let Some(dir) = support::specs_dir_for_tests() else {
        return;
    };
    let body = example_body(&dir, "Workspace/create.json");
    let validator = validator(&dir);
    // Too short, then an illegal character.
    assert_rejected(
        validator.validate(WORKSPACES, "ab", &body),
        "/name",
        "does not match",
    );
    assert_rejected(
        validator.validate(WORKSPACES, "bad.name", &body),
        "/name",
        "does not match",
    );
    assert_eq!(validator.validate(WORKSPACES, "good-name_1", &body), Ok(()));
}

#[test]
fn aml_compute_without_max_node_count_is_rejected() {
    let Some(dir) = support::specs_dir_for_tests() else {
        return;
    };
    let mut body = example_body(&dir, "Compute/createOrUpdate/AmlCompute.json");
    let scale = body["properties"]["properties"]["scaleSettings"]
        .as_object_mut()
        .unwrap();
    assert!(scale.remove("maxNodeCount").is_some());
    let message = assert_rejected(
        validator(&dir).validate(COMPUTES, "compute123", &body),
        "/properties/properties/scaleSettings/maxNodeCount",
        "is a required property",
    );
    // The other compute kinds (wrong discriminator) and the expression alternative are not reported.
    assert!(!message.contains("computeType"), "{message}");
    assert!(!message.contains("[^\\["), "{message}");
}

#[test]
fn endpoint_with_bogus_auth_mode_is_rejected() {
    let Some(dir) = support::specs_dir_for_tests() else {
        return;
    };
    let mut body = example_body(&dir, "Workspace/OnlineEndpoint/createOrUpdate.json");
    body["properties"]["authMode"] = json!("Bogus");
    let message = assert_rejected(
        validator(&dir).validate(ENDPOINTS, "testEndpointName", &body),
        "/properties/authMode",
        "is not one of",
    );
    assert!(
        message.contains("AMLToken"),
        "the allowed values are listed: {message}"
    );
    assert!(
        !message.contains("Bogus"),
        "body values are not echoed: {message}"
    );
}

#[test]
fn string_where_an_integer_is_needed_is_rejected() {
    let Some(dir) = support::specs_dir_for_tests() else {
        return;
    };
    let mut body = example_body(&dir, "Compute/createOrUpdate/AmlCompute.json");
    body["properties"]["properties"]["scaleSettings"]["maxNodeCount"] = json!("four");
    assert_rejected(
        validator(&dir).validate(COMPUTES, "compute123", &body),
        "/properties/properties/scaleSettings/maxNodeCount",
        "is not of type \"integer\"",
    );

    let mut body = example_body(
        &dir,
        "OnlineDeployment/ManagedOnlineDeployment/createOrUpdate.json",
    );
    body["sku"]["capacity"] = json!("1");
    assert_rejected(
        validator(&dir).validate(DEPLOYMENTS, "testDeploymentName", &body),
        "/sku/capacity",
        "is not of type \"integer\"",
    );
}

#[test]
fn unknown_compute_type_is_rejected_with_the_allowed_kinds() {
    let Some(dir) = support::specs_dir_for_tests() else {
        return;
    };
    let mut body = example_body(&dir, "Compute/createOrUpdate/AmlCompute.json");
    body["properties"]["computeType"] = json!("NotACompute");
    assert_rejected(
        validator(&dir).validate(COMPUTES, "compute123", &body),
        "/properties/computeType",
        "is not one of",
    );
}

#[test]
fn unsupported_type_and_non_object_body_are_errors() {
    let Some(dir) = support::specs_dir_for_tests() else {
        return;
    };
    let validator = validator(&dir);
    let err = validator
        .validate("Microsoft.Compute/virtualMachines", "x", &json!({}))
        .unwrap_err();
    assert!(err.contains("unsupported resource type"), "{err}");
    let err = validator
        .validate(WORKSPACES, "ws1", &json!([1]))
        .unwrap_err();
    assert!(err.starts_with("/: "), "{err}");
}

#[test]
fn load_example_returns_request_and_response() {
    let Some(dir) = support::specs_dir_for_tests() else {
        return;
    };
    let (request, response) = load_example(&dir, "Compute/createOrUpdate/AmlCompute.json").unwrap();
    assert_eq!(request["properties"]["computeType"], "AmlCompute");
    let response = response.expect("a 200 body");
    assert_eq!(response["type"], COMPUTES);

    // `parameters.body` examples, addressed from the specs folder.
    let (request, response) = load_example(
        &dir,
        "2024-10-01/examples/Workspace/OnlineEndpoint/createOrUpdate.json",
    )
    .unwrap();
    assert!(request["properties"]["authMode"].is_string());
    assert!(response.is_some());

    // No request body at all.
    match load_example(&dir, "Compute/delete.json") {
        Err(SpecError::Example { .. }) => {}
        other => panic!("expected SpecError::Example, got {other:?}"),
    }
    match load_example(&dir, "Compute/nope.json") {
        Err(SpecError::Read { .. }) => {}
        other => panic!("expected SpecError::Read, got {other:?}"),
    }
}

#[test]
fn load_fails_cleanly_for_an_unknown_api_version() {
    let Some(dir) = support::specs_dir_for_tests() else {
        return;
    };
    match SchemaValidator::load(&dir, "1999-01-01") {
        Err(SpecError::Read { path, .. }) => {
            assert!(path.ends_with("1999-01-01/Microsoft.MachineLearningServices.json"))
        }
        other => panic!("expected SpecError::Read, got {other:?}"),
    }
}

/// The template schemas are open objects (only the union bases said `additionalProperties: false`,
/// and that is what had to go), so a misspelled field passes: the validator checks types, enums,
/// patterns and required fields, not spelling of optional ones.
#[test]
fn misspelled_optional_fields_are_not_caught() {
    let Some(dir) = support::specs_dir_for_tests() else {
        return;
    };
    let mut body = example_body(&dir, "Compute/createOrUpdate/AmlCompute.json");
    body["properties"]["properties"]["scaleSetings"] = json!({"maxNodeCount": 1});
    assert_eq!(
        validator(&dir).validate(COMPUTES, "compute123", &body),
        Ok(())
    );
}
