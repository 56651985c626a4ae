//! End to end against a real Kubernetes API server: set `AML_E2E_KUBECONFIG` to a kubeconfig file
//! (`eval "$(../shared/kube/up)"` starts one). Skipped, with a printed reason, without it — unless
//! `AML_REQUIRE_E2E=1` (set by `.ci/run`), which turns the skip into a failure. Azure is the
//! in-process emulator. Some tests run the controllers in-process; the user's path runs the
//! chart and the operator binary as its own process. Each test uses fresh namespaces and removes them.

use crate::support;
use crate::OperatorProcess;

use aml_operator::crd::AmlWorkspace;
use aml_operator::emulator::{Emulator, EmulatorConfig, Principal};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use crate::support::cluster::{ENV, Env, MANAGER, cluster, create_namespace, delete_namespace, established, eventually, install_crds, ready, skip};

#[tokio::test]
async fn workspace_lifecycle_against_a_real_api_server() {
    let Some(client) = cluster().await else { return };
    let env = Env::start(client.clone(), "aml-e2e-ws").await;
    let api: Api<AmlWorkspace> = Api::namespaced(client.clone(), &env.ns);
    let ws: AmlWorkspace = serde_json::from_value(json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace",
        "metadata": {"name": "e2e-ws", "namespace": env.ns},
        "spec": {"resourceGroup": "rg-e2e", "location": "eastus", "friendlyName": "before", "identity": {"type": "SystemAssigned"}}
    }))
    .unwrap();
    api.patch("e2e-ws", &PatchParams::apply(MANAGER), &Patch::Apply(&ws)).await.expect("workspace applied");

    let obj = eventually("workspace Ready", Duration::from_secs(90), || {
        let api = api.clone();
        async move {
            let obj = serde_json::to_value(api.get("e2e-ws").await.ok()?).ok()?;
            (ready(&obj) && obj["status"]["provisioningState"] == "Succeeded").then_some(obj)
        }
    })
    .await;
    let arm_id = obj["status"]["armId"].as_str().expect("armId").to_string();
    assert!(env.emulator.resource(&arm_id).is_some());

    // A mutable field reaches ARM.
    api.patch("e2e-ws", &PatchParams::default(), &Patch::Merge(json!({"spec": {"friendlyName": "after"}})))
        .await
        .expect("mutable edit accepted");
    eventually("friendlyName updated in ARM", Duration::from_secs(90), || {
        let r = env.emulator.resource(&arm_id);
        async move { (r?["properties"]["friendlyName"] == "after").then_some(()) }
    })
    .await;

    // An immutable field is refused by the API server (CEL).
    let err = api
        .patch("e2e-ws", &PatchParams::default(), &Patch::Merge(json!({"spec": {"location": "westeurope"}})))
        .await
        .expect_err("location is immutable");
    assert!(err.to_string().contains("location is immutable"), "{err}");

    // Delete: ARM resource and object both go.
    api.delete("e2e-ws", &DeleteParams::default()).await.expect("delete accepted");
    eventually("workspace gone from the cluster", Duration::from_secs(90), || {
        let api = api.clone();
        async move { api.get_opt("e2e-ws").await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert!(env.emulator.resource(&arm_id).is_none(), "ARM resource deleted");
    env.finish().await;
}

#[tokio::test]
async fn a_folder_with_every_kind_converges_and_goes_away_with_its_workspace() {
    let Some(client) = cluster().await else { return };
    let env = Env::start(client.clone(), "aml-e2e-stack").await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut objects = Vec::new();
    // Children first: the order must not matter.
    for (file, plural) in [
        ("deployment.yaml", "amlonlinedeployments"),
        ("endpoint.yaml", "amlonlineendpoints"),
        ("compute.yaml", "amlcomputes"),
        ("workspace.yaml", "amlworkspaces"),
        ("code.yaml", "amlcodeversions"),
        ("environment.yaml", "amlenvironmentversions"),
        ("model.yaml", "amlmodelversions"),
        ("datastore.yaml", "amldatastores"),
    ] {
        let mut manifest: Value = serde_yaml::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
        manifest["metadata"]["namespace"] = json!(env.ns);
        let kind = manifest["kind"].as_str().unwrap().to_string();
        let api = support::cluster::dynamic_api(&client, &env.ns, &kind, plural);
        let name = manifest["metadata"]["name"].as_str().unwrap().to_string();
        api.patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(&manifest)).await.unwrap_or_else(|e| panic!("{file}: {e}"));
        objects.push((api, name));
    }
    eventually("every example Ready", Duration::from_secs(180), || {
        let objects = objects.clone();
        async move {
            for (api, name) in &objects {
                let obj = serde_json::to_value(api.get(name).await.ok()?).ok()?;
                if !ready(&obj) {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    let (ep_api, ep_name) = &objects[1];
    let ep = serde_json::to_value(ep_api.get(ep_name).await.unwrap()).unwrap();
    let ep_id = ep["status"]["armId"].as_str().unwrap().to_string();
    assert_eq!(env.emulator.resource(&ep_id).unwrap()["properties"]["traffic"], json!({"blue": 100}));
    let keys = Api::<Secret>::namespaced(client.clone(), &env.ns).get("team-a-scoring-keys").await.expect("keys Secret");
    assert!(keys.data.as_ref().is_some_and(|d| d.contains_key("primaryKey") && d.contains_key("scoringUri")));

    // Deleting the workspace object deletes everything: ARM cascades, Kubernetes garbage-collects
    // the children through their owner references.
    let (ws_api, ws_name) = &objects[3];
    ws_api.delete(ws_name, &DeleteParams::default()).await.expect("workspace delete accepted");
    eventually("every object gone", Duration::from_secs(180), || {
        let objects = objects.clone();
        async move {
            for (api, name) in &objects {
                if api.get_opt(name).await.ok()?.is_some() {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    assert!(env.emulator.resource_ids().is_empty(), "left in Azure: {:?}", env.emulator.resource_ids());
    env.finish().await;
}

// ---------------------------------------------------------------------------------------------
// What a user does: the CRDs and the chart installed, the operator as its own process.

/// The helm binary: `AML_HELM3`, `AML_HELM4`, else `helm` on PATH.
fn helm() -> Option<String> {
    for var in ["AML_HELM3", "AML_HELM4"] {
        if let Ok(path) = std::env::var(var) {
            return Some(path);
        }
    }
    std::process::Command::new("helm").arg("version").output().ok().filter(|o| o.status.success()).map(|_| "helm".into())
}

/// Runs helm against the e2e cluster; panics with its output when it fails.
fn run_helm(helm: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(helm)
        .args(args)
        .env("KUBECONFIG", std::env::var(ENV).expect("cluster kubeconfig"))
        .env("HELM_CACHE_HOME", std::env::temp_dir().join("aml-e2e-helm/cache"))
        .env("HELM_CONFIG_HOME", std::env::temp_dir().join("aml-e2e-helm/config"))
        .env("HELM_DATA_HOME", std::env::temp_dir().join("aml-e2e-helm/data"))
        .output()
        .expect("helm runs");
    assert!(out.status.success(), "helm {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn chart_dir() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/aml-operator").to_string_lossy().into_owned()
}

fn resource_of(manifest: &Value) -> kube::api::ApiResource {
    let (group, version) = match manifest["apiVersion"].as_str().unwrap().split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), manifest["apiVersion"].as_str().unwrap().to_string()),
    };
    kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(&group, &version, manifest["kind"].as_str().unwrap()))
}

/// `kubectl apply --server-side -f crds/`, then `kubectl wait --for=condition=Established`, and
/// `helm install` of the chart with its defaults: every object it renders is accepted.
#[tokio::test]
async fn the_crds_folder_and_the_chart_install_on_the_real_api_server() {
    let Some(client) = cluster().await else { return };
    let Some(helm) = helm() else { return skip("no helm (set AML_HELM3 or put helm on PATH)") };
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut applied = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let crd: Value = serde_yaml::from_str(&std::fs::read_to_string(entry.path()).unwrap()).unwrap();
        let name = crd["metadata"]["name"].as_str().unwrap().to_string();
        // The field manager the other tests install the CRDs with: an unchanged CRD is then a no-op
        // for the API server, not an update that re-establishes it under tests running alongside.
        crds.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("the API server refused crds/{}: {e}", entry.file_name().to_string_lossy()));
        applied.push(name);
    }
    assert_eq!(applied.len(), aml_operator::controller::kinds::crds().len(), "one CRD per kind in crds/");
    for name in &applied {
        established(&crds, name).await;
    }

    let id = std::process::id() % 100000;
    let ns = format!("aml-e2e-chart-{id}");
    let release = format!("aml-operator-chart-{id}");
    let installed = run_helm(&helm, &["install", &release, &chart_dir(), "--namespace", &ns, "--create-namespace", "--wait=false"]);
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    let manifest = run_helm(&helm, &["get", "manifest", &release, "--namespace", &ns]);
    let mut kinds = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&manifest) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        if v.is_null() {
            continue;
        }
        let resource = resource_of(&v);
        let name = v["metadata"]["name"].as_str().unwrap().to_string();
        let namespaced = v["metadata"]["namespace"].as_str().map(str::to_string).or_else(|| {
            (!["ClusterRole", "ClusterRoleBinding"].contains(&v["kind"].as_str().unwrap())).then(|| ns.clone())
        });
        let api: Api<kube::api::DynamicObject> = match &namespaced {
            Some(n) => Api::namespaced_with(client.clone(), n, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        api.get(&name).await.unwrap_or_else(|e| panic!("{} {name} is not in the cluster: {e}", v["kind"]));
        kinds.push(v["kind"].as_str().unwrap().to_string());
    }
    for kind in ["Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service"] {
        assert!(kinds.iter().any(|k| k == kind), "the chart installed no {kind}: {kinds:?}");
    }
    run_helm(&helm, &["uninstall", &release, "--namespace", &ns]);
    delete_namespace(&client, &ns, Duration::from_secs(120)).await;
}

/// The API server's error for a refused write: its message names the field.
async fn refused<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) -> String {
    match result {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 422, "{what}: {e:?}");
            e.message
        }
        other => panic!("{what}: the API server accepted it or failed otherwise: {other:?}"),
    }
}

/// Everything the schema and CEL can see is refused at admission, with the field named.
#[tokio::test]
async fn admission_refuses_invalid_objects_naming_the_field() {
    let Some(client) = cluster().await else { return };
    aml_operator::install_crypto_provider();
    install_crds(&client).await;
    let ns = format!("aml-e2e-admission-{}", std::process::id() % 100000);
    create_namespace(&client, &ns).await;
    let dynamic = |kind: &str, plural: &str| support::cluster::dynamic_api(&client, &ns, kind, plural);
    let workspaces = dynamic("AmlWorkspace", "amlworkspaces");
    let computes = dynamic("AmlCompute", "amlcomputes");
    let endpoints = dynamic("AmlOnlineEndpoint", "amlonlineendpoints");
    let object = |kind: &str, name: &str, spec: Value| -> kube::api::DynamicObject {
        serde_json::from_value(json!({"apiVersion": "amloperator.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec})).unwrap()
    };
    let create = |api: &Api<kube::api::DynamicObject>, obj: kube::api::DynamicObject| {
        let api = api.clone();
        async move { api.create(&PostParams::default(), &obj).await }
    };
    let merge = |api: &Api<kube::api::DynamicObject>, name: &str, patch: Value| {
        let api = api.clone();
        let name = name.to_string();
        async move { api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await }
    };
    let ws_spec = json!({"resourceGroup": "rg-e2e", "location": "eastus", "hbiWorkspace": false});
    create(&workspaces, object("AmlWorkspace", "team-ws", ws_spec.clone())).await.expect("a valid workspace");
    let compute_spec = json!({
        "workspaceRef": {"name": "team-ws"}, "computeType": "AmlCompute",
        "amlCompute": {"vmSize": "STANDARD_DS3_V2", "scaleSettings": {"minNodeCount": 0, "maxNodeCount": 4}}
    });
    create(&computes, object("AmlCompute", "cpu", compute_spec.clone())).await.expect("a valid compute");

    let mut cases: Vec<(&str, String, &[&str])> = Vec::new();
    // Immutable edits, including adding and removing an optional immutable field.
    let m = refused("location edit", merge(&workspaces, "team-ws", json!({"spec": {"location": "westeurope"}})).await).await;
    cases.push(("location edit", m, &["spec.location", "location is immutable"]));
    let m = refused("azureName added", merge(&workspaces, "team-ws", json!({"spec": {"azureName": "other-name"}})).await).await;
    cases.push(("azureName added", m, &["spec", "azureName is immutable: it cannot be added or removed"]));
    let m = refused("hbiWorkspace removed", merge(&workspaces, "team-ws", json!({"spec": {"hbiWorkspace": null}})).await).await;
    cases.push(("hbiWorkspace removed", m, &["spec", "hbiWorkspace is immutable: it cannot be added or removed"]));
    let m = refused("vmSize edit", merge(&computes, "cpu", json!({"spec": {"amlCompute": {"vmSize": "STANDARD_NC6"}}})).await).await;
    cases.push(("vmSize edit", m, &["spec.amlCompute.vmSize", "amlCompute.vmSize is immutable"]));
    // Shapes the schema refuses.
    let mut no_max = compute_spec.clone();
    no_max["amlCompute"]["scaleSettings"].as_object_mut().unwrap().remove("maxNodeCount");
    let m = refused("no maxNodeCount", create(&computes, object("AmlCompute", "no-max", no_max)).await).await;
    cases.push(("no maxNodeCount", m, &["spec.amlCompute.scaleSettings.maxNodeCount", "Required value"]));
    let mut inverted = compute_spec.clone();
    inverted["amlCompute"]["scaleSettings"]["minNodeCount"] = json!(5);
    let m = refused("min above max", create(&computes, object("AmlCompute", "inverted", inverted)).await).await;
    cases.push(("min above max", m, &["spec.amlCompute.scaleSettings", "minNodeCount must not exceed maxNodeCount"]));
    let mut both = compute_spec.clone();
    both["workspaceId"] = json!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w");
    let m = refused("both parents", create(&computes, object("AmlCompute", "both", both)).await).await;
    cases.push(("both parents", m, &["spec", "set exactly one of workspaceRef or workspaceId"]));
    let endpoint = |auth: &str, traffic: Value| json!({"workspaceRef": {"name": "team-ws"}, "authMode": auth, "traffic": traffic});
    let m = refused("unknown authMode", create(&endpoints, object("AmlOnlineEndpoint", "ep1", endpoint("Password", json!({})))).await).await;
    cases.push(("unknown authMode", m, &["spec.authMode", "Unsupported value: \"Password\""]));
    let m = refused("traffic sum", create(&endpoints, object("AmlOnlineEndpoint", "ep2", endpoint("Key", json!({"blue": 60, "green": 30})))).await).await;
    cases.push(("traffic sum", m, &["spec.traffic", "traffic values must sum to 100"]));
    let mut mirrored = endpoint("Key", json!({"blue": 100}));
    mirrored["mirrorTraffic"] = json!({"green": 30, "red": 30});
    let m = refused("mirror sum", create(&endpoints, object("AmlOnlineEndpoint", "ep3", mirrored)).await).await;
    cases.push(("mirror sum", m, &["spec.mirrorTraffic", "mirrorTraffic values must sum to at most 50"]));
    // A name ARM would refuse, with no azureName to stand in for it.
    let m = refused("workspace named a", create(&workspaces, object("AmlWorkspace", "a", ws_spec.clone())).await).await;
    cases.push(("workspace named a", m, &["metadata.name is not a valid Azure workspace name", "spec.azureName"]));
    let mut bad_azure_name = ws_spec.clone();
    bad_azure_name["azureName"] = json!("-x");
    let m = refused("bad azureName", create(&workspaces, object("AmlWorkspace", "fine-name", bad_azure_name)).await).await;
    cases.push(("bad azureName", m, &["spec.azureName", "should match"]));

    for (what, message, expected) in &cases {
        for e in *expected {
            assert!(message.contains(e), "{what}: expected {e:?} in the API server's answer: {message}");
        }
        println!("refused at admission, {what}: {message}");
    }
    // And what is valid still is: a good traffic split, an azureName that stands in for a short name.
    // Valid splits are accepted every time: the rule must not depend on the order in which CEL
    // lists a map (it did once, and refused a valid split about one time in two).
    for i in 0..12 {
        let mut split = endpoint("Key", json!({"blue": 70, "green": 20, "red": 10}));
        split["mirrorTraffic"] = json!({"blue": 30, "green": 20});
        create(&endpoints, object("AmlOnlineEndpoint", &format!("split-{i}"), split)).await.unwrap_or_else(|e| panic!("a valid split, try {i}: {e}"));
    }
    let mut named = ws_spec.clone();
    named["azureName"] = json!("team-b-ws");
    create(&workspaces, object("AmlWorkspace", "b", named)).await.expect("azureName stands in for metadata.name");
    merge(&computes, "cpu", json!({"spec": {"amlCompute": {"scaleSettings": {"maxNodeCount": 8}}}})).await.expect("scale is mutable");
    delete_namespace(&client, &ns, Duration::from_secs(120)).await;
}


/// A kubeconfig for the e2e cluster that authenticates with `token` (a ServiceAccount's).
fn kubeconfig_with_token(token: &str, path: &std::path::Path) {
    let admin: Value = serde_yaml::from_str(&std::fs::read_to_string(std::env::var(ENV).unwrap()).unwrap()).unwrap();
    let cluster = &admin["clusters"][0]["cluster"];
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {"server": cluster["server"], "certificate-authority-data": cluster["certificate-authority-data"]}}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "e2e", "user": "operator"}}],
        "current-context": "operator",
    });
    std::fs::write(path, serde_yaml::to_string(&config).unwrap()).unwrap();
}

