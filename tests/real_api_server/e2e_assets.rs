//! From a model file to live traffic, and a datastore's key, on a real API server (`AML_E2E_KUBECONFIG`; skipped with a
//! printed reason without it, a failure with `AML_REQUIRE_E2E=1`), with the operator as its own
//! process and the emulator as Azure (it refuses a deployment naming an asset it does not have):
//! admission refuses edits of a version's immutable fields; `examples/` converges model →
//! environment → code → endpoint → deployment; then the blue/green sequence of
//! `blue-green/`, each step with exactly the ARM writes it needs (printed), and the
//! endpoint never routing traffic to a deployment that does not exist.

use crate::support;
use crate::OperatorProcess;

use aml_operator::controller::kinds;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::Client;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::cluster::{MANAGER, cluster, delete_namespace, eventually, namespace_with_emulator, ready};

/// The documents of a manifest file (no Secrets).
fn documents(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .filter(|v: &Value| !v.is_null() && v["kind"] != "Secret")
        .collect()
}

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn blue_green() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("blue-green")
}

fn api(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let row = kinds::find(kind).unwrap_or_else(|| panic!("{kind} is not a kind"));
    Api::namespaced_with(client.clone(), ns, &row.resource())
}

async fn apply(client: &Client, ns: &str, obj: &Value) {
    let name = obj["metadata"]["name"].as_str().expect("name");
    api(client, ns, obj["kind"].as_str().expect("kind"))
        .patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(obj))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

