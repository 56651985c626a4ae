//! A workspace from nothing (issue #14): a resource group and a location are enough. The operator
//! creates the storage account, key vault, Log Analytics workspace and Application Insights
//! component with it — once, whatever restarts — leaves what the spec names alone, and deletes what
//! it created after the workspace.

use crate::support;

use aml_operator::cli::{self, ApplyArgs, ArmSetup, Outcome, PlanArgs, Progress};
use aml_operator::controller::kinds::dependencies::{DependencyKind, dependency_id, generated_names};
use aml_operator::crd::AmlWorkspace;
use aml_operator::emulator::{Emulator, FaultKind, FaultRule};
use serde_json::{Value, json};
use crate::support::{NS, SUBSCRIPTION, World, emulator_config, temp_path};

const RG: &str = "rg-deps";
const WS: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlworkspaces/team-a";
const WS_ID: &str =
    "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-deps/providers/Microsoft.MachineLearningServices/workspaces/team-a";

/// An AmlWorkspace in `RG` with `spec` added to resourceGroup and location.
fn workspace(extra: Value) -> Value {
    let mut spec = json!({"resourceGroup": RG, "location": "eastus"});
    spec.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    json!({
        "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace",
        "metadata": {"name": "team-a", "namespace": NS},
        "spec": spec,
    })
}

/// The ids the operator gives the four dependencies of `WS_ID`.
fn generated(kind: DependencyKind) -> String {
    dependency_id(SUBSCRIPTION, RG, kind, generated_names(WS_ID).of(kind))
}

/// Resources of `resource_type` created so far (PUTs that created one, seen or not by the client).
fn creates(emulator: &Emulator, resource_type: &str) -> usize {
    let segment = format!("/providers/{resource_type}/").to_ascii_lowercase();
    emulator.requests().iter().filter(|r| r.created && r.path.to_ascii_lowercase().contains(&segment)).count()
}

/// Stored resources of `resource_type`.
fn stored(emulator: &Emulator, resource_type: &str) -> Vec<String> {
    let segment = format!("/providers/{resource_type}/").to_ascii_lowercase();
    emulator.resource_ids().into_iter().filter(|id| id.to_ascii_lowercase().contains(&segment)).collect()
}

fn writes_to(emulator: &Emulator, id: &str) -> Vec<String> {
    emulator
        .requests()
        .iter()
        .filter(|r| r.method != "GET" && r.path.eq_ignore_ascii_case(id))
        .map(|r| format!("{} {} -> {}", r.method, r.path, r.status))
        .collect()
}

/// Reconciles (finishing operations between rounds) until the workspace is Ready, restarting the
/// operator before every round when `restart` is set.
async fn converge(w: &mut World, restart: bool) {
    for _ in 0..15 {
        if restart {
            w.restart();
        }
        let _ = w.reconcile::<AmlWorkspace>(WS).await;
        if w.ready(WS).as_deref() == Some("True") {
            return;
        }
        w.emulator.finish_operations();
    }
    panic!("not ready: {:#}", w.kube.raw(WS).unwrap_or_default()["status"]);
}


const TYPES: [&str; 4] = [
    "Microsoft.Storage/storageAccounts",
    "Microsoft.KeyVault/vaults",
    "Microsoft.OperationalInsights/workspaces",
    "Microsoft.Insights/components",
];

