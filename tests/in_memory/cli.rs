//! `aml-operator plan | apply | import` without a cluster: the library entry points against one
//! shared emulator, and the real binary for exit codes and the embedded emulator.


use aml_operator::cli::{self, ApplyArgs, ArmSetup, ImportArgs, PlanArgs, Progress, PlanReport, ApplyReport};
use aml_operator::cli::Outcome;
use aml_operator::controller::plan::{Change, FieldChange};
use aml_operator::crd::ManagementPolicy;
use aml_operator::emulator::Emulator;
use serde_json::json;
use std::path::{Path, PathBuf};
use crate::support::{SUBSCRIPTION, emulator_config, temp_path};

const LABEL: &str = "AmlWorkspace default/team-a";
const ARM_ID: &str =
    "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml/providers/Microsoft.MachineLearningServices/workspaces/team-a";

fn storage(name: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/providers/Microsoft.Storage/storageAccounts/{name}")
}

fn workspace_yaml(friendly: &str, storage_account: &str, location: &str) -> String {
    format!(
        r#"# a comment
apiVersion: amloperator.io/v1alpha1
kind: AmlWorkspace
metadata:
  name: team-a
spec:
  resourceGroup: rg-ml
  location: {location}
  friendlyName: {friendly}
  storageAccount: {storage_account}
  keyVault: /subscriptions/{SUBSCRIPTION}/resourceGroups/rg-ml/providers/Microsoft.KeyVault/vaults/teama-kv
  identity:
    type: SystemAssigned
  tags:
    team: a
"#
    )
}

/// An emulator shared by the commands of one test, and the ARM setup that points at it.
struct Azure {
    emulator: Emulator,
    setup: ArmSetup,
}

impl Azure {
    async fn start() -> Azure {
        aml_operator::install_crypto_provider();
        let config = emulator_config();
        let ca = config.ca_file.clone().expect("tests write the CA file");
        let emulator = Emulator::start(config).await.expect("emulator starts");
        let setup = ArmSetup::for_emulator(&emulator, ca, SUBSCRIPTION);
        Azure { emulator, setup }
    }

    /// ARM requests other than reads.
    fn writes(&self) -> Vec<String> {
        self.emulator
            .requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    async fn plan(&self, files: &[&Path]) -> (PlanReport, String) {
        let args = PlanArgs { files: files.iter().map(|p| p.to_path_buf()).collect(), ..PlanArgs::default() };
        let mut out = Vec::new();
        let report = cli::plan(&args, Some(self.setup.clone()), &mut out).await.expect("plan runs");
        (report, String::from_utf8(out).expect("utf-8"))
    }

    async fn apply(&self, files: &[&Path], delete: bool) -> (ApplyReport, String) {
        let args = ApplyArgs { files: files.iter().map(|p| p.to_path_buf()).collect(), delete, ..ApplyArgs::default() };
        let mut out = Vec::new();
        let report = cli::apply(&args, Some(self.setup.clone()), &mut out, Progress::Lines).await.expect("apply runs");
        (report, String::from_utf8(out).expect("utf-8"))
    }
}

/// A fresh folder holding `files` (relative path, content).
fn folder(files: &[(&str, &str)]) -> PathBuf {
    let dir = temp_path("manifests");
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(path, text).expect("write manifest");
    }
    dir
}

#[tokio::test]
async fn plan_of_a_fresh_folder_lists_creates_and_makes_no_arm_write() {
    let azure = Azure::start().await;
    let dir = folder(&[("ws.yaml", &workspace_yaml("Team A", &storage("teamasa"), "eastus"))]);

    let (report, out) = azure.plan(&[&dir]).await;

    assert_eq!(report.exit_code(), 2, "changes pending:\n{out}");
    assert_eq!(report.get(LABEL).map(|p| &p.change), Some(&Change::Create));
    assert!(out.contains(&format!("{LABEL}: create {ARM_ID}")), "{out}");
    assert!(out.contains("Plan: 1 to create, 0 to update, 0 to recreate, 0 unchanged, 0 blocked."), "{out}");
    assert!(azure.writes().is_empty(), "plan wrote to ARM: {:?}", azure.writes());
    assert!(!azure.emulator.requests().is_empty(), "plan read ARM");
    assert!(azure.emulator.resource(ARM_ID).is_none());
}

#[tokio::test]
async fn apply_converges_prints_statuses_and_a_second_plan_has_no_changes() {
    let azure = Azure::start().await;
    let dir = folder(&[("ws.yaml", &workspace_yaml("Team A", &storage("teamasa"), "eastus"))]);

    let (report, out) = azure.apply(&[&dir], false).await;

    assert_eq!(report.exit_code(), 0, "{out}");
    assert_eq!(report.get(LABEL), Some(&Outcome::Ready));
    let arm = azure.emulator.resource(ARM_ID).expect("created in Azure");
    assert_eq!(arm["properties"]["friendlyName"], "Team A");
    assert!(out.contains("---\napiVersion: amloperator.io/v1alpha1\nkind: AmlWorkspace\n"), "{out}");
    assert!(out.contains("provisioningState: Succeeded"), "{out}");
    assert!(out.contains(&format!("armId: {ARM_ID}")), "{out}");
    assert!(out.contains("type: Ready"), "{out}");
    assert!(out.contains(&format!("{LABEL}: ready")), "{out}");
    let status = &report.statuses[0]["status"];
    assert_eq!(status["conditions"][0]["status"], "True");
    assert!(status["workspaceId"].as_str().is_some_and(|s| !s.is_empty()));
    let puts = azure.writes().iter().filter(|w| w.starts_with("PUT")).count();
    assert_eq!(puts, 1, "one PUT creates the workspace: {:?}", azure.writes());

    azure.emulator.clear_requests();
    let (report, out) = azure.plan(&[&dir]).await;
    assert_eq!(report.exit_code(), 0, "{out}");
    assert_eq!(report.get(LABEL).map(|p| &p.change), Some(&Change::NoChange));
    assert!(out.contains(&format!("{LABEL}: no change")), "{out}");
    assert!(azure.writes().is_empty());
}

