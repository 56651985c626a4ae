//! End to end on a real API server (`AML_E2E_KUBECONFIG`; skipped with a printed reason without
//! it, a failure with `AML_REQUIRE_E2E=1`): a workspace from nothing — only a resource group and a
//! location — converges with its four dependencies created in the (in-process) emulator, and
//! deleting the namespace removes the workspace and all of them. The controllers run in-process.

use crate::support;

use aml_operator::controller::kinds::dependencies::{DependencyKind, dependency_id, generated_names};
use aml_operator::crd::AmlWorkspace;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use std::time::Duration;

use crate::support::cluster::{Env, cluster, delete_namespace, eventually};

#[tokio::test]
async fn a_workspace_from_nothing_brings_its_dependencies_and_takes_them_with_its_namespace() {
    let Some(client) = cluster().await else { return };
    let env = Env::start(client.clone(), "aml-e2e-deps").await;
    let (ns, emulator) = (env.ns.clone(), &env.emulator);

    let api: Api<AmlWorkspace> = Api::namespaced(client.clone(), &ns);
    let manifest = json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace",
        "metadata": {"name": "from-nothing"},
        "spec": {"resourceGroup": "rg-e2e-deps", "location": "eastus"},
    });
    api.patch("from-nothing", &PatchParams::apply("kubectl"), &Patch::Apply(&manifest)).await.expect("the API server takes it");
    let converged: Value = eventually("the workspace Ready", Duration::from_secs(120), || {
        let api = api.clone();
        async move {
            let obj = serde_json::to_value(api.get("from-nothing").await.ok()?).ok()?;
            let ready = obj["status"]["conditions"].as_array()?.iter().any(|c| c["type"] == "Ready" && c["status"] == "True");
            ready.then_some(obj)
        }
    })
    .await;

    let ws_id = converged["status"]["armId"].as_str().expect("armId").to_string();
    let names = generated_names(&ws_id);
    let ids: Vec<String> = DependencyKind::ALL
        .iter()
        .map(|k| dependency_id(support::SUBSCRIPTION, "rg-e2e-deps", *k, names.of(*k)))
        .collect();
    for id in &ids {
        assert!(emulator.resource(id).is_some(), "{id} exists in Azure: {:?}", emulator.resource_ids());
    }
    assert_eq!(emulator.resource_ids().len(), 5, "the workspace and its four dependencies: {:?}", emulator.resource_ids());
    let created = &converged["status"]["createdDependencies"];
    for (field, id) in ["storageAccount", "keyVault", "logAnalyticsWorkspace", "applicationInsights"].iter().zip(&ids) {
        assert_eq!(created[field].as_str(), Some(id.as_str()), "status.createdDependencies.{field}: {created}");
    }
    let ws = emulator.resource(&ws_id).expect("workspace");
    assert_eq!(ws["properties"]["storageAccount"].as_str(), Some(ids[0].as_str()));
    assert!(
        emulator.requests().iter().all(|r| r.status < 400 || r.status == 404),
        "every body accepted (validated against Microsoft's schemas when present): {:?}",
        emulator.requests().iter().filter(|r| r.status >= 400 && r.status != 404).collect::<Vec<_>>()
    );

    // Deleting the namespace deletes the workspace, then what was created for it.
    delete_namespace(&client, &ns, Duration::from_secs(120)).await;
    assert!(emulator.resource_ids().is_empty(), "all gone: {:?}", emulator.resource_ids());
    let deletes: Vec<String> = emulator.requests().iter().filter(|r| r.method == "DELETE" && r.status < 300).map(|r| r.path.clone()).collect();
    assert!(deletes.first().is_some_and(|d| d.eq_ignore_ascii_case(&ws_id)), "the workspace goes first: {deletes:?}");
    assert_eq!(emulator.deleted_vaults(), vec![names.key_vault.clone()], "the vault is soft-deleted, never purged");
    env.finish().await;
}
