//! Scenarios for a workspace's assets (models, environments, code, datastores) and the online
//! deployments that reference them, driven in process through the emulator's own dispatch (the
//! path every HTTPS request takes after TLS), with a token the emulator issued.

use std::sync::Mutex;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::armspec;
use crate::state::State;
use crate::{BodyValidator, Catalog, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, Principal, Shared};

const WS: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg1/providers/Microsoft.MachineLearningServices/workspaces/ws1";

/// An emulator without a listener, and a token it issued.
struct Azure {
    shared: Shared,
    token: String,
}

impl Azure {
    fn new(validator: Option<BodyValidator>) -> Azure {
        let shared = Shared {
            state: Mutex::new(State::default()),
            operation_duration: Duration::from_secs(3600),
            retry_after_secs: 0,
            principals: vec![Principal::default()],
            validator,
            arm_endpoint: "https://127.0.0.1:1".to_owned(),
            write_limit: None,
            read_limit: None,
            catalog: Catalog::default(),
            issuer_keys: Default::default(),
        };
        let form = format!(
            "grant_type=client_credentials&client_id={DEFAULT_CLIENT_ID}&client_secret={DEFAULT_CLIENT_SECRET}&scope=https%3A%2F%2Fmanagement.azure.com%2F.default"
        );
        let (reply, _) = shared.dispatch(
            "POST",
            &format!("/{DEFAULT_TENANT_ID}/oauth2/v2.0/token"),
            "",
            &HeaderMap::new(),
            form.as_bytes(),
        );
        assert_eq!(reply.status, 200, "token: {:?}", reply.body);
        let token = reply.body.as_ref().and_then(|b| b["access_token"].as_str()).expect("access_token").to_owned();
        Azure { shared, token }
    }

    /// An emulator with a workspace `ws1`, created and finished.
    fn with_workspace(validator: Option<BodyValidator>) -> Azure {
        let azure = Azure::new(validator);
        let (status, body) = azure.call(
            "PUT",
            WS,
            Some(json!({"location": "eastus", "identity": {"type": "SystemAssigned"}, "properties": {"friendlyName": "ws1"}})),
        );
        assert_eq!(status / 100, 2, "workspace PUT: {body}");
        azure.shared.lock().finish_all();
        azure
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut headers = HeaderMap::new();
        let bearer = HeaderValue::from_str(&format!("Bearer {}", self.token)).expect("header value");
        headers.insert("authorization", bearer);
        let raw = body.map(|b| b.to_string()).unwrap_or_default();
        let (reply, _) = self.shared.dispatch(method, path, "api-version=2024-10-01", &headers, raw.as_bytes());
        (reply.status, reply.body.unwrap_or(Value::Null))
    }

    fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("PUT", path, Some(body))
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }
}

fn model_version(uri: &str) -> Value {
    json!({"properties": {"modelUri": uri, "modelType": "custom_model", "description": "first"}})
}

fn deployment(model: &str) -> Value {
    json!({
        "location": "eastus",
        "sku": {"name": "Default", "capacity": 1},
        "properties": {"endpointComputeType": "Managed", "model": model, "instanceType": "Standard_DS3_v2"}
    })
}

/// `ws1` with endpoint `ep` (finished).
fn with_endpoint() -> Azure {
    let azure = Azure::with_workspace(None);
    let (status, body) = azure.put(&format!("{WS}/onlineEndpoints/ep"), json!({"location": "eastus", "properties": {"authMode": "Key"}}));
    assert_eq!(status, 201, "{body}");
    azure.shared.lock().finish_all();
    azure
}