#[tokio::test]
async fn an_edited_mutable_field_plans_as_a_one_field_update_and_apply_makes_it() {
    let azure = Azure::start().await;
    let dir = folder(&[("ws.yaml", &workspace_yaml("Team A", &storage("teamasa"), "eastus"))]);
    azure.apply(&[&dir], false).await;
    std::fs::write(dir.join("ws.yaml"), workspace_yaml("Team B", &storage("teamasa"), "eastus")).expect("edit");
    azure.emulator.clear_requests();

    let (report, out) = azure.plan(&[&dir]).await;

    assert_eq!(report.exit_code(), 2, "{out}");
    let planned = report.get(LABEL).expect("planned");
    assert_eq!(planned.change, Change::Update);
    assert_eq!(
        planned.fields,
        vec![FieldChange {
            path: "/properties/friendlyName".into(),
            before: Some(json!("Team A")),
            after: Some(json!("Team B")),
        }]
    );
    assert!(out.contains(r#"    ~ /properties/friendlyName: "Team A" -> "Team B""#), "{out}");
    assert!(azure.writes().is_empty());

    let (report, _) = azure.apply(&[&dir], false).await;
    assert_eq!(report.exit_code(), 0);
    assert_eq!(azure.emulator.resource(ARM_ID).expect("exists")["properties"]["friendlyName"], "Team B");
    assert_eq!(azure.plan(&[&dir]).await.0.exit_code(), 0);
}

#[tokio::test]
async fn an_edited_immutable_field_plans_as_recreate_naming_the_field() {
    let azure = Azure::start().await;
    let dir = folder(&[("ws.yaml", &workspace_yaml("Team A", &storage("teamasa"), "eastus"))]);
    azure.apply(&[&dir], false).await;
    azure.emulator.clear_requests();

    std::fs::write(dir.join("ws.yaml"), workspace_yaml("Team A", &storage("othersa"), "eastus")).expect("edit");
    let (report, out) = azure.plan(&[&dir]).await;
    assert_eq!(report.exit_code(), 2, "{out}");
    assert_eq!(
        report.get(LABEL).map(|p| &p.change),
        Some(&Change::Recreate { immutable: vec!["/properties/storageAccount".into()] })
    );
    assert!(out.contains("recreate needed"), "{out}");
    assert!(out.contains("/properties/storageAccount cannot change in place"), "{out}");

    std::fs::write(dir.join("ws.yaml"), workspace_yaml("Team B", &storage("teamasa"), "westeurope")).expect("edit");
    let (report, _) = azure.plan(&[&dir]).await;
    assert_eq!(report.get(LABEL).map(|p| &p.change), Some(&Change::Recreate { immutable: vec!["/location".into()] }));
    let paths: Vec<_> = report.get(LABEL).expect("planned").fields.iter().map(|f| f.path.clone()).collect();
    assert_eq!(paths, vec!["/location", "/properties/friendlyName"], "every differing field is listed");
    assert!(azure.writes().is_empty());
}

#[tokio::test]
async fn import_of_applied_resources_round_trips_to_manifests_that_plan_as_no_change() {
    let azure = Azure::start().await;
    let dir = folder(&[("ws.yaml", &workspace_yaml("Team A", &storage("teamasa"), "eastus"))]);
    azure.apply(&[&dir], false).await;
    // A second workspace with a name that is not a Kubernetes name, made outside the operator.
    azure.emulator.insert_resource(
        &ARM_ID.replace("team-a", "Legacy_WS"),
        json!({"location": "eastus", "properties": {"friendlyName": "Legacy", "description": "made in the portal"}}),
    );

    for policy in [ManagementPolicy::Manage, ManagementPolicy::Observe] {
        let out_dir = temp_path("imported");
        let args = ImportArgs {
            subscription: SUBSCRIPTION.into(),
            resource_group: "rg-ml".into(),
            workspace: None,
            management_policy: policy,
            output_dir: Some(out_dir.clone()),
            arm: Default::default(),
        };
        let mut out = Vec::new();
        azure.emulator.clear_requests();
        let report = cli::import(&args, Some(azure.setup.clone()), &mut out).await.expect("import runs");
        assert_eq!(report.exit_code(), 0, "{}", String::from_utf8_lossy(&out));
        assert!(azure.writes().is_empty(), "import only reads");
        let mut names: Vec<_> = report.manifests.iter().map(|m| m.name.clone()).collect();
        names.sort();
        assert_eq!(names, vec!["legacy-ws", "team-a"]);

        let text = std::fs::read_to_string(out_dir.join("amlworkspace-team-a.yaml")).expect("written");
        for read_only in ["provisioningState", "workspaceId", "discoveryUrl", "mlFlowTrackingUri", "tenantId", "principalId", "systemData", "hbiWorkspace"] {
            assert!(!text.contains(read_only), "{read_only} in imported manifest:\n{text}");
        }
        assert!(text.contains("friendlyName: Team A"), "{text}");
        assert!(text.contains(&format!("storageAccount: {}", storage("teamasa"))), "{text}");
        assert!(text.contains("keyVault: ") && text.contains("createDependencies: false"), "dependencies named explicitly: {text}");
        assert!(text.contains(&format!("managementPolicy: {policy:?}")), "{text}");
        let legacy = std::fs::read_to_string(out_dir.join("amlworkspace-legacy-ws.yaml")).expect("written");
        assert!(legacy.contains("azureName: Legacy_WS"), "{legacy}");

        azure.emulator.clear_requests();
        let (plan, out) = azure.plan(&[&out_dir]).await;
        assert_eq!(plan.exit_code(), 0, "imported manifests plan as no change:\n{out}");
        assert_eq!(plan.entries.len(), 2);
        assert!(azure.writes().is_empty());
    }
}

#[tokio::test]
async fn import_of_one_workspace_prints_a_yaml_stream() {
    let azure = Azure::start().await;
    let dir = folder(&[("ws.yaml", &workspace_yaml("Team A", &storage("teamasa"), "eastus"))]);
    azure.apply(&[&dir], false).await;
    azure.emulator.insert_resource(&ARM_ID.replace("team-a", "other"), json!({"location": "eastus", "properties": {}}));
    let args = ImportArgs {
        subscription: SUBSCRIPTION.into(),
        resource_group: "rg-ml".into(),
        workspace: Some("TEAM-A".into()),
        management_policy: ManagementPolicy::Observe,
        output_dir: None,
        arm: Default::default(),
    };
    let mut out = Vec::new();
    let report = cli::import(&args, Some(azure.setup.clone()), &mut out).await.expect("import runs");
    let out = String::from_utf8(out).expect("utf-8");
    assert_eq!(report.manifests.len(), 1, "{out}");
    let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&out)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .filter(|v: &serde_json::Value| !v.is_null())
        .collect();
    assert_eq!(docs.len(), 1, "{out}");
    assert_eq!(docs[0]["metadata"]["name"], "team-a");
    assert_eq!(docs[0]["spec"]["managementPolicy"], "Observe");
    assert!(docs[0].get("status").is_none(), "{out}");
}

#[tokio::test]
async fn apply_delete_removes_the_resources_from_azure() {
    let azure = Azure::start().await;
    let dir = folder(&[("ws.yaml", &workspace_yaml("Team A", &storage("teamasa"), "eastus"))]);
    azure.apply(&[&dir], false).await;
    assert!(azure.emulator.resource(ARM_ID).is_some());

    let (report, out) = azure.apply(&[&dir], true).await;

    assert_eq!(report.exit_code(), 0, "{out}");
    assert_eq!(report.get(LABEL), Some(&Outcome::Deleted), "{out}");
    assert!(out.contains(&format!("{LABEL}: deleted in Azure")), "{out}");
    assert!(azure.emulator.resource(ARM_ID).is_none(), "gone from Azure");
    assert!(azure.writes().iter().any(|w| w.starts_with("DELETE") && w.ends_with("/workspaces/team-a")));

    // Deleting again finds nothing to delete and writes nothing.
    azure.emulator.clear_requests();
    let (report, _) = azure.apply(&[&dir], true).await;
    assert_eq!(report.get(LABEL), Some(&Outcome::Absent));
    assert!(azure.writes().is_empty());
    assert_eq!(azure.plan(&[&dir]).await.0.get(LABEL).map(|p| p.change.clone()), Some(Change::Create));
}

#[tokio::test]
async fn unknown_kinds_are_reported_and_skipped_and_folders_are_read_recursively() {
    let azure = Azure::start().await;
    let stream = format!(
        "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: b\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
        workspace_yaml("Team A", &storage("teamasa"), "eastus")
    );
    let dir = folder(&[("nested/deeper/all.yml", &stream), ("README.md", "not a manifest"), ("x.yaml.template", "kind: [")]);

    let (report, out) = azure.plan(&[&dir]).await;

    assert_eq!(report.entries.len(), 1, "{out}");
    assert_eq!(report.skipped.len(), 2, "{:?}", report.skipped);
    assert!(out.contains("skipped: ") && out.contains("all.yml#2: unknown kind ConfigMap (v1)"), "{out}");
    assert!(out.contains("all.yml#3: unknown kind Widget (example.com/v1)"), "{out}");
    assert_eq!(report.exit_code(), 2);
}

#[tokio::test]
async fn a_secret_in_the_manifests_supplies_credentials_and_without_one_objects_are_blocked() {
    let azure = Azure::start().await;
    let mut no_principal = azure.setup.clone();
    no_principal.principal = None;
    let ws = workspace_yaml("Team A", &storage("teamasa"), "eastus");
    let dir = folder(&[("ws.yaml", &ws)]);
    let args = PlanArgs { files: vec![dir.clone()], ..PlanArgs::default() };

    let mut out = Vec::new();
    let report = cli::plan(&args, Some(no_principal.clone()), &mut out).await.expect("plan runs");
    let out = String::from_utf8(out).expect("utf-8");
    assert_eq!(report.exit_code(), 1, "{out}");
    assert!(
        matches!(&report.get(LABEL).expect("planned").change, Change::Blocked { reason, .. } if reason == "CredentialsNotFound"),
        "{out}"
    );
    assert!(out.contains("blocked: CredentialsNotFound: credentials Secret default/aml-credentials not found"), "{out}");
    assert!(azure.emulator.requests().is_empty(), "no ARM call without credentials");

    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: aml-credentials\nstringData:\n  tenantId: {}\n  clientId: {}\n  clientSecret: {}\n  subscriptionId: {SUBSCRIPTION}\n",
        aml_operator::emulator::DEFAULT_TENANT_ID,
        aml_operator::emulator::DEFAULT_CLIENT_ID,
        aml_operator::emulator::DEFAULT_CLIENT_SECRET,
    );
    std::fs::write(dir.join("secret.yaml"), secret).expect("write");
    let mut out = Vec::new();
    let report = cli::plan(&args, Some(no_principal), &mut out).await.expect("plan runs");
    assert_eq!(report.get(LABEL).map(|p| &p.change), Some(&Change::Create), "{}", String::from_utf8_lossy(&out));
    assert!(!String::from_utf8_lossy(&out).contains(aml_operator::emulator::DEFAULT_CLIENT_SECRET));
}