/// Writes (PUT, PATCH, POST, DELETE) the emulator has answered 2xx for `arm_id` itself.
fn arm_writes(emulator: &Emulator, arm_id: &str) -> usize {
    emulator
        .requests()
        .iter()
        .filter(|r| r.method != "GET" && (200..300).contains(&r.status) && r.path.eq_ignore_ascii_case(arm_id))
        .count()
}

/// The user's path, on the real API server: `helm install` of the chart with its default RBAC,
/// the operator binary run with the Deployment's own arguments under a token of the chart's
/// ServiceAccount (so only the chart's RBAC applies), leader election on, watching only this
/// test's namespace (`--namespace`, so tests running side by side stay apart); the examples
/// applied children first; then an edit, a crash right after an ARM write, and the namespace's
/// deletion. No planted secret value may show up in the operator's output, Events or status.
#[tokio::test]
async fn the_chart_and_the_operator_process_converge_the_examples_like_a_user() {
    let Some(admin) = cluster().await else { return };
    let Some(helm) = helm() else { return skip("no helm (set AML_HELM3 or put helm on PATH)") };
    aml_operator::install_crypto_provider();
    install_crds(&admin).await;
    let id = std::process::id() % 100000;
    let ns = format!("aml-e2e-user-{id}");
    let op_ns = format!("aml-e2e-system-{id}");
    let release = format!("aml-operator-{id}");
    create_namespace(&admin, &ns).await;

    // Azure: the emulator, with a principal whose secret is planted to be looked for later.
    let planted = format!("planted-client-secret-{id}-do-not-print");
    let principal = Principal { client_secret: planted.clone(), ..Principal::default() };
    let (emulator, ca_file) = support::cluster::start_emulator("user", Duration::from_millis(1500), EmulatorConfig { principals: vec![principal.clone()], ..EmulatorConfig::default() }).await;

    // The chart, as a user installs it, pointed at the emulator.
    run_helm(&helm, &[
        "install", &release, &chart_dir(), "--namespace", &op_ns, "--create-namespace", "--wait=false",
        "--set", &format!("arm.endpoint={}", emulator.arm_endpoint()),
        "--set", &format!("arm.authorityHost={}", emulator.authority_host()),
        "--set", "logging.level=debug",
    ]);
    let deployment: Value = serde_json::to_value(
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(admin.clone(), &op_ns).get(&release).await.expect("the chart's Deployment"),
    )
    .unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut args: Vec<String> = serde_json::from_value(container["args"].clone()).unwrap();
    assert!(args.iter().any(|a| a == "--leader-elect"), "the chart turns leader election on: {args:?}");
    assert_eq!(args[0], "run", "{args:?}");
    // Loopback instead of the pod's port; the emulator's CA instead of a mounted bundle.
    args.retain(|a| !a.starts_with("--metrics-addr"));
    args.push("--metrics-addr=127.0.0.1:0".into());
    args.push(format!("--ca-file={}", ca_file.display()));
    args.push(format!("--namespace={ns}"));
    let mut env: Vec<(String, String)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?.to_string(), e["value"].as_str()?.to_string())))
        .collect();
    env.push(("POD_NAMESPACE".into(), op_ns.clone()));
    env.push(("POD_NAME".into(), format!("{release}-0")));

    // The ServiceAccount's token (TokenRequest), as the kubelet would mount it.
    let sa = deployment["spec"]["template"]["spec"]["serviceAccountName"].as_str().unwrap().to_string();
    let request: k8s_openapi::api::authentication::v1::TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}})).unwrap();
    let token = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(admin.clone(), &op_ns)
        .create_token_request(&sa, &PostParams::default(), &request)
        .await
        .expect("TokenRequest")
        .status
        .and_then(|s| s.token)
        .expect("a token");
    let kubeconfig = support::temp_path("operator-kubeconfig");
    kubeconfig_with_token(&token, &kubeconfig);
    env.push(("KUBECONFIG".into(), kubeconfig.to_string_lossy().into_owned()));
    let log = support::temp_path("operator.log");
    let mut operator = Some(OperatorProcess::start(&args, &env, &log));

    let secret = support::cluster::credentials_secret("aml-credentials", &principal, &planted);
    Api::<Secret>::namespaced(admin.clone(), &ns).create(&PostParams::default(), &secret).await.expect("credentials Secret");

    // The examples, children first (the assets the deployment uses last): the order must not matter.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut objects = Vec::new();
    for (file, plural) in [
        ("deployment.yaml", "amlonlinedeployments"),
        ("endpoint.yaml", "amlonlineendpoints"),
        ("compute.yaml", "amlcomputes"),
        ("workspace.yaml", "amlworkspaces"),
        ("code.yaml", "amlcodeversions"),
        ("environment.yaml", "amlenvironmentversions"),
        ("model.yaml", "amlmodelversions"),
        ("datastore.yaml", "amldatastores"),
    ] {
        let manifest: Value = serde_yaml::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
        let api = support::cluster::dynamic_api(&admin, &ns, manifest["kind"].as_str().unwrap(), plural);
        let name = manifest["metadata"]["name"].as_str().unwrap().to_string();
        api.patch(&name, &PatchParams::apply("kubectl"), &Patch::Apply(&manifest)).await.unwrap_or_else(|e| panic!("{file}: {e}"));
        objects.push((api, name, plural));
    }
    let all_ready = || {
        let objects = objects.clone();
        async move {
            let mut out = Vec::new();
            for (api, name, _) in &objects {
                let obj = serde_json::to_value(api.get(name).await.ok()?).ok()?;
                if !ready(&obj) {
                    return None;
                }
                out.push(obj);
            }
            Some(out)
        }
    };
    let converged = eventually("the examples Ready (kubectl wait --for=condition=Ready)", Duration::from_secs(180), all_ready).await;

    // Printer columns, as `kubectl get` shows them (the server-side Table).
    for (_, name, plural) in &objects {
        let request = http::Request::get(format!("/apis/amloperator.io/v1alpha1/namespaces/{ns}/{plural}/{name}"))
            .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
            .body(Vec::new())
            .unwrap();
        let table: Value = admin.request(request).await.expect("Table");
        let columns: Vec<&str> = table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        let cells = &table["rows"][0]["cells"];
        let cell = |column: &str| cells[columns.iter().position(|c| *c == column).unwrap_or_else(|| panic!("{plural}: no {column} column in {columns:?}"))].clone();
        assert_eq!((cell("State"), cell("Ready"), cell("Reason")), (json!("Succeeded"), json!("True"), json!("Succeeded")), "{plural}: {table}");
    }
    // The endpoint's keys Secret holds ARM's keys and the scoring URI.
    let endpoint = &converged[1];
    let keys = Api::<Secret>::namespaced(admin.clone(), &ns).get("team-a-scoring-keys").await.expect("keys Secret");
    let data = keys.data.clone().unwrap_or_default();
    let decoded = |k: &str| String::from_utf8(data.get(k).unwrap_or_else(|| panic!("keys Secret has no {k}")).0.clone()).unwrap();
    assert_eq!(decoded("scoringUri"), endpoint["status"]["scoringUri"].as_str().unwrap());
    let (primary, secondary) = (decoded("primaryKey"), decoded("secondaryKey"));
    assert!(!primary.is_empty() && !secondary.is_empty());

    // A mutable edit costs exactly one ARM write.
    let ws_api = objects[3].0.clone();
    let ws_id = converged[3]["status"]["armId"].as_str().unwrap().to_string();
    let before = arm_writes(&emulator, &ws_id);
    ws_api.patch("team-a", &PatchParams::apply("kubectl"), &Patch::Apply(&json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace", "metadata": {"name": "team-a"},
        "spec": serde_json::to_value(&converged[3]["spec"]).map(|mut s| { s["friendlyName"] = json!("Team A, edited"); s }).unwrap()
    }))).await.expect("edit accepted");
    eventually("the edit Ready at the new generation", Duration::from_secs(90), || {
        let api = ws_api.clone();
        async move {
            let obj = serde_json::to_value(api.get("team-a").await.ok()?).ok()?;
            (ready(&obj) && obj["metadata"]["generation"] == json!(2)).then_some(())
        }
    })
    .await;
    assert_eq!(emulator.resource(&ws_id).unwrap()["properties"]["friendlyName"], "Team A, edited");
    tokio::time::sleep(Duration::from_secs(3)).await; // a quiet window: no further write may follow
    assert_eq!(arm_writes(&emulator, &ws_id) - before, 1, "one edit, one ARM write");

    // SIGKILL right after ARM accepted a create, then a restart: no second write for it.
    let second: AmlWorkspace = serde_json::from_value(json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace", "metadata": {"name": "team-b", "namespace": ns},
        "spec": {"resourceGroup": "rg-ml", "location": "eastus"}
    }))
    .unwrap();
    let b_id = ws_id.replace("/workspaces/team-a", "/workspaces/team-b");
    Api::<AmlWorkspace>::namespaced(admin.clone(), &ns).patch("team-b", &PatchParams::apply("kubectl"), &Patch::Apply(&second)).await.unwrap();
    eventually("ARM accepts the create", Duration::from_secs(60), || {
        let n = arm_writes(&emulator, &b_id);
        async move { (n > 0).then_some(()) }
    })
    .await;
    let mut first = operator.take().unwrap();
    first.child.kill().expect("SIGKILL");
    let _ = first.child.wait();
    let crashed_output = first.output();
    drop(first);
    let restarted = OperatorProcess::start(&args, &env, &log);
    let b_api: Api<AmlWorkspace> = Api::namespaced(admin.clone(), &ns);
    eventually("team-b Ready after the restart", Duration::from_secs(120), || {
        let api = b_api.clone();
        async move { ready(&serde_json::to_value(api.get("team-b").await.ok()?).ok()?).then_some(()) }
    })
    .await;
    assert_eq!(arm_writes(&emulator, &b_id), 1, "the restarted operator resumed instead of writing again");
    let mut created: Vec<String> = emulator.requests().iter().filter(|r| r.created).map(|r| r.path.to_ascii_lowercase()).collect();
    let all = created.len();
    created.sort();
    created.dedup();
    assert_eq!(created.len(), all, "no Azure resource created twice: {created:?}");
    assert!(created.iter().any(|p| p.ends_with("/workspaces/team-b")), "{created:?}");

    // Nothing secret in the operator's output, Events or any status.
    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(admin.clone(), &ns).list(&Default::default()).await.unwrap();
    assert!(!events.items.is_empty(), "the operator published events");
    let events = serde_json::to_string(&events).unwrap();
    let mut statuses = String::new();
    for (api, name, _) in objects.iter().chain(std::iter::once(&(objects[3].0.clone(), "team-b".to_string(), "amlworkspaces"))) {
        statuses.push_str(&serde_json::to_string(&serde_json::to_value(api.get(name).await.unwrap()).unwrap()["status"]).unwrap());
    }
    let output = crashed_output + &restarted.output();
    assert!(output.contains("DEBUG") || output.contains("\"level\":\"DEBUG\""), "the operator logged at debug level");
    for (what, text) in [("operator output", &output), ("events", &events), ("status", &statuses)] {
        for (name, value) in [("client secret", &planted), ("primary key", &primary), ("secondary key", &secondary)] {
            assert!(!text.contains(value.as_str()), "the {name} appears in the {what}");
        }
    }

    // Deleting the namespace deletes every Azure resource first, then the namespace goes, in an
    // order ARM accepts: not one request refused on the way.
    let before_delete = emulator.requests().len();
    delete_namespace(&admin, &ns, Duration::from_secs(180)).await;
    assert!(emulator.resource_ids().is_empty(), "left in Azure after the namespace went: {:?}", emulator.resource_ids());
    let refused: Vec<String> = emulator.requests()[before_delete..]
        .iter()
        .filter(|r| (400..500).contains(&r.status) && r.status != 404)
        .map(|r| format!("{} {} {}", r.status, r.method, r.path))
        .collect();
    assert!(refused.is_empty(), "ARM refused requests during the namespace deletion: {refused:?}");
    drop(restarted);
    run_helm(&helm, &["uninstall", &release, "--namespace", &op_ns]);
    delete_namespace(&admin, &op_ns, Duration::from_secs(120)).await;
    emulator.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// No hot loops: a failing object costs one try per retry period.

