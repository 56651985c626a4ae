//! The Argo CD health check the chart ships (`charts/aml-operator/argocd/health.lua`), run the way Argo
//! CD runs a resource customization: Lua 5.1, the live object as the global `obj`, the table the script
//! returns read for `status` and `message`. The VM opens only the base and table libraries, so a use of
//! `string` (which Argo CD's sandbox does not offer) fails here too.
//!
//! The cases are Argo CD's own test layout (`health_test.yaml` + `testdata/`), plus statuses the
//! workspace pipeline really writes, driven through the fake API server and the emulator.


use aml_operator::crd::{AmlWorkspace, AmlWorkspaceSpec};
use kube::api::ObjectMeta;
use mlua::{Lua, LuaOptions, StdLib, Table, Value as LuaValue};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use crate::support::{NS, World};

const KINDS: [&str; 5] = ["AmlWorkspace", "AmlCompute", "AmlOnlineEndpoint", "AmlOnlineDeployment", "AmlRoleAssignment"];

fn argocd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/aml-operator/argocd")
}

fn script() -> String {
    std::fs::read_to_string(argocd_dir().join("health.lua")).expect("charts/aml-operator/argocd/health.lua exists")
}

/// What the script returned.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Health {
    status: String,
    #[serde(default)]
    message: String,
}

/// A Lua 5.1 state with the base and table libraries only (no string, os, io, package).
fn sandbox() -> Lua {
    Lua::new_with(StdLib::TABLE, LuaOptions::default()).expect("Lua 5.1 starts")
}

/// JSON to Lua as Argo CD hands an unstructured object to its VM: objects and arrays become tables
/// (arrays 1-based), every number a Lua number, null nil.
fn to_lua(lua: &Lua, v: &Value) -> LuaValue {
    match v {
        Value::Null => LuaValue::Nil,
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Number(n) => LuaValue::Number(n.as_f64().unwrap_or_default()),
        Value::String(s) => LuaValue::String(lua.create_string(s).expect("Lua string")),
        Value::Array(items) => {
            let t = lua.create_table().expect("Lua table");
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item)).expect("array item");
            }
            LuaValue::Table(t)
        }
        Value::Object(map) => {
            let t = lua.create_table().expect("Lua table");
            for (k, item) in map {
                t.raw_set(k.as_str(), to_lua(lua, item)).expect("object field");
            }
            LuaValue::Table(t)
        }
    }
}

/// Runs the health check on `obj` as Argo CD does.
fn health(obj: &Value) -> Result<Health, mlua::Error> {
    let lua = sandbox();
    lua.globals().set("obj", to_lua(&lua, obj))?;
    let hs: Table = lua.load(script()).set_name("health.lua").eval()?;
    Ok(Health { status: hs.get("status")?, message: hs.get::<Option<String>>("message")?.unwrap_or_default() })
}

#[derive(Deserialize)]
struct TestFile {
    tests: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    input_path: String,
    health_status: Health,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(argocd_dir().join("health_test.yaml")).expect("health_test.yaml exists");
    serde_yaml::from_str::<TestFile>(&text).expect("health_test.yaml parses").tests
}

fn load(input_path: &str) -> Value {
    let text = std::fs::read_to_string(argocd_dir().join(input_path)).unwrap_or_else(|e| panic!("{input_path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{input_path} is not YAML: {e}"))
}

#[test]
fn every_case_in_health_test_yaml_gets_the_expected_health() {
    let cases = cases();
    assert!(cases.len() >= 10, "only {} cases", cases.len());
    let mut wrong = Vec::new();
    for case in &cases {
        match health(&load(&case.input_path)) {
            Ok(got) if got == case.health_status => {}
            Ok(got) => wrong.push(format!("{}: expected {:?}, got {:?}", case.input_path, case.health_status, got)),
            Err(e) => wrong.push(format!("{}: the script failed: {e}", case.input_path)),
        }
    }
    assert!(wrong.is_empty(), "health.lua disagrees with health_test.yaml:\n{}", wrong.join("\n"));
}

#[test]
fn the_cases_cover_every_status_every_kind_and_every_testdata_file() {
    let cases = cases();
    for status in ["Healthy", "Progressing", "Degraded"] {
        assert!(cases.iter().any(|c| c.health_status.status == status), "no case expects {status}");
    }
    let kinds: Vec<String> = cases.iter().map(|c| load(&c.input_path)["kind"].as_str().unwrap_or_default().to_string()).collect();
    for kind in KINDS {
        assert!(kinds.iter().any(|k| k == kind), "no case for {kind}");
    }
    let listed: Vec<&str> = cases.iter().map(|c| c.input_path.as_str()).collect();
    for entry in std::fs::read_dir(argocd_dir().join("testdata")).expect("testdata/ exists") {
        let name = entry.expect("dir entry").file_name().into_string().expect("UTF-8 name");
        let path = format!("testdata/{name}");
        assert!(listed.contains(&path.as_str()), "{path} is in no case of health_test.yaml");
    }
}