#[tokio::test]
async fn an_observed_workspace_that_does_not_exist_is_blocked_and_never_created() {
    let azure = Azure::start().await;
    let ws = workspace_yaml("Team A", &storage("teamasa"), "eastus").replace("spec:\n", "spec:\n  managementPolicy: Observe\n");
    let dir = folder(&[("ws.yaml", &ws)]);
    let (report, out) = azure.plan(&[&dir]).await;
    assert!(
        matches!(&report.get(LABEL).expect("planned").change, Change::Blocked { reason, .. } if reason == "NotFoundInAzure"),
        "{out}"
    );
    let (report, out) = azure.apply(&[&dir], false).await;
    assert!(matches!(report.get(LABEL), Some(Outcome::Settled(_))), "{out}");
    assert!(azure.writes().is_empty());
}

#[tokio::test]
async fn an_invalid_manifest_is_an_error_naming_the_file() {
    let azure = Azure::start().await;
    let dir = folder(&[("bad.yaml", "apiVersion: amloperator.io/v1alpha1\nkind: AmlWorkspace\nmetadata:\n  name: x\nspec:\n  location: eastus\n")]);
    let args = PlanArgs { files: vec![dir], ..PlanArgs::default() };
    let err = cli::plan(&args, Some(azure.setup.clone()), &mut Vec::new()).await.expect_err("invalid");
    let text = err.to_string();
    assert!(text.contains("bad.yaml") && text.contains("resourceGroup"), "{text}");
}

