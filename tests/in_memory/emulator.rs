//! Scenario tests for the ARM + Entra emulator, spoken to over real HTTPS with reqwest.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use aml_operator::emulator::{
    BodyValidator, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, Emulator,
    EmulatorConfig, Fault, Principal,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const API: &str = "api-version=2024-10-01";
const SUB: &str = "00000000-0000-0000-0000-000000000001";
const RG: &str = "rg1";

fn ws_id(ws: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"
    )
}

fn compute_id(ws: &str, c: &str) -> String {
    format!("{}/computes/{c}", ws_id(ws))
}

fn endpoint_id(ws: &str, e: &str) -> String {
    format!("{}/onlineEndpoints/{e}", ws_id(ws))
}

fn deployment_id(ws: &str, e: &str, d: &str) -> String {
    format!("{}/deployments/{d}", endpoint_id(ws, e))
}

fn workspace_body() -> Value {
    json!({
        "location": "eastus",
        "identity": {"type": "SystemAssigned"},
        "properties": {
            "friendlyName": "Test workspace",
            "storageAccount": format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Storage/storageAccounts/st1"),
            "keyVault": format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.KeyVault/vaults/kv1"),
        }
    })
}

fn aml_compute_body() -> Value {
    json!({
        "location": "eastus",
        "properties": {
            "computeType": "AmlCompute",
            "properties": {
                "vmSize": "STANDARD_DS3_V2",
                "scaleSettings": {"maxNodeCount": 4, "minNodeCount": 1}
            }
        }
    })
}

fn endpoint_body(traffic: Value) -> Value {
    json!({"location": "eastus", "properties": {"authMode": "Key", "traffic": traffic}})
}

fn deployment_body() -> Value {
    json!({
        "location": "eastus",
        "sku": {"name": "Default", "capacity": 1},
        "properties": {
            "endpointComputeType": "Managed",
            "model": "azureml://registries/azureml/models/model/versions/1",
            "instanceType": "Standard_DS3_v2"
        }
    })
}

/// An emulator and a client that trusts it, holding a valid token.
struct Harness {
    emu: Emulator,
    http: reqwest::Client,
    token: String,
}

fn client_trusting(pem: &str) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(pem.as_bytes()).expect("CA PEM parses");
    reqwest::Client::builder()
        .tls_certs_only([cert])
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client builds")
}

fn fast_config() -> EmulatorConfig {
    EmulatorConfig {
        operation_duration: Duration::from_secs(3600),
        retry_after_secs: 0,
        ..EmulatorConfig::default()
    }
}

async fn token_request(
    h_http: &reqwest::Client,
    emu: &Emulator,
    tenant: &str,
    client: &str,
    secret: &str,
) -> reqwest::Response {
    let form = format!(
        "grant_type=client_credentials&client_id={client}&client_secret={secret}&scope=https%3A%2F%2Fmanagement.azure.com%2F.default"
    );
    h_http
        .post(format!(
            "{}{tenant}/oauth2/v2.0/token",
            emu.authority_host()
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("token request is answered")
}

impl Harness {
    async fn start(config: EmulatorConfig) -> Harness {
        let emu = Emulator::start(config).await.expect("emulator starts");
        let http = client_trusting(emu.ca_pem());
        let resp = token_request(
            &http,
            &emu,
            DEFAULT_TENANT_ID,
            DEFAULT_CLIENT_ID,
            DEFAULT_CLIENT_SECRET,
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body: Value = resp.json().await.expect("token JSON");
        let token = body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned();
        Harness { emu, http, token }
    }

    /// Sends an ARM request to `path_and_query` (relative to the ARM endpoint, or absolute).
    async fn call(&self, method: Method, url: &str, body: Option<Value>) -> reqwest::Response {
        let url = if url.starts_with("https://") {
            url.to_owned()
        } else {
            format!("{}{url}", self.emu.arm_endpoint())
        };
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.expect("ARM request is answered")
    }

    async fn put(&self, id: &str, body: Value) -> reqwest::Response {
        self.call(Method::PUT, &format!("{id}?{API}"), Some(body))
            .await
    }

    async fn get(&self, id: &str) -> reqwest::Response {
        self.call(Method::GET, &format!("{id}?{API}"), None).await
    }

    async fn delete(&self, id: &str, extra_query: &str) -> reqwest::Response {
        self.call(Method::DELETE, &format!("{id}?{API}{extra_query}"), None)
            .await
    }

    /// Creates a workspace and completes its operation.
    async fn workspace(&self, ws: &str) {
        assert_eq!(
            self.put(&ws_id(ws), workspace_body()).await.status(),
            StatusCode::ACCEPTED
        );
        self.emu.finish_operations();
    }
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn json_of(resp: reqwest::Response) -> Value {
    resp.json().await.expect("JSON body")
}

#[tokio::test]
async fn token_endpoint_issues_tokens_and_rejects_bad_credentials_without_echoing_them() {
    let h = Harness::start(fast_config()).await;
    assert!(h.token.len() > 20);

    let resp = token_request(
        &h.http,
        &h.emu,
        DEFAULT_TENANT_ID,
        DEFAULT_CLIENT_ID,
        "wrong-secret-value",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let text = resp.text().await.expect("body");
    assert!(
        !text.contains("wrong-secret-value"),
        "secret echoed: {text}"
    );
    let body: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(body["error"], "invalid_client");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.starts_with("AADSTS7000215"))
    );
    assert_eq!(body["error_codes"], json!([7000215]));

    let resp = token_request(
        &h.http,
        &h.emu,
        DEFAULT_TENANT_ID,
        "00000000-0000-0000-0000-0000000000cc",
        "x",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(resp).await["error_codes"], json!([700016]));

    let resp = token_request(
        &h.http,
        &h.emu,
        "11111111-0000-0000-0000-000000000000",
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(resp).await["error_codes"], json!([90002]));

    // Token requests are counted but not recorded as ARM requests.
    assert_eq!(h.emu.token_requests(), 4);
    assert!(h.emu.requests().is_empty());
}

#[tokio::test]
async fn extra_principals_are_accepted() {
    let other = Principal {
        tenant_id: "t2".into(),
        client_id: "c2".into(),
        client_secret: "s2".into(),
        ..Principal::default()
    };
    let h = Harness::start(EmulatorConfig {
        principals: vec![Principal::default(), other],
        ..fast_config()
    })
    .await;
    let resp = token_request(&h.http, &h.emu, "t2", "c2", "s2").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = json_of(resp).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert!(!format!("{other:?}", other = Principal::default()).contains(DEFAULT_CLIENT_SECRET));
}

#[tokio::test]
async fn arm_requires_our_bearer_token_and_an_api_version() {
    let h = Harness::start(fast_config()).await;
    let url = format!("{}{}?{API}", h.emu.arm_endpoint(), ws_id("ws1"));

    let resp = h.http.get(&url).send().await.expect("answered");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json_of(resp).await["error"]["code"], "AuthenticationFailed");

    let resp = h
        .http
        .get(&url)
        .bearer_auth("forged")
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        json_of(resp).await["error"]["code"],
        "InvalidAuthenticationToken"
    );

    let resp = h.call(Method::GET, &ws_id("ws1"), None).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        json_of(resp).await["error"]["code"],
        "MissingApiVersionParameter"
    );

    let resp = h.get(&ws_id("ws1")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(header(&resp, "x-ms-request-id").is_some());
    assert!(header(&resp, "x-ms-ratelimit-remaining-subscription-reads").is_some());
    assert_eq!(json_of(resp).await["error"]["code"], "ResourceNotFound");

    let statuses: Vec<u16> = h.emu.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![401, 401, 400, 404]);
    assert_eq!(h.emu.requests()[3].query, API);
}