#[test]
fn a_model_version_put_creates_its_container_and_is_synchronous() {
    let azure = Azure::with_workspace(None);
    let path = format!("{WS}/models/sklearn-model/versions/1");
    let (status, body) = azure.put(&path, model_version("azureml://datastores/ds/paths/model"));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], path);
    assert_eq!(body["name"], "1");
    assert_eq!(body["type"], "Microsoft.MachineLearningServices/workspaces/models/versions");
    assert_eq!(body["properties"]["provisioningState"], "Succeeded");
    assert!(body["systemData"]["createdAt"].is_string());

    let (status, container) = azure.get(&format!("{WS}/models/sklearn-model"));
    assert_eq!(status, 200, "{container}");
    assert_eq!(container["type"], "Microsoft.MachineLearningServices/workspaces/models");
    assert_eq!(container["properties"]["latestVersion"], "1");
    assert_eq!(container["properties"]["nextVersion"], "2");
    assert_eq!(container["properties"]["isArchived"], false);
    assert_eq!(container["properties"]["provisioningState"], "Succeeded");

    // The same body again changes nothing: 200; a mutable field may change: 200.
    let (status, _) = azure.put(&path, model_version("azureml://datastores/ds/paths/model"));
    assert_eq!(status, 200);
    let mut changed = model_version("azureml://datastores/ds/paths/model");
    changed["properties"]["description"] = json!("second");
    changed["properties"]["tags"] = json!({"team": "a"});
    changed["properties"]["stage"] = json!("Production");
    let (status, body) = azure.put(&path, changed);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["properties"]["description"], "second");

    let (status, list) = azure.get(&format!("{WS}/models/sklearn-model/versions"));
    assert_eq!(status, 200);
    assert_eq!(list["value"].as_array().map(Vec::len), Some(1));
    let (status, list) = azure.get(&format!("{WS}/models"));
    assert_eq!(status, 200);
    assert_eq!(list["value"][0]["name"], "sklearn-model");

    // No operation, no LRO headers: nothing for the operator to poll.
    assert!(azure.shared.lock().operations.len() == 1, "only the workspace's operation");
}

#[test]
fn a_changed_version_is_refused_409_naming_what_changed() {
    let azure = Azure::with_workspace(None);
    let path = format!("{WS}/models/sklearn-model/versions/1");
    assert_eq!(azure.put(&path, model_version("azureml://datastores/ds/paths/a")).0, 201);
    let (status, body) = azure.put(&path, model_version("azureml://datastores/ds/paths/b"));
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "UserError");
    assert_eq!(
        body["error"]["message"],
        "Model sklearn-model with version 1 is already registered and cannot be changed (changed: properties.modelUri). Register a new version instead."
    );
    let (_, stored) = azure.get(&path);
    assert_eq!(stored["properties"]["modelUri"], "azureml://datastores/ds/paths/a");

    let env = format!("{WS}/environments/env/versions/v1");
    let image = |i: &str| json!({"properties": {"image": i}});
    assert_eq!(azure.put(&env, image("docker.io/a:1")).0, 201);
    let (status, body) = azure.put(&env, image("docker.io/a:2"));
    assert_eq!(status, 409);
    assert_eq!(
        body["error"]["message"],
        "Environment env with version v1 is already registered and cannot be changed (changed: properties.image). Register a new version instead."
    );
}

#[test]
fn names_and_versions_follow_the_rules() {
    let azure = Azure::with_workspace(None);
    let (status, body) = azure.put(&format!("{WS}/models/m/versions/v1"), model_version("https://x/y"));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "UserError");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("model versions must be positive integers"));
    let (status, body) = azure.put(&format!("{WS}/models/-bad/versions/1"), model_version("https://x/y"));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "InvalidResourceName");
    // Environment and code versions are free strings.
    assert_eq!(azure.put(&format!("{WS}/codes/c/versions/v1"), json!({"properties": {"codeUri": "https://b/c"}})).0, 201);
    // A workspace that does not exist: the parent is not found.
    let other = WS.replace("ws1", "ws2");
    let (status, body) = azure.put(&format!("{other}/models/m/versions/1"), model_version("https://x/y"));
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "ParentResourceNotFound");
}

#[test]
fn an_environment_needs_an_image_or_a_build_not_both() {
    let azure = Azure::with_workspace(None);
    let path = format!("{WS}/environments/env/versions/1");
    let (status, body) = azure.put(&path, json!({"properties": {"description": "x"}}));
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "UserError");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("'properties.image' or 'properties.build'"));
    let both = json!({"properties": {"image": "docker.io/a:1", "build": {"contextUri": "https://b/c"}}});
    let (status, body) = azure.put(&path, both);
    assert_eq!(status, 400);
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("both"));
    let (status, body) = azure.put(&path, json!({"properties": {"build": {"contextUri": "https://b/c"}}}));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["properties"]["environmentType"], "UserCreated");
    assert_eq!(body["properties"]["osType"], "Linux");
}

