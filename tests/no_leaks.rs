//! Secrets never leak: unique values are planted in every Secret the operator reads or writes, the
//! full lifecycle of every kind (a datastore's account key among them) runs with tracing captured at TRACE level, and none of those
//! values may appear in any log line, event, status, condition, error or metric.

mod support;

use aml_operator::controller::Error;
use aml_operator::crd::{AmlCompute, AmlDatastore, AmlOnlineDeployment, AmlOnlineEndpoint, AmlRoleAssignment, AmlWorkspace};
use aml_operator::emulator::{EmulatorConfig, Principal};
use serde_json::{Value, json};
use std::io::Write;
use std::sync::{Arc, Mutex};
use support::{NS, World};

const CLIENT_SECRET: &str = "planted-client-secret-7Qx9Vd2";
const WRONG_SECRET: &str = "planted-wrong-secret-K3p8Za1";
const ADMIN_PASSWORD: &str = "planted-admin-password-Lm4Rt6";
const SSH_KEY: &str = "ssh-rsa AAAAplantedsshkeyW9e2Yu5 admin@example";
const ACCOUNT_KEY: &str = "planted-account-key-Vb7Nq2Xw==";

const WS: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlworkspaces/ws1";
const CPU: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlcomputes/cpu";
const EP: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlonlineendpoints/ep";
const DEP: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlonlinedeployments/blue";
const RA: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlroleassignments/readers";
const DS: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amldatastores/data";
const KEYS: &str = "/api/v1/namespaces/team-a/secrets/ep-keys";

/// Everything every subscriber layer writes, for the whole test binary.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn manifests() -> Vec<Value> {
    let meta = |name: &str| json!({"name": name, "namespace": NS});
    vec![
        json!({"apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace", "metadata": meta("ws1"),
               "spec": {"resourceGroup": "rg", "location": "eastus"}}),
        json!({"apiVersion": "amloperator.io/v1alpha1", "kind": "AmlCompute", "metadata": meta("cpu"),
               "spec": {"workspaceRef": {"name": "ws1"}, "computeType": "AmlCompute",
                        "amlCompute": {"vmSize": "STANDARD_DS3_V2", "scaleSettings": {"maxNodeCount": 1},
                                       "userAccountCredentials": {"adminUserName": "azureuser",
                                           "adminUserPasswordSecretRef": {"name": "admin", "key": "password"},
                                           "adminUserSshPublicKeySecretRef": {"name": "admin", "key": "ssh"}}}}}),
        json!({"apiVersion": "amloperator.io/v1alpha1", "kind": "AmlOnlineEndpoint", "metadata": meta("ep"),
               "spec": {"workspaceRef": {"name": "ws1"}, "authMode": "Key", "traffic": {"blue": 100}, "keysSecret": {"name": "ep-keys"}}}),
        json!({"apiVersion": "amloperator.io/v1alpha1", "kind": "AmlOnlineDeployment", "metadata": meta("blue"),
               "spec": {"endpointRef": {"name": "ep"}, "model": "azureml://registries/azureml/models/m/versions/1", "instanceType": "Standard_DS3_v2", "instanceCount": 1}}),
        json!({"apiVersion": "amloperator.io/v1alpha1", "kind": "AmlDatastore", "metadata": meta("data"),
               "spec": {"workspaceRef": {"name": "ws1"}, "datastoreType": "AzureBlob", "accountName": "teamadata", "containerName": "training",
                        "storageCredentials": {"credentialsType": "AccountKey", "secretRef": {"name": "data-key", "key": "key"}}}}),
        json!({"apiVersion": "amloperator.io/v1alpha1", "kind": "AmlRoleAssignment", "metadata": meta("readers"),
               "spec": {"workspaceRef": {"name": "ws1"}, "role": "Reader", "principalId": "3f2c1a9e-7b4d-4e2a-9c1f-5d6e7f8a9b0c",
                        "principalType": "Group"}}),
    ]
}

async fn round(w: &World, errors: &mut Vec<String>) {
    let mut note = |r: Result<kube::runtime::controller::Action, Error>| {
        if let Err(e) = r {
            errors.push(format!("{e} | {e:?} | {}", e.message()));
        }
    };
    if w.kube.raw(WS).is_some() {
        note(w.reconcile::<AmlWorkspace>(WS).await);
    }
    if w.kube.raw(CPU).is_some() {
        note(w.reconcile::<AmlCompute>(CPU).await);
    }
    if w.kube.raw(EP).is_some() {
        note(w.reconcile::<AmlOnlineEndpoint>(EP).await);
    }
    if w.kube.raw(DEP).is_some() {
        note(w.reconcile::<AmlOnlineDeployment>(DEP).await);
    }
    if w.kube.raw(RA).is_some() {
        note(w.reconcile::<AmlRoleAssignment>(RA).await);
    }
    if w.kube.raw(DS).is_some() {
        note(w.reconcile::<AmlDatastore>(DS).await);
    }
    w.emulator.finish_operations();
}