/// One failing object per failure class the emulator can produce, left failing for a fixed window
/// with the operator as its own process; counts what each cost in that window: token requests,
/// ARM requests, status writes (resourceVersion changes seen by a watch) and Event occurrences.
/// The bounds are what the retry policy allows (slow retry 120 s, backoff from 5 s doubling), not
/// what a machine's speed gives.
#[tokio::test]
async fn a_failing_object_costs_one_try_per_retry_period() {
    use aml_operator::emulator::{FaultKind, FaultRule, OperationEnd};
    use futures::StreamExt;
    let Some(admin) = cluster().await else { return };
    aml_operator::install_crypto_provider();
    install_crds(&admin).await;
    let id = std::process::id() % 100000;
    let ns = format!("aml-e2e-budget-{id}");
    create_namespace(&admin, &ns).await;
    // Principals: the good one, one whose Secret holds a wrong secret, one whose token endpoint is down.
    let good = Principal::default();
    let wrong = Principal { tenant_id: "22222222-0000-0000-0000-000000000002".into(), client_id: "22222222-1111-0000-0000-000000000002".into(), client_secret: "the-right-one".into(), ..Principal::default() };
    let down = Principal { tenant_id: "33333333-0000-0000-0000-000000000003".into(), client_id: "33333333-1111-0000-0000-000000000003".into(), ..Principal::default() };
    let (emulator, ca_file) = support::cluster::start_emulator("budget", Duration::from_millis(300), EmulatorConfig { principals: vec![good.clone(), wrong.clone(), down.clone()], ..EmulatorConfig::default() }).await;
    let secrets = Api::<Secret>::namespaced(admin.clone(), &ns);
    for (name, p, secret) in [("aml-credentials", &good, good.client_secret.as_str()), ("wrong", &wrong, "not-the-secret"), ("down", &down, down.client_secret.as_str())] {
        secrets.create(&PostParams::default(), &support::cluster::credentials_secret(name, p, secret)).await.unwrap();
    }
    let status = |status: u16, code: &str| FaultKind::Status { status, code: code.into(), retry_after_secs: None };
    let forever = |path: &str, kind: FaultKind| FaultRule::new(None, Some(path), kind, usize::MAX);
    emulator.inject_rule(forever("/workspaces/c-forbidden", status(403, "AuthorizationFailed")));
    emulator.inject_rule(forever("/workspaces/c-unregistered", status(409, "MissingSubscriptionRegistration")));
    emulator.inject_rule(forever("/workspaces/c-quota", status(400, "QuotaExceeded")));
    emulator.inject_rule(forever("/workspaces/c-bad-name", status(400, "InvalidResourceName")));
    emulator.inject_rule(forever("/workspaces/c-arm-5xx", status(500, "InternalServerError")));
    emulator.inject_rule(FaultRule::new(Some("PUT"), Some("/workspaces/c-op-failed"), FaultKind::OperationEnds { end: OperationEnd::Failed, code: "BadArgument".into() }, usize::MAX));
    emulator.inject_rule(forever(&format!("/{}/oauth2", down.tenant_id), status(503, "temporarily_unavailable")));

    // class, object name, extra spec, the Ready reason it settles on, token tenant to count
    let classes: Vec<(&str, &str, Value, &str, Option<&str>)> = vec![
        ("wrong secret", "c-wrong-secret", json!({"credentials": {"secretName": "wrong"}}), "AuthenticationFailed", Some(wrong.tenant_id.as_str())),
        ("token endpoint down", "c-token-down", json!({"credentials": {"secretName": "down"}}), "TokenEndpointUnavailable", Some(down.tenant_id.as_str())),
        ("missing Secret", "c-no-secret", json!({"credentials": {"secretName": "absent"}}), "CredentialsNotFound", None),
        ("403", "c-forbidden", json!({}), "AuthorizationFailed", None),
        ("subscription not registered", "c-unregistered", json!({}), "SubscriptionNotRegistered", None),
        ("quota", "c-quota", json!({}), "QuotaExceeded", None),
        ("invalid name", "c-bad-name", json!({}), "InvalidResourceName", None),
        ("ARM 5xx", "c-arm-5xx", json!({}), "ArmUnavailable", None),
        ("operation Failed", "c-op-failed", json!({}), "ArmOperationFailed", None),
    ];
    let workspaces: Api<kube::api::DynamicObject> = Api::namespaced_with(admin.clone(), &ns, &kube::api::ApiResource::erase::<AmlWorkspace>(&()));
    for (_, name, extra, _, _) in &classes {
        let mut spec = json!({"resourceGroup": "rg-budget", "location": "eastus"});
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let obj = json!({"apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace", "metadata": {"name": name}, "spec": spec});
        workspaces.patch(name, &PatchParams::apply("kubectl"), &Patch::Apply(&obj)).await.unwrap();
    }
    // Parent not ready: a compute under a workspace that does not exist.
    let computes: Api<kube::api::DynamicObject> = Api::namespaced_with(admin.clone(), &ns, &kube::api::ApiResource::erase::<aml_operator::crd::AmlCompute>(&()));
    let orphan = json!({"apiVersion": "amloperator.io/v1alpha1", "kind": "AmlCompute", "metadata": {"name": "c-no-parent"}, "spec": {
        "workspaceRef": {"name": "not-there"}, "computeType": "AmlCompute", "amlCompute": {"vmSize": "STANDARD_DS3_V2", "scaleSettings": {"maxNodeCount": 1}}}});
    computes.patch("c-no-parent", &PatchParams::apply("kubectl"), &Patch::Apply(&orphan)).await.unwrap();

    let operator = OperatorProcess::for_namespace(&ns, &emulator, &ca_file, &[], &support::temp_path("budget-operator.log"));

    // Warm-up: every object reaches the failure it is left in.
    let reason_of = |obj: &Value| -> Option<String> {
        obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready").and_then(|c| c["reason"].as_str().map(str::to_string))
    };
    let expected: Vec<(String, String)> = classes.iter().map(|(_, n, _, r, _)| (n.to_string(), r.to_string()))
        .chain(std::iter::once(("c-no-parent".to_string(), "WaitingForParent".to_string()))).collect();
    eventually("every object in its failure", Duration::from_secs(90), || {
        let (workspaces, computes, expected) = (workspaces.clone(), computes.clone(), expected.clone());
        async move {
            for (name, reason) in &expected {
                let api = if name == "c-no-parent" { &computes } else { &workspaces };
                let obj = serde_json::to_value(api.get(name).await.ok()?).ok()?;
                if reason_of(&obj).as_deref() != Some(reason.as_str()) {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;

    // The window: watch every object's writes, count ARM and token requests and Events.
    const WINDOW: Duration = Duration::from_secs(30);
    let arm_before = emulator.requests().len();
    let tokens_before: Vec<usize> = classes.iter().map(|c| c.4.map_or(0, |t| emulator.token_requests_for(t))).collect();
    let events_api = Api::<k8s_openapi::api::core::v1::Event>::namespaced(admin.clone(), &ns);
    let occurrences = |events: &[k8s_openapi::api::core::v1::Event], name: &str| -> i64 {
        events.iter().filter(|e| e.involved_object.name.as_deref() == Some(name)).map(|e| i64::from(e.count.unwrap_or(1)).max(e.series.as_ref().map_or(1, |s| i64::from(s.count.unwrap_or(1))))).sum()
    };
    let events_before = events_api.list(&Default::default()).await.unwrap().items;
    let mut writes: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let watch_both = futures::stream::select(
        kube::runtime::watcher(workspaces.clone(), kube::runtime::watcher::Config::default()).boxed(),
        kube::runtime::watcher(computes.clone(), kube::runtime::watcher::Config::default()).boxed(),
    );
    let started = Instant::now();
    let mut seen_rv: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut stream = watch_both;
    while let Ok(Some(event)) = tokio::time::timeout(WINDOW.saturating_sub(started.elapsed()), stream.next()).await {
        let objs = match event {
            Ok(kube::runtime::watcher::Event::Apply(o)) | Ok(kube::runtime::watcher::Event::InitApply(o)) => vec![o],
            _ => vec![],
        };
        for o in objs {
            let name = o.name_any();
            let rv = o.resource_version().unwrap_or_default();
            if let Some(prev) = seen_rv.insert(name.clone(), rv.clone())
                && prev != rv
            {
                *writes.entry(name).or_default() += 1;
            }
        }
    }
    let events_after = events_api.list(&Default::default()).await.unwrap().items;
    let requests = emulator.requests();
    let window_requests = &requests[arm_before.min(requests.len())..];
    let mut report = Vec::new();
    let mut failures = Vec::new();
    // Allowed attempts in the window: slow classes at most one; backoff classes (5 s doubling,
    // already some way up after the warm-up) at most WINDOW / 5 s. An attempt is one request chain.
    for (i, (class, name, _, reason, tenant)) in classes.iter().enumerate() {
        let backoff = matches!(*reason, "ArmUnavailable" | "TokenEndpointUnavailable");
        let attempts = if backoff { (WINDOW.as_secs() / 5) as usize } else { 1 };
        let arm = window_requests.iter().filter(|r| r.path.contains(&format!("/workspaces/{name}"))).count();
        let tokens = tenant.map(|t| emulator.token_requests_for(t) - tokens_before[i]);
        let status_writes = writes.get(*name).copied().unwrap_or(0);
        let events = occurrences(&events_after, name) - occurrences(&events_before, name);
        report.push(format!("{class}: {} tokens, {arm} ARM, {status_writes} status writes, {events} events", tokens.map_or("-".into(), |t| t.to_string())));
        if arm > attempts * 2 || tokens.is_some_and(|t| t > attempts * 2) || status_writes > attempts || events > attempts as i64 {
            failures.push(format!("{class} (allowed {attempts} attempts)"));
        }
    }
    let orphan_writes = writes.get("c-no-parent").copied().unwrap_or(0);
    let orphan_events = occurrences(&events_after, "c-no-parent") - occurrences(&events_before, "c-no-parent");
    report.push(format!("parent not ready: 0 tokens, 0 ARM, {orphan_writes} status writes, {orphan_events} events"));
    if orphan_writes > 1 || orphan_events > 1 {
        failures.push("parent not ready".into());
    }
    println!("failure budget over {}s: {}", WINDOW.as_secs(), report.join("; "));
    assert!(failures.is_empty(), "over budget: {failures:?}\n{}\noperator log tail: {}", report.join("\n"), operator.output().lines().rev().take(20).collect::<Vec<_>>().join("\n"));
    drop(operator);
    // Nothing to delete in Azure: release the objects without an operator.
    for (_, name, _, _, _) in &classes {
        let _ = workspaces.patch(name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await;
    }
    let _ = computes.patch("c-no-parent", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await;
    for s in ["aml-credentials", "wrong", "down"] {
        let _ = secrets.patch(s, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await;
    }
    delete_namespace(&admin, &ns, Duration::from_secs(120)).await;
    emulator.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// A credentials Secret fixed while the operator runs takes effect within seconds.

/// Three workspaces whose credentials are wrong, each through another lookup: a Secret the spec
/// names, the namespace's `aml-credentials`, and the operator-wide default in a third namespace.
/// Fixing each Secret wakes its workspace: Ready within seconds (printed), not at the slow retry
/// (120 s). Two operator processes: one watching namespace `a`, one watching `b` with the default
/// Secret in the operator's namespace (watched on its own, by name).
#[tokio::test]
async fn a_fixed_credentials_secret_wakes_its_objects_within_seconds() {
    let Some(admin) = cluster().await else { return };
    aml_operator::install_crypto_provider();
    install_crds(&admin).await;
    let id = std::process::id() % 100000;
    let (ns_a, ns_b, ns_op) = (format!("aml-e2e-fix-a-{id}"), format!("aml-e2e-fix-b-{id}"), format!("aml-e2e-fix-op-{id}"));
    for ns in [&ns_a, &ns_b, &ns_op] {
        create_namespace(&admin, ns).await;
    }
    let principal = Principal { client_secret: "the-right-one".into(), ..Principal::default() };
    let (emulator, ca_file) = support::cluster::start_emulator("fix", Duration::from_millis(300), EmulatorConfig { principals: vec![principal.clone()], ..EmulatorConfig::default() }).await;
    let secret = |name: &str, client_secret: &str| support::cluster::credentials_secret(name, &principal, client_secret);
    // (namespace, Secret, workspace, extra spec)
    let cases = [
        (&ns_a, "team-sp", "w-named", json!({"credentials": {"secretName": "team-sp"}})),
        (&ns_a, "aml-credentials", "w-namespace", json!({})),
        (&ns_op, "aml-default", "w-default", json!({})),
    ];
    for (ns, name, _, _) in &cases {
        Api::<Secret>::namespaced(admin.clone(), ns).create(&PostParams::default(), &secret(name, "a-wrong-one")).await.unwrap();
    }
    let workspaces = |ns: &str| Api::<kube::api::DynamicObject>::namespaced_with(admin.clone(), ns, &kube::api::ApiResource::erase::<AmlWorkspace>(&()));
    for (ns, _, name, extra) in &cases {
        let ns = if *ns == &ns_op { &ns_b } else { ns };
        let mut spec = json!({"resourceGroup": "rg-fix", "location": "eastus"});
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let obj = json!({"apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace", "metadata": {"name": name}, "spec": spec});
        workspaces(ns).patch(name, &PatchParams::apply("kubectl"), &Patch::Apply(&obj)).await.unwrap();
    }
    let operator_a = OperatorProcess::for_namespace(&ns_a, &emulator, &ca_file, &[], &support::temp_path("fix-operator-a.log"));
    // Every namespace may use the default here (the selector itself: e2e_tenants.rs).
    let default = [format!("--default-credentials={ns_op}/aml-default"), "--default-credentials-namespace-selector=*".to_string()];
    let operator_b = OperatorProcess::for_namespace(&ns_b, &emulator, &ca_file, &default, &support::temp_path("fix-operator-b.log"));

    let reason = |obj: &Value| -> Option<String> {
        obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready").and_then(|c| c["reason"].as_str().map(str::to_string))
    };
    for (ns, _, name, _) in &cases {
        let ns = if *ns == &ns_op { ns_b.clone() } else { ns.to_string() };
        let api = workspaces(&ns);
        eventually(&format!("{name} fails to authenticate"), Duration::from_secs(60), || {
            let api = api.clone();
            async move { (reason(&serde_json::to_value(api.get(name).await.ok()?).ok()?).as_deref() == Some("AuthenticationFailed")).then_some(()) }
        })
        .await;
    }
    // Past the first retry's short waits: without a wake, the next try is the slow retry's.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut report = Vec::new();
    for (ns, secret_name, name, _) in &cases {
        let fixed = json!({"stringData": {"clientSecret": principal.client_secret}});
        let started = Instant::now();
        Api::<Secret>::namespaced(admin.clone(), ns).patch(secret_name, &PatchParams::default(), &Patch::Merge(&fixed)).await.unwrap();
        let ns = if *ns == &ns_op { ns_b.clone() } else { ns.to_string() };
        let api = workspaces(&ns);
        eventually(&format!("{name} Ready after its Secret {secret_name} was fixed"), Duration::from_secs(15), || {
            let api = api.clone();
            async move { ready(&serde_json::to_value(api.get(name).await.ok()?).ok()?).then_some(()) }
        })
        .await;
        report.push(format!("{name} ({secret_name}): Ready {:.1} s after the fix", started.elapsed().as_secs_f64()));
    }
    println!("fixed credentials Secrets: {}", report.join("; "));

    drop((operator_a, operator_b));
    for (ns, _, name, _) in &cases {
        let ns = if *ns == &ns_op { ns_b.clone() } else { ns.to_string() };
        let _ = workspaces(&ns).patch(name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await;
    }
    for (ns, secret_name, _, _) in &cases {
        let _ = Api::<Secret>::namespaced(admin.clone(), ns).patch(secret_name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await;
    }
    for ns in [&ns_a, &ns_b, &ns_op] {
        delete_namespace(&admin, ns, Duration::from_secs(120)).await;
    }
    emulator.shutdown().await;
}