#[test]
fn deletes_are_synchronous_and_cascade() {
    let azure = Azure::with_workspace(None);
    let container = format!("{WS}/models/m");
    for v in ["1", "2"] {
        assert_eq!(azure.put(&format!("{container}/versions/{v}"), model_version("https://x/y")).0, 201);
    }
    assert_eq!(azure.get(&container).1["properties"]["latestVersion"], "2");
    assert_eq!(azure.call("DELETE", &format!("{container}/versions/2"), None).0, 200);
    assert_eq!(azure.call("DELETE", &format!("{container}/versions/2"), None).0, 204);
    assert_eq!(azure.get(&container).1["properties"]["latestVersion"], "1");
    assert_eq!(azure.call("DELETE", &container, None).0, 200);
    assert_eq!(azure.get(&format!("{container}/versions/1")).0, 404);

    // A container PUT works on its own; deleting the workspace takes its assets.
    let (status, body) = azure.put(&format!("{WS}/codes/c"), json!({"properties": {"description": "code"}}));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["properties"]["nextVersion"], "1");
    assert_eq!(azure.call("DELETE", WS, None).0, 202);
    azure.shared.lock().finish_all();
    assert!(azure.shared.lock().resources.is_empty());
}

#[test]
fn a_deployment_refuses_a_model_that_does_not_exist() {
    let azure = with_endpoint();
    let path = format!("{WS}/onlineEndpoints/ep/deployments/blue");
    let (status, body) = azure.put(&path, deployment("azureml:sklearn-model:1"));
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body,
        json!({"error": {
            "code": "UserError",
            "message": "The specified resource was not found.",
            "details": [{"code": "ModelNotFound", "message": "Model container with name: sklearn-model not found."}],
        }})
    );
    assert_eq!(azure.get(&path).0, 404, "nothing was created");

    assert_eq!(azure.put(&format!("{WS}/models/sklearn-model/versions/1"), model_version("https://x/y")).0, 201);
    let (status, body) = azure.put(&path, deployment(&format!("{WS}/models/sklearn-model/versions/2")));
    assert_eq!(status, 404);
    assert_eq!(body["error"]["details"][0]["message"], "Model sklearn-model version 2 not found.");

    // Ids of any case, the short forms and registries are accepted.
    let upper = format!("{WS}/models/sklearn-model/versions/1").to_ascii_uppercase().replace("/SUBSCRIPTIONS/", "/subscriptions/");
    for model in [upper.as_str(), "azureml:sklearn-model:1", "azureml:sklearn-model@latest", "azureml://registries/r/models/m/versions/1"] {
        let (status, body) = azure.put(&path, deployment(model));
        assert_eq!(status / 100, 2, "{model}: {body}");
        azure.shared.lock().finish_all();
    }
    // Deleting a version a deployment uses is allowed.
    assert_eq!(azure.call("DELETE", &format!("{WS}/models/sklearn-model/versions/1"), None).0, 200);
}

#[test]
fn a_deployment_refuses_a_missing_environment_or_code() {
    let azure = with_endpoint();
    assert_eq!(azure.put(&format!("{WS}/models/m/versions/1"), model_version("https://x/y")).0, 201);
    assert_eq!(azure.put(&format!("{WS}/environments/env/versions/1"), json!({"properties": {"image": "docker.io/a:1"}})).0, 201);
    let path = format!("{WS}/onlineEndpoints/ep/deployments/blue");
    let mut body = deployment("azureml:m:1");
    body["properties"]["environmentId"] = json!("azureml:env:2");
    let (status, reply) = azure.put(&path, body.clone());
    assert_eq!(status, 404);
    assert_eq!(reply["error"]["details"][0], json!({"code": "EnvironmentNotFound", "message": "Environment env version 2 not found."}));
    body["properties"]["environmentId"] = json!(format!("{WS}/environments/env/versions/1"));
    body["properties"]["codeConfiguration"] = json!({"codeId": format!("{WS}/codes/score/versions/1"), "scoringScript": "score.py"});
    let (status, reply) = azure.put(&path, body);
    assert_eq!(status, 404);
    assert_eq!(reply["error"]["details"][0], json!({"code": "CodeNotFound", "message": "Code container with name: score not found."}));
}

