//! The Helm chart in `charts/aml-operator`:
//!
//! - its `crds/` are the repository's `crds/` (which a test keeps equal to the Rust types);
//! - its RBAC grants every Kubernetes API call the code in `core/src/` and `src/` makes, and nothing else
//!   (a small, explicit scan of the source, below);
//! - it lints and renders with a real `helm`, Helm 3 and Helm 4, and the rendered objects say what the
//!   README promises (hardened pod, resources, probes, flags the binary accepts, the allocator's
//!   `GLIBC_TUNABLES` the image and the benchmark also set, optional ServiceMonitor and Argo CD
//!   health check).
//!
//! Helm binaries: `AML_HELM3` / `AML_HELM4` (paths), else `helm` on PATH. Without any, the helm tests
//! print why they skip; with `AML_REQUIRE_HELM=1` (set by `.ci/run`, which installs both) a missing
//! Helm 3 or Helm 4 is a failure.

use clap::{Args, Command, FromArgMatches};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command as Process;

const COPY_CRDS: &str = "cargo run -- crds --out-dir charts/aml-operator/crds";
const RELEASE: &str = "rel";
const NAMESPACE: &str = "ops";
const FULLNAME: &str = "rel-aml-operator";
const GROUP: &str = "amloperator.io";
/// The plurals of the table of kinds (`every_kind_of_the_table_is_in_the_chart` keeps them in step).
const KINDS: [&str; 9] = [
    "amlworkspaces",
    "amlcomputes",
    "amldatastores",
    "amlmodelversions",
    "amlenvironmentversions",
    "amlcodeversions",
    "amlonlineendpoints",
    "amlonlinedeployments",
    "amlroleassignments",
];

#[test]
fn every_kind_of_the_table_is_in_the_chart() {
    let plurals: Vec<String> = aml_operator::controller::kinds::ALL.iter().map(|k| k.resource().plural).collect();
    assert_eq!(plurals, KINDS, "the chart's list of kinds (and this test's) must follow the table of kinds");
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    repo().join("charts/aml-operator")
}

// ---------------------------------------------------------------------------------------------
// (a) The chart's CRDs are the repository's.

fn yaml_files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.ends_with(".yaml").then(|| (name, std::fs::read_to_string(e.path()).unwrap_or_default()))
        })
        .collect()
}

#[test]
fn chart_crds_are_the_repository_crds() {
    let repo_crds = yaml_files(&repo().join("crds"));
    let chart_crds = yaml_files(&chart().join("crds"));
    assert!(!repo_crds.is_empty(), "crds/ is empty");
    let names = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&chart_crds), names(&repo_crds), "charts/aml-operator/crds/ holds other files than crds/: run `{COPY_CRDS}` and remove stale files");
    for (name, text) in &repo_crds {
        assert!(chart_crds[name] == *text, "charts/aml-operator/crds/{name} differs from crds/{name}: run `{COPY_CRDS}`");
    }
}

// ---------------------------------------------------------------------------------------------
// (b) RBAC versus code.
//
// The scan reads `core/src/**/*.rs` and `src/**/*.rs` (not `src/bench/`) and derives (API group, resource, verb) from three small tables:
//
// 1. TYPES: the type argument of `Api<T>` / `Api::<T>` -> API group and resources. `K` is the generic
//    kind of the reconcile pipeline and `DynamicObject` is only used for our own parent kinds
//    (`ParentKind::resource`, `protect::kinds`), so both stand for all kinds.
// 2. METHODS: a method called on a variable bound to an `Api<T>` -> verb (and subresource). A binding
//    is `name: Api<T>` or `let name = Api::<T>::...`; a call is `name.method(` or `name.method::<`,
//    also when rustfmt put `.method(` on the next line. The latest binding of a name in the file wins.
// 3. ENTRY_POINTS: library calls that make API requests themselves: kube's `Controller::new`,
//    `.watches_with`, `.owns` and `watcher` list and watch their `Api`; kube's `finalizer` patches the
//    object; kube's event `Recorder` creates and patches events.k8s.io Events; kube-lease-manager reads,
//    creates and patches its Lease; `controller_owner_ref` sets blockOwnerDeletion (needs update on the
//    owner's finalizers subresource where OwnerReferencesPermissionEnforcement is on).
//
// It is deliberately simple: it does not follow an `Api` passed through a function boundary under a
// new name unless that parameter is written `name: &Api<T>` (which it then sees as a binding).

const ALL_KINDS: &[&str] = &KINDS;

/// `Api<T>` type argument -> (API group, resources).
const TYPES: &[(&str, &str, &[&str])] = &[
    ("K", GROUP, ALL_KINDS),
    ("DynamicObject", GROUP, ALL_KINDS),
    ("AmlWorkspace", GROUP, &["amlworkspaces"]),
    ("AmlCompute", GROUP, &["amlcomputes"]),
    ("AmlDatastore", GROUP, &["amldatastores"]),
    ("AmlModelVersion", GROUP, &["amlmodelversions"]),
    ("AmlEnvironmentVersion", GROUP, &["amlenvironmentversions"]),
    ("AmlCodeVersion", GROUP, &["amlcodeversions"]),
    ("AmlOnlineEndpoint", GROUP, &["amlonlineendpoints"]),
    ("AmlOnlineDeployment", GROUP, &["amlonlinedeployments"]),
    ("AmlRoleAssignment", GROUP, &["amlroleassignments"]),
    ("Secret", "", &["secrets"]),
    ("Namespace", "", &["namespaces"]),
    ("ConfigMap", "", &["configmaps"]),
    ("Lease", "coordination.k8s.io", &["leases"]),
    ("Event", "events.k8s.io", &["events"]),
];

/// `Api` method -> (subresource suffix, verbs).
const METHODS: &[(&str, &str, &[&str])] = &[
    ("get", "", &["get"]),
    ("get_opt", "", &["get"]),
    ("get_metadata", "", &["get"]),
    ("get_metadata_opt", "", &["get"]),
    ("list", "", &["list"]),
    ("list_metadata", "", &["list"]),
    ("watch", "", &["watch"]),
    ("watch_metadata", "", &["watch"]),
    ("create", "", &["create"]),
    ("patch", "", &["patch"]),
    ("patch_metadata", "", &["patch"]),
    ("replace", "", &["update"]),
    ("delete", "", &["delete"]),
    ("delete_collection", "", &["deletecollection"]),
    ("entry", "", &["get", "create", "update"]),
    ("get_status", "/status", &["get"]),
    ("patch_status", "/status", &["patch"]),
    ("replace_status", "/status", &["update"]),
];

