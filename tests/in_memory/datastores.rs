//! AmlDatastore: its secret comes from a Secret key, is written once, never compared (ARM never
//! returns it), and written again exactly when the Secret's value changes; model versions read
//! from datastore objects. The Kubernetes API in memory, the emulator as Azure.

use crate::support::{self, NS, World};

use aml_operator::controller::Error;
use aml_operator::crd::{AmlDatastore, AmlModelVersion, AmlWorkspace};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

const WS_ID: &str =
    "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/ws1";
const KEY: &str = "c3RvcmFnZS1rZXktb25l-planted-datastore-key-1";
const ROTATED: &str = "c3RvcmFnZS1rZXktdHdv-planted-datastore-key-2";

fn path(plural: &str, name: &str) -> String {
    format!("/apis/amloperator.io/v1alpha1/namespaces/{NS}/{plural}/{name}")
}

fn ds_path() -> String {
    path("amldatastores", "training-data")
}

fn ds_id() -> String {
    format!("{WS_ID}/datastores/training_data")
}

fn datastore(credentials: Value) -> Value {
    json!({"apiVersion": "amloperator.io/v1alpha1", "kind": "AmlDatastore", "metadata": {"name": "training-data", "namespace": NS},
        "spec": {"workspaceRef": {"name": "ws1"}, "azureName": "training_data", "datastoreType": "AzureBlob", "accountName": "teamadata",
                 "containerName": "training", "description": "training data", "storageCredentials": credentials}})
}

fn account_key() -> Value {
    json!({"credentialsType": "AccountKey", "secretRef": {"name": "teamadata-key", "key": "key"}})
}

fn workspace() -> Value {
    json!({"apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace", "metadata": {"name": "ws1", "namespace": NS},
        "spec": {"resourceGroup": "rg-ml", "location": "eastus",
            "storageAccount": "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml/providers/Microsoft.Storage/storageAccounts/sa1",
            "keyVault": "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml/providers/Microsoft.KeyVault/vaults/kv1"}})
}

async fn with_workspace() -> World {
    let w = World::new().await;
    w.good_credentials();
    w.kube.put(workspace());
    w.converge::<AmlWorkspace>(&path("amlworkspaces", "ws1")).await;
    w.emulator.clear_requests();
    w
}

fn key_secret(w: &World, value: &str) {
    w.kube.put(support::secret("teamadata-key", &[("key", value)]));
}

/// The key Azure holds now (what only `listSecrets` would show).
fn key_in_azure(w: &World) -> Option<String> {
    w.emulator.resource_with_secrets(&ds_id())?.pointer("/properties/credentials/secrets/key")?.as_str().map(str::to_string)
}

fn writes(w: &World) -> Vec<String> {
    w.emulator.requests().into_iter().filter(|r| r.method != "GET").map(|r| format!("{} {}", r.method, r.path)).collect()
}

#[tokio::test]
async fn the_key_is_written_once_never_compared_and_again_exactly_when_the_secret_changes() {
    let w = with_workspace().await;
    key_secret(&w, KEY);
    w.kube.put(datastore(account_key()));
    w.converge::<AmlDatastore>(&ds_path()).await;
    assert_eq!(writes(&w).len(), 1, "{:?}", writes(&w));
    assert_eq!(key_in_azure(&w).as_deref(), Some(KEY));
    // A GET shows the secret's type, not its value.
    let shown = w.emulator.resource(&ds_id()).unwrap();
    assert_eq!(shown["properties"]["credentials"]["secrets"], json!({"secretsType": "AccountKey"}));
    let status = w.kube.raw(&ds_path()).unwrap()["status"].clone();
    let digest = status["secretDigest"].as_str().expect("a digest").to_string();
    assert_eq!(digest.len(), 64, "SHA-256, hex: {digest}");
    assert!(!status.to_string().contains(KEY), "the key is not in status: {status}");

    // Steady: one GET per resync, no write, no listSecrets.
    w.emulator.clear_requests();
    w.kube.clear_calls();
    for _ in 0..3 {
        w.reconcile::<AmlDatastore>(&ds_path()).await.unwrap();
    }
    assert!(writes(&w).is_empty(), "{:?}", writes(&w));
    assert_eq!(w.arm_calls("GET"), 3);
    assert!(w.kube.status_writes().is_empty());

    // The Secret's value changes: one PUT carries the new key, and the digest follows.
    key_secret(&w, ROTATED);
    w.converge::<AmlDatastore>(&ds_path()).await;
    w.reconcile::<AmlDatastore>(&ds_path()).await.unwrap();
    assert_eq!(writes(&w), [format!("PUT {}", ds_id())], "exactly one write");
    assert_eq!(key_in_azure(&w).as_deref(), Some(ROTATED));
    let rotated = w.kube.raw(&ds_path()).unwrap()["status"]["secretDigest"].as_str().unwrap().to_string();
    assert_ne!(rotated, digest);

    // Someone re-registers the datastore in Azure with another key: a GET cannot see that, and
    // the operator does not pretend to (it writes when the Secret changes, not on every resync).
    w.emulator.clear_requests();
    w.reconcile::<AmlDatastore>(&ds_path()).await.unwrap();
    assert!(writes(&w).is_empty());
}