#[test]
fn the_script_runs_without_the_string_library() {
    // The sandbox really lacks it, so every case above proves the script runs without it.
    let lua = sandbox();
    assert!(matches!(lua.globals().get::<LuaValue>("string"), Ok(LuaValue::Nil)));
    assert!(lua.load("return ('x'):upper()").eval::<String>().is_err(), "string methods must be unavailable too");
    // And say so plainly when someone adds one.
    let text = script();
    for forbidden in ["string.", ":format(", ":find(", ":match(", ":gmatch(", ":gsub(", ":sub(", ":lower(", ":upper(", ":len("] {
        assert!(!text.contains(forbidden), "health.lua uses the string library ({forbidden}), which Argo CD's sandbox lacks");
    }
}

#[test]
fn a_kind_from_another_group_or_a_bare_object_does_not_break_the_script() {
    for obj in [json!({}), json!({"metadata": {}}), json!({"status": {"conditions": []}}), json!({"status": {"conditions": [{"type": "Ready"}]}})] {
        let h = health(&obj).unwrap_or_else(|e| panic!("{obj}: {e}"));
        assert_eq!(h.status, "Progressing", "{obj}");
    }
}

const PATH: &str = "/apis/amloperator.io/v1alpha1/namespaces/team-a/amlworkspaces/ws1";

fn workspace() -> AmlWorkspace {
    let spec: AmlWorkspaceSpec = serde_json::from_value(json!({
        "resourceGroup": "rg-ml",
        "location": "eastus",
        "friendlyName": "Team A",
        "storageAccount": "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml/providers/Microsoft.Storage/storageAccounts/sa1",
        "keyVault": "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-ml/providers/Microsoft.KeyVault/vaults/kv1",
        "identity": {"type": "SystemAssigned"}
    }))
    .expect("valid spec");
    AmlWorkspace {
        metadata: ObjectMeta { name: Some("ws1".into()), namespace: Some(NS.into()), ..Default::default() },
        spec,
        status: None,
    }
}

fn live(w: &World) -> Health {
    let obj = w.kube.raw(PATH).expect("object exists");
    health(&obj).unwrap_or_else(|e| panic!("health.lua failed on {obj}: {e}"))
}

#[tokio::test]
async fn statuses_the_workspace_pipeline_writes_read_as_argo_cd_should_show_them() {
    let w = World::new().await;
    w.good_credentials();
    w.kube.put(workspace());
    assert_eq!(live(&w).status, "Progressing", "a new object with no status yet");

    w.reconcile::<AmlWorkspace>(PATH).await.expect("finalizer added and create accepted");
    let h = live(&w);
    assert_eq!((h.status.as_str(), h.message.as_str()), ("Progressing", "Creating: ARM create in progress"));

    w.converge::<AmlWorkspace>(PATH).await;
    let h = live(&w);
    assert_eq!(h.status, "Healthy", "{h:?}");

    // A spec edit the operator has not seen yet: not Healthy until it has.
    w.kube.edit(PATH, |o| o["spec"]["friendlyName"] = json!("Team A (renamed)"));
    let h = live(&w);
    assert_eq!((h.status.as_str(), h.message.as_str()), ("Progressing", "Waiting for the operator to observe generation 2"));
    w.converge::<AmlWorkspace>(PATH).await;
    assert_eq!(live(&w).status, "Healthy");

    w.kube.delete(PATH);
    let _ = w.reconcile::<AmlWorkspace>(PATH).await;
    let h = live(&w);
    assert_eq!((h.status.as_str(), h.message.as_str()), ("Progressing", "Deleting: ARM delete in progress"));
}

#[tokio::test]
async fn missing_credentials_read_as_degraded_with_the_operators_message() {
    let w = World::new().await;
    w.kube.put(workspace());
    let _ = w.reconcile::<AmlWorkspace>(PATH).await.expect_err("no credentials");
    let h = live(&w);
    assert_eq!(h.status, "Degraded");
    assert!(h.message.starts_with("CredentialsNotFound: credentials Secret team-a/aml-credentials not found"), "{h:?}");

    // The Secret appears: the next reconcile recovers without a spec change.
    w.good_credentials();
    w.converge::<AmlWorkspace>(PATH).await;
    assert_eq!(live(&w).status, "Healthy");
}