#[tokio::test]
async fn a_field_of_the_wrong_shape_is_an_error_naming_its_path() {
    let azure = Azure::start().await;
    // userAssignedIdentities written as a map, as in Microsoft's REST examples; the spec takes a list.
    let manifest = "apiVersion: amloperator.io/v1alpha1\nkind: AmlWorkspace\nmetadata:\n  name: team-x\nspec:\n  resourceGroup: rg\n  location: eastus\n  identity:\n    type: UserAssigned\n    userAssignedIdentities:\n      /subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1: {}\n";
    let dir = folder(&[("identity.yaml", manifest)]);
    let args = PlanArgs { files: vec![dir], ..PlanArgs::default() };
    let err = cli::plan(&args, Some(azure.setup.clone()), &mut Vec::new()).await.expect_err("wrong shape");
    let text = err.to_string();
    assert!(text.contains("identity.yaml") && text.contains("spec.identity.userAssignedIdentities: invalid type: map, expected a sequence"), "{text}");
}

// The binary: exit codes and the embedded emulator.

fn binary(args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_aml-operator"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    for var in [
        "AML_ARM_ENDPOINT",
        "AZURE_AUTHORITY_HOST",
        "AML_CA_FILE",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_SUBSCRIPTION_ID",
    ] {
        cmd.env_remove(var);
    }
    cmd.output().expect("binary runs")
}

#[test]
fn the_binary_uses_the_embedded_emulator_when_no_azure_is_configured() {
    let plan = binary(&["plan", "-f", "examples/"]);
    let stdout = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(plan.status.code(), Some(2), "plan of examples/ has changes pending:\n{stdout}\n{}", String::from_utf8_lossy(&plan.stderr));
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("using the embedded ARM emulator at https://127.0.0.1:") && first.ends_with("(no Azure configured)"),
        "first line: {first:?}"
    );
    assert!(stdout.contains("AmlWorkspace default/team-a: create"), "{stdout}");
    assert!(!stdout.contains("Secret"), "the template Secret is not read: {stdout}");

    let started = std::time::Instant::now();
    let apply = binary(&["apply", "-f", "examples/"]);
    let stdout = String::from_utf8_lossy(&apply.stdout);
    assert_eq!(apply.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&apply.stderr));
    assert!(stdout.lines().next().unwrap_or_default().starts_with("using the embedded ARM emulator"), "{stdout}");
    assert!(stdout.contains("AmlWorkspace default/team-a: ready"), "{stdout}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "apply of the examples takes seconds");
}