/// What an entry point needs.
enum Needs {
    /// These verbs on the `Api` passed as the first argument (after `&`).
    FirstArg(&'static [&'static str]),
    /// Fixed grants: (group, resources, subresource suffix, verbs).
    Fixed(&'static str, &'static [&'static str], &'static str, &'static [&'static str]),
}

/// Library calls that make API requests themselves.
const ENTRY_POINTS: &[(&str, Needs)] = &[
    ("Controller::new(", Needs::FirstArg(&["list", "watch"])),
    (".watches_with(", Needs::FirstArg(&["list", "watch"])),
    (".watches(", Needs::FirstArg(&["list", "watch"])),
    (".owns(", Needs::FirstArg(&["list", "watch"])),
    (".owns_with(", Needs::FirstArg(&["list", "watch"])),
    ("watcher(", Needs::FirstArg(&["list", "watch"])),
    ("metadata_watcher(", Needs::FirstArg(&["list", "watch"])),
    ("finalizer(", Needs::FirstArg(&["patch"])),
    ("Recorder::new(", Needs::Fixed("events.k8s.io", &["events"], "", &["create", "patch"])),
    ("LeaseManagerBuilder::new(", Needs::Fixed("coordination.k8s.io", &["leases"], "", &["get", "create", "patch"])),
    ("controller_owner_ref(", Needs::Fixed(GROUP, ALL_KINDS, "/finalizers", &["update"])),
];

/// Grants the chart makes before the code that uses them is on this branch, each with its reason.
/// The least-privilege check accepts these; it notes when one has become visible in the code.
const AHEAD_OF_CODE: &[(&str, &str, &str, &str)] = &[
    (GROUP, "amlworkspaces/finalizers", "update", "blockOwnerDeletion on owner references to our objects"),
    (GROUP, "amlcomputes/finalizers", "update", "blockOwnerDeletion on owner references to our objects"),
    (GROUP, "amldatastores/finalizers", "update", "blockOwnerDeletion on owner references to our objects"),
    (GROUP, "amlmodelversions/finalizers", "update", "blockOwnerDeletion on owner references to our objects"),
    (GROUP, "amlenvironmentversions/finalizers", "update", "blockOwnerDeletion on owner references to our objects"),
    (GROUP, "amlcodeversions/finalizers", "update", "blockOwnerDeletion on owner references to our objects"),
    (GROUP, "amlonlineendpoints/finalizers", "update", "blockOwnerDeletion on owner references to our objects (keys Secret)"),
    (GROUP, "amlonlinedeployments/finalizers", "update", "blockOwnerDeletion on owner references to our objects"),
    (GROUP, "amlroleassignments/finalizers", "update", "blockOwnerDeletion on owner references to our objects"),
];

/// One permission: (API group, resource[/subresource], verb).
type Grant = (String, String, String);

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let path = entry.path();
        if path.is_dir() {
            rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Lines with rustfmt's continuation lines (`.method(...)` alone on a line) joined to the line they
/// continue, each with the number of its first line. `//` comments are dropped.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let code = raw.split("//").next().unwrap_or("").trim();
        if code.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((_, prev)) if code.starts_with('.') => prev.push_str(code),
            _ => out.push((i + 1, code.to_string())),
        }
    }
    out
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifier that ends `text` (after trimming `&`, `mut`, `:` and spaces).
fn last_ident(text: &str) -> Option<String> {
    let t = text.trim_end().trim_end_matches(['&', ':', ' ']).trim_end();
    let t = t.strip_suffix("mut").map(str::trim_end).unwrap_or(t);
    let start = t.rfind(|c: char| !is_ident_char(c)).map(|i| i + 1).unwrap_or(0);
    let ident = &t[start..];
    (!ident.is_empty() && !ident.starts_with(|c: char| c.is_ascii_digit())).then(|| ident.to_string())
}

/// `name -> type` bindings declared on this line.
fn bindings_on(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    // `name: Api<T>` and `name: &Api<T>`
    let mut rest = line;
    let mut offset = 0;
    while let Some(i) = rest.find("Api<") {
        let at = offset + i;
        let before = &line[..at];
        let is_typed = before.trim_end().trim_end_matches('&').trim_end().ends_with(':');
        // `Api<PartialObjectMeta<T>>` (metadata-only requests) needs the same grants as `Api<T>`.
        let after = &line[at + 4..];
        let ty: String = after.strip_prefix("PartialObjectMeta<").unwrap_or(after).chars().take_while(|c| is_ident_char(*c)).collect();
        if is_typed
            && !ty.is_empty()
            && (at == 0 || !line[..at].ends_with(is_ident_char))
            && let Some(name) = last_ident(before)
        {
            out.push((name, ty));
        }
        offset = at + 4;
        rest = &line[offset..];
    }
    // `let name = Api::<T>::...`
    if let (Some(l), Some(a)) = (line.find("let "), line.find("Api::<"))
        && l < a
    {
        let name: String = line[l + 4..].trim_start().trim_start_matches("mut ").chars().take_while(|c| is_ident_char(*c)).collect();
        let ty: String = line[a + 6..].chars().take_while(|c| is_ident_char(*c)).collect();
        if !name.is_empty() && !ty.is_empty() {
            out.push((name, ty));
        }
    }
    out
}

/// Every place `name.method(` (or `name.method::<`) occurs with `name` a whole identifier.
fn calls_of<'a>(line: &'a str, name: &str) -> Vec<&'a str> {
    let needle = format!("{name}.");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = line[from..].find(&needle) {
        let at = from + i;
        let whole = at == 0 || !line[..at].ends_with(is_ident_char);
        let after = &line[at + needle.len()..];
        let method_len = after.find(|c: char| !is_ident_char(c)).unwrap_or(after.len());
        let method = &after[..method_len];
        let next = &after[method_len..];
        if whole && (next.starts_with('(') || next.starts_with("::<")) {
            out.push(method);
        }
        from = at + needle.len();
    }
    out
}