fn datastore(key: &str) -> Value {
    json!({"properties": {
        "datastoreType": "AzureBlob",
        "accountName": "teamast",
        "containerName": "data",
        "credentials": {"credentialsType": "AccountKey", "secrets": {"secretsType": "AccountKey", "key": key}},
    }})
}

#[test]
fn datastore_secrets_are_write_only() {
    let azure = Azure::with_workspace(None);
    let path = format!("{WS}/datastores/blob");
    let (status, body) = azure.put(&path, datastore("s3cret-key"));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["properties"]["credentials"]["secrets"], json!({"secretsType": "AccountKey"}));
    assert_eq!(body["properties"]["isDefault"], false);
    assert!(!body.to_string().contains("s3cret-key"));
    assert!(!azure.get(&path).1.to_string().contains("s3cret-key"));
    assert!(!azure.get(&format!("{WS}/datastores")).1.to_string().contains("s3cret-key"));

    let (status, secrets) = azure.call("POST", &format!("{path}/listSecrets"), None);
    assert_eq!(status, 200);
    assert_eq!(secrets, json!({"secretsType": "AccountKey", "key": "s3cret-key"}));

    // Credentials may change; storage fields may not.
    assert_eq!(azure.put(&path, datastore("other-key")).0, 200);
    assert_eq!(azure.call("POST", &format!("{path}/listSecrets"), None).1["key"], "other-key");
    let mut moved = datastore("other-key");
    moved["properties"]["accountName"] = json!("elsewhere");
    let (status, body) = azure.put(&path, moved);
    assert_eq!(status, 400);
    assert_eq!(body["error"]["message"], "The property 'properties.accountName' cannot be changed once the resource has been created.");

    // The store keeps the secret for tests that ask for it, and GET-like reads hide it.
    let emulator_like = azure.shared.lock().get(&path.to_ascii_lowercase()).and_then(|r| r.secrets.clone());
    assert_eq!(emulator_like, Some(json!({"secretsType": "AccountKey", "key": "other-key"})));
}

#[test]
fn a_datastore_names_what_it_misses() {
    let azure = Azure::with_workspace(None);
    let path = format!("{WS}/datastores/ds");
    let cases = [
        (json!({"properties": {"credentials": {"credentialsType": "None"}}}), "properties.datastoreType"),
        (json!({"properties": {"datastoreType": "AzureFile", "accountName": "a", "credentials": {"credentialsType": "None"}}}), "properties.fileShareName"),
        (json!({"properties": {"datastoreType": "AzureDataLakeGen2", "accountName": "a", "filesystem": "f"}}), "properties.credentials.credentialsType"),
        (json!({"properties": {"datastoreType": "AzureBlob", "accountName": "a", "containerName": "c", "credentials": {"credentialsType": "Sas", "secrets": {"secretsType": "Sas"}}}}), "properties.credentials.secrets.sasToken"),
        (json!({"properties": {"datastoreType": "AzureBlob", "accountName": "a", "containerName": "c", "credentials": {"credentialsType": "ServicePrincipal", "clientId": "c", "secrets": {"secretsType": "ServicePrincipal", "clientSecret": "x"}}}}), "properties.credentials.tenantId"),
    ];
    for (body, field) in cases {
        let (status, reply) = azure.put(&path, body);
        assert_eq!(status, 400, "{field}: {reply}");
        assert_eq!(reply["error"]["target"], field);
        assert!(reply["error"]["message"].as_str().unwrap_or_default().contains(field), "{reply}");
    }
    let none = json!({"properties": {"datastoreType": "AzureDataLakeGen2", "accountName": "a", "filesystem": "f", "credentials": {"credentialsType": "None"}}});
    assert_eq!(azure.put(&path, none).0, 201);
}

/// `Some(dir)` when the arm-specs folder is present; see `armspec`'s tests.
fn specs_dir_for_tests() -> Option<std::path::PathBuf> {
    let default = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/arm-specs"));
    if let Some(dir) = armspec::specs_dir(default) {
        return Some(dir);
    }
    let message = format!("skipping: arm-specs not found at {} (set {})", default.display(), armspec::SPECS_ENV);
    assert!(!std::env::var(armspec::REQUIRE_SPECS_ENV).is_ok_and(|v| v == "1"), "{message}");
    eprintln!("{message}");
    None
}