#[tokio::test]
async fn workspace_lifecycle_follows_the_location_pattern() {
    let h = Harness::start(fast_config()).await;
    let id = ws_id("ws1");

    let resp = h.put(&id, workspace_body()).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "retry-after").as_deref(), Some("0"));
    assert!(header(&resp, "x-ms-ratelimit-remaining-subscription-writes").is_some());
    let location = header(&resp, "location").expect("Location header");
    assert!(location.starts_with(&h.emu.arm_endpoint()), "{location}");
    assert!(location.contains("/operationResults/"), "{location}");

    let got = json_of(h.get(&id).await).await;
    assert_eq!(got["properties"]["provisioningState"], "Creating");

    // A second write while the first runs conflicts.
    let resp = h.put(&id, workspace_body()).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(
        json_of(resp).await["error"]["code"],
        "AnotherOperationInProgress"
    );

    let poll = h.call(Method::GET, &location, None).await;
    assert_eq!(poll.status(), StatusCode::ACCEPTED);
    assert!(header(&poll, "retry-after").is_some());

    h.emu.finish_operations();
    let poll = h.call(Method::GET, &location, None).await;
    assert_eq!(poll.status(), StatusCode::OK);
    let got = json_of(h.get(&id).await).await;
    assert_eq!(got["id"], id);
    assert_eq!(got["name"], "ws1");
    assert_eq!(got["type"], "Microsoft.MachineLearningServices/workspaces");
    assert_eq!(got["properties"]["provisioningState"], "Succeeded");
    assert_eq!(got["properties"]["friendlyName"], "Test workspace");
    assert_eq!(
        got["properties"]["workspaceId"].as_str().map(str::len),
        Some(36)
    );
    assert_eq!(
        got["properties"]["discoveryUrl"],
        "https://eastus.api.azureml.ms/discovery"
    );
    assert_eq!(
        got["properties"]["mlFlowTrackingUri"],
        format!("azureml://eastus.api.azureml.ms/mlflow/v1.0{id}")
    );
    assert_eq!(got["properties"]["tenantId"], DEFAULT_TENANT_ID);
    assert!(got["identity"]["principalId"].is_string());
    assert_eq!(h.emu.resource(&id.to_uppercase()).as_ref(), Some(&got));

    // The same body again changes nothing: 200, no operation.
    let resp = h.put(&id, workspace_body()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        json_of(resp).await["properties"]["workspaceId"],
        got["properties"]["workspaceId"]
    );

    // Drift made in the portal: the same PUT now starts an update.
    h.emu.update_resource(&id, |v| {
        v["properties"]["friendlyName"] = json!("edited in the portal")
    });
    let resp = h.put(&id, workspace_body()).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(
        json_of(h.get(&id).await).await["properties"]["provisioningState"],
        "Updating"
    );
    h.emu.finish_operations();
    let got2 = json_of(h.get(&id).await).await;
    assert_eq!(got2["properties"]["friendlyName"], "Test workspace");
    assert_eq!(
        got2["properties"]["workspaceId"],
        got["properties"]["workspaceId"]
    );

    // Immutable storage account.
    let mut moved = workspace_body();
    moved["properties"]["storageAccount"] = json!(
        "/subscriptions/x/resourceGroups/y/providers/Microsoft.Storage/storageAccounts/other"
    );
    assert_eq!(h.put(&id, moved).await.status(), StatusCode::BAD_REQUEST);

    let resp = h.delete(&id, "").await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = header(&resp, "location").expect("Location header");
    assert_eq!(
        json_of(h.get(&id).await).await["properties"]["provisioningState"],
        "Deleting"
    );
    assert_eq!(h.delete(&id, "").await.status(), StatusCode::CONFLICT);
    h.emu.finish_operations();
    let poll = h.call(Method::GET, &location, None).await;
    assert!(poll.status() == StatusCode::OK || poll.status() == StatusCode::NO_CONTENT);
    assert_eq!(h.get(&id).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(h.delete(&id, "").await.status(), StatusCode::NO_CONTENT);
    assert!(h.emu.resource_ids().is_empty());
}