#[test]
fn the_binary_exits_1_on_errors() {
    let dir = folder(&[("bad.yaml", "apiVersion: amloperator.io/v1alpha1\nkind: AmlWorkspace\nmetadata:\n  name: x\nspec: {}\n")]);
    let out = binary(&["plan", "-f", dir.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid AmlWorkspace"), "{}", String::from_utf8_lossy(&out.stderr));

    let missing = binary(&["plan", "-f", "/nonexistent/manifests"]);
    assert_eq!(missing.status.code(), Some(1));
}

#[tokio::test]
async fn import_without_a_principal_says_which_variables_to_set() {
    let azure = Azure::start().await;
    let mut setup = azure.setup.clone();
    setup.principal = None;
    let args = ImportArgs {
        subscription: SUBSCRIPTION.into(),
        resource_group: "rg-ml".into(),
        workspace: None,
        management_policy: ManagementPolicy::Observe,
        output_dir: None,
        arm: Default::default(),
    };
    let err = cli::import(&args, Some(setup), &mut Vec::new()).await.expect_err("no principal");
    assert!(err.to_string().contains("AZURE_CLIENT_SECRET"), "{err}");
    assert!(azure.emulator.requests().is_empty());
}

/// The whole examples/ folder (every kind): apply converges, plan is then clean, and a
/// create-only compute field plans as recreate.
#[tokio::test]
async fn the_examples_apply_plan_clean_and_a_compute_vm_size_edit_needs_a_recreate() {
    let azure = Azure::start().await;
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files = Vec::new();
    for name in [
        "workspace.yaml",
        "compute.yaml",
        "datastore.yaml",
        "model.yaml",
        "environment.yaml",
        "code.yaml",
        "endpoint.yaml",
        "deployment.yaml",
        "role-assignment.yaml",
    ] {
        files.push((name, std::fs::read_to_string(examples.join(name)).unwrap()));
    }
    let dir = folder(&files.iter().map(|(n, t)| (*n, t.as_str())).collect::<Vec<_>>());
    let (report, out) = azure.apply(&[&dir], false).await;
    assert_eq!(report.exit_code(), 0, "{out}");
    azure.emulator.clear_requests();
    let (report, out) = azure.plan(&[&dir]).await;
    assert_eq!(report.exit_code(), 0, "all planned as no change: {out}");

    // Import brings back every kind, as manifests that plan as no change.
    let out_dir = temp_path("imported-stack");
    let args = ImportArgs {
        subscription: SUBSCRIPTION.into(),
        resource_group: "rg-ml".into(),
        workspace: None,
        management_policy: ManagementPolicy::Manage,
        output_dir: Some(out_dir.clone()),
        arm: Default::default(),
    };
    let mut imported = Vec::new();
    let report = cli::import(&args, Some(azure.setup.clone()), &mut imported).await.expect("import runs");
    assert_eq!(report.exit_code(), 0, "{}", String::from_utf8_lossy(&imported));
    let mut kinds: Vec<_> = report.manifests.iter().map(|m| m.kind).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            "AmlCodeVersion",
            "AmlCompute",
            "AmlDatastore",
            "AmlEnvironmentVersion",
            "AmlModelVersion",
            "AmlOnlineDeployment",
            "AmlOnlineEndpoint",
            "AmlRoleAssignment",
            "AmlWorkspace"
        ]
    );
    let model = std::fs::read_to_string(out_dir.join("amlmodelversion-sklearn-model-1.yaml")).unwrap();
    assert!(
        model.contains("azureName: sklearn-model") && model.contains("version: '1'") && model.contains("modelUri: azureml://datastores/training_data/paths/models/sklearn/1/"),
        "{model}"
    );
    let role = std::fs::read_to_string(out_dir.join("amlroleassignment-team-a-azuremldatascientist-3f2c1a9e.yaml")).unwrap();
    assert!(
        role.contains("role: AzureMLDataScientist") && role.contains("principalType: Group") && !role.contains("azureName"),
        "{role}"
    );
    let endpoint = std::fs::read_to_string(out_dir.join("amlonlineendpoint-scoring.yaml")).unwrap();
    assert!(endpoint.contains("workspaceRef") && endpoint.contains("authMode: Key") && !endpoint.contains("scoringUri"), "{endpoint}");
    let deployment = std::fs::read_to_string(out_dir.join("amlonlinedeployment-blue.yaml")).unwrap();
    assert!(deployment.contains("instanceCount: 1") && deployment.contains("name: scoring"), "{deployment}");
    azure.emulator.clear_requests();
    let (report, out) = azure.plan(&[&out_dir]).await;
    assert_eq!(report.exit_code(), 0, "imported stack plans as no change: {out}");
    assert!(azure.writes().is_empty());

    let compute = std::fs::read_to_string(dir.join("compute.yaml")).unwrap().replace("STANDARD_DS3_V2", "STANDARD_NC6");
    std::fs::write(dir.join("compute.yaml"), compute).unwrap();
    let (report, out) = azure.plan(&[&dir]).await;
    assert_eq!(report.exit_code(), 2, "{out}");
    assert_eq!(
        report.get("AmlCompute default/cpu-cluster").map(|p| &p.change),
        Some(&Change::Recreate { immutable: vec!["/properties/properties/vmSize".into()] }),
        "{out}"
    );
    assert!(azure.writes().is_empty(), "plan never writes");
}