#[tokio::test]
async fn a_workspace_from_nothing_creates_its_four_dependencies_once_with_valid_bodies() {
    // Bodies are checked against Microsoft's schemas by the emulator: a 400 would show below.
    let validating = support::validator().is_some();
    let mut w = World::new().await;
    w.good_credentials();
    w.kube.put(workspace(json!({})));
    converge(&mut w, false).await;

    for t in TYPES {
        assert_eq!(creates(&w.emulator, t), 1, "{t} created once: {:?}", w.emulator.resource_ids());
    }
    assert!(
        w.emulator.requests().iter().all(|r| r.status < 400 || r.status == 404),
        "no request refused (validating: {validating}): {:?}",
        w.emulator.requests().iter().filter(|r| r.status >= 400 && r.status != 404).map(|r| format!("{} {} {}", r.method, r.path, r.status)).collect::<Vec<_>>()
    );
    // The bodies: what Azure ML accepts (FACTS §10).
    let storage = w.emulator.resource(&generated(DependencyKind::StorageAccount)).expect("storage account");
    assert_eq!((storage["kind"].as_str(), storage["sku"]["name"].as_str()), (Some("StorageV2"), Some("Standard_LRS")));
    assert_eq!(storage["properties"]["isHnsEnabled"], false);
    assert_eq!(storage["location"], "eastus");
    let vault = w.emulator.resource(&generated(DependencyKind::KeyVault)).expect("key vault");
    assert_eq!(vault["properties"]["tenantId"], aml_operator::emulator::DEFAULT_TENANT_ID, "the principal's tenant");
    assert_eq!(vault["properties"]["accessPolicies"], json!([]), "access-policy model, as az ml");
    assert_eq!(vault["properties"]["enableRbacAuthorization"], false);
    let component = w.emulator.resource(&generated(DependencyKind::ApplicationInsights)).expect("component");
    assert_eq!(component["properties"]["WorkspaceResourceId"], generated(DependencyKind::LogAnalytics), "workspace-based");
    for t in TYPES {
        let id = &stored(&w.emulator, t)[0];
        assert_eq!(w.emulator.resource(id).unwrap()["tags"]["aml-operator-workspace"], WS_ID, "{t} tagged with its workspace");
    }
    // The workspace names them, and its status lists them.
    let ws = w.emulator.resource(WS_ID).expect("workspace");
    assert_eq!(ws["properties"]["storageAccount"], generated(DependencyKind::StorageAccount));
    assert_eq!(ws["properties"]["keyVault"], generated(DependencyKind::KeyVault));
    assert_eq!(ws["properties"]["applicationInsights"], generated(DependencyKind::ApplicationInsights));
    assert!(ws["properties"].get("containerRegistry").is_none_or(Value::is_null), "the registry stays on demand");
    let created = &w.kube.raw(WS).unwrap()["status"]["createdDependencies"];
    assert_eq!(
        created,
        &json!({
            "storageAccount": generated(DependencyKind::StorageAccount),
            "keyVault": generated(DependencyKind::KeyVault),
            "logAnalyticsWorkspace": generated(DependencyKind::LogAnalytics),
            "applicationInsights": generated(DependencyKind::ApplicationInsights),
        })
    );
    // The workspace PUT came after every dependency had succeeded (the emulator refuses it before).
    let ws_put = w.emulator.requests().iter().position(|r| r.method == "PUT" && r.path.eq_ignore_ascii_case(WS_ID)).unwrap();
    let last_dep_put = w.emulator.requests().iter().rposition(|r| r.method == "PUT" && !r.path.contains("MachineLearningServices")).unwrap();
    assert!(last_dep_put < ws_put);

    // Converged: a resync writes nothing.
    w.emulator.clear_requests();
    w.restart();
    let _ = w.reconcile::<AmlWorkspace>(WS).await;
    assert!(w.emulator.requests().iter().all(|r| r.method == "GET"), "{:?}", w.emulator.requests());
}

#[tokio::test]
async fn killing_the_operator_at_each_dependency_step_never_makes_a_second_one() {
    // The write is handled, then the connection dies (as if the operator died right after it), at
    // each dependency's PUT, and the name check; every round runs on a freshly restarted operator.
    for step in ["/storageAccounts/", "/vaults/", "Microsoft.OperationalInsights/workspaces/", "/components/", "/checkNameAvailability"] {
        let mut w = World::new().await;
        w.good_credentials();
        w.emulator.inject_rule(FaultRule::new(None, Some(step), FaultKind::Drop { after_handling: true }, 1));
        w.kube.put(workspace(json!({})));
        converge(&mut w, true).await;
        for t in TYPES {
            assert_eq!(stored(&w.emulator, t).len(), 1, "{step}: one {t}: {:?}", w.emulator.resource_ids());
            assert_eq!(creates(&w.emulator, t), 1, "{step}: {t} created once");
        }
        assert_eq!(w.emulator.pending_faults(), 0, "{step}: the fault fired");
    }
}

#[tokio::test]
async fn restarting_between_every_reconcile_converges_to_one_set() {
    // Operations outlast the first rounds: the dependencies are still provisioning.
    let mut w = World::with_emulator(aml_operator::emulator::EmulatorConfig {
        operation_duration: std::time::Duration::from_secs(30),
        ..emulator_config()
    })
    .await;
    w.good_credentials();
    w.kube.put(workspace(json!({})));
    for _ in 0..3 {
        w.restart();
        let _ = w.reconcile::<AmlWorkspace>(WS).await;
    }
    assert_eq!(w.condition(WS, "Ready").unwrap()["reason"], "CreatingDependencies");
    assert!(w.emulator.resource(WS_ID).is_none(), "no workspace before its dependencies are ready");
    converge(&mut w, true).await;
    for t in TYPES {
        assert_eq!(creates(&w.emulator, t), 1, "{t}");
    }
}

