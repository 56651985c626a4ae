//! The everyday mistakes of issue #26 on a real API server, with the operator as its own process
//! and the emulator as Azure: what can be known without Azure is refused at admission, naming the
//! field; what only Azure knows (the region, the VM size, the core quota) ends `Stalled=True`
//! with a message that names the field and what to change, one ARM write and one Event, and
//! nothing more over a minute of waiting. Needs `AML_E2E_KUBECONFIG` (see tests/e2e.rs); skips
//! without it unless `AML_REQUIRE_E2E=1`.

use crate::support;
use crate::OperatorProcess;

use aml_operator::crd::{AmlCompute, AmlOnlineDeployment, AmlOnlineEndpoint, AmlWorkspace};
use aml_operator::emulator::{EmulatorConfig, Principal};
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use crate::support::cluster::{MANAGER, dynamic_api_of, manifest, cluster, condition, create_namespace, delete_namespace, eventually, install_crds, ready};

/// How long the stalled objects are watched for further ARM writes and Events.
const WINDOW: Duration = Duration::from_secs(60);


fn tags(n: usize) -> Value {
    json!((0..n).map(|i| (format!("tag{i}"), json!("v"))).collect::<serde_json::Map<String, Value>>())
}

#[tokio::test]
async fn everyday_mistakes_are_refused_at_admission_or_stall_once_naming_the_field_to_change() {
    let Some(admin) = cluster().await else { return };
    install_crds(&admin).await;
    let ns = format!("aml-e2e-refusals-{}", std::process::id() % 100000);
    create_namespace(&admin, &ns).await;
    let workspaces = dynamic_api_of::<AmlWorkspace>(&admin, &ns);
    let computes = dynamic_api_of::<AmlCompute>(&admin, &ns);
    let endpoints = dynamic_api_of::<AmlOnlineEndpoint>(&admin, &ns);
    let deployments = dynamic_api_of::<AmlOnlineDeployment>(&admin, &ns);

    // 1. What can be known without Azure: refused by the API server, naming the field.
    let ws_spec = |extra: Value| {
        let mut spec = json!({"resourceGroup": "rg-refusals", "location": "eastus"});
        spec.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
        spec
    };
    let cluster_spec = |vm_size: &str, max_nodes: i64| json!({
        "workspaceRef": {"name": "ws1"}, "computeType": "AmlCompute",
        "amlCompute": {"vmSize": vm_size, "scaleSettings": {"minNodeCount": 0, "maxNodeCount": max_nodes}},
    });
    let admission: Vec<(&Api<DynamicObject>, DynamicObject, &[&str])> = vec![
        (&workspaces, manifest("AmlWorkspace", "ws-60-tags", ws_spec(json!({"tags": tags(60)}))), &["spec.tags", "at most 49"]),
        (&workspaces, manifest("AmlWorkspace", "ws-tag-chars", ws_spec(json!({"tags": {"team/a": "x"}}))), &["spec.tags", "must not contain"]),
        (&workspaces, manifest("AmlWorkspace", "ws-tag-name", ws_spec(json!({"tags": {"n".repeat(513): "x"}}))), &["spec.tags", "at most 512"]),
        (&workspaces, manifest("AmlWorkspace", "ws-tag-value", ws_spec(json!({"tags": {"team": "v".repeat(257)}}))), &["spec.tags.team", "256"]),
        (&computes, manifest("AmlCompute", "c-100000", cluster_spec("STANDARD_DS3_V2", 100_000)), &["spec.amlCompute.scaleSettings.maxNodeCount", "65000"]),
        (&computes, manifest("AmlCompute", "c-tags", json!({"workspaceRef": {"name": "ws1"}, "computeType": "AmlCompute", "tags": tags(50)})), &["spec.tags", "at most 49"]),
        (&endpoints, manifest("AmlOnlineEndpoint", "ep-tags", json!({"workspaceRef": {"name": "ws1"}, "authMode": "Key", "tags": tags(50)})), &["spec.tags", "at most 49"]),
        (&deployments, manifest("AmlOnlineDeployment", "d-tags", json!({"endpointRef": {"name": "ep1"}, "model": "azureml://registries/azureml/models/m/versions/1", "tags": tags(50)})), &["spec.tags", "at most 49"]),
    ];
    for (api, obj, says) in &admission {
        let name = obj.metadata.name.clone().unwrap_or_default();
        let err = api.create(&PostParams::default(), obj).await.expect_err(&format!("{name} is refused at admission")).to_string();
        for part in *says {
            assert!(err.contains(part), "{name}: {part:?} missing from the API server's refusal: {err}");
        }
        println!("admission refuses {name}: {err}");
    }
    // At the limits exactly: accepted (and then converged by the operator below).
    let at_limits: serde_json::Map<String, Value> =
        // 49: Azure's 50 less the operator's owner tag.
        (0..48).map(|i| (format!("t{i}"), json!("v".repeat(256)))).chain([("n".repeat(512), json!("v"))]).collect();

    // 2. What only Azure knows: the operator as its own process, the emulator as Azure.
    let (emulator, ca_file) = support::cluster::start_emulator("refusals", Duration::from_millis(300), EmulatorConfig::default()).await;
    let p = Principal::default();
    let secret = support::cluster::credentials_secret("aml-credentials", &p, &p.client_secret);
    let secrets = Api::<Secret>::namespaced(admin.clone(), &ns);
    secrets.create(&PostParams::default(), &secret).await.expect("credentials Secret");

    let apply = |api: &Api<DynamicObject>, obj: DynamicObject| {
        let api = api.clone();
        async move {
            let name = obj.metadata.name.clone().unwrap_or_default();
            api.patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(&obj)).await.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    };
    apply(&workspaces, manifest("AmlWorkspace", "ws1", ws_spec(json!({"tags": at_limits})))).await;
    apply(&workspaces, manifest("AmlWorkspace", "ws-mars", json!({"resourceGroup": "rg-mars", "location": "mars-central"}))).await;
    apply(&computes, manifest("AmlCompute", "c-nope", cluster_spec("Standard_NOPE_v9", 4))).await;
    // 300 nodes of 4 vCPUs: 1200 cores, the emulator's default quota is 1000 per family and region.
    apply(&computes, manifest("AmlCompute", "c-quota", cluster_spec("STANDARD_DS3_V2", 300))).await;
    apply(&endpoints, manifest("AmlOnlineEndpoint", "ep1", json!({"workspaceRef": {"name": "ws1"}, "authMode": "Key"}))).await;
    apply(&deployments, manifest("AmlOnlineDeployment", "d-nope", json!({
        "endpointRef": {"name": "ep1"}, "model": "azureml://registries/azureml/models/m/versions/1", "instanceType": "Standard_NOPE_v9", "instanceCount": 1,
    })))
    .await;

    let operator = OperatorProcess::for_namespace(&ns, &emulator, &ca_file, &[], &support::temp_path("refusals-operator.log"));

    // (api, name, Stalled reason, what its message must say, the ARM ids (or prefixes) it writes to)
    let mars_rg = format!("/subscriptions/{}/resourceGroups/rg-mars/", support::SUBSCRIPTION);
    let refused: Vec<(&Api<DynamicObject>, &str, &str, Vec<&str>)> = vec![
        (&workspaces, "ws-mars", "LocationNotAvailable", vec!["spec.location", "'mars-central'", "eastus", "westeurope"]),
        (&computes, "c-nope", "VmSizeNotSupported", vec!["spec.amlCompute.vmSize", "'Standard_NOPE_v9'", "Standard_DS3_v2"]),
        (&computes, "c-quota", "QuotaExceeded", vec!["standardDSv2Family", "eastus", "1000 of 1000 cores left", "asks for 1200", "spec.amlCompute.scaleSettings.maxNodeCount", "amloperator.io/retry"]),
        (&deployments, "d-nope", "VmSizeNotSupported", vec!["spec.instanceType", "'Standard_NOPE_v9'", "Standard_DS3_v2"]),
    ];
    let started = Instant::now();
    let ws1 = eventually("ws1 (tags at Azure's limits) Ready", Duration::from_secs(120), || {
        let api = workspaces.clone();
        async move {
            let obj = serde_json::to_value(api.get("ws1").await.ok()?).ok()?;
            ready(&obj).then_some(obj)
        }
    })
    .await;
    let ws1_id = ws1["status"]["armId"].as_str().expect("armId").to_string();
    let stalled_all = eventually("every refused object Stalled", Duration::from_secs(120), || {
        let refused = refused.iter().map(|(api, name, _, _)| ((*api).clone(), name.to_string())).collect::<Vec<_>>();
        async move {
            let mut objs = Vec::new();
            for (api, name) in refused {
                let obj = serde_json::to_value(api.get(&name).await.ok()?).ok()?;
                condition(&obj, "Stalled").filter(|c| c["status"] == "True")?;
                objs.push(obj);
            }
            Some(objs)
        }
    })
    .await;
    println!("all four stalled {:.1}s after the operator started", started.elapsed().as_secs_f64());

    // ARM writes (anything but GET) per refused object: its own id, or for the workspace from
    // nothing its resource group (its dependencies).
    let arm_id_of = |obj: &Value| obj["status"]["armId"].as_str().unwrap_or_default().to_ascii_lowercase();
    let ids: Vec<String> = stalled_all.iter().map(arm_id_of).collect();
    let writes_of = |i: usize, method: Option<&str>| {
        emulator
            .requests()
            .iter()
            .filter(|r| r.method != "GET" && method.is_none_or(|m| r.method == m))
            .filter(|r| {
                let path = r.path.to_ascii_lowercase();
                if i == 0 { path.starts_with(&mars_rg.to_ascii_lowercase()) } else { path == ids[i] }
            })
            .count()
    };
    let events_api = Api::<Event>::namespaced(admin.clone(), &ns);
    // Warning Events with the refusal's reason (a racing finalizer patch may add an unrelated one).
    let warnings = |events: &[Event], name: &str, reason: &str| -> i64 {
        events
            .iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name) && e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some(reason))
            .map(|e| i64::from(e.count.unwrap_or(1)).max(e.series.as_ref().map_or(1, |s| i64::from(s.count.unwrap_or(1)))))
            .sum()
    };
    let before: Vec<usize> = (0..refused.len()).map(|i| writes_of(i, None)).collect();
    let events_before = events_api.list(&ListParams::default()).await.expect("events").items;

    tokio::time::sleep(WINDOW).await;

    let events_after = events_api.list(&ListParams::default()).await.expect("events").items;
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (i, (api, name, reason, says)) in refused.iter().enumerate() {
        let obj = serde_json::to_value(api.get(name).await.expect("still there")).unwrap();
        let stalled = condition(&obj, "Stalled").unwrap_or_default();
        let ready_cond = condition(&obj, "Ready").unwrap_or_default();
        let message = stalled["message"].as_str().unwrap_or_default().to_string();
        let puts = writes_of(i, Some("PUT")) + writes_of(i, Some("PATCH")) + writes_of(i, Some("DELETE"));
        let posts = writes_of(i, Some("POST"));
        let in_window = writes_of(i, None) - before[i];
        let events = warnings(&events_after, name, reason);
        let new_events = events - warnings(&events_before, name, reason);
        report.push(format!(
            "{name}: Stalled={} {}; {puts} ARM write(s) (PUT/PATCH/DELETE) and {posts} POST in all, {in_window} ARM write(s) and {new_events} Event(s) in the {}s window, {events} Warning Event(s) {reason} in all; message: {message}",
            stalled["status"].as_str().unwrap_or_default(),
            stalled["reason"].as_str().unwrap_or_default(),
            WINDOW.as_secs()
        ));
        if ready_cond["status"] != "False" || stalled["status"] != "True" || stalled["reason"] != *reason || ready_cond["reason"] != *reason {
            failures.push(format!("{name}: want Ready=False and Stalled=True with reason {reason}"));
        }
        for part in says {
            if !message.contains(part) {
                failures.push(format!("{name}: {part:?} missing from the message"));
            }
        }
        // One write, refused or failed. (The workspace from nothing first checks the global names
        // of its dependencies, POST checkNameAvailability at subscription scope, which writes
        // nothing and is not counted here; then its first PUT, the storage account's, is refused.)
        if puts != 1 || posts > if i == 0 { 2 } else { 0 } || in_window != 0 {
            failures.push(format!("{name}: {puts} PUT/PATCH/DELETE, {posts} POST, {in_window} in the window"));
        }
        if events != 1 || new_events != 0 {
            failures.push(format!("{name}: {events} Warning Events ({new_events} in the window)"));
        }
    }
    println!("refusals over {}s:\n{}", WINDOW.as_secs(), report.join("\n"));
    assert!(failures.is_empty(), "{failures:#?}\n{}\noperator log tail:\n{}", report.join("\n"), operator.tail());
    assert!(emulator.resource(&ws1_id).is_some());
    drop(operator);

    // Release the objects without an operator (nothing the test needs is left in Azure).
    for api in [&workspaces, &computes, &endpoints, &deployments] {
        for obj in api.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default() {
            let name = obj.metadata.name.clone().unwrap_or_default();
            let _ = api.patch(&name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await;
        }
    }
    let _ = secrets.patch("aml-credentials", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await;
    delete_namespace(&admin, &ns, Duration::from_secs(120)).await;
    emulator.shutdown().await;
}