#[tokio::test]
async fn a_missing_secret_or_key_is_stalled_naming_both_without_an_arm_call() {
    let w = with_workspace().await;
    w.kube.put(datastore(account_key()));
    let err = w.reconcile::<AmlDatastore>(&ds_path()).await.expect_err("no Secret");
    assert!(matches!(err, Error::SecretNotFound(_)), "{err:?}");
    let ready = w.condition(&ds_path(), "Ready").unwrap();
    let message = ready["message"].as_str().unwrap();
    assert!(message.contains("teamadata-key") && message.contains("key key") && message.contains("spec.storageCredentials.secretRef"), "{message}");
    assert_eq!(w.condition(&ds_path(), "Stalled").unwrap()["status"], "True");
    assert!(w.emulator.requests().is_empty(), "no ARM call: {:?}", w.emulator.requests());

    w.kube.put(support::secret("teamadata-key", &[("other", "x")]));
    w.reconcile::<AmlDatastore>(&ds_path()).await.expect_err("no key");
    assert!(w.emulator.requests().is_empty(), "no ARM call: {:?}", w.emulator.requests());

    // Observing needs no secret: it never writes.
    w.kube.edit(&ds_path(), |o| o["spec"]["managementPolicy"] = json!("Observe"));
    w.reconcile::<AmlDatastore>(&ds_path()).await.expect("observing reads only");
    assert_eq!(w.condition(&ds_path(), "Ready").unwrap()["reason"], "NotFoundInAzure");

    w.kube.edit(&ds_path(), |o| o["spec"]["managementPolicy"] = json!("Manage"));
    key_secret(&w, KEY);
    w.converge::<AmlDatastore>(&ds_path()).await;
    assert_eq!(key_in_azure(&w).as_deref(), Some(KEY));
}

#[tokio::test]
async fn identity_based_access_has_no_secret_and_a_model_reads_from_the_datastore() {
    let w = with_workspace().await;
    let mp = path("amlmodelversions", "sklearn-model-1");
    w.kube.put(json!({"apiVersion": "amloperator.io/v1alpha1", "kind": "AmlModelVersion", "metadata": {"name": "sklearn-model-1", "namespace": NS},
        "spec": {"workspaceRef": {"name": "ws1"}, "azureName": "sklearn-model", "version": "1",
                 "datastoreRef": {"name": "training-data"}, "path": "models/sklearn/1/"}}));
    w.reconcile::<AmlModelVersion>(&mp).await.unwrap();
    w.reconcile::<AmlModelVersion>(&mp).await.unwrap();
    let ready = w.condition(&mp, "Ready").unwrap();
    assert_eq!(ready["reason"], "WaitingForDatastore", "{ready}");
    assert!(w.emulator.requests().is_empty());

    w.kube.put(datastore(json!({"credentialsType": "None"})));
    w.converge::<AmlDatastore>(&ds_path()).await;
    assert!(w.kube.raw(&ds_path()).unwrap()["status"].get("secretDigest").is_none());
    w.converge::<AmlModelVersion>(&mp).await;
    let model = w.emulator.resource(&format!("{WS_ID}/models/sklearn-model/versions/1")).unwrap();
    assert_eq!(model["properties"]["modelUri"], "azureml://datastores/training_data/paths/models/sklearn/1/");

    // The datastore waits for the model version that reads from it.
    w.emulator.clear_requests();
    w.kube.delete(&ds_path());
    let err = w.reconcile::<AmlDatastore>(&ds_path()).await.expect_err("waits");
    assert!(matches!(err, Error::DeletePending { gate: Some("WaitingForUsers"), .. }), "{err:?}");
    assert!(w.condition(&ds_path(), "Ready").unwrap()["message"].as_str().unwrap().contains("AmlModelVersion sklearn-model-1"));
    assert!(writes(&w).is_empty());
    w.kube.delete(&mp);
    w.reconcile::<AmlModelVersion>(&mp).await.expect("model deleted");
    w.reconcile::<AmlDatastore>(&ds_path()).await.expect("datastore deleted");
    assert!(w.emulator.resource(&ds_id()).is_none());
}

/// With the controllers running: the Secret's change wakes the datastore (the Secret watch), and
/// Azure holds the new key within seconds (printed), with one ARM write.
#[tokio::test]
async fn a_rotated_key_reaches_azure_within_seconds_through_the_secret_watch() {
    let mut w = with_workspace().await;
    key_secret(&w, KEY);
    w.configure(|c| c.resync = Duration::from_secs(3600));
    let ready = Arc::new(AtomicBool::new(false));
    let (ctx, flag) = (w.ctx.clone(), ready.clone());
    let controllers = tokio::spawn(async move { aml_operator::manager::run_controllers(ctx, Some(NS), flag).await });
    w.kube.put(datastore(account_key()));
    let start = Instant::now();
    while key_in_azure(&w).as_deref() != Some(KEY) || w.ready(&ds_path()).as_deref() != Some("True") {
        assert!(start.elapsed() < Duration::from_secs(30), "not Ready: {:?}", w.condition(&ds_path(), "Ready"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    w.emulator.clear_requests();
    key_secret(&w, ROTATED);
    let rotated = Instant::now();
    while key_in_azure(&w).as_deref() != Some(ROTATED) {
        assert!(rotated.elapsed() < Duration::from_secs(20), "the new key never reached Azure (resync: 1 h)");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = rotated.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(writes(&w), [format!("PUT {}", ds_id())], "exactly one write");
    println!("rotated key in Azure {:.2} s after the Secret changed (resync: 3600 s), 1 ARM write", took.as_secs_f64());
    controllers.abort();
}
