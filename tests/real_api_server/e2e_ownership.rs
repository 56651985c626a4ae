//! One Azure resource, one owner (issue 25, item 3), on a real API server with two operator
//! processes that share nothing but Azure (the emulator): `east` watches one namespace, `west`
//! another, each with its own `--cluster-name`. Both namespaces hold an AmlWorkspace for the same
//! resource group and `azureName`, with different descriptions. East's converges (from nothing,
//! with its dependencies); west's is Stalled with `OwnedByAnotherObject` naming east's object,
//! after no ARM write at all; deleting west's object deletes nothing in Azure. Needs
//! `AML_E2E_KUBECONFIG`; skips without it unless `AML_REQUIRE_E2E=1`.

use crate::support;
use crate::OperatorProcess;

use aml_operator::controller::owner::TAG;
use aml_operator::crd::AmlWorkspace;
use aml_operator::emulator::{EmulatorConfig, Principal};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::{Duration, Instant};

use crate::support::cluster::{MANAGER, cluster, condition, create_namespace, delete_namespace, eventually, install_crds, ready};

/// How long west's Stalled object is watched for ARM writes.
const WINDOW: Duration = Duration::from_secs(10);

#[tokio::test]
async fn two_operators_sharing_only_azure_one_workspace_id_the_second_is_stalled_with_no_arm_write() {
    let Some(admin) = cluster().await else { return };
    install_crds(&admin).await;
    let pid = std::process::id() % 100000;
    let (ns_east, ns_west) = (format!("aml-e2e-owner-east-{pid}"), format!("aml-e2e-owner-west-{pid}"));
    let (emulator, ca_file) = support::cluster::start_emulator("owner", Duration::from_millis(300), EmulatorConfig::default()).await;
    let p = Principal::default();
    for ns in [&ns_east, &ns_west] {
        create_namespace(&admin, ns).await;
        let secret = support::cluster::credentials_secret("aml-credentials", &p, &p.client_secret);
        Api::<Secret>::namespaced(admin.clone(), ns).create(&PostParams::default(), &secret).await.expect("credentials Secret");
    }
    let manifest = |description: &str| {
        json!({
            "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace", "metadata": {"name": "ws"},
            "spec": {"resourceGroup": "rg-e2e-owner", "location": "eastus", "azureName": "shared-ws", "description": description},
        })
    };
    let east_api: Api<AmlWorkspace> = Api::namespaced(admin.clone(), &ns_east);
    let west_api: Api<AmlWorkspace> = Api::namespaced(admin.clone(), &ns_west);
    let get = |api: &Api<AmlWorkspace>| {
        let api = api.clone();
        async move { serde_json::to_value(api.get("ws").await.ok()?).ok() }
    };

    // East: its operator, its workspace from nothing, Ready.
    let east = OperatorProcess::for_namespace(&ns_east, &emulator, &ca_file, &["--cluster-name=east".into()], &support::temp_path("owner-east.log"));
    east_api.patch("ws", &PatchParams::apply(MANAGER), &Patch::Apply(&manifest("from east"))).await.expect("east's workspace");
    let converged = eventually("east's workspace Ready", Duration::from_secs(120), || {
        let get = get(&east_api);
        async move { get.await.filter(ready) }
    })
    .await;
    let arm_id = converged["status"]["armId"].as_str().expect("armId").to_string();
    let owner = emulator.resource(&arm_id).expect("the workspace")["tags"][TAG].clone();
    assert_eq!(owner, json!(format!("east/{ns_east}/ws")), "east's create carries its owner tag");
    let resources_before = emulator.resource_ids().len();

    // West: another operator, another cluster name, the same ARM id.
    let west = OperatorProcess::for_namespace(&ns_west, &emulator, &ca_file, &["--cluster-name=west".into()], &support::temp_path("owner-west.log"));
    let requests_before = emulator.requests().len();
    let started = Instant::now();
    west_api.patch("ws", &PatchParams::apply(MANAGER), &Patch::Apply(&manifest("from west"))).await.expect("west's workspace");
    let stalled = eventually("west's workspace Stalled", Duration::from_secs(60), || {
        let get = get(&west_api);
        async move {
            let obj = get.await?;
            let c = condition(&obj, "Stalled")?;
            (c["status"] == "True").then_some(obj)
        }
    })
    .await;
    println!("west's workspace Stalled {:.1}s after it was applied", started.elapsed().as_secs_f64());
    tokio::time::sleep(WINDOW).await;

    let cond = condition(&stalled, "Stalled").unwrap();
    let message = cond["message"].as_str().unwrap_or_default().to_string();
    println!("west's workspace: Stalled={} {}: {message}", cond["status"], cond["reason"]);
    let writes: Vec<String> = emulator.requests()[requests_before..]
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {} -> {}", r.method, r.path, r.status))
        .collect();
    println!("ARM writes since west's object was applied (incl. a {}s window): {}", WINDOW.as_secs(), writes.len());
    let tails = format!("east:\n{}\nwest:\n{}", east.tail(), west.tail());
    assert_eq!(cond["reason"], "OwnedByAnotherObject", "{tails}");
    assert!(message.contains(&format!("object {ns_east}/ws of cluster east")) && message.contains(&arm_id), "{message}");
    assert_eq!(condition(&stalled, "Ready").unwrap()["status"], "False");
    assert!(writes.is_empty(), "no ARM write, no dependency made: {writes:?}\n{tails}");
    assert_eq!(emulator.resource_ids().len(), resources_before, "nothing created");
    let ws = emulator.resource(&arm_id).expect("the workspace");
    assert_eq!(ws["properties"]["description"], "from east");
    assert_eq!(ws["tags"][TAG], json!(format!("east/{ns_east}/ws")));
    assert!(get(&east_api).await.is_some_and(|o| ready(&o)), "east's workspace stays Ready");

    // Deleting west's object deletes nothing in Azure.
    west_api.delete("ws", &DeleteParams::default()).await.expect("delete west's object");
    eventually("west's object gone", Duration::from_secs(60), || {
        let api = west_api.clone();
        async move { api.get_opt("ws").await.ok()?.is_none().then_some(()) }
    })
    .await;
    let deletes: Vec<String> =
        emulator.requests()[requests_before..].iter().filter(|r| r.method == "DELETE").map(|r| r.path.clone()).collect();
    assert!(deletes.is_empty(), "{deletes:?}");
    assert!(emulator.resource(&arm_id).is_some(), "east's workspace is still there");
    drop(west);

    // East takes its workspace and dependencies with its namespace.
    delete_namespace(&admin, &ns_east, Duration::from_secs(120)).await;
    assert!(emulator.resource(&arm_id).is_none());
    drop(east);
    delete_namespace(&admin, &ns_west, Duration::from_secs(60)).await;
    emulator.shutdown().await;
}