// Separate processes against an ARM that keeps its state: `aml-operator emulator` standing in for
// Azure, and each `apply`, `apply --delete` and `plan` a process of its own, as a user runs them.

/// `aml-operator emulator` as its own process, on a free port; killed when dropped.
struct EmulatorProcess {
    child: std::process::Child,
    arm_endpoint: String,
    ca_file: PathBuf,
    /// What it printed at start.
    banner: String,
}

impl EmulatorProcess {
    fn start() -> EmulatorProcess {
        use std::io::BufRead;
        let ca_file = temp_path("standalone-ca.pem");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_aml-operator"));
        cmd.args(["emulator", "--port", "0", "--operation-seconds", "1", "--ca-file"]).arg(&ca_file);
        match crate::support::specs_dir_for_tests() {
            Some(dir) => cmd.arg("--arm-specs").arg(dir),
            None => cmd.env_remove(aml_operator::armspec::SPECS_ENV),
        };
        let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().expect("emulator starts");
        let stdout = child.stdout.take().expect("piped");
        let mut arm_endpoint = None;
        let mut banner = String::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.expect("emulator output");
            banner.push_str(&line);
            banner.push('\n');
            if let Some(url) = line.trim().strip_prefix("ARM endpoint:") {
                arm_endpoint = Some(url.trim().to_string());
            }
            if line.starts_with("Press Ctrl-C") {
                break;
            }
        }
        EmulatorProcess { child, arm_endpoint: arm_endpoint.expect("the emulator prints its ARM endpoint"), ca_file, banner }
    }

    /// Runs the binary against this emulator with `args`, failing the test if it takes longer than
    /// `limit`: (exit code, stdout).
    fn run(&self, args: &[&str], limit: std::time::Duration) -> (i32, String) {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_aml-operator"));
        cmd.args(args)
            .env("AML_ARM_ENDPOINT", &self.arm_endpoint)
            .env("AZURE_AUTHORITY_HOST", format!("{}/", self.arm_endpoint))
            .env("AML_CA_FILE", &self.ca_file)
            .env("AZURE_TENANT_ID", aml_operator::emulator::DEFAULT_TENANT_ID)
            .env("AZURE_CLIENT_ID", aml_operator::emulator::DEFAULT_CLIENT_ID)
            .env("AZURE_CLIENT_SECRET", aml_operator::emulator::DEFAULT_CLIENT_SECRET)
            .env("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let child = cmd.spawn().expect("binary runs");
        let pid = child.id();
        let started = std::time::Instant::now();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let output = match rx.recv_timeout(limit) {
            Ok(output) => output.expect("output"),
            Err(_) => {
                let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                panic!("`aml-operator {}` still running after {limit:?}", args.join(" "));
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        println!("aml-operator {} -> exit {:?} in {:.1}s", args.join(" "), output.status.code(), started.elapsed().as_secs_f64());
        (output.status.code().unwrap_or(-1), stdout + &String::from_utf8_lossy(&output.stderr))
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The examples in a folder of their own, in resource group `rg`: a workspace deleted in one
/// resource group leaves its soft-deleted vault's name taken there, so each round uses another.
fn examples_in(rg: &str, edit: &[(&str, &str, &str)]) -> PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let dir = temp_path(&format!("examples-{rg}"));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let mut text = std::fs::read_to_string(&path).unwrap().replace("resourceGroup: rg-ml", &format!("resourceGroup: {rg}"));
        for (file, from, to) in edit {
            if *file == name {
                assert!(text.contains(from), "{name} has no {from:?}");
                text = text.replace(from, to);
            }
        }
        std::fs::write(dir.join(&name), text).unwrap();
    }
    dir
}

/// The nine objects of the examples and the four dependencies the workspace creates.
const EXAMPLE_RESOURCES: usize = 13;

fn plan_line(out: &str) -> &str {
    out.lines().find(|l| l.starts_with("Plan: ")).unwrap_or_else(|| panic!("no Plan line in {out}"))
}

#[test]
fn apply_and_delete_in_separate_processes_against_an_emulator_that_keeps_state() {
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(120);
    let azure = EmulatorProcess::start();
    let path = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    let all_absent = format!("Plan: {EXAMPLE_RESOURCES} to create, 0 to update, 0 to recreate, 0 unchanged, 0 blocked.");
    let labels = [
        "AmlWorkspace default/team-a",
        "AmlCompute default/cpu-cluster",
        "AmlDatastore default/training-data",
        "AmlModelVersion default/sklearn-model-1",
        "AmlEnvironmentVersion default/sklearn-env-1",
        "AmlCodeVersion default/score-code-1",
        "AmlOnlineEndpoint default/scoring",
        "AmlRoleAssignment default/team-a-data-scientists",
        "AmlOnlineDeployment default/blue",
    ];

    // The whole folder: apply, then delete in a new process, then delete again (a no-op).
    let dir = path(&examples_in("rg-whole", &[]));
    let (code, out) = azure.run(&["apply", "-f", &dir], LIMIT);
    assert_eq!(code, 0, "{out}");
    let (code, out) = azure.run(&["plan", "-f", &dir], LIMIT);
    assert_eq!((code, plan_line(&out)), (0, "Plan: 0 to create, 0 to update, 0 to recreate, 9 unchanged, 0 blocked."), "{out}");
    let (code, out) = azure.run(&["apply", "-f", &dir, "--delete"], LIMIT);
    assert_eq!(code, 0, "{out}");
    for label in labels {
        assert!(out.contains(&format!("{label}: deleted in Azure")), "{label}: {out}");
    }
    let (_, out) = azure.run(&["plan", "-f", &dir], LIMIT);
    assert_eq!(plan_line(&out), all_absent, "everything the manifests describe is gone from Azure: {out}");
    let (code, out) = azure.run(&["apply", "-f", &dir, "--delete"], LIMIT);
    assert_eq!(code, 0, "{out}");
    for label in labels {
        assert!(out.contains(&format!("{label}: not in Azure, nothing to delete")), "{label}: {out}");
    }

    // Subsets. Only the deployment, without its parents' manifests: where it is is unknown, and
    // the answer says how to give them. With them as --context: its endpoint routes all traffic to
    // it, which ARM would refuse to delete; the answer says what to change, and nothing is touched.
    let dir = path(&examples_in("rg-subset", &[]));
    assert_eq!(azure.run(&["apply", "-f", &dir], LIMIT).0, 0);
    let deployment = format!("{dir}/deployment.yaml");
    let (code, out) = azure.run(&["apply", "-f", &deployment, "--delete"], LIMIT);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("AmlOnlineDeployment default/blue: FAILED: WaitingForParent") && out.contains("--context"), "{out}");
    let (code, out) = azure.run(&["apply", "-f", &deployment, "--delete", "--context", &dir], LIMIT);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("AmlOnlineDeployment default/blue: FAILED: WaitingForTrafficRemoval") && out.contains("spec.traffic"), "{out}");
    assert!(!out.contains("AmlWorkspace default/team-a:"), "context objects are not reported: {out}");
    let (code, out) = azure.run(&["plan", "-f", &dir], LIMIT);
    assert_eq!(code, 0, "nothing was touched: {out}");
    // Only the compute (its parent as context): the compute goes, nothing else.
    let (code, out) = azure.run(&["apply", "-f", &format!("{dir}/compute.yaml"), "--delete", "--context", &dir], LIMIT);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("AmlCompute default/cpu-cluster: deleted in Azure"), "{out}");
    let (_, out) = azure.run(&["plan", "-f", &dir], LIMIT);
    assert_eq!(plan_line(&out), "Plan: 1 to create, 0 to update, 0 to recreate, 8 unchanged, 0 blocked.", "{out}");
    // Only the workspace: ARM deletes its children with it.
    let (code, out) = azure.run(&["apply", "-f", &format!("{dir}/workspace.yaml"), "--delete"], LIMIT);
    assert_eq!(code, 0, "{out}");
    let (_, out) = azure.run(&["plan", "-f", &dir], LIMIT);
    assert_eq!(plan_line(&out), all_absent, "the workspace took its children with it: {out}");

    // The whole folder with one object already gone in Azure (the compute), and a deployment the
    // endpoint sends no traffic, deleted on its own.
    let dir = path(&examples_in("rg-gone", &[("endpoint.yaml", "traffic:\n    blue: 100", "traffic: {}")]));
    let (code, out) = azure.run(&["apply", "-f", &dir], LIMIT);
    assert_eq!(code, 0, "{out}");
    let (code, out) = azure.run(&["apply", "-f", &format!("{dir}/deployment.yaml"), "--delete", "--context", &dir], LIMIT);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("AmlOnlineDeployment default/blue: deleted in Azure"), "{out}");
    assert_eq!(azure.run(&["apply", "-f", &format!("{dir}/compute.yaml"), "--delete", "--context", &dir], LIMIT).0, 0);
    let (code, out) = azure.run(&["apply", "-f", &dir, "--delete"], LIMIT);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("AmlCompute default/cpu-cluster: not in Azure, nothing to delete"), "{out}");
    assert!(out.contains("AmlOnlineDeployment default/blue: not in Azure, nothing to delete"), "{out}");
    for label in [
        "AmlWorkspace default/team-a",
        "AmlDatastore default/training-data",
        "AmlModelVersion default/sklearn-model-1",
        "AmlEnvironmentVersion default/sklearn-env-1",
        "AmlCodeVersion default/score-code-1",
        "AmlOnlineEndpoint default/scoring",
        "AmlRoleAssignment default/team-a-data-scientists",
    ] {
        assert!(out.contains(&format!("{label}: deleted in Azure")), "{label}: {out}");
    }
    let (_, out) = azure.run(&["plan", "-f", &dir], LIMIT);
    assert_eq!(plan_line(&out), all_absent, "{out}");
}