#[tokio::test]
async fn dependencies_the_spec_names_are_used_and_never_touched() {
    let mut w = World::new().await;
    w.good_credentials();
    let storage = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/shared/providers/Microsoft.Storage/storageAccounts/sharedsa");
    w.emulator.insert_resource(&storage, json!({"location": "eastus", "kind": "StorageV2", "sku": {"name": "Standard_LRS"}}));
    w.kube.put(workspace(json!({"storageAccount": storage})));
    converge(&mut w, false).await;
    let ws = w.emulator.resource(WS_ID).unwrap();
    assert_eq!(ws["properties"]["storageAccount"], storage.as_str());
    assert_eq!(ws["properties"]["keyVault"], generated(DependencyKind::KeyVault), "the missing one is created");
    assert_eq!(stored(&w.emulator, "Microsoft.Storage/storageAccounts"), vec![storage.clone()], "no second storage account");
    assert!(w.kube.raw(WS).unwrap()["status"]["createdDependencies"].get("storageAccount").is_none());
    w.delete_until_released::<AmlWorkspace>(WS).await;
    assert!(w.emulator.resource(&storage).is_some(), "the user's storage account survives the workspace");
    assert!(writes_to(&w.emulator, &storage).is_empty(), "{:?}", writes_to(&w.emulator, &storage));
    for t in &TYPES[1..] {
        assert!(stored(&w.emulator, t).is_empty(), "{t} the operator created is deleted");
    }

    // A spec naming both storage and key vault names all it wants: nothing is created.
    let mut w = World::new().await;
    w.good_credentials();
    let vault = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/shared/providers/Microsoft.KeyVault/vaults/shared-kv");
    w.emulator.insert_resource(&storage, json!({"location": "eastus", "kind": "StorageV2", "sku": {"name": "Standard_LRS"}}));
    w.emulator.insert_resource(&vault, json!({"location": "eastus", "properties": {"tenantId": "t", "sku": {"family": "A", "name": "standard"}}}));
    w.kube.put(workspace(json!({"storageAccount": storage, "keyVault": vault})));
    converge(&mut w, false).await;
    assert_eq!(w.emulator.resource_ids().len(), 3, "{:?}", w.emulator.resource_ids());
    w.delete_until_released::<AmlWorkspace>(WS).await;
    let mut left = w.emulator.resource_ids();
    left.sort();
    assert_eq!(left, vec![vault, storage]);
}

#[tokio::test]
async fn without_create_dependencies_a_missing_one_is_stalled_naming_the_field() {
    let w = World::new().await;
    w.good_credentials();
    w.kube.put(workspace(json!({"createDependencies": false})));
    let _ = w.reconcile::<AmlWorkspace>(WS).await;
    let err = w.reconcile::<AmlWorkspace>(WS).await.expect_err("stalled");
    assert_eq!(err.reason(), "DependencyMissing");
    let stalled = w.condition(WS, "Stalled").expect("Stalled");
    assert_eq!(stalled["reason"], "DependencyMissing");
    assert!(stalled["message"].as_str().unwrap().contains("set spec.storageAccount"), "{stalled}");
    assert!(w.emulator.requests().iter().all(|r| r.method == "GET"), "no write: {:?}", w.emulator.requests());
}

