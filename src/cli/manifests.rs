//! Reading manifests: files or folders (recursively, `*.yaml` / `*.yml`), multi-document YAML,
//! `v1` `List`s. The operator's kinds and `v1` Secrets are kept; anything else is reported and skipped.

use super::CliError;
use crate::controller::kinds::Kind;
use crate::crd::{GROUP, VERSION};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// One object read from a manifest.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// `file` or `file#N` (N-th document, from 1), for messages.
    pub source: String,
    /// The object, with `metadata.namespace` filled (`default` when absent).
    pub value: Value,
}

impl Manifest {
    /// `kind`.
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }
    /// `metadata.namespace`.
    pub fn namespace(&self) -> &str {
        self.value["metadata"]["namespace"].as_str().unwrap_or("default")
    }
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }
    /// `Kind namespace/name`, for output.
    pub fn label(&self) -> String {
        format!("{} {}/{}", self.kind(), self.namespace(), self.name())
    }
}

/// What a set of paths holds.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// Objects of the operator's kinds, in file order.
    pub objects: Vec<Manifest>,
    /// `v1` Secrets, `stringData` folded into `data` as the API server does.
    pub secrets: Vec<Secret>,
    /// Documents skipped, with the reason (unknown kinds).
    pub skipped: Vec<String>,
}

/// Reads every manifest under `paths`. Objects are checked against their kind's schema (a bad
/// spec is an error naming the document); unknown kinds are skipped and listed.
pub fn load(paths: &[PathBuf], kinds: &[&'static dyn Kind]) -> Result<Loaded, CliError> {
    let mut files = Vec::new();
    for path in paths {
        collect(path, true, &mut files)?;
    }
    let mut loaded = Loaded::default();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| CliError::Read { path: file.clone(), source })?;
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
            .map(Value::deserialize)
            .collect::<Result<_, _>>()
            .map_err(|e| CliError::Manifest(format!("{}: not valid YAML: {e}", file.display())))?;
        let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
        let many = docs.len() > 1;
        for (i, doc) in docs.into_iter().enumerate() {
            let source = if many { format!("{}#{}", file.display(), i + 1) } else { file.display().to_string() };
            classify(doc, &source, kinds, &mut loaded)?;
        }
    }
    Ok(loaded)
}

fn collect(path: &Path, explicit: bool, out: &mut Vec<PathBuf>) -> Result<(), CliError> {
    let meta = std::fs::metadata(path).map_err(|source| CliError::Read { path: path.to_path_buf(), source })?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|source| CliError::Read { path: path.to_path_buf(), source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for entry in entries {
            collect(&entry, false, out)?;
        }
    } else if explicit || path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
        out.push(path.to_path_buf());
    }
    Ok(())
}

fn classify(mut doc: Value, source: &str, kinds: &[&'static dyn Kind], loaded: &mut Loaded) -> Result<(), CliError> {
    let api_version = doc["apiVersion"].as_str().unwrap_or_default().to_string();
    let kind = doc["kind"].as_str().unwrap_or_default().to_string();
    if !doc.is_object() || kind.is_empty() {
        loaded.skipped.push(format!("{source}: not a Kubernetes object (no kind)"));
        return Ok(());
    }
    if api_version == "v1" && kind == "List" {
        let items = doc["items"].as_array().cloned().unwrap_or_default();
        for (i, item) in items.into_iter().enumerate() {
            classify(item, &format!("{source} item {}", i + 1), kinds, loaded)?;
        }
        return Ok(());
    }
    if !doc["metadata"].is_object() {
        doc["metadata"] = json!({});
    }
    if doc["metadata"]["namespace"].as_str().is_none_or(str::is_empty) {
        doc["metadata"]["namespace"] = json!("default");
    }
    if doc["metadata"]["name"].as_str().is_none_or(str::is_empty) {
        return Err(CliError::Manifest(format!("{source}: {kind} has no metadata.name")));
    }
    if api_version == "v1" && kind == "Secret" {
        let mut secret: Secret = serde_json::from_value(doc)
            .map_err(|e| CliError::Manifest(format!("{source}: not a valid Secret: {e}")))?;
        if let Some(strings) = secret.string_data.take() {
            let data = secret.data.get_or_insert_with(Default::default);
            for (k, v) in strings {
                data.insert(k, ByteString(v.into_bytes()));
            }
        }
        loaded.secrets.push(secret);
        return Ok(());
    }
    let ours = api_version == format!("{GROUP}/{VERSION}");
    match kinds.iter().find(|k| ours && k.name() == kind) {
        Some(handle) => {
            handle.parse(&doc).map_err(|e| CliError::Manifest(format!("{source}: invalid {kind}: {e}")))?;
            let manifest = Manifest { source: source.to_string(), value: doc };
            // A later document for the same object replaces the earlier one, as `kubectl apply` would.
            loaded.objects.retain(|m| m.label() != manifest.label());
            loaded.objects.push(manifest);
        }
        None => loaded.skipped.push(format!("{source}: unknown kind {kind} ({api_version})")),
    }
    Ok(())
}