/// Waits until every object of `objs` is Ready at its current generation.
async fn all_ready(client: &Client, ns: &str, objs: &[Value], what: &str) {
    let wanted: Vec<(String, String)> =
        objs.iter().map(|o| (o["kind"].as_str().unwrap().to_string(), o["metadata"]["name"].as_str().unwrap().to_string())).collect();
    eventually(what, Duration::from_secs(180), || {
        let wanted = wanted.clone();
        async move {
            for (kind, name) in &wanted {
                let obj = serde_json::to_value(api(client, ns, kind).get(name).await.ok()?).ok()?;
                if !ready(&obj) {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
}

/// The ARM writes since the last clear, as `METHOD path` (with the answer's status).
fn writes(emulator: &aml_operator::emulator::Emulator) -> Vec<String> {
    emulator.requests().iter().filter(|r| r.method != "GET").map(|r| format!("{} {} -> {}", r.method, r.path, r.status)).collect()
}

/// The writes of one method whose path ends with `tail` (case-insensitively).
fn count(writes: &[String], method: &str, tail: &str) -> usize {
    let tail = tail.to_ascii_lowercase();
    writes.iter().filter(|w| w.starts_with(&format!("{method} ")) && w.to_ascii_lowercase().contains(&format!("{tail} ->"))).count()
}

#[tokio::test]
async fn examples_converge_the_serving_chain_and_blue_green_takes_one_write_per_change() {
    let Some(client) = cluster().await else { return };
    let (ns, emulator, ca_file) = namespace_with_emulator(&client, "aml-e2e-bg").await;

    // Admission, on the real API server: a version's immutable fields are refused by name.
    let model1 = documents(&examples().join("model.yaml")).remove(0);
    apply(&client, &ns, &model1).await;
    for (field, value, says) in [
        ("path", json!("models/other/"), "path is immutable"),
        ("version", json!("2"), "version is immutable"),
        ("azureName", json!("other-model"), "azureName is immutable"),
    ] {
        let mut edited = model1.clone();
        edited["spec"][field] = value;
        let name = edited["metadata"]["name"].as_str().unwrap().to_string();
        let err = api(&client, &ns, "AmlModelVersion")
            .patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(&edited))
            .await
            .expect_err(field);
        assert!(err.to_string().contains(says), "{field}: {err}");
        assert!(err.to_string().contains("create a new object with a new spec.version") || field == "azureName", "{field}: {err}");
    }
    let mut not_a_number = model1.clone();
    not_a_number["metadata"]["name"] = json!("bad-version");
    not_a_number["spec"]["version"] = json!("v2");
    let err = api(&client, &ns, "AmlModelVersion")
        .patch("bad-version", &PatchParams::apply(MANAGER), &Patch::Apply(&not_a_number))
        .await
        .expect_err("model versions are positive integers");
    assert!(err.to_string().contains("spec.version"), "{err}");

    // The whole examples/ folder, with the operator as its own process.
    let mut all = Vec::new();
    for entry in std::fs::read_dir(examples()).expect("examples/").flatten() {
        if entry.path().extension().and_then(|e| e.to_str()) == Some("yaml") {
            all.extend(documents(&entry.path()));
        }
    }
    for obj in &all {
        apply(&client, &ns, obj).await;
    }
    let operator = OperatorProcess::for_namespace(&ns, &emulator, &ca_file, &[], &support::temp_path("bg-operator.log"));
    let started = Instant::now();
    all_ready(&client, &ns, &all, "every example Ready").await;
    println!("examples/ ({} objects) Ready {:.1}s after the operator started", all.len(), started.elapsed().as_secs_f64());
    let ws = serde_json::to_value(api(&client, &ns, "AmlWorkspace").get("team-a").await.expect("workspace")).unwrap();
    let ws_id = ws["status"]["armId"].as_str().expect("armId").to_string();
    let blue_id = format!("{ws_id}/onlineEndpoints/scoring/deployments/blue");
    let blue = emulator.resource(&blue_id).expect("blue in Azure");
    assert!(
        blue["properties"]["model"].as_str().unwrap_or_default().eq_ignore_ascii_case(&format!("{ws_id}/models/sklearn-model/versions/1")),
        "blue serves the model object's ARM id: {blue}"
    );
    let refused: Vec<String> = writes(&emulator).into_iter().filter(|w| w.ends_with("-> 404") || w.ends_with("-> 400")).collect();
    assert!(refused.is_empty(), "the emulator refused nothing: {refused:?}\n{}", operator.tail());

    // Traffic never names a deployment that does not exist: checked on every answer the endpoint
    // gets from here on.
    let endpoint_id = format!("{ws_id}/onlineEndpoints/scoring");
    let traffic_ok = |emulator: &aml_operator::emulator::Emulator| {
        let endpoint = emulator.resource(&endpoint_id).expect("endpoint");
        let routed: Vec<String> = endpoint["properties"]["traffic"]
            .as_object()
            .map(|m| m.iter().filter(|(_, v)| v.as_i64() > Some(0)).map(|(k, _)| k.clone()).collect())
            .unwrap_or_default();
        for name in &routed {
            assert!(emulator.resource(&format!("{endpoint_id}/deployments/{name}")).is_some(), "traffic routed to {name}, which does not exist: {endpoint}");
        }
        routed
    };
    assert_eq!(traffic_ok(&emulator), ["blue"]);

    // Step 1: model version 2 and green, with no traffic.
    emulator.clear_requests();
    let green = documents(&blue_green().join("green.yaml"));
    for obj in &green {
        apply(&client, &ns, obj).await;
    }
    all_ready(&client, &ns, &green, "model 2 and green Ready").await;
    let step1 = writes(&emulator);
    println!("step 1 (add green): {step1:#?}");
    assert_eq!(count(&step1, "PUT", "/models/sklearn-model/versions/2"), 1, "{step1:?}");
    assert_eq!(count(&step1, "PUT", "/deployments/green"), 1, "{step1:?}");
    assert_eq!(step1.iter().filter(|w| !w.starts_with("POST")).count(), 2, "nothing else is written: {step1:?}");
    assert_eq!(traffic_ok(&emulator), ["blue"]);

    // Step 2: all traffic to green.
    emulator.clear_requests();
    let endpoint = documents(&blue_green().join("endpoint.yaml"));
    apply(&client, &ns, &endpoint[0]).await;
    all_ready(&client, &ns, &endpoint, "the endpoint Ready with the new split").await;
    let step2 = writes(&emulator);
    println!("step 2 (move traffic): {step2:#?}");
    assert_eq!(count(&step2, "PUT", "/onlineEndpoints/scoring"), 1, "{step2:?}");
    assert_eq!(step2.iter().filter(|w| !w.starts_with("POST")).count(), 1, "nothing else is written: {step2:?}");
    assert_eq!(traffic_ok(&emulator), ["green"]);

    // Step 3: blue and model version 1 deleted (files removed); the model waits for blue.
    emulator.clear_requests();
    for (kind, name) in [("AmlModelVersion", "sklearn-model-1"), ("AmlOnlineDeployment", "blue")] {
        api(&client, &ns, kind).delete(name, &DeleteParams::default()).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    eventually("blue and model 1 gone", Duration::from_secs(120), || async {
        let model = api(&client, &ns, "AmlModelVersion").get_opt("sklearn-model-1").await.ok()?;
        let blue = api(&client, &ns, "AmlOnlineDeployment").get_opt("blue").await.ok()?;
        (model.is_none() && blue.is_none()).then_some(())
    })
    .await;
    let step3 = writes(&emulator);
    println!("step 3 (retire blue): {step3:#?}");
    assert_eq!(count(&step3, "DELETE", "/deployments/blue"), 1, "{step3:?}");
    assert_eq!(count(&step3, "DELETE", "/models/sklearn-model/versions/1"), 1, "{step3:?}");
    assert_eq!(step3.iter().filter(|w| !w.starts_with("POST")).count(), 2, "nothing else is written: {step3:?}");
    let deletes: Vec<&String> = step3.iter().filter(|w| w.starts_with("DELETE")).collect();
    assert!(deletes[0].contains("/deployments/blue"), "the deployment goes before the model it used: {deletes:?}");
    assert!(emulator.resource(&format!("{ws_id}/models/sklearn-model/versions/2")).is_some());
    assert_eq!(traffic_ok(&emulator), ["green"]);
    let endpoint_now = serde_json::to_value(api(&client, &ns, "AmlOnlineEndpoint").get("scoring").await.unwrap()).unwrap();
    assert!(ready(&endpoint_now), "the endpoint stays Ready: {}", endpoint_now["status"]);

    delete_namespace(&client, &ns, Duration::from_secs(180)).await;
    drop(operator);
    emulator.shutdown().await;
}

/// A datastore's account key on a real API server with the operator as its own process:
/// admission refuses a credentials type without what it needs; a changed Secret reaches Azure
/// within seconds (printed) with exactly one ARM write, long before any resync.
#[tokio::test]
async fn a_rotated_datastore_key_reaches_azure_within_seconds_with_one_write() {
    let Some(client) = cluster().await else { return };
    let (ns, emulator, ca_file) = namespace_with_emulator(&client, "aml-e2e-ds").await;
    let datastore = |credentials: Value| {
        json!({"apiVersion": "amloperator.io/v1alpha1", "kind": "AmlDatastore", "metadata": {"name": "training-data"},
            "spec": {"workspaceId": format!("/subscriptions/{}/resourceGroups/rg-ds/providers/Microsoft.MachineLearningServices/workspaces/ws-ds", support::SUBSCRIPTION),
                     "azureName": "training_data", "datastoreType": "AzureBlob", "accountName": "teamadata", "containerName": "training",
                     "storageCredentials": credentials}})
    };
    for (credentials, says) in [
        (json!({"credentialsType": "AccountKey"}), "storageCredentials.secretRef is required"),
        (json!({"credentialsType": "ServicePrincipal", "secretRef": {"name": "k", "key": "k"}}), "clientId and tenantId are required"),
        (json!({"credentialsType": "None", "secretRef": {"name": "k", "key": "k"}}), "not allowed for None"),
    ] {
        let err = api(&client, &ns, "AmlDatastore")
            .patch("training-data", &PatchParams::apply(MANAGER), &Patch::Apply(&datastore(credentials.clone())))
            .await
            .expect_err("refused at admission");
        assert!(err.to_string().contains(says), "{credentials}: {err}");
    }

    // The workspace exists in Azure (made elsewhere); the key in a Secret.
    let ws_id = format!("/subscriptions/{}/resourceGroups/rg-ds/providers/Microsoft.MachineLearningServices/workspaces/ws-ds", support::SUBSCRIPTION);
    emulator.insert_resource(&ws_id, json!({"location": "eastus", "properties": {}}));
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    let key_secret = |value: &str| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "teamadata-key"}, "stringData": {"key": value}});
    secrets.patch("teamadata-key", &PatchParams::apply(MANAGER), &Patch::Apply(&key_secret("first-key"))).await.expect("Secret");
    let manifest = datastore(json!({"credentialsType": "AccountKey", "secretRef": {"name": "teamadata-key", "key": "key"}}));
    apply(&client, &ns, &manifest).await;
    let operator = OperatorProcess::for_namespace(&ns, &emulator, &ca_file, &["--resync-seconds=3600".to_string()], &support::temp_path("ds-operator.log"));
    all_ready(&client, &ns, std::slice::from_ref(&manifest), "the datastore Ready").await;
    let ds_id = format!("{ws_id}/datastores/training_data");
    let key_in_azure = |emulator: &aml_operator::emulator::Emulator| {
        emulator.resource_with_secrets(&ds_id).and_then(|d| d.pointer("/properties/credentials/secrets/key").and_then(Value::as_str).map(str::to_string))
    };
    assert_eq!(key_in_azure(&emulator).as_deref(), Some("first-key"));

    emulator.clear_requests();
    secrets.patch("teamadata-key", &PatchParams::apply(MANAGER), &Patch::Apply(&key_secret("rotated-key"))).await.expect("Secret");
    let rotated = Instant::now();
    eventually("the rotated key in Azure", Duration::from_secs(30), || {
        let found = key_in_azure(&emulator);
        async move { (found.as_deref() == Some("rotated-key")).then_some(()) }
    })
    .await;
    let took = rotated.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let written = writes(&emulator);
    println!("rotated key in Azure {:.2} s after the Secret changed (resync 3600 s); ARM writes: {written:?}", took.as_secs_f64());
    assert_eq!(written.len(), 1, "exactly one write: {written:?}\n{}", operator.tail());
    assert!(written[0].starts_with("PUT ") && written[0].contains("/datastores/training_data"), "{written:?}");
    let status = serde_json::to_value(api(&client, &ns, "AmlDatastore").get("training-data").await.unwrap()).unwrap()["status"].clone();
    assert!(!status.to_string().contains("rotated-key") && status["secretDigest"].is_string(), "{status}");
    assert!(!operator.output().contains("rotated-key") && !operator.output().contains("first-key"), "the key is not logged");

    delete_namespace(&client, &ns, Duration::from_secs(120)).await;
    drop(operator);
    emulator.shutdown().await;
}