fn resources_of(ty: &str) -> Option<(&'static str, &'static [&'static str])> {
    TYPES.iter().find(|(t, _, _)| *t == ty).map(|(_, g, r)| (*g, *r))
}

/// What the code needs, each grant with the places that need it.
fn needed_by_code() -> BTreeMap<Grant, Vec<String>> {
    let mut files = Vec::new();
    // The operator (`core/src`) and the tools of the root package (`src`); the emulator makes no
    // Kubernetes calls.
    rs_files(&repo().join("core/src"), &mut files);
    rs_files(&repo().join("src"), &mut files);
    // The benchmark runs with the kubeconfig of the person running it (it creates, releases and
    // deletes its own objects), never as the chart's ServiceAccount.
    files.retain(|f| !f.starts_with(repo().join("src").join("bench")));
    files.sort();
    let mut needs: BTreeMap<Grant, Vec<String>> = BTreeMap::new();
    let mut add = |group: &str, resources: &[&str], sub: &str, verbs: &[&str], at: String| {
        for r in resources {
            for v in verbs {
                needs.entry((group.to_string(), format!("{r}{sub}"), v.to_string())).or_default().push(at.clone());
            }
        }
    };
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source file reads");
        let shown = file.strip_prefix(repo()).unwrap_or(&file).display().to_string();
        let mut bound: BTreeMap<String, String> = BTreeMap::new();
        for (n, line) in logical_lines(&text) {
            let at = format!("{shown}:{n}");
            for (name, ty) in bindings_on(&line) {
                bound.insert(name, ty);
            }
            for (name, ty) in &bound {
                let Some((group, resources)) = resources_of(ty) else { continue };
                for method in calls_of(&line, name) {
                    if let Some((_, sub, verbs)) = METHODS.iter().find(|(m, _, _)| *m == method) {
                        add(group, resources, sub, verbs, format!("{at} ({name}.{method} on Api<{ty}>)"));
                    }
                }
            }
            for (call, needs) in ENTRY_POINTS {
                let Some(i) = line.find(call) else { continue };
                if call.starts_with(|c: char| is_ident_char(c)) && line[..i].ends_with(is_ident_char) {
                    continue; // e.g. `my_watcher(` is not `watcher(`
                }
                match needs {
                    Needs::Fixed(group, resources, sub, verbs) => add(group, resources, sub, verbs, format!("{at} ({call}..)")),
                    Needs::FirstArg(verbs) => {
                        let arg: String = line[i + call.len()..]
                            .trim_start()
                            .trim_start_matches('&')
                            .chars()
                            .take_while(|c| is_ident_char(*c))
                            .collect();
                        let Some(ty) = bound.get(&arg) else { continue };
                        if let Some((group, resources)) = resources_of(ty) {
                            add(group, resources, "", verbs, format!("{at} ({call}{arg}..) on Api<{ty}>)"));
                        }
                    }
                }
            }
        }
    }
    needs
}

#[test]
fn the_source_scan_finds_the_calls_the_pipeline_is_known_to_make() {
    // Guards the scan itself: if these disappear, the scan broke, not the RBAC.
    let needs = needed_by_code();
    for (group, resource, verb) in [
        (GROUP, "amlworkspaces", "list"),
        (GROUP, "amlworkspaces", "watch"),
        (GROUP, "amlworkspaces", "patch"),
        (GROUP, "amlworkspaces/status", "patch"),
        (GROUP, "amlcomputes", "get"),
        ("", "secrets", "get"),
        ("", "secrets", "watch"),
        ("events.k8s.io", "events", "create"),
    ] {
        let key = (group.to_string(), resource.to_string(), verb.to_string());
        assert!(needs.contains_key(&key), "the scan no longer sees {verb} on {group}/{resource}: {needs:#?}");
    }
}

#[test]
fn scan_helpers_read_bindings_and_calls() {
    assert_eq!(bindings_on("let api: Api<Secret> = Api::namespaced(c, ns);"), vec![("api".to_string(), "Secret".to_string())]);
    assert_eq!(bindings_on("fn f(leases: &Api<Lease>, x: u8)"), vec![("leases".to_string(), "Lease".to_string())]);
    assert_eq!(bindings_on("let mut cms = Api::<ConfigMap>::all(c);"), vec![("cms".to_string(), "ConfigMap".to_string())]);
    assert!(bindings_on("fn f() -> Option<Api<K>>").is_empty());
    assert_eq!(bindings_on("let api: Api<PartialObjectMeta<Secret>> = x;"), vec![("api".to_string(), "Secret".to_string())]);
    assert_eq!(calls_of("let s = api.get_opt(&n).await?; self.api.patch::<K>(x)", "api"), vec!["get_opt", "patch"]);
    assert!(calls_of("my_api.get(x)", "api").is_empty());
    let joined = logical_lines("let x = api\n    .get_opt(name) // comment\n    .await;\n");
    assert_eq!(joined, vec![(1, "let x = api.get_opt(name).await;".to_string())]);
}