#[tokio::test]
async fn a_taken_name_is_stalled_naming_it_and_a_chosen_name_converges() {
    let mut w = World::new().await;
    w.good_credentials();
    // Someone else's storage account, elsewhere in Azure, has the generated name.
    let name = generated_names(WS_ID).storage_account;
    let theirs = format!("/subscriptions/99999999-0000-0000-0000-000000000000/resourceGroups/other/providers/Microsoft.Storage/storageAccounts/{name}");
    w.emulator.insert_resource(&theirs, json!({"location": "westus", "kind": "StorageV2", "sku": {"name": "Standard_LRS"}}));
    w.kube.put(workspace(json!({})));
    let _ = w.reconcile::<AmlWorkspace>(WS).await;
    let err = w.reconcile::<AmlWorkspace>(WS).await.expect_err("stalled");
    assert_eq!(err.reason(), "DependencyNameTaken");
    let message = w.condition(WS, "Stalled").expect("Stalled")["message"].as_str().unwrap().to_string();
    assert!(message.contains(&name) && message.contains("spec.dependencyNames.storageAccount"), "{message}");
    assert!(
        w.emulator.requests().iter().all(|r| r.method == "GET" || r.path.ends_with("/checkNameAvailability")),
        "nothing created before the names are known to be free: {:?}",
        w.emulator.requests()
    );
    // Another name, chosen in the spec.
    w.kube.put(workspace(json!({"dependencyNames": {"storageAccount": "teamachosen1"}})));
    converge(&mut w, false).await;
    assert_eq!(
        w.emulator.resource(WS_ID).unwrap()["properties"]["storageAccount"],
        dependency_id(SUBSCRIPTION, RG, DependencyKind::StorageAccount, "teamachosen1")
    );
    assert!(w.emulator.resource(&theirs).is_some());
}

#[tokio::test]
async fn deleting_removes_what_was_created_after_the_workspace_and_orphan_leaves_it() {
    let mut w = World::new().await;
    w.good_credentials();
    w.kube.put(workspace(json!({})));
    converge(&mut w, false).await;
    w.emulator.clear_requests();
    w.delete_until_released::<AmlWorkspace>(WS).await;
    assert!(w.emulator.resource_ids().is_empty(), "all gone: {:?}", w.emulator.resource_ids());
    let deletes: Vec<String> = w.emulator.requests().iter().filter(|r| r.method == "DELETE").map(|r| r.path.clone()).collect();
    assert!(deletes[0].eq_ignore_ascii_case(WS_ID), "the workspace first: {deletes:?}");
    assert_eq!(deletes.len(), 5, "{deletes:?}");
    // Azure keeps a deleted vault's name: the operator never purges it.
    assert_eq!(w.emulator.deleted_vaults(), vec![generated_names(WS_ID).key_vault]);
    assert!(w.emulator.requests().iter().all(|r| !r.path.to_ascii_lowercase().contains("purge")));
    // So the same workspace again gets the same vault name, held by the deleted vault: Stalled,
    // naming it, and nothing is created before the names are known to be free.
    w.emulator.clear_requests();
    w.kube.put(workspace(json!({})));
    let _ = w.reconcile::<AmlWorkspace>(WS).await;
    let err = w.reconcile::<AmlWorkspace>(WS).await.expect_err("the vault name is reserved");
    assert_eq!(err.reason(), "DependencyNameTaken");
    let message = err.message();
    assert!(message.contains(&generated_names(WS_ID).key_vault) && message.contains("deleted state"), "{message}");
    assert!(message.contains("spec.dependencyNames.keyVault"), "{message}");
    assert!(w.emulator.requests().iter().all(|r| r.method != "PUT"), "{:?}", w.emulator.requests());
    w.kube.put(workspace(json!({"dependencyNames": {"keyVault": "teama-kv-2"}})));
    converge(&mut w, false).await;

    // Orphan: the workspace and everything created for it stay.
    let mut w = World::new().await;
    w.good_credentials();
    w.kube.put(workspace(json!({"deletionPolicy": "Orphan"})));
    converge(&mut w, false).await;
    w.delete_until_released::<AmlWorkspace>(WS).await;
    assert_eq!(w.emulator.resource_ids().len(), 5, "{:?}", w.emulator.resource_ids());
}

#[tokio::test]
async fn drift_on_a_created_dependency_is_repaired() {
    let mut w = World::new().await;
    w.good_credentials();
    w.kube.put(workspace(json!({})));
    converge(&mut w, false).await;
    let storage = generated(DependencyKind::StorageAccount);
    let component = generated(DependencyKind::ApplicationInsights);
    w.emulator.update_resource(&storage, |b| b["properties"]["allowBlobPublicAccess"] = json!(true));
    assert!(w.emulator.remove_resource(&component), "someone deleted the component");
    w.emulator.clear_requests();
    converge(&mut w, true).await;
    let _ = w.reconcile::<AmlWorkspace>(WS).await;
    assert_eq!(w.emulator.resource(&storage).unwrap()["properties"]["allowBlobPublicAccess"], false, "repaired");
    assert!(w.emulator.resource(&component).is_some(), "re-created");
    assert_eq!(writes_to(&w.emulator, &storage).len(), 1, "{:?}", writes_to(&w.emulator, &storage));
    assert_eq!(writes_to(&w.emulator, &component).len(), 1);
}