/// `aml-operator apply` against the standalone `aml-operator emulator` (both as processes, as a
/// user runs them): each mistake Azure refuses is reported with the reason and the field to
/// change, the same as the operator's conditions; the good workspace converges.
#[test]
fn apply_against_the_standalone_emulator_reports_what_azure_refuses_and_why() {
    let azure = EmulatorProcess::start();
    assert!(azure.banner.contains("Azure offers:    28 regions, 15 VM sizes, 1000 dedicated cores per VM family per region"), "{}", azure.banner);

    let tags: String = (0..60).map(|i| format!("    t{i}: v\n")).collect();
    let ws = |name: &str, location: &str, extra: &str| {
        format!("apiVersion: amloperator.io/v1alpha1\nkind: AmlWorkspace\nmetadata:\n  name: {name}\nspec:\n  resourceGroup: rg-cli\n  location: {location}\n{extra}")
    };
    let cluster = |name: &str, vm_size: &str, max_nodes: u32| {
        format!(
            "apiVersion: amloperator.io/v1alpha1\nkind: AmlCompute\nmetadata:\n  name: {name}\nspec:\n  workspaceRef: {{name: ws-good}}\n  computeType: AmlCompute\n  amlCompute:\n    vmSize: {vm_size}\n    scaleSettings: {{minNodeCount: 0, maxNodeCount: {max_nodes}}}\n"
        )
    };
    let dir = folder(&[
        ("ws-good.yaml", &ws("ws-good", "eastus", "")),
        ("ws-mars.yaml", &ws("ws-mars", "mars-central", "")),
        ("ws-tags.yaml", &ws("ws-tags", "eastus", &format!("  tags:\n{tags}"))),
        ("c-nope.yaml", &cluster("c-nope", "Standard_NOPE_v9", 4)),
        ("c-huge.yaml", &cluster("c-huge", "STANDARD_DS3_V2", 100_000)),
    ]);
    let (code, stdout) = azure.run(&["apply", "-f", dir.to_str().expect("utf-8 path"), "--timeout", "120s"], std::time::Duration::from_secs(180));
    assert_eq!(code, 1, "{stdout}");
    let line = |label: &str| stdout.lines().find(|l| l.starts_with(&format!("{label}: "))).unwrap_or_default().to_string();
    assert_eq!(line("AmlWorkspace default/ws-good"), "AmlWorkspace default/ws-good: ready", "{stdout}");
    for (label, says) in [
        ("AmlWorkspace default/ws-mars", &["FAILED: LocationNotAvailable: spec.location:", "'mars-central'", "eastus"][..]),
        ("AmlWorkspace default/ws-tags", &["FAILED: InvalidTags: spec.tags:", "at most 50 tags", "InvalidTagCount"][..]),
        ("AmlCompute default/c-nope", &["FAILED: VmSizeNotSupported: spec.amlCompute.vmSize", "'Standard_NOPE_v9'", "Standard_DS3_v2"][..]),
        ("AmlCompute default/c-huge", &["FAILED: QuotaExceeded: Quota:", "standardDSv2Family", "eastus", "asks for 400000", "maxNodeCount"][..]),
    ] {
        let got = line(label);
        for part in says {
            assert!(got.contains(part), "{label}: {part:?} missing from {got:?}\n{stdout}");
        }
        println!("{got}");
    }
}