/// Every (group, resource, verb) the rules grant.
fn granted(rules: &[Value]) -> BTreeSet<Grant> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    let mut out = BTreeSet::new();
    for rule in rules {
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for v in strings(&rule["verbs"]) {
                    out.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}

fn allows(grants: &BTreeSet<Grant>, need: &Grant) -> bool {
    grants.iter().any(|(g, r, v)| (g == "*" || *g == need.0) && (r == "*" || *r == need.1) && (v == "*" || *v == need.2))
}

/// `group/resource`, or `resource` for the core group.
fn show(group: &str, resource: &str) -> String {
    if group.is_empty() { resource.to_string() } else { format!("{group}/{resource}") }
}

fn check_rbac_against_code(helm: &Helm, docs: &[Value]) {
    let rules: Vec<Value> = docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
        .flat_map(|d| d["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    let grants = granted(&rules);
    let needs = needed_by_code();
    let missing: Vec<String> = needs
        .iter()
        .filter(|(need, _)| !allows(&grants, need))
        .map(|((g, r, v), at)| format!("  {v} on {}, needed at {}", show(g, r), at.join("; ")))
        .collect();
    assert!(
        missing.is_empty(),
        "{}: the chart's RBAC lacks permissions the code uses; add them to charts/aml-operator/templates/_helpers.tpl (aml-operator.watchRules) or rbac.yaml:\n{}",
        helm.label,
        missing.join("\n")
    );
    let mut extra = Vec::new();
    for grant in &grants {
        let used = needs.contains_key(grant);
        let ahead = AHEAD_OF_CODE.iter().find(|(g, r, v, _)| (*g, *r, *v) == (grant.0.as_str(), grant.1.as_str(), grant.2.as_str()));
        match (used, ahead) {
            (true, Some((_, r, v, _))) => println!("note: {v} on {r} is now used by the code; its AHEAD_OF_CODE entry can go"),
            (false, None) => extra.push(format!("  {} on {}", grant.2, show(&grant.0, &grant.1))),
            _ => {}
        }
    }
    assert!(
        extra.is_empty(),
        "{}: the chart grants permissions no code uses (least privilege: remove them, or list them in AHEAD_OF_CODE with a reason):\n{}",
        helm.label,
        extra.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// (c) helm lint and helm template, Helm 3 and Helm 4.

struct Helm {
    path: PathBuf,
    label: String,
    home: PathBuf,
}

fn version_of(path: &Path) -> Option<String> {
    let out = Process::new(path).args(["version", "--short"]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The Helm binaries to test with, or why there are none.
fn helms() -> Vec<Helm> {
    let required = std::env::var("AML_REQUIRE_HELM").is_ok_and(|v| v == "1");
    let mut found = Vec::new();
    let mut problems = Vec::new();
    let explicit: Vec<(u32, String)> = [(3, "AML_HELM3"), (4, "AML_HELM4")]
        .into_iter()
        .filter_map(|(major, var)| std::env::var(var).ok().filter(|v| !v.is_empty()).map(|v| (major, v)))
        .collect();
    let candidates: Vec<(Option<u32>, PathBuf)> = if explicit.is_empty() {
        vec![(None, PathBuf::from("helm"))]
    } else {
        explicit.into_iter().map(|(m, p)| (Some(m), PathBuf::from(p))).collect()
    };
    for (major, path) in candidates {
        match version_of(&path) {
            Some(v) if major.is_none_or(|m| v.starts_with(&format!("v{m}."))) => found.push((v, path)),
            Some(v) => problems.push(format!("{} is {v}, not Helm {}", path.display(), major.unwrap_or(0))),
            None => problems.push(format!("no runnable helm at {}", path.display())),
        }
    }
    if required {
        assert!(problems.is_empty(), "AML_REQUIRE_HELM=1: {}", problems.join("; "));
        for major in [3, 4] {
            assert!(
                found.iter().any(|(v, _)| v.starts_with(&format!("v{major}."))),
                "AML_REQUIRE_HELM=1 but no Helm {major} (set AML_HELM{major}; .ci/run installs it)"
            );
        }
    } else if found.is_empty() {
        println!("skipped: no helm ({}); set AML_HELM3/AML_HELM4 or put helm on PATH", problems.join("; "));
    }
    found
        .into_iter()
        .map(|(version, path)| {
            let home = std::env::temp_dir().join(format!("aml-operator-helm-{}-{version}", std::process::id()));
            Helm { path, label: format!("helm {version}"), home }
        })
        .collect()
}

impl Helm {
    /// Runs helm with its own empty config, cache and data folders; (success, stdout, stderr).
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = Process::new(&self.path)
            .args(args)
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_DATA_HOME", self.home.join("data"))
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", self.label));
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// `helm template` with `--set` values, parsed into its documents.
    fn template(&self, sets: &[&str]) -> Vec<Value> {
        let chart = chart();
        let mut args = vec!["template", RELEASE, chart.to_str().expect("UTF-8 path"), "--namespace", NAMESPACE];
        for s in sets {
            args.extend(["--set", s]);
        }
        let (ok, out, err) = self.run(&args);
        assert!(ok, "{}: helm template {sets:?} failed:\n{err}", self.label);
        parse_documents(&out)
    }

    /// `helm template` that must fail; returns its error output.
    fn template_error(&self, sets: &[&str]) -> String {
        let chart = chart();
        let mut args = vec!["template", RELEASE, chart.to_str().expect("UTF-8 path"), "--namespace", NAMESPACE];
        for s in sets {
            args.extend(["--set", s]);
        }
        let (ok, _, err) = self.run(&args);
        assert!(!ok, "{}: helm template {sets:?} should have failed", self.label);
        err
    }
}

fn parse_documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("helm output is YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = find(docs, kind);
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    found[0]
}

fn container(docs: &[Value]) -> &Value {
    &one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
}

fn args(docs: &[Value]) -> Vec<String> {
    container(docs)["args"].as_array().expect("args").iter().map(|a| a.as_str().expect("string arg").to_string()).collect()
}

fn env(docs: &[Value], name: &str) -> Option<Value> {
    container(docs)["env"].as_array()?.iter().find(|e| e["name"] == name).cloned()
}

#[test]
fn helm_lint_passes_with_defaults_and_with_every_option() {
    for helm in helms() {
        let chart = chart();
        let chart = chart.to_str().expect("UTF-8 path");
        let (ok, out, err) = helm.run(&["lint", "--strict", chart]);
        assert!(ok, "{}: helm lint --strict failed:\n{out}\n{err}", helm.label);
        let everything = "serviceMonitor.enabled=true,argocd.healthCheck.enabled=true,watchNamespace=team-a,\
            credentials.default.name=aml-default,arm.caBundle.configMap=corp-ca,workloadIdentity.enabled=true,\
            workloadIdentity.clientId=00000000-0000-0000-0000-0000000000bb,replicas=2,\
            hostNetwork=true,kubernetesApi.host=127.0.0.1,kubernetesApi.port=6443";
        let (ok, out, err) = helm.run(&["lint", "--strict", chart, "--set", everything]);
        assert!(ok, "{}: helm lint --strict with every option failed:\n{out}\n{err}", helm.label);
        // The portless pod (no metrics port, hence no ServiceMonitor).
        let portless = "probes.type=exec,metrics.port=0,hostNetwork=true,replicas=2,kubernetesApi.host=127.0.0.1,kubernetesApi.port=6443";
        let (ok, out, err) = helm.run(&["lint", "--strict", chart, "--set", portless]);
        assert!(ok, "{}: helm lint --strict of the portless pod failed:\n{out}\n{err}", helm.label);
    }
}

#[test]
fn the_rendered_rbac_grants_exactly_what_the_code_calls() {
    for helm in helms() {
        check_rbac_against_code(&helm, &helm.template(&[]));
        check_rbac_against_code(&helm, &helm.template(&["watchNamespace=team-a"]));
    }
}

#[test]
fn the_deployment_is_hardened_sized_and_probed() {
    for helm in helms() {
        let docs = helm.template(&[]);
        let deployment = one(&docs, "Deployment");
        assert_eq!(deployment["metadata"]["namespace"], NAMESPACE);
        let pod = &deployment["spec"]["template"]["spec"];
        let label = &helm.label;
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{label}");
        assert!(pod["securityContext"]["runAsUser"].as_i64().is_some_and(|u| u > 0), "{label}: runs as root");
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault", "{label}");
        assert_eq!(pod["serviceAccountName"], FULLNAME, "{label}");

        let c = container(&docs);
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{label}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{label}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{label}");
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{label}");
        assert!(sc["capabilities"].get("add").is_none(), "{label}: adds capabilities");
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{label}");
        assert!(sc.get("privileged").is_none_or(|p| p == false), "{label}");
        for section in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(!c["resources"][section][resource].is_null(), "{label}: resources.{section}.{resource} not set");
            }
        }

        assert_eq!(c["ports"], json!([{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]), "{label}");
        assert_eq!(c["livenessProbe"]["httpGet"], json!({"path": "/healthz", "port": "metrics"}), "{label}");
        assert_eq!(c["readinessProbe"]["httpGet"], json!({"path": "/readyz", "port": "metrics"}), "{label}");

        let a = args(&docs);
        assert_eq!(a[0], "run", "{label}");
        for expected in [
            "--arm-endpoint=https://management.azure.com",
            "--authority-host=https://login.microsoftonline.com/",
            "--resync-seconds=600",
            "--keys-refresh-seconds=3600",
            "--arm-read-rate=20",
            "--arm-write-rate=8",
            "--metrics-addr=0.0.0.0:8080",
            "--leader-elect",
        ] {
            assert!(a.iter().any(|x| x == expected), "{label}: {expected} missing from {a:?}");
        }
        for absent in ["--namespace", "--ca-file", "--default-credentials"] {
            assert!(!a.iter().any(|x| x.starts_with(absent)), "{label}: {absent} set by default: {a:?}");
        }
        assert_eq!(env(&docs, "RUST_LOG").expect("RUST_LOG")["value"], "info", "{label}");
        assert_eq!(env(&docs, "AML_LOG_FORMAT").expect("AML_LOG_FORMAT")["value"], "json", "{label}");
        assert_eq!(env(&docs, "POD_NAMESPACE").expect("POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace");
        // With leader election, never two pods at once during a rollout of one replica.
        assert_eq!(deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"], 0, "{label}");
    }
}

#[test]
fn the_chart_and_the_image_set_the_allocator_tunables_p3_measures() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let image = format!("ENV GLIBC_TUNABLES={}", aml_operator::alloc::GLIBC_TUNABLES);
    assert!(dockerfile.lines().any(|l| l == image), "the Dockerfile does not say `{image}`");
    for helm in helms() {
        let label = &helm.label;
        let docs = helm.template(&[]);
        assert_eq!(env(&docs, "GLIBC_TUNABLES").expect("GLIBC_TUNABLES")["value"], aml_operator::alloc::GLIBC_TUNABLES, "{label}");
        let docs = helm.template(&["glibcTunables="]);
        assert_eq!(env(&docs, "GLIBC_TUNABLES").expect("GLIBC_TUNABLES")["value"], "", "{label}: glibc's defaults on request");
    }
}

/// Flags the chart may pass that the operator on this branch does not define yet (the leader
/// election and ARM rate-limit work). Once `RunArgs` has them they are checked like any other.
const FLAGS_COMING: &[&str] = &[];

#[test]
fn every_flag_the_chart_passes_is_one_the_operator_accepts() {
    let run = || aml_operator::manager::RunArgs::augment_args(Command::new("run").no_binary_name(true));
    let known: Vec<String> = run().get_arguments().filter_map(|a| a.get_long().map(|l| format!("--{l}"))).collect();
    for helm in helms() {
        let docs = helm.template(&[
            "watchNamespace=team-a",
            "credentials.default.name=aml-default",
            "arm.caBundle.secret=corp-ca",
            "resyncSeconds=120",
            "keysRefreshSeconds=900",
            "credentials.default.namespaceSelector=team in (a\\,b)",
            "roleAssignments.allowedRoles={AzureMLDataScientist,Reader,Owner}",
            "roleAssignments.scopePrefixes={/subscriptions/x/resourceGroups/rg-ml,/subscriptions/y}",
            "clusterName=west-1",
        ]);
        let a = args(&docs);
        // The flags parse into the bounds they name.
        let config = aml_operator::manager::RunArgs::from_arg_matches(&run().try_get_matches_from(&a[1..]).expect("flags parse")).expect("args").config();
        assert!(config.is_ok(), "{}: {:?}", helm.label, config.err());
        assert_eq!(a[0], "run");
        let mut pending = Vec::new();
        let flags: Vec<&String> = a[1..]
            .iter()
            .filter(|f| {
                let name = f.split('=').next().unwrap_or_default();
                let coming = FLAGS_COMING.contains(&name) && !known.iter().any(|k| k == name);
                if coming {
                    pending.push(name.to_string());
                }
                !coming
            })
            .collect();
        if !pending.is_empty() {
            println!("note: not checked, not in this build's RunArgs yet: {pending:?}");
        }
        let parsed = run().try_get_matches_from(&flags);
        assert!(parsed.is_ok(), "{}: the operator rejects the chart's flags {flags:?}: {}", helm.label, parsed.err().map(|e| e.to_string()).unwrap_or_default());
        for expected in [
            "--namespace=team-a",
            "--default-credentials=ops/aml-default",
            "--default-credentials-namespace-selector=team in (a,b)",
            "--role-assignment-allow-roles=AzureMLDataScientist,Reader,Owner",
            "--role-assignment-scope-prefix=/subscriptions/x/resourceGroups/rg-ml",
            "--role-assignment-scope-prefix=/subscriptions/y",
            "--ca-file=/etc/aml-operator/ca/ca.crt",
            "--resync-seconds=120",
            "--keys-refresh-seconds=900",
            "--cluster-name=west-1",
        ] {
            assert!(a.iter().any(|x| x == expected), "{}: {expected} missing from {a:?}", helm.label);
        }
        let pod = &one(&docs, "Deployment")["spec"]["template"]["spec"];
        assert_eq!(pod["volumes"][0]["secret"]["secretName"], "corp-ca");
        assert_eq!(container(&docs)["volumeMounts"][0]["mountPath"], "/etc/aml-operator/ca");
    }
}

#[test]
fn service_account_rbac_and_metrics_service_by_default() {
    for helm in helms() {
        let docs = helm.template(&[]);
        let label = &helm.label;
        let sa = one(&docs, "ServiceAccount");
        assert_eq!(sa["metadata"]["name"], FULLNAME, "{label}");
        assert!(sa["metadata"].get("annotations").is_none(), "{label}: no annotations unless asked");

        let role = one(&docs, "ClusterRole");
        let grants = granted(role["rules"].as_array().expect("rules"));
        assert!(!grants.iter().any(|(g, r, v)| g == "*" || r == "*" || v == "*"), "{label}: wildcard in {grants:?}");
        for kind in KINDS {
            for verb in ["get", "list", "watch", "patch"] {
                assert!(grants.contains(&(GROUP.into(), kind.into(), verb.into())), "{label}: {verb} on {kind}");
            }
            assert!(grants.contains(&(GROUP.into(), format!("{kind}/status"), "patch".into())), "{label}: {kind}/status");
            assert!(grants.contains(&(GROUP.into(), format!("{kind}/finalizers"), "update".into())), "{label}: {kind}/finalizers");
        }
        for verb in ["delete", "update"] {
            assert!(!grants.contains(&("".into(), "secrets".into(), verb.into())), "{label}: {verb} on every Secret in the cluster");
        }
        assert!(!grants.iter().any(|(_, r, _)| r == "leases"), "{label}: leases must not be cluster-wide");
        let binding = one(&docs, "ClusterRoleBinding");
        assert_eq!(binding["roleRef"]["name"], FULLNAME);
        assert_eq!(binding["subjects"], json!([{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]));

        // The leader Lease: in the release namespace, limited to the release's Lease by name.
        let lease_role = one(&docs, "Role");
        assert_eq!(lease_role["metadata"]["namespace"], NAMESPACE, "{label}");
        let rules = lease_role["rules"].as_array().expect("rules");
        assert!(rules.iter().all(|r| r["resources"] == json!(["leases"])), "{label}: {rules:?}");
        assert!(rules.iter().filter(|r| r["verbs"] != json!(["create"])).all(|r| r["resourceNames"] == json!([FULLNAME])), "{label}: {rules:?}");
        let lease_flag = format!("--lease-name={FULLNAME}");
        assert!(args(&docs).contains(&lease_flag), "{label}: the Lease the Role names is the one the operator uses");

        let service = one(&docs, "Service");
        assert_eq!(service["spec"]["ports"], json!([{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]), "{label}");
        let pod_labels = &one(&docs, "Deployment")["spec"]["template"]["metadata"]["labels"];
        for (k, v) in service["spec"]["selector"].as_object().expect("selector") {
            assert_eq!(&pod_labels[k], v, "{label}: the Service does not select the pod");
        }
        assert!(find(&docs, "ServiceMonitor").is_empty(), "{label}: ServiceMonitor by default");
        assert!(find(&docs, "ConfigMap").is_empty(), "{label}: argocd-cm by default");
    }
}

#[test]
fn one_watched_namespace_gets_a_role_instead_of_a_cluster_role() {
    for helm in helms() {
        let label = &helm.label;
        let cluster = helm.template(&[]);
        let docs = helm.template(&["watchNamespace=team-a", "credentials.default.name=aml-default"]);
        // Cluster-wide: only the watched namespace's own labels (namespaces are cluster-scoped, a
        // Role cannot grant them), by name.
        let cluster_roles = find(&docs, "ClusterRole");
        assert_eq!(cluster_roles.len(), 1, "{label}: {cluster_roles:?}");
        assert_eq!(cluster_roles[0]["metadata"]["name"], format!("{FULLNAME}-namespace"), "{label}");
        assert_eq!(cluster_roles[0]["rules"], json!([{"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["team-a"], "verbs": ["get", "list", "watch"]}]), "{label}");
        assert_eq!(one(&docs, "ClusterRoleBinding")["roleRef"]["name"], format!("{FULLNAME}-namespace"), "{label}");
        let roles = find(&docs, "Role");
        let watched = roles.iter().find(|r| r["metadata"]["namespace"] == "team-a").expect("Role in team-a");
        let namespaced: Vec<Value> = one(&cluster, "ClusterRole")["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .filter(|r| r["resources"] != json!(["namespaces"]))
            .cloned()
            .collect();
        assert_eq!(watched["rules"], json!(namespaced), "{label}: same rules, namespaced (namespaces apart)");
        let binding = find(&docs, "RoleBinding").into_iter().find(|b| b["metadata"]["namespace"] == "team-a").expect("RoleBinding in team-a");
        assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
        // The default credentials Secret is in the release namespace: that one Secret only.
        let creds = roles.iter().find(|r| r["metadata"]["name"] == format!("{FULLNAME}-default-credentials")).expect("credentials Role");
        assert_eq!(creds["metadata"]["namespace"], NAMESPACE);
        // Watched by name (a metadata.name field selector, which RBAC authorizes by resourceNames).
        assert_eq!(creds["rules"], json!([{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["aml-default"], "verbs": ["get", "list", "watch"]}]));
    }
}

#[test]
fn service_monitor_only_when_enabled() {
    for helm in helms() {
        let docs = helm.template(&["serviceMonitor.enabled=true", "serviceMonitor.labels.release=prom"]);
        let sm = one(&docs, "ServiceMonitor");
        assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1", "{}", helm.label);
        assert_eq!(sm["metadata"]["labels"]["release"], "prom");
        assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
        assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
        let service = one(&docs, "Service");
        for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().expect("matchLabels") {
            assert_eq!(&service["metadata"]["labels"][k], v, "{}: the ServiceMonitor does not select the Service", helm.label);
        }
    }
}

#[test]
fn argocd_health_check_entries_when_enabled() {
    let script = std::fs::read_to_string(chart().join("argocd/health.lua")).expect("health.lua");
    for helm in helms() {
        let docs = helm.template(&["argocd.healthCheck.enabled=true"]);
        let cm = one(&docs, "ConfigMap");
        assert_eq!(cm["metadata"]["name"], "argocd-cm", "{}", helm.label);
        assert_eq!(cm["metadata"]["namespace"], "argocd");
        assert_eq!(cm["metadata"]["labels"]["app.kubernetes.io/part-of"], "argocd", "Argo CD ignores argocd-cm without it");
        let data = cm["data"].as_object().expect("data");
        let kinds: Vec<&str> = aml_operator::controller::kinds::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(data.len(), kinds.len(), "{data:?}");
        for kind in kinds {
            let key = format!("resource.customizations.health.amloperator.io_{kind}");
            let entry = data.get(&key).and_then(Value::as_str).unwrap_or_else(|| panic!("{}: {key} missing", helm.label));
            assert_eq!(entry.trim_end(), script.trim_end(), "{}: {key} is not health.lua", helm.label);
        }
    }
}

#[test]
fn workload_identity_annotates_the_service_account_and_labels_the_pod() {
    for helm in helms() {
        let docs = helm.template(&["workloadIdentity.enabled=true", "workloadIdentity.clientId=00000000-0000-0000-0000-0000000000bb"]);
        let sa = one(&docs, "ServiceAccount");
        assert_eq!(sa["metadata"]["annotations"]["azure.workload.identity/client-id"], "00000000-0000-0000-0000-0000000000bb", "{}", helm.label);
        let labels = &one(&docs, "Deployment")["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["azure.workload.identity/use"], "true", "{}", helm.label);
        let err = helm.template_error(&["workloadIdentity.enabled=true"]);
        assert!(err.contains("workloadIdentity.clientId"), "{}: {err}", helm.label);
    }
}

/// `workloadIdentity.projectToken`, for clusters without the Azure Workload Identity webhook: the
/// chart adds what the webhook would inject (the projected token volume and its mount, the four
/// AZURE_* variables); off by default, and refused without a tenant.
#[test]
fn project_token_adds_what_the_workload_identity_webhook_injects() {
    const TOKEN_DIR: &str = "/var/run/secrets/azure/tokens";
    for helm in helms() {
        let wi = ["workloadIdentity.enabled=true", "workloadIdentity.clientId=00000000-0000-0000-0000-0000000000bb"];
        let plain = helm.template(&wi);
        assert!(env(&plain, "AZURE_FEDERATED_TOKEN_FILE").is_none(), "{}: the webhook injects it by default", helm.label);
        assert!(one(&plain, "Deployment")["spec"]["template"]["spec"]["volumes"].is_null(), "{}", helm.label);

        let sets = [&wi[..], &["workloadIdentity.tenantId=00000000-0000-0000-0000-0000000000aa", "workloadIdentity.projectToken=true", "arm.caBundle.configMap=corp-ca"]].concat();
        let docs = helm.template(&sets);
        let value = |name: &str| env(&docs, name).unwrap_or_else(|| panic!("{}: no {name}", helm.label))["value"].clone();
        assert_eq!(value("AZURE_CLIENT_ID"), "00000000-0000-0000-0000-0000000000bb", "{}", helm.label);
        assert_eq!(value("AZURE_TENANT_ID"), "00000000-0000-0000-0000-0000000000aa", "{}", helm.label);
        assert_eq!(value("AZURE_AUTHORITY_HOST"), "https://login.microsoftonline.com/", "{}", helm.label);
        assert_eq!(value("AZURE_FEDERATED_TOKEN_FILE"), format!("{TOKEN_DIR}/azure-identity-token").as_str(), "{}", helm.label);
        let pod = &one(&docs, "Deployment")["spec"]["template"]["spec"];
        let volumes = pod["volumes"].as_array().expect("volumes");
        assert_eq!(volumes.len(), 2, "{}: the CA bundle and the token: {volumes:?}", helm.label);
        let token = volumes.iter().find(|v| v["name"] == "azure-identity-token").expect("the token volume");
        assert_eq!(
            token["projected"]["sources"][0]["serviceAccountToken"],
            json!({"path": "azure-identity-token", "audience": "api://AzureADTokenExchange", "expirationSeconds": 3600}),
            "{}",
            helm.label
        );
        let mounts = container(&docs)["volumeMounts"].as_array().expect("volumeMounts").clone();
        assert!(mounts.iter().any(|m| m["name"] == "ca-bundle"), "{}", helm.label);
        assert!(
            mounts.iter().any(|m| m["name"] == "azure-identity-token" && m["mountPath"] == TOKEN_DIR && m["readOnly"] == true),
            "{}: {mounts:?}",
            helm.label
        );

        let err = helm.template_error(&[&wi[..], &["workloadIdentity.projectToken=true"]].concat());
        assert!(err.contains("workloadIdentity.tenantId"), "{}: {err}", helm.label);
    }
}

#[test]
fn bad_values_are_refused_with_a_reason() {
    for helm in helms() {
        let label = &helm.label;
        let err = helm.template_error(&["replicas=2", "leaderElection.enabled=false"]);
        assert!(err.contains("leaderElection.enabled"), "{label}: {err}");
        let err = helm.template_error(&["logging.format=xml"]);
        assert!(err.contains("logging"), "{label}: {err}");
        let err = helm.template_error(&["securityContext.allowPrivilegeEscalation=true"]);
        assert!(err.contains("allowPrivilegeEscalation"), "{label}: {err}");
        let err = helm.template_error(&["arm.rateLimits.writesPerSecond=50"]);
        assert!(err.contains("writesPerSecond"), "{label}: {err}");
        let err = helm.template_error(&["replicaCount=2"]);
        assert!(err.contains("replicaCount"), "{label}: a misspelt key must not be ignored: {err}");
        // Without leader election a single replica is replaced, never doubled.
        let docs = helm.template(&["leaderElection.enabled=false"]);
        assert_eq!(one(&docs, "Deployment")["spec"]["strategy"]["type"], "Recreate", "{label}");
        assert!(!args(&docs).iter().any(|a| a.starts_with("--leader-elect") || a.starts_with("--lease-name")), "{label}");
        assert!(find(&docs, "Role").is_empty(), "{label}: no Lease Role without leader election");
    }
}

/// On SIGTERM the operator gives in-flight reconciles `--shutdown-timeout-seconds`, then releases
/// the Lease and exits: the kubelet must not SIGKILL it before that (the pod's grace period).
#[test]
fn the_grace_period_outlasts_the_shutdown_timeout() {
    for helm in helms() {
        let label = &helm.label;
        for (set, timeout) in [(None, 10), (Some("shutdownTimeoutSeconds=45"), 45)] {
            let docs = helm.template(set.as_slice());
            let flag = format!("--shutdown-timeout-seconds={timeout}");
            assert!(args(&docs).contains(&flag), "{label}: {flag} missing");
            let grace = one(&docs, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_u64().expect("terminationGracePeriodSeconds");
            assert!(grace >= timeout + 5, "{label}: grace period {grace}s leaves no time after the {timeout}s shutdown timeout");
        }
    }
}

/// `hostNetwork` and `kubernetesApi` are for nodes without a pod network (the e2e tests' node):
/// off and unset by default, rendered as the pod's `hostNetwork` and the container's
/// `KUBERNETES_SERVICE_HOST`/`_PORT` when set, and the two address halves only together.
#[test]
fn host_network_and_the_api_address_only_when_asked() {
    for helm in helms() {
        let label = &helm.label;
        let docs = helm.template(&[]);
        let pod = &one(&docs, "Deployment")["spec"]["template"]["spec"];
        assert!(pod.get("hostNetwork").is_none(), "{label}: hostNetwork by default");
        assert!(pod.get("dnsPolicy").is_none(), "{label}: dnsPolicy by default");
        for name in ["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"] {
            assert!(env(&docs, name).is_none(), "{label}: {name} set by default");
        }

        let docs = helm.template(&["hostNetwork=true", "kubernetesApi.host=127.0.0.1", "kubernetesApi.port=6443"]);
        let pod = &one(&docs, "Deployment")["spec"]["template"]["spec"];
        assert_eq!(pod["hostNetwork"], true, "{label}");
        assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet", "{label}");
        assert_eq!(env(&docs, "KUBERNETES_SERVICE_HOST").expect("host")["value"], "127.0.0.1", "{label}");
        assert_eq!(env(&docs, "KUBERNETES_SERVICE_PORT").expect("port")["value"], "6443", "{label}");

        for half in ["kubernetesApi.host=127.0.0.1", "kubernetesApi.port=6443"] {
            let err = helm.template_error(&[half]);
            assert!(err.contains("kubernetesApi"), "{label}: {half} alone: {err}");
        }
        let err = helm.template_error(&["kubernetesApi.port=https"]);
        assert!(err.contains("port"), "{label}: a port that is no number: {err}");
    }
}

/// `probes.type: exec` with `metrics.port: 0`: the pod has no port at all (what lets several
/// hostNetwork replicas share a node); the kubelet runs `aml-operator probe` against the socket
/// the process serves in an emptyDir, and the flags on both sides parse and name the same socket.
#[test]
fn exec_probes_leave_the_pod_without_a_port() {
    for helm in helms() {
        let label = &helm.label;
        let docs = helm.template(&["probes.type=exec", "metrics.port=0", "hostNetwork=true", "replicas=2"]);
        assert!(find(&docs, "Service").is_empty(), "{label}: a metrics Service without a port");
        let c = container(&docs);
        assert!(c.get("ports").is_none(), "{label}: {}", c["ports"]);
        let a = args(&docs);
        let run = || aml_operator::manager::RunArgs::augment_args(Command::new("run").no_binary_name(true));
        let parsed = aml_operator::manager::RunArgs::from_arg_matches(&run().try_get_matches_from(&a[1..]).expect("flags parse")).expect("args");
        assert_eq!(parsed.metrics_addr, "", "{label}: no TCP listener");
        let socket = parsed.health_socket.expect("--health-socket");
        let probe = || aml_operator::health::ProbeArgs::augment_args(Command::new("probe").no_binary_name(true));
        for (probe_kind, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
            let command: Vec<String> = serde_json::from_value(c[probe_kind]["exec"]["command"].clone()).unwrap_or_else(|_| panic!("{label}: {probe_kind} is no exec probe"));
            assert_eq!(command[..2], ["/aml-operator", "probe"], "{label}: the image's binary (Dockerfile ENTRYPOINT)");
            let asked = aml_operator::health::ProbeArgs::from_arg_matches(&probe().try_get_matches_from(&command[2..]).expect("probe flags parse")).expect("probe args");
            assert_eq!((asked.socket.as_path(), asked.path.as_str()), (socket.as_path(), path), "{label}: {probe_kind}");
            assert!(asked.timeout_seconds < c[probe_kind]["timeoutSeconds"].as_u64().unwrap(), "{label}: the probe gives up before the kubelet does");
        }
        let mount = c["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == "health-socket").expect("the socket's volume mounted");
        assert_eq!(Path::new(mount["mountPath"].as_str().unwrap()), socket.parent().unwrap(), "{label}");
        let volume = one(&docs, "Deployment")["spec"]["template"]["spec"]["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "health-socket").cloned().expect("volume");
        assert_eq!(volume["emptyDir"]["medium"], "Memory", "{label}");

        // Half of it is refused, saying what the other half is.
        let err = helm.template_error(&["metrics.port=0"]);
        assert!(err.contains("probes.type exec"), "{label}: {err}");
        let err = helm.template_error(&["metrics.port=0", "probes.type=exec", "serviceMonitor.enabled=true"]);
        assert!(err.contains("serviceMonitor.enabled needs metrics.port"), "{label}: {err}");
        let err = helm.template_error(&["probes.type=tcpSocket"]);
        assert!(err.contains("probes"), "{label}: {err}");
        // exec probes with a port: both listeners.
        let a = args(&helm.template(&["probes.type=exec"]));
        assert!(a.contains(&"--metrics-addr=0.0.0.0:8080".to_string()) && a.iter().any(|x| x.starts_with("--health-socket=")), "{label}: {a:?}");
    }
}