/// The CLI against one shared emulator: plan lists the four as creates, apply creates them,
/// `apply --delete` removes them all.
#[tokio::test]
async fn plan_lists_them_apply_creates_them_and_apply_delete_removes_them() {
    aml_operator::install_crypto_provider();
    let config = emulator_config();
    let ca = config.ca_file.clone().expect("CA file");
    let emulator = Emulator::start(config).await.expect("emulator");
    let setup = ArmSetup::for_emulator(&emulator, ca, SUBSCRIPTION);
    let dir = temp_path("deps-manifests");
    std::fs::create_dir_all(&dir).unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    std::fs::copy(examples.join("workspace.yaml"), dir.join("workspace.yaml")).unwrap();
    let text = std::fs::read_to_string(dir.join("workspace.yaml")).unwrap();
    let manifest: Value = serde_yaml::from_str(&text).unwrap();
    let spec = manifest["spec"].as_object().unwrap();
    assert_eq!(spec.keys().collect::<Vec<_>>(), vec!["location", "resourceGroup"], "examples/ holds a workspace from nothing");

    let mut out = Vec::new();
    let plan = cli::plan(&PlanArgs { files: vec![dir.clone()], ..PlanArgs::default() }, Some(setup.clone()), &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(plan.exit_code(), 2, "{out}");
    for t in TYPES {
        assert!(out.contains(&format!("+ create {t} ")), "{t} listed: {out}");
    }
    assert!(emulator.requests().iter().all(|r| r.method == "GET"), "plan never writes");

    let args = ApplyArgs { files: vec![dir.clone()], ..ApplyArgs::default() };
    let mut out = Vec::new();
    let report = cli::apply(&args, Some(setup.clone()), &mut out, Progress::Lines).await.unwrap();
    assert_eq!(report.exit_code(), 0, "{}", String::from_utf8_lossy(&out));
    for t in TYPES {
        assert_eq!(stored(&emulator, t).len(), 1, "{t}");
    }
    assert!(emulator.requests().iter().all(|r| r.status < 400 || r.status == 404), "no request refused: {:?}", emulator.requests());

    // Imported, the workspace names its dependencies explicitly and creates none.
    let out_dir = temp_path("deps-imported");
    let args = cli::ImportArgs {
        subscription: SUBSCRIPTION.into(),
        resource_group: "rg-ml".into(),
        workspace: Some("team-a".into()),
        management_policy: aml_operator::crd::ManagementPolicy::Manage,
        output_dir: Some(out_dir.clone()),
        arm: Default::default(),
    };
    let mut out = Vec::new();
    let report = cli::import(&args, Some(setup.clone()), &mut out).await.expect("import runs");
    assert_eq!(report.exit_code(), 0, "{}", String::from_utf8_lossy(&out));
    let imported: Value = serde_yaml::from_str(&std::fs::read_to_string(out_dir.join("amlworkspace-team-a.yaml")).unwrap()).unwrap();
    let ws_id = WS_ID.replace("rg-deps", "rg-ml");
    for (field, kind) in [
        ("storageAccount", DependencyKind::StorageAccount),
        ("keyVault", DependencyKind::KeyVault),
        ("applicationInsights", DependencyKind::ApplicationInsights),
    ] {
        let want = dependency_id(SUBSCRIPTION, "rg-ml", kind, generated_names(&ws_id).of(kind));
        assert_eq!(imported["spec"][field].as_str(), Some(want.as_str()), "{field}: {imported:#}");
    }
    assert_eq!(imported["spec"]["createDependencies"], false);
    let mut out = Vec::new();
    let plan = cli::plan(&PlanArgs { files: vec![out_dir], ..PlanArgs::default() }, Some(setup.clone()), &mut out).await.unwrap();
    assert_eq!(plan.exit_code(), 0, "{}", String::from_utf8_lossy(&out));

    let args = ApplyArgs { files: vec![dir.clone()], delete: true, ..ApplyArgs::default() };
    let mut out = Vec::new();
    let report = cli::apply(&args, Some(setup), &mut out, Progress::Lines).await.unwrap();
    assert_eq!(report.get("AmlWorkspace default/team-a"), Some(&Outcome::Deleted), "{}", String::from_utf8_lossy(&out));
    assert!(emulator.resource_ids().is_empty(), "all gone: {:?}", emulator.resource_ids());
}