#[test]
fn official_asset_examples_pass_the_schema_and_a_broken_body_is_refused() {
    let Some(dir) = specs_dir_for_tests() else {
        return;
    };
    let validator = armspec::shared(&dir).expect("schemas load");
    for (example, resource_type, name) in [
        ("Workspace/ModelContainer/createOrUpdate.json", "Microsoft.MachineLearningServices/workspaces/models", "m"),
        ("Workspace/ModelVersion/createOrUpdate.json", "Microsoft.MachineLearningServices/workspaces/models/versions", "1"),
        ("Workspace/EnvironmentContainer/createOrUpdate.json", "Microsoft.MachineLearningServices/workspaces/environments", "e"),
        ("Workspace/EnvironmentVersion/createOrUpdate.json", "Microsoft.MachineLearningServices/workspaces/environments/versions", "1"),
        ("Workspace/CodeContainer/createOrUpdate.json", "Microsoft.MachineLearningServices/workspaces/codes", "c"),
        ("Workspace/CodeVersion/createOrUpdate.json", "Microsoft.MachineLearningServices/workspaces/codes/versions", "1"),
        ("Datastore/AzureBlobWAccountKey/createOrUpdate.json", "Microsoft.MachineLearningServices/workspaces/datastores", "ds"),
    ] {
        let (request, _) = armspec::load_example(&dir, example).expect("example loads");
        if let Err(message) = validator.validate(resource_type, name, &request) {
            panic!("{example} is refused: {message}");
        }
    }

    let schema: BodyValidator = crate::schema_validator(&dir).expect("validator");
    let azure = Azure::with_workspace(Some(schema));
    let (status, body) = azure.put(&format!("{WS}/models/m/versions/1"), json!({"properties": {"modelUri": 42}}));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "InvalidRequestContent");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("/properties/modelUri"), "{body}");
    let (status, body) = azure.put(&format!("{WS}/models/m/versions/1"), model_version("https://x/y"));
    assert_eq!(status, 201, "{body}");
    let (status, body) = azure.put(&format!("{WS}/datastores/ds"), datastore("k"));
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn the_emulator_shows_secrets_only_to_tests_that_ask() {
    let emulator = crate::Emulator::start(crate::EmulatorConfig::default()).await.expect("emulator starts");
    let id = format!("{WS}/datastores/blob");
    emulator.insert_resource(&id, datastore("s3cret-key"));
    let shown = emulator.resource(&id).expect("stored");
    assert_eq!(shown["properties"]["credentials"]["secrets"], json!({"secretsType": "AccountKey"}));
    let full = emulator.resource_with_secrets(&id.to_ascii_uppercase().replace("/SUBSCRIPTIONS/", "/subscriptions/")).expect("stored");
    assert_eq!(full["properties"]["credentials"]["secrets"]["key"], "s3cret-key");

    // A version inserted out of band brings its container, as a PUT does.
    emulator.insert_resource(&format!("{WS}/models/m/versions/3"), model_version("https://x/y"));
    let container = emulator.resource(&format!("{WS}/models/m")).expect("container");
    assert_eq!(container["properties"]["latestVersion"], "3");
    emulator.shutdown().await;
}

#[test]
fn faults_match_asset_paths_like_any_other() {
    let azure = Azure::with_workspace(None);
    let fault = crate::Fault {
        method: Some("PUT".into()),
        path_contains: Some("/models/".into()),
        status: 503,
        code: "ServiceUnavailable".into(),
        retry_after_secs: Some(5),
        times: 1,
    };
    azure.shared.lock().faults.push(crate::state::ActiveFault { id: 1, rule: crate::FaultRule::from(fault), seen: 0, used: 0 });
    let path = format!("{WS}/models/m/versions/1");
    let (status, body) = azure.put(&path, model_version("https://x/y"));
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("ServiceUnavailable")));
    assert_eq!(azure.get(&path).0, 404, "the faulted PUT did nothing");
    assert_eq!(azure.put(&path, model_version("https://x/y")).0, 201);
}
