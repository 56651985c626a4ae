//! The CRD files in `crds/` are exactly what the Rust types generate.

use std::path::Path;

const REGENERATE: &str = "cargo run -- crds --out-dir crds";

#[test]
fn crds_folder_matches_the_generated_crds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let files = aml_operator::crd::files(aml_operator::controller::kinds::crds()).expect("CRDs serialize");
    for (name, yaml) in &files {
        let on_disk = std::fs::read_to_string(dir.join(name))
            .unwrap_or_else(|_| panic!("crds/{name} is missing: run `{REGENERATE}`"));
        assert!(on_disk == *yaml, "crds/{name} is out of date: run `{REGENERATE}`");
    }
    let mut expected: Vec<_> = files.iter().map(|(n, _)| n.clone()).collect();
    expected.sort();
    let mut present: Vec<_> = std::fs::read_dir(&dir)
        .expect("crds/ exists")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    present.sort();
    assert_eq!(present, expected, "crds/ holds a file no type generates: run `{REGENERATE}` and remove stale files");
}

#[test]
fn every_spec_and_status_field_is_documented() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (k, v) in props {
                let p = format!("{path}.{k}");
                if v.get("description").and_then(|d| d.as_str()).is_none_or(str::is_empty) {
                    missing.push(p.clone());
                }
                walk(&p, v, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    for crd in aml_operator::controller::kinds::crds() {
        let v = serde_json::to_value(&crd).unwrap();
        let schema = &v["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut missing = Vec::new();
        walk("spec", &schema["properties"]["spec"], &mut missing);
        walk("status", &schema["properties"]["status"], &mut missing);
        assert!(missing.is_empty(), "{}: undocumented fields {missing:?}", crd.metadata.name.unwrap_or_default());
    }
}

#[test]
fn workspace_crd_has_names_columns_and_immutability_rules() {
    let crd = serde_json::to_value(aml_operator::controller::kinds::crds().remove(0)).unwrap();
    let spec = &crd["spec"];
    assert_eq!(spec["group"], "amloperator.io");
    assert_eq!(spec["names"]["shortNames"], serde_json::json!(["amlws"]));
    assert_eq!(spec["names"]["categories"], serde_json::json!(["aml"]));
    let version = &spec["versions"][0];
    let columns: Vec<_> = version["additionalPrinterColumns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(columns, ["State", "Ready", "Reason", "Age"]);
    let props = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    for field in ["azureName", "location", "resourceGroup", "subscriptionId", "storageAccount", "keyVault", "hbiWorkspace"] {
        let rules = props[field]["x-kubernetes-validations"].to_string();
        assert!(rules.contains("self == oldSelf"), "{field} is not immutable: {rules}");
    }
    assert!(props["encryption"]["properties"]["keyVaultProperties"]["properties"]["keyVaultArmId"]["x-kubernetes-validations"].to_string().contains("self == oldSelf"));
    assert!(props["deletionPolicy"].get("x-kubernetes-validations").is_none(), "deletionPolicy must stay editable");
    assert_eq!(props["azureName"]["pattern"], "^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$");
}