#[tokio::test]
async fn operations_complete_on_their_own_after_the_configured_duration() {
    let h = Harness::start(EmulatorConfig {
        operation_duration: Duration::from_millis(50),
        ..fast_config()
    })
    .await;
    let id = ws_id("ws1");
    let resp = h.put(&id, workspace_body()).await;
    let location = header(&resp, "location").expect("Location");
    assert_eq!(
        h.call(Method::GET, &location, None).await.status(),
        StatusCode::ACCEPTED
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    let poll = h.call(Method::GET, &location, None).await;
    assert_eq!(poll.status(), StatusCode::OK);
    assert_eq!(
        json_of(poll).await["properties"]["provisioningState"],
        "Succeeded"
    );
}

#[tokio::test]
async fn compute_uses_azure_async_operation_and_requires_underlying_resource_action() {
    let h = Harness::start(fast_config()).await;
    let id = compute_id("ws1", "cpu");

    let resp = h.put(&id, aml_compute_body()).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        json_of(resp).await["error"]["code"],
        "ParentResourceNotFound"
    );

    h.workspace("ws1").await;
    let resp = h.put(&id, aml_compute_body()).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let status_url = header(&resp, "azure-asyncoperation").expect("Azure-AsyncOperation");
    assert!(header(&resp, "retry-after").is_some());
    assert_eq!(
        json_of(resp).await["properties"]["provisioningState"],
        "Creating"
    );

    let status = json_of(h.call(Method::GET, &status_url, None).await).await;
    assert_eq!(status["status"], "InProgress");
    assert!(status["startTime"].is_string());
    assert!(status.get("endTime").is_none());

    h.emu.finish_operations();
    let status = json_of(h.call(Method::GET, &status_url, None).await).await;
    assert_eq!(status["status"], "Succeeded");
    assert!(status["endTime"].is_string());
    assert_eq!(
        status["name"],
        status_url
            .split('/')
            .next_back()
            .and_then(|s| s.split('?').next())
            .unwrap_or_default()
    );

    let got = json_of(h.get(&id).await).await;
    assert_eq!(got["properties"]["provisioningState"], "Succeeded");
    let props = &got["properties"]["properties"];
    assert_eq!(props["allocationState"], "Steady");
    assert_eq!(props["currentNodeCount"], 1);
    assert_eq!(props["targetNodeCount"], 1);
    assert_eq!(props["vmSize"], "STANDARD_DS3_V2");

    let resp = h.delete(&id, "").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = h.delete(&id, "&underlyingResourceAction=Delete").await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(header(&resp, "azure-asyncoperation").is_some());
    assert!(header(&resp, "location").is_some());
    h.emu.finish_operations();
    assert_eq!(h.get(&id).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn compute_instance_reports_running_state() {
    let h = Harness::start(fast_config()).await;
    h.workspace("ws1").await;
    let id = compute_id("ws1", "ci1");
    let body = json!({"location": "eastus", "properties": {"computeType": "ComputeInstance", "properties": {"vmSize": "STANDARD_DS3_V2"}}});
    assert_eq!(h.put(&id, body).await.status(), StatusCode::CREATED);
    assert_eq!(
        h.emu.resource(&id).expect("stored")["properties"]["properties"]["state"],
        "Creating"
    );
    h.emu.finish_operations();
    assert_eq!(
        h.emu.resource(&id).expect("stored")["properties"]["properties"]["state"],
        "Running"
    );
}

#[tokio::test]
async fn endpoint_traffic_must_name_succeeded_deployments_and_keys_can_be_listed_and_regenerated() {
    let h = Harness::start(fast_config()).await;
    h.workspace("ws1").await;
    let ep = endpoint_id("ws1", "ep1");
    let dep = deployment_id("ws1", "ep1", "blue");

    let resp = h.put(&dep, deployment_body()).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        json_of(resp).await["error"]["code"],
        "ParentResourceNotFound"
    );

    let resp = h.put(&ep, endpoint_body(json!({"blue": 100}))).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let err = json_of(resp).await;
    assert!(
        err["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("'blue'")),
        "{err}"
    );

    let resp = h.put(&ep, endpoint_body(json!({}))).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(header(&resp, "azure-asyncoperation").is_some());
    assert_eq!(
        header(&resp, "x-ms-async-operation-timeout").as_deref(),
        Some("PT1H")
    );
    let body = json_of(resp).await;
    assert_eq!(
        body["properties"]["scoringUri"],
        "https://ep1.eastus.inference.ml.azure.com/score"
    );
    assert_eq!(
        body["properties"]["swaggerUri"],
        "https://ep1.eastus.inference.ml.azure.com/swagger.json"
    );
    h.emu.finish_operations();

    assert_eq!(
        h.put(&dep, deployment_body()).await.status(),
        StatusCode::CREATED
    );
    // Still creating: not routable yet.
    assert_eq!(
        h.put(&ep, endpoint_body(json!({"blue": 100})))
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
    h.emu.finish_operations();
    assert_eq!(
        h.put(&ep, endpoint_body(json!({"blue": 100})))
            .await
            .status(),
        StatusCode::CREATED
    );
    h.emu.finish_operations();
    assert_eq!(
        json_of(h.get(&ep).await).await["properties"]["traffic"],
        json!({"blue": 100})
    );

    // Scaling a routed deployment does not make the endpoint's unchanged traffic invalid.
    let mut scaled = deployment_body();
    scaled["sku"]["capacity"] = json!(3);
    assert_eq!(h.put(&dep, scaled).await.status(), StatusCode::CREATED);
    assert_eq!(
        h.put(&ep, endpoint_body(json!({"blue": 100})))
            .await
            .status(),
        StatusCode::OK
    );
    h.emu.finish_operations();

    // A deployment with traffic cannot be deleted.
    assert_eq!(h.delete(&dep, "").await.status(), StatusCode::BAD_REQUEST);

    let keys = json_of(
        h.call(Method::POST, &format!("{ep}/listKeys?{API}"), None)
            .await,
    )
    .await;
    let primary = keys["primaryKey"].as_str().expect("primaryKey").to_owned();
    assert!(
        keys["secondaryKey"]
            .as_str()
            .is_some_and(|k| !k.is_empty() && k != primary)
    );
    let again = json_of(
        h.call(Method::POST, &format!("{ep}/listKeys?{API}"), None)
            .await,
    )
    .await;
    assert_eq!(again, keys);

    let resp = h
        .call(
            Method::POST,
            &format!("{ep}/regenerateKeys?{API}"),
            Some(json!({"keyType": "Primary"})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(header(&resp, "location").is_some());
    h.emu.finish_operations();
    let after = json_of(
        h.call(Method::POST, &format!("{ep}/listKeys?{API}"), None)
            .await,
    )
    .await;
    assert_ne!(after["primaryKey"], keys["primaryKey"]);
    assert_eq!(after["secondaryKey"], keys["secondaryKey"]);
}

#[tokio::test]
async fn deleting_parents_cascades_to_children() {
    let h = Harness::start(fast_config()).await;
    h.workspace("ws1").await;
    h.workspace("ws2").await;
    assert_eq!(
        h.put(&compute_id("ws1", "cpu"), aml_compute_body())
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        h.put(&endpoint_id("ws1", "ep1"), endpoint_body(json!({})))
            .await
            .status(),
        StatusCode::CREATED
    );
    h.emu.finish_operations();
    assert_eq!(
        h.put(&deployment_id("ws1", "ep1", "blue"), deployment_body())
            .await
            .status(),
        StatusCode::CREATED
    );
    h.emu.finish_operations();
    assert_eq!(h.emu.resource_ids().len(), 5);

    // Endpoint delete takes its deployments along.
    let resp = h.delete(&endpoint_id("ws1", "ep1"), "").await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(header(&resp, "location").is_some());
    h.emu.finish_operations();
    assert_eq!(
        h.get(&deployment_id("ws1", "ep1", "blue")).await.status(),
        StatusCode::NOT_FOUND
    );

    assert_eq!(
        h.delete(&ws_id("ws1"), "").await.status(),
        StatusCode::ACCEPTED
    );
    h.emu.finish_operations();
    assert_eq!(h.emu.resource_ids(), vec![ws_id("ws2")]);
    let resp = h.get(&compute_id("ws1", "cpu")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        json_of(resp).await["error"]["code"],
        "ParentResourceNotFound"
    );
}

#[tokio::test]
async fn request_validation_names_locations_and_the_body_validator() {
    let validator: BodyValidator = Arc::new(|ty: &str, _name: &str, body: &Value| {
        if ty == "Microsoft.MachineLearningServices/workspaces/computes"
            && body.pointer("/properties/properties/vmSize").is_none()
        {
            return Err("properties.properties.vmSize is required".to_owned());
        }
        Ok(())
    });
    let h = Harness::start(EmulatorConfig {
        validator: Some(validator),
        ..fast_config()
    })
    .await;

    let resp = h.put(&ws_id("-bad"), workspace_body()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(resp).await["error"]["code"], "InvalidResourceName");

    let resp = h.put(&ws_id("ws1"), json!({"properties": {}})).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(resp).await["error"]["code"], "LocationRequired");

    h.workspace("ws1").await;
    let resp = h
        .put(&compute_id("ws1", "cpu"), json!({"location": "eastus", "properties": {"computeType": "AmlCompute", "properties": {}}}))
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let err = json_of(resp).await;
    assert_eq!(err["error"]["code"], "InvalidRequestContent");
    assert_eq!(
        err["error"]["message"],
        "properties.properties.vmSize is required"
    );
    assert!(h.emu.resource(&compute_id("ws1", "cpu")).is_none());
    assert_eq!(
        h.put(&compute_id("ws1", "cpu"), aml_compute_body())
            .await
            .status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn injected_faults_answer_first_and_are_recorded() {
    let h = Harness::start(fast_config()).await;
    h.emu.inject(Fault {
        method: Some("GET".into()),
        path_contains: Some("/workspaces/ws1".into()),
        status: 429,
        code: "TooManyRequests".into(),
        retry_after_secs: Some(7),
        times: 1,
    });
    let resp = h.get(&ws_id("ws1")).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&resp, "retry-after").as_deref(), Some("7"));
    assert_eq!(json_of(resp).await["error"]["code"], "TooManyRequests");
    // Used up: normal handling again.
    assert_eq!(h.get(&ws_id("ws1")).await.status(), StatusCode::NOT_FOUND);
    let recorded = h.emu.requests();
    assert_eq!(recorded.len(), 2);
    assert_eq!(
        (recorded[0].method.as_str(), recorded[0].status),
        ("GET", 429)
    );
    assert_eq!(recorded[0].path, ws_id("ws1"));
    h.emu.clear_requests();
    assert!(h.emu.requests().is_empty());
}

#[tokio::test]
async fn marking_a_resource_failed_fails_its_running_operation() {
    let h = Harness::start(fast_config()).await;
    h.workspace("ws1").await;
    let id = compute_id("ws1", "cpu");
    let resp = h.put(&id, aml_compute_body()).await;
    let status_url = header(&resp, "azure-asyncoperation").expect("Azure-AsyncOperation");
    h.emu.update_resource(&id, |v| {
        v["properties"]["provisioningState"] = json!("Failed")
    });
    h.emu.finish_operations();
    let status = json_of(h.call(Method::GET, &status_url, None).await).await;
    assert_eq!(status["status"], "Failed");
    assert!(status["error"]["code"].is_string());
    assert_eq!(
        json_of(h.get(&id).await).await["properties"]["provisioningState"],
        "Failed"
    );
    // A retry of the same body starts a new operation.
    assert_eq!(
        h.put(&id, aml_compute_body()).await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn inserted_resources_exist_as_succeeded() {
    let h = Harness::start(fast_config()).await;
    h.emu.insert_resource(&ws_id("existing"), workspace_body());
    let got = json_of(h.get(&ws_id("existing")).await).await;
    assert_eq!(got["properties"]["provisioningState"], "Succeeded");
    assert!(got["properties"]["workspaceId"].is_string());
    let list = json_of(
        h.call(
            Method::GET,
            &format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.MachineLearningServices/workspaces?{API}"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(list["value"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn tls_certificate_is_verified_and_written_to_the_ca_file() {
    let dir = std::env::temp_dir().join(format!("aml-emu-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca_file = dir.join("ca.pem");
    let h = Harness::start(EmulatorConfig {
        ca_file: Some(ca_file.clone()),
        ..fast_config()
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&ca_file).expect("CA file written"),
        h.emu.ca_pem()
    );
    assert!(h.emu.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));

    // Another emulator's CA does not vouch for this one.
    let other = Emulator::start(fast_config())
        .await
        .expect("second emulator");
    let stranger = client_trusting(other.ca_pem());
    let err = stranger
        .post(format!(
            "{}{DEFAULT_TENANT_ID}/oauth2/v2.0/token",
            h.emu.authority_host()
        ))
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect_err("must not trust a foreign CA");
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");

    // Nor do the platform's roots.
    let default_client = reqwest::Client::builder().build().expect("client builds");
    let err = default_client
        .get(format!("{}{}?{API}", h.emu.arm_endpoint(), ws_id("ws1")))
        .send()
        .await
        .expect_err("must not trust the emulator without its CA");
    assert!(format!("{err:?}").contains("InvalidCertificate"), "{err:?}");

    // `localhost` is in the certificate too.
    let port = h
        .emu
        .arm_endpoint()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let resp = h
        .http
        .get(format!("https://localhost:{port}{}?{API}", ws_id("ws1")))
        .bearer_auth(&h.token)
        .send()
        .await
        .expect("localhost is a valid name");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // A failed handshake does not stop the server.
    let resp = h.get(&ws_id("ws1")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    other.shutdown().await;
    h.emu.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The operator authenticates with `azure_identity`; its client-secret credential must work
/// against the emulator's authority host unchanged.
#[tokio::test]
async fn azure_identity_client_secret_credential_gets_a_token_that_arm_accepts() {
    use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
    use azure_core::credentials::{Secret, TokenCredential};
    use azure_core::http::{ClientOptions, Transport};
    use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};

    let h = Harness::start(fast_config()).await;
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = h.emu.authority_host();
    let options = ClientSecretCredentialOptions {
        client_options: ClientOptions {
            transport: Some(Transport::new(Arc::new(h.http.clone()))),
            cloud: Some(Arc::new(CloudConfiguration::Custom(cloud))),
            ..ClientOptions::default()
        },
    };
    let credential = ClientSecretCredential::new(
        DEFAULT_TENANT_ID,
        DEFAULT_CLIENT_ID.to_owned(),
        Secret::new(DEFAULT_CLIENT_SECRET),
        Some(options),
    )
    .expect("credential");
    let token = credential
        .get_token(&["https://management.azure.com/.default"], None)
        .await
        .expect("token from the emulator");
    let resp = h
        .http
        .get(format!("{}{}?{API}", h.emu.arm_endpoint(), ws_id("ws1")))
        .bearer_auth(token.token.secret())
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[derive(clap::Parser)]
struct TestCli {
    #[command(flatten)]
    emulator: aml_operator::emulator::EmulatorArgs,
}

#[tokio::test]
async fn cli_flags_have_documented_defaults_and_the_cli_serves() {
    use clap::Parser;
    let defaults = TestCli::parse_from(["emulator"]).emulator;
    assert_eq!(defaults.port, 8443);
    assert_eq!(
        defaults.ca_file,
        std::path::PathBuf::from("./emulator-ca.pem")
    );
    assert_eq!((defaults.operation_seconds, defaults.retry_after), (2, 1));
    assert_eq!(defaults.client_id, DEFAULT_CLIENT_ID);
    assert_eq!(defaults.tenant_id, DEFAULT_TENANT_ID);
    assert!(!format!("{defaults:?}").contains(&defaults.client_secret));

    let dir = std::env::temp_dir().join(format!("aml-emu-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca_file = dir.join("ca.pem");
    let ca_arg = ca_file.to_string_lossy().into_owned();
    let args = TestCli::parse_from(["emulator", "--port", "0", "--ca-file", &ca_arg]).emulator;
    let task = tokio::spawn(aml_operator::emulator::run_cli(args));
    let mut written = false;
    for _ in 0..100 {
        if std::fs::read_to_string(&ca_file).is_ok_and(|pem| pem.contains("BEGIN CERTIFICATE")) {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(written, "run_cli wrote no CA file");
    assert!(
        !task.is_finished(),
        "run_cli must keep serving until Ctrl-C"
    );
    task.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

/// MSAL-based clients (azure-identity for Python, .NET, Java and Go; the Azure CLI) validate the
/// authority through instance discovery, read the tenant's OpenID configuration, and only then ask
/// its `token_endpoint` for a token: the same walk here, every hop on the emulator.
#[tokio::test]
async fn msal_discovery_leads_to_a_token_endpoint_that_issues_tokens_arm_accepts() {
    let emu = Emulator::start(fast_config()).await.expect("emulator starts");
    let http = client_trusting(emu.ca_pem());
    let authority = format!("{}{DEFAULT_TENANT_ID}", emu.authority_host());
    let get = |url: String| {
        let http = http.clone();
        async move {
            let resp = http.get(&url).send().await.expect("answered");
            assert_eq!(resp.status(), StatusCode::OK, "GET {url}");
            resp.json::<Value>().await.expect("JSON")
        }
    };

    let instance = get(format!(
        "{}common/discovery/instance?api-version=1.1&authorization_endpoint={authority}/oauth2/v2.0/authorize",
        emu.authority_host()
    ))
    .await;
    let host = emu.arm_endpoint().trim_start_matches("https://").to_string();
    assert_eq!(instance["metadata"][0]["aliases"], json!([host]));
    let discovery = instance["tenant_discovery_endpoint"].as_str().expect("tenant_discovery_endpoint").to_string();
    assert_eq!(discovery, format!("{authority}/v2.0/.well-known/openid-configuration"));

    let config = get(discovery).await;
    assert_eq!(config["issuer"], format!("{authority}/v2.0"));
    assert_eq!(config["authorization_endpoint"], format!("{authority}/oauth2/v2.0/authorize"));
    let token_endpoint = config["token_endpoint"].as_str().expect("token_endpoint").to_string();
    assert_eq!(token_endpoint, format!("{authority}/oauth2/v2.0/token"));
    assert_eq!(get(config["jwks_uri"].as_str().unwrap().to_string()).await, json!({"keys": []}));
    // The multi-tenant alias keeps Entra's placeholder in its issuer; v1 has its own document.
    let common = get(format!("{}common/v2.0/.well-known/openid-configuration", emu.authority_host())).await;
    assert_eq!(common["issuer"], format!("{}{{tenantid}}/v2.0", emu.authority_host()));
    let v1 = get(format!("{authority}/.well-known/openid-configuration")).await;
    assert_eq!(v1["token_endpoint"], format!("{authority}/oauth2/token"));

    let resp = http
        .post(&token_endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id={DEFAULT_CLIENT_ID}&client_secret={DEFAULT_CLIENT_SECRET}&scope=https%3A%2F%2Fmanagement.azure.com%2F.default"
        ))
        .send()
        .await
        .expect("token request answered");
    assert_eq!(resp.status(), StatusCode::OK);
    let token = resp.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string();
    let resp = http
        .get(format!("{}{}?{API}", emu.arm_endpoint(), ws_id("absent")))
        .bearer_auth(token)
        .send()
        .await
        .expect("ARM answers");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "the token is accepted: the workspace is just absent");
}

// A workspace's dependencies (FACTS §10).

fn dep_id(provider_type: &str, name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/{provider_type}/{name}")
}

fn storage_body() -> Value {
    json!({"location": "eastus", "kind": "StorageV2", "sku": {"name": "Standard_LRS"}, "properties": {"isHnsEnabled": false}})
}

fn vault_body() -> Value {
    json!({"location": "eastus", "properties": {"tenantId": DEFAULT_TENANT_ID, "sku": {"family": "A", "name": "standard"}, "accessPolicies": []}})
}

#[tokio::test]
async fn storage_is_a_long_running_create_and_a_workspace_needs_its_storage_and_vault_to_exist() {
    let h = Harness::start(fast_config()).await;
    let sa = dep_id("Microsoft.Storage/storageAccounts", "st1");
    let kv = dep_id("Microsoft.KeyVault/vaults", "kv1");

    // Bad names are refused with each type's rule.
    let resp = h.put(&dep_id("Microsoft.Storage/storageAccounts", "Bad_Name"), storage_body()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(resp).await["error"]["code"], "AccountNameInvalid");

    let resp = h.put(&sa, storage_body()).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED, "storage creates asynchronously");
    let location = header(&resp, "location").expect("Location to poll");
    assert!(location.contains("/providers/Microsoft.Storage/locations/eastus/operationResults/"), "{location}");
    assert_eq!(json_of(h.get(&sa).await).await["properties"]["provisioningState"], "Creating");

    // A workspace may not use a storage account that is still provisioning, nor a missing vault.
    let resp = h.put(&ws_id("ws1"), workspace_body()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(json_of(resp).await["error"]["message"].as_str().unwrap().contains("provisioning state 'Creating'"));
    h.emu.finish_operations();
    assert_eq!(h.call(Method::GET, &location, None).await.status(), StatusCode::OK);
    let resp = h.put(&ws_id("ws1"), workspace_body()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let message = json_of(resp).await["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains(&kv) && message.contains("does not exist"), "{message}");

    // A vault answers 201 while it registers its DNS name, then succeeds.
    let resp = h.put(&kv, vault_body()).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(json_of(resp).await["properties"]["provisioningState"], "RegisteringDns");
    h.emu.finish_operations();
    let vault = json_of(h.get(&kv).await).await;
    assert_eq!(vault["properties"]["vaultUri"], "https://kv1.vault.azure.net/");
    assert_eq!(h.put(&ws_id("ws1"), workspace_body()).await.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn global_names_are_checked_and_a_deleted_vault_keeps_its_name() {
    let h = Harness::start(fast_config()).await;
    let check = |provider: &str, ty: &str, name: &str| {
        let url = format!("/subscriptions/{SUB}/providers/{provider}/checkNameAvailability?{API}");
        let body = json!({"name": name, "type": ty});
        let h = &h;
        async move { json_of(h.call(Method::POST, &url, Some(body)).await).await }
    };
    let storage = |n| check("Microsoft.Storage", "Microsoft.Storage/storageAccounts", n);
    let vault = |n| check("Microsoft.KeyVault", "Microsoft.KeyVault/vaults", n);
    assert_eq!(storage("st1").await, json!({"nameAvailable": true}));
    assert_eq!(storage("St_1").await["reason"], "AccountNameInvalid");

    // Taken in another subscription: taken everywhere.
    let elsewhere = "/subscriptions/99999999-0000-0000-0000-000000000000/resourceGroups/x/providers/Microsoft.Storage/storageAccounts/st1";
    h.emu.insert_resource(elsewhere, storage_body());
    assert_eq!(storage("st1").await["reason"], "AlreadyExists");
    let resp = h.put(&dep_id("Microsoft.Storage/storageAccounts", "st1"), storage_body()).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(json_of(resp).await["error"]["code"], "StorageAccountAlreadyTaken");

    // A deleted vault is soft-deleted: its name stays reserved, and it can be looked up.
    let kv = dep_id("Microsoft.KeyVault/vaults", "kv1");
    h.put(&kv, vault_body()).await;
    h.emu.finish_operations();
    assert_eq!(vault("kv1").await["nameAvailable"], false);
    assert_eq!(h.delete(&kv, "").await.status(), StatusCode::OK);
    assert!(h.emu.resource(&kv).is_none());
    assert_eq!(h.emu.deleted_vaults(), vec!["kv1".to_string()]);
    let taken = vault("kv1").await;
    assert_eq!((taken["nameAvailable"].as_bool(), taken["reason"].as_str()), (Some(false), Some("AlreadyExists")));
    let resp = h.put(&kv, vault_body()).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert!(json_of(resp).await["error"]["message"].as_str().unwrap().contains("deleted state"));
    let deleted = json_of(h.get(&format!("/subscriptions/{SUB}/providers/Microsoft.KeyVault/locations/eastus/deletedVaults/kv1")).await).await;
    assert_eq!(deleted["properties"]["vaultId"], kv.as_str());
}

#[tokio::test]
async fn a_component_needs_its_log_analytics_workspace_and_bodies_are_validated_with_microsofts_schemas() {
    let Some(dir) = support::specs_dir_for_tests() else {
        return;
    };
    let h = Harness::start(EmulatorConfig {
        validator: Some(aml_operator::emulator::schema_validator(&dir).expect("schemas load")),
        ..fast_config()
    })
    .await;
    // Microsoft's storage schema refuses an unknown SKU.
    let mut bad = storage_body();
    bad["sku"]["name"] = json!("Standard_XYZ");
    let resp = h.put(&dep_id("Microsoft.Storage/storageAccounts", "st1"), bad).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(json_of(resp).await["error"]["message"].as_str().unwrap().contains("/sku/name"));

    let law = dep_id("Microsoft.OperationalInsights/workspaces", "law1");
    let appi = dep_id("Microsoft.Insights/components", "appi1");
    let component = json!({"location": "eastus", "kind": "web", "properties": {
        "Application_Type": "web", "Flow_Type": "Bluefield", "Request_Source": "rest", "WorkspaceResourceId": law}});
    let resp = h.put(&appi, component.clone()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "no Log Analytics workspace yet");
    let resp = h.put(&law, json!({"location": "eastus", "properties": {"sku": {"name": "PerGB2018"}, "retentionInDays": 30}})).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(json_of(resp).await["properties"]["provisioningState"], "Creating");
    h.emu.finish_operations();
    let resp = h.put(&appi, component).await;
    assert_eq!(resp.status(), StatusCode::OK, "a component is created at once");
    let body = json_of(resp).await;
    assert!(body["properties"]["InstrumentationKey"].is_string() && body["properties"]["ConnectionString"].is_string());
    // A Log Analytics workspace is deleted asynchronously; a component at once.
    assert_eq!(h.delete(&appi, "").await.status(), StatusCode::OK);
    assert_eq!(h.delete(&law, "").await.status(), StatusCode::ACCEPTED);
    h.emu.finish_operations();
    assert!(h.emu.resource_ids().is_empty());
}

/// The error `(code, message)` of an ARM error answer.
async fn arm_error(resp: reqwest::Response) -> (StatusCode, String, String, Value) {
    let status = resp.status();
    let body = json_of(resp).await;
    let e = &body["error"];
    (status, e["code"].as_str().unwrap_or_default().to_owned(), e["message"].as_str().unwrap_or_default().to_owned(), e.clone())
}

#[tokio::test]
async fn a_resource_in_a_region_azure_does_not_offer_is_refused_with_the_regions_it_offers() {
    let h = Harness::start(fast_config()).await;
    let mut body = workspace_body();
    body["location"] = json!("mars-central");
    let (status, code, message, _) = arm_error(h.put(&ws_id("ws-mars"), body).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "LocationNotAvailableForResourceType"));
    assert!(message.contains("'mars-central'") && message.contains("Microsoft.MachineLearningServices/workspaces"), "{message}");
    assert!(message.contains("List of available regions for the resource type is '") && message.contains("eastus,"), "{message}");
    assert_eq!(h.get(&ws_id("ws-mars")).await.status(), StatusCode::NOT_FOUND, "nothing stored");
    // ARM's display names and case are the same region.
    let mut body = workspace_body();
    body["location"] = json!("West Europe");
    assert_eq!(h.put(&ws_id("ws-we"), body).await.status(), StatusCode::ACCEPTED);

    // The region list is configurable.
    let h = Harness::start(EmulatorConfig {
        catalog: aml_operator::emulator::Catalog { locations: vec!["westeurope".into()], ..Default::default() },
        ..fast_config()
    })
    .await;
    let (status, code, message, _) = arm_error(h.put(&ws_id("ws-east"), workspace_body()).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "LocationNotAvailableForResourceType"));
    assert!(message.ends_with("is 'westeurope'."), "{message}");
}

#[tokio::test]
async fn tags_beyond_arms_limits_are_refused_on_put_and_patch() {
    let h = Harness::start(fast_config()).await;
    let many: serde_json::Map<String, Value> = (0..60).map(|i| (format!("tag{i}"), json!("v"))).collect();
    for (tags, code, said) in [
        (json!(many), "InvalidTagCount", "at most 50"),
        (json!({"team/a": "x"}), "InvalidTagNameCharacters", "'team/a'"),
        (json!({"x".repeat(513): "x"}), "InvalidTagNameLength", "512"),
        (json!({"team": "v".repeat(257)}), "InvalidTagValueLength", "256"),
    ] {
        let mut body = workspace_body();
        body["tags"] = tags.clone();
        let (status, got, message, _) = arm_error(h.put(&ws_id("ws-tags"), body).await).await;
        assert_eq!((status, got.as_str()), (StatusCode::BAD_REQUEST, code), "{message}");
        assert!(message.contains(said), "{code}: {message}");
    }
    // At the limits exactly: accepted.
    let mut body = workspace_body();
    let fifty: serde_json::Map<String, Value> = (0..49).map(|i| (format!("tag{i}"), json!("v".repeat(256)))).chain([("n".repeat(512), json!("v"))]).collect();
    body["tags"] = json!(fifty);
    assert_eq!(h.put(&ws_id("ws-tags"), body).await.status(), StatusCode::ACCEPTED);
    h.emu.finish_operations();
    // A PATCH that would go beyond them is refused too, and changes nothing.
    let (status, code, _, _) = arm_error(h.call(Method::PATCH, &format!("{}?{API}", ws_id("ws-tags")), Some(json!({"tags": many}))).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "InvalidTagCount"));
    assert_eq!(json_of(h.get(&ws_id("ws-tags")).await).await["tags"].as_object().map(|t| t.len()), Some(50));
}

#[tokio::test]
async fn a_compute_with_a_vm_size_the_region_lacks_is_accepted_then_fails_listing_the_supported_sizes() {
    let h = Harness::start(fast_config()).await;
    h.workspace("ws1").await;
    // Sizes compare case-insensitively, as in Azure.
    let mut ok = aml_compute_body();
    ok["properties"]["properties"]["vmSize"] = json!("standard_ds3_v2");
    assert_eq!(h.put(&compute_id("ws1", "lower"), ok).await.status(), StatusCode::CREATED);

    let mut body = aml_compute_body();
    body["properties"]["properties"]["vmSize"] = json!("Standard_NOPE_v9");
    let resp = h.put(&compute_id("ws1", "nope"), body).await;
    assert_eq!(resp.status(), StatusCode::CREATED, "accepted: Azure ML fails the create afterwards");
    let status_url = header(&resp, "azure-asyncoperation").expect("Azure-AsyncOperation");
    h.emu.finish_operations();
    let op = json_of(h.call(Method::GET, &status_url, None).await).await;
    assert_eq!(op["status"], "Failed");
    assert_eq!(op["error"]["code"], "InvalidPropertyValue");
    let compute = json_of(h.get(&compute_id("ws1", "nope")).await).await;
    assert_eq!(compute["properties"]["provisioningState"], "Failed");
    let error = &compute["properties"]["provisioningErrors"][0]["error"];
    assert_eq!(error["code"], "InvalidPropertyValue");
    assert!(error["message"].as_str().unwrap().contains("'Standard_NOPE_v9' is not a supported VM size"), "{error}");
    assert_eq!(error["target"], "properties.properties.vmSize");
    assert_eq!(error["details"][0]["code"], "SupportedVMSizes");
    assert!(error["details"][0]["message"].as_str().unwrap().contains("Standard_DS3_v2"), "{error}");
    assert_eq!(op["error"], *error, "the operation and the resource tell the same error");

    // A compute instance fails the same way.
    let ci = json!({"location": "eastus", "properties": {"computeType": "ComputeInstance", "properties": {"vmSize": "Standard_NOPE_v9"}}});
    assert_eq!(h.put(&compute_id("ws1", "ci-nope"), ci).await.status(), StatusCode::CREATED);
    h.emu.finish_operations();
    let ci = json_of(h.get(&compute_id("ws1", "ci-nope")).await).await;
    assert_eq!(ci["properties"]["provisioningState"], "Failed");
    assert_eq!(ci["properties"]["provisioningErrors"][0]["error"]["code"], "InvalidPropertyValue");
}

#[tokio::test]
async fn a_deployment_with_an_instance_type_the_region_lacks_is_refused_at_once() {
    let h = Harness::start(fast_config()).await;
    h.workspace("ws1").await;
    assert_eq!(h.put(&endpoint_id("ws1", "ep"), endpoint_body(json!({}))).await.status(), StatusCode::CREATED);
    h.emu.finish_operations();
    let mut body = deployment_body();
    body["properties"]["instanceType"] = json!("Standard_NOPE_v9");
    let (status, code, message, error) = arm_error(h.put(&deployment_id("ws1", "ep", "blue"), body).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "BadArgument"));
    assert!(message.contains("'Standard_NOPE_v9'"), "{message}");
    assert_eq!(error["target"], "properties.instanceType");
    assert_eq!(error["details"][0]["code"], "SupportedVMSizes");
    assert_eq!(h.get(&deployment_id("ws1", "ep", "blue")).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_compute_beyond_its_families_core_quota_is_refused_with_the_numbers() {
    use aml_operator::emulator::catalog::parse_core_quota;
    let h = Harness::start(EmulatorConfig {
        catalog: aml_operator::emulator::Catalog {
            core_quotas: vec![parse_core_quota("eastus/standardDSv2Family=24").unwrap()],
            ..Default::default()
        },
        ..fast_config()
    })
    .await;
    h.workspace("ws1").await;
    // Two nodes kept allocated (minNodeCount 2 x 4 vCPUs): 8 of 24 cores used.
    let mut keeps_two = aml_compute_body();
    keeps_two["properties"]["properties"]["scaleSettings"] = json!({"minNodeCount": 2, "maxNodeCount": 2});
    assert_eq!(h.put(&compute_id("ws1", "warm"), keeps_two).await.status(), StatusCode::CREATED);
    h.emu.finish_operations();
    let mut big = aml_compute_body();
    big["properties"]["properties"]["scaleSettings"] = json!({"minNodeCount": 0, "maxNodeCount": 5});
    let (status, code, message, _) = arm_error(h.put(&compute_id("ws1", "big"), big.clone()).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "QuotaExceeded"));
    for part in ["standardDSv2Family Cores quota", "Location: eastus", "Current Limit: 24", "Current Usage: 8", "Additional Required: 20"] {
        assert!(message.contains(part), "{part}: {message}");
    }
    // Four nodes fit (8 + 16 = 24); low-priority nodes draw from another quota.
    big["properties"]["properties"]["scaleSettings"]["maxNodeCount"] = json!(4);
    assert_eq!(h.put(&compute_id("ws1", "big"), big.clone()).await.status(), StatusCode::CREATED);
    h.emu.finish_operations();
    let mut spot = aml_compute_body();
    spot["properties"]["properties"]["vmPriority"] = json!("LowPriority");
    spot["properties"]["properties"]["scaleSettings"] = json!({"minNodeCount": 0, "maxNodeCount": 100});
    assert_eq!(h.put(&compute_id("ws1", "spot"), spot).await.status(), StatusCode::CREATED);
    // Scaling up with a PATCH is held to the same quota.
    let (status, code, _, _) = arm_error(
        h.call(Method::PATCH, &format!("{}?{API}", compute_id("ws1", "warm")), Some(json!({"properties": {"properties": {"scaleSettings": {"minNodeCount": 2, "maxNodeCount": 10}}}}))).await,
    )
    .await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "QuotaExceeded"));

    // Usage counts the nodes computes hold (a cluster's minNodeCount, a compute instance's one):
    // another cluster holding four nodes brings it to 24, and a compute instance no longer fits.
    let mut keeps_four = aml_compute_body();
    keeps_four["properties"]["properties"]["scaleSettings"] = json!({"minNodeCount": 4, "maxNodeCount": 4});
    assert_eq!(h.put(&compute_id("ws1", "warm4"), keeps_four).await.status(), StatusCode::CREATED);
    h.emu.finish_operations();
    let ci = json!({"location": "eastus", "properties": {"computeType": "ComputeInstance", "properties": {"vmSize": "Standard_DS3_v2"}}});
    let (status, code, message, _) = arm_error(h.put(&compute_id("ws1", "ci"), ci).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "QuotaExceeded"));
    assert!(message.contains("Current Usage: 24") && message.contains("Additional Required: 4"), "{message}");

    // The default quota (1000 cores per family per region) refuses a cluster of thousands of nodes.
    let h = Harness::start(fast_config()).await;
    h.workspace("ws1").await;
    let mut huge = aml_compute_body();
    huge["properties"]["properties"]["scaleSettings"] = json!({"minNodeCount": 0, "maxNodeCount": 100000});
    let (status, code, message, _) = arm_error(h.put(&compute_id("ws1", "huge"), huge).await).await;
    assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, "QuotaExceeded"), "{message}");
    assert!(message.contains("Current Limit: 1000") && message.contains("Additional Required: 400000"), "{message}");
}