#[tokio::test]
async fn no_secret_value_appears_in_logs_events_status_errors_or_metrics() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let principal = Principal { client_secret: CLIENT_SECRET.into(), ..Principal::default() };
    let w = World::with_emulator(EmulatorConfig { principals: vec![principal.clone()], ..support::emulator_config() }).await;
    let mut errors = Vec::new();

    // 1. A wrong secret first: refused, reported.
    w.credentials("aml-credentials", WRONG_SECRET);
    w.kube.put(support::secret("admin", &[("password", ADMIN_PASSWORD), ("ssh", SSH_KEY)]));
    w.kube.put(support::secret("data-key", &[("key", ACCOUNT_KEY)]));
    for m in manifests() {
        w.kube.put(m);
    }
    for _ in 0..2 {
        round(&w, &mut errors).await;
    }
    assert_eq!(w.condition(WS, "Ready").unwrap()["reason"], "AuthenticationFailed");

    // 2. The right secret: everything converges (keys Secret written, password sent to ARM).
    w.credentials("aml-credentials", CLIENT_SECRET);
    for _ in 0..12 {
        round(&w, &mut errors).await;
    }
    for p in [WS, CPU, EP, DEP, RA, DS] {
        assert_eq!(w.ready(p).as_deref(), Some("True"), "{p}: {:?}", w.condition(p, "Ready"));
    }
    // The datastore's key went to Azure in one PUT (the only place it may be), and a GET of it
    // shows no key.
    let ds_id = w.kube.raw(DS).unwrap()["status"]["armId"].as_str().unwrap().to_string();
    let stored = w.emulator.resource_with_secrets(&ds_id).expect("datastore in Azure");
    assert_eq!(stored.pointer("/properties/credentials/secrets/key").and_then(Value::as_str), Some(ACCOUNT_KEY));
    let puts = w.emulator.requests().iter().filter(|r| r.method == "PUT" && r.path.eq_ignore_ascii_case(&ds_id)).count();
    assert_eq!(puts, 1, "the key was sent once");
    assert!(!w.emulator.resource(&ds_id).unwrap().to_string().contains(ACCOUNT_KEY), "a GET never shows it");
    assert_eq!(w.emulator.role_assignments().len(), 1);
    let keys_secret = w.kube.raw(KEYS).expect("keys Secret");
    let decode = |k: &str| -> String {
        let v = &keys_secret["data"][k];
        let bytes: Vec<u8> = serde_json::from_value::<k8s_openapi::ByteString>(v.clone()).map(|b| b.0).unwrap_or_default();
        String::from_utf8(bytes).unwrap()
    };
    let (primary, secondary) = (decode("primaryKey"), decode("secondaryKey"));
    assert!(primary.len() > 8 && secondary.len() > 8, "keys were written");
    // The workspace came from nothing: its four dependencies were created with it (their steps are
    // in the captured logs too), and are deleted with it below.
    let created = &w.kube.raw(WS).unwrap()["status"]["createdDependencies"];
    assert_eq!(created.as_object().map(|m| m.len()), Some(4), "{created}");

    // 3. Delete everything.
    for p in [WS, CPU, EP, DEP, RA, DS] {
        w.kube.delete(p);
    }
    for _ in 0..10 {
        round(&w, &mut errors).await;
    }
    for p in [WS, CPU, EP, DEP, RA, DS] {
        assert!(w.kube.raw(p).is_none(), "{p} was released");
    }
    assert!(w.emulator.resource_ids().is_empty(), "nothing left in Azure, the workspace's dependencies included: {:?}", w.emulator.resource_ids());

    // What must hold none of the values: logs, events, every object's status and conditions,
    // every error, and the metrics.
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.lines().count() > 100, "TRACE logging was captured ({} lines)", logs.lines().count());
    let mut haystacks = vec![("logs", logs)];
    haystacks.push(("events", format!("{:?}", w.kube.events())));
    let status_writes: Vec<Value> = w.kube.status_writes().into_iter().map(|c| c.body).collect();
    haystacks.push(("status writes", format!("{status_writes:?}")));
    let other_writes: Vec<Value> = w
        .kube
        .calls()
        .into_iter()
        .filter(|c| c.method != "GET" && !c.path.contains("/secrets/"))
        .map(|c| c.body)
        .collect();
    haystacks.push(("writes to objects", format!("{other_writes:?}")));
    haystacks.push(("errors", errors.join("\n")));
    haystacks.push(("metrics", aml_operator::metrics::render()));
    for (what, text) in &haystacks {
        for (name, value) in [
            ("client secret", CLIENT_SECRET),
            ("wrong secret", WRONG_SECRET),
            ("admin password", ADMIN_PASSWORD),
            ("ssh key", "plantedsshkeyW9e2Yu5"),
            ("datastore account key", ACCOUNT_KEY),
            ("primary key", primary.as_str()),
            ("secondary key", secondary.as_str()),
        ] {
            assert!(!text.contains(value), "the {name} leaked into {what}");
        }
    }
    assert!(!errors.is_empty(), "the wrong-secret phase produced errors to check");
}