/// Issue 25, item 3, as reported: two AmlWorkspace objects in namespaces `a` and `b` for the same
/// resource group and `azureName`, with different descriptions. Across separate `apply` runs
/// against the same Azure (the CLI's cluster name is the same in every run), the first stays its
/// owner and the second fails naming it, with nothing written over the first's description.
#[test]
fn apply_refuses_a_second_object_for_an_arm_id_another_object_owns_across_runs() {
    let azure = EmulatorProcess::start();
    let ws = |ns: &str, description: &str| {
        format!("apiVersion: amloperator.io/v1alpha1\nkind: AmlWorkspace\nmetadata:\n  name: ws\n  namespace: {ns}\nspec:\n  resourceGroup: rg-owner\n  location: eastus\n  azureName: shared-ws\n  description: {description}\n")
    };
    let first = folder(&[("a.yaml", &ws("a", "from-a"))]);
    let (code, out) = azure.run(&["apply", "-f", first.to_str().expect("utf-8 path"), "--timeout", "120s"], std::time::Duration::from_secs(180));
    assert_eq!(code, 0, "{out}");
    let both = folder(&[("a.yaml", &ws("a", "from-a")), ("b.yaml", &ws("b", "from-b"))]);
    let (code, out) = azure.run(&["apply", "-f", both.to_str().expect("utf-8 path"), "--timeout", "120s"], std::time::Duration::from_secs(180));
    assert_eq!(code, 1, "{out}");
    let line = |label: &str| out.lines().find(|l| l.starts_with(&format!("{label}: "))).unwrap_or_default().to_string();
    assert_eq!(line("AmlWorkspace a/ws"), "AmlWorkspace a/ws: ready", "{out}");
    let second = line("AmlWorkspace b/ws");
    assert!(second.contains("FAILED: OwnedByAnotherObject") && second.contains("object a/ws in this cluster"), "{second}\n{out}");
    println!("{second}");
    let (_, plan) = azure.run(&["plan", "-f", both.to_str().expect("utf-8 path")], std::time::Duration::from_secs(60));
    assert!(plan.contains("OwnedByAnotherObject"), "plan says so too: {plan}");
}
