//! The operator as shipped: the image built from the `Dockerfile` (by `.ci/image`), run by a real
//! kubelet in a pod of the chart's Deployment, installed, upgraded, stopped and uninstalled with Helm.
//!
//! Needs, beyond the cluster of the other e2e tests (`AML_E2E_KUBECONFIG`):
//! - a node that runs pods: `eval "$(../shared/kube/node-up)"` after `up`, as root (it sets
//!   `AML_KUBE_NODE`, `AML_KUBE_API_PORT` and `AML_KUBE_CONTAINERD`);
//! - the image archive: `cargo build --release --locked && .ci/image`, then
//!   `AML_OPERATOR_IMAGE=target/image/aml-operator.oci.tar`;
//! - Helm (`AML_HELM3`, `AML_HELM4` or `helm` on PATH).
//!
//! Without the node, root or the image each test prints why it skips, unless `AML_REQUIRE_NODE=1`
//! (set by `.ci/run`, which starts the node and builds the image) makes that a failure; without the
//! cluster the usual `AML_REQUIRE_E2E` rule applies.
//!
//! The node has no pod network: the chart runs the pod with `hostNetwork: true` and the API
//! server's address in `kubernetesApi` (values the chart offers for such nodes). Azure is the
//! emulator, in this test's process on a loopback port, which the pod reaches on 127.0.0.1 and
//! trusts through the chart's `arm.caBundle`; its request log counts the ARM writes. With
//! `hostNetwork` the pods of a Deployment share the node's ports and `node-up` makes one node per
//! control plane, so the chart's defaults (an httpGet probe on the metrics port) run one replica
//! here: the first test upgrades and stops that one. The two-replica test runs the chart with
//! `probes.type=exec` and `metrics.port=0`, which leave the pod without a port.

use crate::support;
use crate::support::cluster::{MANAGER, cluster, create_namespace, delete_namespace, dynamic_api, eventually, install_crds, ready, skip};

use aml_operator::emulator::{Emulator, EmulatorConfig, Principal};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Set to 1 (as `.ci/run` does) to make a missing node, root or image a failure instead of a skip.
const REQUIRE_NODE_ENV: &str = "AML_REQUIRE_NODE";
/// The image archive `.ci/image` writes.
const IMAGE_ENV: &str = "AML_OPERATOR_IMAGE";
/// The base image the Dockerfile's runtime stage names, and the stand-in for it here.
const DISTROLESS: &str = "gcr.io/distroless/cc-debian12:nonroot";

/// Skips a pod test with `why`, or fails it when `AML_REQUIRE_NODE=1`.
pub(crate) fn skip_pod(why: &str) {
    assert!(std::env::var(REQUIRE_NODE_ENV).as_deref() != Ok("1"), "{REQUIRE_NODE_ENV}=1 but {why}");
    eprintln!("skipping pod test: {why}");
}

fn kube_tools() -> PathBuf {
    std::env::var_os("AML_KUBE_TOOLS").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/kube"))
}

/// The node `node-up` started.
pub(crate) struct Node {
    pub(crate) api_port: String,
    containerd: String,
}

/// The node, when one runs and this process may use it (root: node-load and /proc of the pod).
pub(crate) fn node() -> Option<Node> {
    if std::env::var("AML_KUBE_NODE").is_err() {
        skip_pod("AML_KUBE_NODE is not set: no node runs pods (`eval \"$(../shared/kube/node-up)\"` after `up`, as root)");
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1)).unwrap_or("?").to_string();
    if uid != "0" {
        skip_pod(&format!("not root (effective uid {uid}): importing images into the node's containerd and reading the pod's processes need it"));
        return None;
    }
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("AML_KUBE_NODE is set but {name} is not (node-up exports both)"));
    Some(Node { api_port: var("AML_KUBE_API_PORT"), containerd: var("AML_KUBE_CONTAINERD") })
}

/// The image archive named by `AML_OPERATOR_IMAGE`.
pub(crate) fn image_archive() -> Option<PathBuf> {
    let Some(path) = std::env::var_os(IMAGE_ENV) else {
        skip_pod(&format!("{IMAGE_ENV} is not set: build the image with `cargo build --release --locked && .ci/image` and set it to target/image/aml-operator.oci.tar"));
        return None;
    };
    let path = PathBuf::from(path);
    assert!(path.is_file(), "{IMAGE_ENV}={} is not a file", path.display());
    Some(path)
}

// ---------------------------------------------------------------------------------------------
// The image and the Dockerfile.

/// One image of an OCI archive: its name, config and layers.
pub(crate) struct OciImage {
    name: String,
    config: Value,
    layers: Vec<Value>,
}

impl OciImage {
    fn read(archive: &Path) -> OciImage {
        let member = |name: &str| -> Vec<u8> {
            let out = Command::new("tar").arg("-xOf").arg(archive).arg(name).output().expect("tar runs");
            assert!(out.status.success(), "{}: no {name}: {}", archive.display(), String::from_utf8_lossy(&out.stderr));
            out.stdout
        };
        let blob = |digest: &str| -> Value { serde_json::from_slice(&member(&format!("blobs/{}", digest.replace(':', "/")))).expect("JSON blob") };
        let index: Value = serde_json::from_slice(&member("index.json")).expect("index.json");
        let desc = &index["manifests"][0];
        let manifest = blob(desc["digest"].as_str().expect("manifest digest"));
        OciImage {
            name: desc["annotations"]["io.containerd.image.name"].as_str().unwrap_or_default().to_string(),
            config: blob(manifest["config"]["digest"].as_str().expect("config digest")),
            layers: manifest["layers"].as_array().expect("layers").clone(),
        }
    }

    /// Bytes of its gzip layers: what a registry stores and a node pulls.
    fn compressed(&self) -> u64 {
        self.layers.iter().map(|l| l["size"].as_u64().unwrap_or(0)).sum()
    }
}

/// The Dockerfile's last stage as (KEYWORD, arguments), continuation lines joined, comments dropped.
fn runtime_stage() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).expect("Dockerfile");
    let mut all: Vec<(String, String)> = Vec::new();
    let mut buf = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || (buf.is_empty() && line.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                buf.push_str(part);
                buf.push(' ');
            }
            None => {
                buf.push_str(line);
                let (kw, rest) = buf.split_once(' ').unwrap_or((&buf, ""));
                all.push((kw.to_ascii_uppercase(), rest.trim().to_string()));
                buf.clear();
            }
        }
    }
    let last_from = all.iter().rposition(|(kw, _)| kw == "FROM").expect("a FROM");
    all.split_off(last_from)
}

/// `k=v k2="v 2"` as pairs (the LABEL and ENV forms the Dockerfile uses).
fn key_values(text: &str) -> Vec<(String, String)> {
    let (mut out, mut word, mut quoted, mut words) = (Vec::new(), String::new(), false, Vec::new());
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    for w in words {
        let (k, v) = w.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {w}"));
        out.push((k.to_string(), v.to_string()));
    }
    out
}

/// The image CI builds is the Dockerfile's runtime stage: its base's layers, then one layer (the
/// binary), and the stage's USER, ENV, LABELs, ENTRYPOINT and CMD in the image config. `.ci/image`
/// reads the stage to build the image; this reads the stage and the built archive independently.
#[test]
fn the_image_is_the_dockerfiles_runtime_stage() {
    let Some(archive) = image_archive() else { return };
    let image = OciImage::read(&archive);
    let stage = runtime_stage();
    let config = &image.config["config"];
    let mut checked = BTreeSet::new();
    for (kw, rest) in &stage {
        match kw.as_str() {
            "FROM" => {
                assert_eq!(rest, DISTROLESS, "the runtime stage's base changed: teach .ci/image (and this test) its stand-in");
                let base = OciImage::read(&kube_tools().join("cc-debian12-nonroot.oci.tar"));
                let digests = |i: &OciImage| i.layers.iter().map(|l| l["digest"].clone()).collect::<Vec<_>>();
                assert_eq!(digests(&image)[..base.layers.len()], digests(&base)[..], "the image does not start with the base's layers");
                assert_eq!(image.layers.len(), base.layers.len() + 1, "one layer on the base: the COPY of the binary");
            }
            "USER" => assert_eq!(config["User"], json!(rest), "USER"),
            "ENTRYPOINT" | "CMD" => {
                let field = if kw == "CMD" { "Cmd" } else { "Entrypoint" };
                assert_eq!(config[field], serde_json::from_str::<Value>(rest).expect("exec form"), "{kw}");
            }
            "ENV" => {
                let env: Vec<&str> = config["Env"].as_array().expect("Env").iter().filter_map(Value::as_str).collect();
                for (k, v) in key_values(rest) {
                    assert!(env.contains(&format!("{k}={v}").as_str()), "ENV {k}={v} is not in the image's {env:?}");
                }
            }
            "LABEL" => {
                for (k, v) in key_values(rest) {
                    assert_eq!(config["Labels"][&k], json!(v), "LABEL {k}");
                }
            }
            "COPY" => assert!(rest.starts_with("--from=build "), "the runtime stage copies only the build stage's binary: {rest}"),
            "EXPOSE" => {}
            other => panic!("the runtime stage has {other}, which .ci/image does not build"),
        }
        checked.insert(kw.clone());
    }
    for kw in ["FROM", "USER", "ENTRYPOINT", "CMD", "ENV", "COPY"] {
        assert!(checked.contains(kw), "the runtime stage has no {kw}");
    }
    let size = image.compressed();
    println!("image {}: {size} bytes compressed ({:.1} MB), {} layers", image.name, size as f64 / 1e6, image.layers.len());
}

// ---------------------------------------------------------------------------------------------
// The chart on the node.

/// The helm binary: `AML_HELM3`, `AML_HELM4`, else `helm` on PATH.
pub(crate) fn helm() -> Option<String> {
    for var in ["AML_HELM3", "AML_HELM4"] {
        if let Ok(path) = std::env::var(var) {
            return Some(path);
        }
    }
    Command::new("helm").arg("version").output().ok().filter(|o| o.status.success()).map(|_| "helm".into())
}

pub(crate) fn run_helm(helm: &str, args: &[&str]) -> String {
    let home = std::env::temp_dir().join("aml-e2e-helm");
    let out = Command::new(helm)
        .args(args)
        .env("KUBECONFIG", support::cluster::kubeconfig_path())
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .expect("helm runs");
    assert!(out.status.success(), "helm {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// A port free on loopback now (the pod shares the host's ports).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// What a watch saw of one pod.
#[derive(Clone, Debug, Default)]
struct PodSeen {
    image: String,
    ready_at: Option<Instant>,
    deleting_at: Option<Instant>,
    gone_at: Option<Instant>,
    /// The operator container's exit code and reason, once terminated.
    exit: Option<(i32, String)>,
    restarts: i32,
}

type Seen<T> = Arc<Mutex<T>>;

/// Watches the release's pods, recording when each became Ready, began terminating, ended (and
/// how) and went.
fn watch_pods(client: &Client, ns: &str, release: &str) -> (Seen<BTreeMap<String, PodSeen>>, tokio::task::JoinHandle<()>) {
    let seen: Seen<BTreeMap<String, PodSeen>> = Arc::default();
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let config = watcher::Config::default().labels(&format!("app.kubernetes.io/instance={release}"));
    let record = seen.clone();
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(api, config));
        while let Some(event) = events.next().await {
            let (pod, gone) = match event {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => (p, false),
                Ok(watcher::Event::Delete(p)) => (p, true),
                _ => continue,
            };
            let now = Instant::now();
            let mut all = record.lock().unwrap();
            let entry = all.entry(pod.name_any()).or_default();
            entry.image = pod.spec.as_ref().map(|s| s.containers[0].image.clone().unwrap_or_default()).unwrap_or_default();
            if pod.metadata.deletion_timestamp.is_some() {
                entry.deleting_at.get_or_insert(now);
            }
            let status = pod.status.unwrap_or_default();
            if status.conditions.unwrap_or_default().iter().any(|c| c.type_ == "Ready" && c.status == "True") {
                entry.ready_at.get_or_insert(now);
            }
            for cs in status.container_statuses.unwrap_or_default() {
                entry.restarts = cs.restart_count;
                let terminated = cs.state.and_then(|s| s.terminated).or_else(|| cs.last_state.and_then(|s| s.terminated));
                if let Some(t) = terminated {
                    entry.exit = Some((t.exit_code, t.reason.unwrap_or_default()));
                }
            }
            if gone {
                entry.gone_at.get_or_insert(now);
            }
        }
    });
    (seen, task)
}

/// Watches the Lease, recording each change of holder (empty: released).
fn watch_lease(client: &Client, ns: &str, name: &str) -> (Seen<Vec<(Instant, String)>>, tokio::task::JoinHandle<()>) {
    let seen: Seen<Vec<(Instant, String)>> = Arc::default();
    let api: Api<Lease> = Api::namespaced(client.clone(), ns);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let record = seen.clone();
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(api, config));
        while let Some(event) = events.next().await {
            let holder = match event {
                Ok(watcher::Event::Apply(l) | watcher::Event::InitApply(l)) => l.spec.and_then(|s| s.holder_identity).unwrap_or_default(),
                Ok(watcher::Event::Delete(_)) => String::new(),
                _ => continue,
            };
            let mut changes = record.lock().unwrap();
            if changes.last().is_none_or(|(_, h)| *h != holder) {
                changes.push((Instant::now(), holder));
            }
        }
    });
    (seen, task)
}

/// When `holder` first held the Lease at or after `since`.
fn lease_taken(lease: &Seen<Vec<(Instant, String)>>, holder: &str, since: Instant) -> Option<Instant> {
    lease.lock().unwrap().iter().find(|(t, h)| *t >= since && h == holder).map(|(t, _)| *t)
}

/// When the Lease was first seen without a holder at or after `since`.
fn lease_released(lease: &Seen<Vec<(Instant, String)>>, since: Instant) -> Option<Instant> {
    lease.lock().unwrap().iter().find(|(t, h)| *t >= since && h.is_empty()).map(|(t, _)| *t)
}

/// The one pod of the release that is Ready and not terminating, other than those in `not`.
pub(crate) async fn ready_pod(pods: &Api<Pod>, release: &str, not: &[String]) -> Option<Pod> {
    let list = pods.list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={release}"))).await.ok()?;
    list.items.into_iter().find(|p| {
        !not.contains(&p.name_any())
            && p.metadata.deletion_timestamp.is_none()
            && p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
}

/// The host pid of the operator process of pod `pod` (found by its POD_NAME).
fn operator_pid(pod: &str) -> Option<u32> {
    let wanted = format!("POD_NAME={pod}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        (comm.trim() == "aml-operator" && environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes())).then_some(pid)
    })
}

/// A `Name:` line of /proc/<pid>/status.
fn proc_status(pid: u32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status.lines().find_map(|l| l.strip_prefix(&format!("{name}:"))).unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status")).trim().to_string()
}

/// The memory cgroup (v1) of a process: (peak, current, anonymous now) bytes. The binary's file
/// pages are charged to the cgroup that first read them (here containerd's, which unpacked the
/// image), so they show in the process's resident set (VmHWM), not in these.
fn memory_of(pid: u32) -> Option<(u64, u64, u64)> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = cgroups.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers.split(',').any(|c| c == "memory").then(|| path.to_string())
    })?;
    let read = |f: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/memory{path}/{f}")).ok()?.trim().parse::<u64>().ok();
    let stat = std::fs::read_to_string(format!("/sys/fs/cgroup/memory{path}/memory.stat")).ok()?;
    let rss = stat.lines().find_map(|l| l.strip_prefix("rss ")).and_then(|v| v.trim().parse().ok())?;
    Some((read("memory.max_usage_in_bytes")?, read("memory.usage_in_bytes")?, rss))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The ARM PUTs the emulator answered 2xx for `arm_id`.
fn arm_puts(emulator: &Emulator, arm_id: &str) -> usize {
    emulator.requests().iter().filter(|r| r.method == "PUT" && (200..300).contains(&r.status) && r.path.eq_ignore_ascii_case(arm_id)).count()
}

/// ARM writes of any kind (PUT, PATCH, DELETE) answered 2xx, from request `from` on.
fn arm_writes_since(emulator: &Emulator, from: usize) -> Vec<String> {
    emulator.requests()[from..]
        .iter()
        .filter(|r| ["PUT", "PATCH", "DELETE"].contains(&r.method.as_str()) && (200..300).contains(&r.status))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// The examples this test applies, as (plural, manifest): every `examples/*.yaml`, unchanged.
pub(crate) fn examples() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let plurals: BTreeMap<String, String> =
        aml_operator::controller::kinds::crds().into_iter().map(|c| (c.spec.names.kind.clone(), c.spec.names.plural.clone())).collect();
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("examples/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
        .collect();
    files.sort();
    for path in files {
        let file = path.display().to_string();
        let manifest: Value = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let plural = plurals.get(manifest["kind"].as_str().unwrap()).unwrap_or_else(|| panic!("{file}: unknown kind")).clone();
        out.push((plural, manifest));
    }
    out
}

/// The chart in this repository.
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/aml-operator");
/// The second tag of the image, for `helm upgrade`.
const UPGRADE_SUFFIX: &str = "upgrade";

/// The pod tests take the node one at a time: their timings (hand-over, memory) are then theirs.
pub(crate) static NODE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Imports the image archive into the node's containerd (once per test process), and tags the
/// same image `<tag>-upgrade` to upgrade to. Returns the image.
pub(crate) fn import_image(node: &Node, archive: &Path) -> OciImage {
    static IMPORTED: std::sync::Once = std::sync::Once::new();
    let image = OciImage::read(archive);
    IMPORTED.call_once(|| {
        let started = Instant::now();
        run(Command::new(kube_tools().join("node-load")).arg(archive));
        run(Command::new("ctr")
            .args(["--address", &node.containerd, "--namespace", "k8s.io", "images", "tag", "--force"])
            .args([image.name.clone(), format!("{}-{UPGRADE_SUFFIX}", image.name)]));
        println!("image {} imported into the node ({} bytes compressed) in {:.1} s", image.name, image.compressed(), started.elapsed().as_secs_f64());
    });
    image
}

/// What every pod test needs: the cluster with the CRDs, the node (held for this test alone), Helm
/// and the image imported into the node.
pub(crate) struct PodTest {
    pub(crate) admin: Client,
    pub(crate) node: Node,
    pub(crate) helm: String,
    pub(crate) image: OciImage,
    pub(crate) _node_is_mine: tokio::sync::MutexGuard<'static, ()>,
}

/// [`PodTest`], or `None` after saying why the test skips (a failure where the environment
/// requires it).
pub(crate) async fn pod_test() -> Option<PodTest> {
    let admin = cluster().await?;
    let node = node()?;
    let archive = image_archive()?;
    let Some(helm) = helm() else {
        skip("no helm (set AML_HELM3 or put helm on PATH)");
        return None;
    };
    let node_is_mine = NODE.lock().await;
    install_crds(&admin).await;
    let image = import_image(&node, &archive);
    Some(PodTest { admin, node, helm, image, _node_is_mine: node_is_mine })
}

/// One pod test's world: the emulator as Azure (on a loopback port of this host, its CA in the
/// ConfigMap `emulator-ca` of the release namespace), a namespace for the objects and one for the
/// release.
pub(crate) struct World {
    pub(crate) emulator: Emulator,
    ca_file: PathBuf,
    pub(crate) ns: String,
    pub(crate) op_ns: String,
    pub(crate) release: String,
}

impl World {
    async fn start(admin: &Client, prefix: &str) -> World {
        World::start_with(admin, prefix, |_, _| EmulatorConfig::default()).await
    }

    /// [`World::start`] with the emulator's principals and OIDC issuers from `config(op_ns, release)`.
    pub(crate) async fn start_with(admin: &Client, prefix: &str, config: impl FnOnce(&str, &str) -> EmulatorConfig) -> World {
        let id = std::process::id() % 100000;
        let (ns, op_ns) = (format!("{prefix}-{id}"), format!("{prefix}-system-{id}"));
        // The release name contains the chart's name: the full name (Deployment, Lease) is the release.
        let release = format!("aml-operator-{prefix}-{id}");
        let (emulator, ca_file) = support::cluster::start_emulator(prefix, Duration::from_millis(500), config(&op_ns, &release)).await;
        create_namespace(admin, &ns).await;
        create_namespace(admin, &op_ns).await;
        let ca: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "emulator-ca"},
            "data": {"ca.crt": std::fs::read_to_string(&ca_file).expect("the emulator's CA")}
        }))
        .unwrap();
        Api::<ConfigMap>::namespaced(admin.clone(), &op_ns).create(&PostParams::default(), &ca).await.expect("CA ConfigMap");
        World { emulator, ca_file, ns, op_ns, release }
    }

    /// `helm install` of the chart with `image`, on the node (hostNetwork, the API server's
    /// address), Azure the emulator, watching `ns`; `extra` values appended.
    pub(crate) fn install(&self, helm: &str, node: &Node, image: &OciImage, extra: &[&str]) {
        let (repository, tag) = image.name.rsplit_once(':').expect("the archive's image name has a tag");
        let mut sets = vec![
            format!("image.repository={repository}"),
            format!("image.tag={tag}"),
            "image.pullPolicy=Never".to_string(),
            "hostNetwork=true".to_string(),
            "kubernetesApi.host=127.0.0.1".to_string(),
            format!("kubernetesApi.port={}", node.api_port),
            format!("arm.endpoint={}", self.emulator.arm_endpoint()),
            format!("arm.authorityHost={}", self.emulator.authority_host()),
            "arm.caBundle.configMap=emulator-ca".to_string(),
            // The pod shares the host's ports.
            format!("metrics.port={}", free_port()),
            format!("watchNamespace={}", self.ns),
        ];
        sets.extend(extra.iter().map(|s| s.to_string()));
        let mut args: Vec<&str> = vec!["install", &self.release, CHART, "--namespace", &self.op_ns];
        for s in &sets {
            args.extend(["--set", s.as_str()]);
        }
        run_helm(helm, &args);
    }

    /// The Secret `aml-credentials` in the objects' namespace: the emulator's default principal.
    pub(crate) async fn create_credentials(&self, admin: &Client) {
        let p = Principal::default();
        let secret = support::cluster::credentials_secret("aml-credentials", &p, &p.client_secret);
        Api::<Secret>::namespaced(admin.clone(), &self.ns).create(&PostParams::default(), &secret).await.expect("credentials Secret");
    }

    pub(crate) async fn finish(self, admin: &Client) {
        delete_namespace(admin, &self.ns, Duration::from_secs(180)).await;
        delete_namespace(admin, &self.op_ns, Duration::from_secs(120)).await;
        self.emulator.shutdown().await;
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

/// `helm install` of the chart on the node, the image in a pod, the examples Ready; then `helm
/// upgrade` to a new tag with an edit during the roll (one ARM write), the leader pod deleted
/// (hand-over, exit 0 within the grace period), and `helm uninstall` (CRDs, objects and Azure
/// resources stay). Prints its figures: pod Ready, examples Ready, peak memory, hand-over times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_runs_the_image_on_a_node_and_upgrades_and_stops_like_a_user_does() {
    let Some(PodTest { admin, node, helm, image, _node_is_mine }) = pod_test().await else { return };
    let (repository, tag) = image.name.rsplit_once(':').expect("the archive's image name has a tag");
    let upgrade_tag = format!("{tag}-{UPGRADE_SUFFIX}");
    let world = World::start(&admin, "aml-pod").await;
    let (emulator, ns, op_ns, release) = (&world.emulator, &world.ns, &world.op_ns, &world.release);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), op_ns);
    let (seen, pod_watch) = watch_pods(&admin, op_ns, release);
    // The release name contains the chart's name, so the full name (Deployment, Lease) is the release.
    let (lease, lease_watch) = watch_lease(&admin, op_ns, release);

    // 1. helm install: the pod runs and becomes Ready through the chart's readiness probe.
    let installed = Instant::now();
    world.install(&helm, &node, &image, &[]);
    let pod = eventually("the operator pod Ready (its readiness probe passed)", Duration::from_secs(120), || ready_pod(&pods, release, &[])).await;
    let first = pod.name_any();
    println!("helm install -> pod {first} Ready in {:.1} s", installed.elapsed().as_secs_f64());

    // Under the chart's security context, with the kubelet's ServiceAccount token, as the chart's
    // resources say: read from the pod, and from the process itself.
    let spec = pod.spec.clone().unwrap();
    let c = &spec.containers[0];
    assert_eq!(spec.host_network, Some(true));
    assert_eq!(c.image.as_deref(), Some(image.name.as_str()));
    assert_eq!(spec.service_account_name.as_deref(), Some(release.as_str()));
    let sc = c.security_context.clone().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.and_then(|c| c.drop), Some(vec!["ALL".to_string()]));
    assert!(c.readiness_probe.as_ref().and_then(|p| p.http_get.as_ref()).is_some_and(|g| g.path.as_deref() == Some("/readyz")));
    let limits = c.resources.as_ref().and_then(|r| r.limits.clone()).expect("resource limits");
    assert!(
        c.volume_mounts.iter().flatten().any(|m| m.mount_path == "/var/run/secrets/kubernetes.io/serviceaccount"),
        "the kubelet mounts the ServiceAccount token"
    );
    let status = pod.status.clone().unwrap();
    let cs = &status.container_statuses.clone().unwrap()[0];
    assert!(cs.ready && cs.restart_count == 0, "{cs:?}");
    let pid = operator_pid(&first).expect("the operator process of the pod on this host");
    let uids = proc_status(pid, "Uid");
    assert!(uids.split_whitespace().all(|u| u == "65532"), "the operator runs as {uids}, not 65532");
    assert!(proc_status(pid, "Gid").split_whitespace().all(|g| g == "65532"));
    for caps in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(proc_status(pid, caps), "0000000000000000", "{caps}: the process keeps capabilities");
    }
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    assert_eq!(proc_status(pid, "Seccomp"), "2", "RuntimeDefault seccomp filter");
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root = mounts.lines().find(|l| l.split_whitespace().nth(4) == Some("/")).expect("the root mount");
    assert!(root.split_whitespace().nth(5).is_some_and(|o| o.split(',').any(|o| o == "ro")), "the root file system is writable: {root}");
    eventually("the pod holds the Lease", Duration::from_secs(30), || async { lease_taken(&lease, &first, installed) }).await;
    println!("pod {first}: uid/gid 65532, no capabilities, no new privileges, seccomp filter, read-only root; holds the Lease");

    // 2. The examples, with the credentials Secret of the emulator's principal: every object Ready.
    world.create_credentials(&admin).await;
    let applied = Instant::now();
    let mut objects = Vec::new();
    for (plural, manifest) in examples() {
        let api = dynamic_api(&admin, ns, manifest["kind"].as_str().unwrap(), &plural);
        let name = manifest["metadata"]["name"].as_str().unwrap().to_string();
        api.patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(&manifest)).await.unwrap_or_else(|e| panic!("{plural}/{name}: {e}"));
        objects.push((api, name, plural));
    }
    let all_ready = || {
        let objects = objects.clone();
        async move {
            let mut out = BTreeMap::new();
            for (api, name, plural) in &objects {
                let obj = serde_json::to_value(api.get(name).await.ok()?).ok()?;
                if !ready(&obj) {
                    return None;
                }
                out.insert(plural.clone(), obj);
            }
            Some(out)
        }
    };
    let converged = eventually("every example Ready", Duration::from_secs(180), all_ready).await;
    println!("{} examples Ready {:.1} s after they were applied", objects.len(), applied.elapsed().as_secs_f64());
    let limit = limits.get("memory").map(|q| q.0.clone()).unwrap_or_default();
    let hwm = proc_status(pid, "VmHWM");
    match memory_of(pid) {
        Some((peak, now, rss)) => println!(
            "pod memory with the examples: cgroup peak {:.1} MiB, now {:.1} MiB ({:.1} MiB anonymous); process peak resident {hwm} (with the binary's file pages); chart limit {limit}",
            mib(peak),
            mib(now),
            mib(rss)
        ),
        None => println!("pod memory: no cgroup v1 memory controller for pid {pid}; process peak resident {hwm}; chart limit {limit}"),
    }

    // 3. helm upgrade to another tag: the pod is replaced (maxSurge 0), the old one exits 0 after
    // releasing the Lease, the new one takes it; an edit made during the roll costs one ARM write.
    let ws = &converged["amlworkspaces"];
    let ws_id = ws["status"]["armId"].as_str().unwrap().to_string();
    let ws_api = objects.iter().find(|(_, _, plural)| plural == "amlworkspaces").unwrap().0.clone();
    let puts_before = arm_puts(emulator, &ws_id);
    let upgraded = Instant::now();
    let mut upgrade: Vec<&str> = vec!["upgrade", release, CHART, "--namespace", op_ns, "--reuse-values"];
    let new_tag = format!("image.tag={upgrade_tag}");
    upgrade.extend(["--set", &new_tag]);
    run_helm(&helm, &upgrade);
    eventually("the old pod terminating", Duration::from_secs(30), || async { seen.lock().unwrap().get(&first)?.deleting_at }).await;
    let edited_at = Instant::now();
    let mut edit = examples().into_iter().map(|(_, m)| m).find(|m| m["kind"] == "AmlWorkspace").expect("examples/workspace.yaml");
    edit["spec"]["friendlyName"] = json!("Team A, edited during the roll");
    ws_api.patch("team-a", &PatchParams::apply(MANAGER), &Patch::Apply(&edit)).await.expect("edit accepted");
    let second_pod = eventually("the upgraded pod Ready", Duration::from_secs(120), || ready_pod(&pods, release, std::slice::from_ref(&first))).await;
    let second = second_pod.name_any();
    assert_eq!(second_pod.spec.as_ref().unwrap().containers[0].image.as_deref(), Some(format!("{repository}:{upgrade_tag}").as_str()));
    let taken = eventually("the upgraded pod holds the Lease", Duration::from_secs(30), || async { lease_taken(&lease, &second, upgraded) }).await;
    eventually("the edit Ready at its generation", Duration::from_secs(90), || {
        let api = ws_api.clone();
        async move {
            let obj = serde_json::to_value(api.get("team-a").await.ok()?).ok()?;
            (ready(&obj) && obj["metadata"]["generation"] == json!(2)).then_some(())
        }
    })
    .await;
    let old = eventually("the old pod gone", Duration::from_secs(30), || async { seen.lock().unwrap().get(&first).filter(|p| p.gone_at.is_some()).cloned() }).await;
    assert_eq!(emulator.resource(&ws_id).unwrap()["properties"]["friendlyName"], "Team A, edited during the roll");
    // No second write may follow: watch ARM for a few seconds more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(arm_puts(emulator, &ws_id) - puts_before, 1, "the edit during the roll cost one ARM write");
    let grace = Duration::from_secs(spec.termination_grace_period_seconds.expect("grace period") as u64);
    let (deleting, gone) = (old.deleting_at.unwrap(), old.gone_at.unwrap());
    assert_eq!(old.exit.as_ref().map(|e| e.0), Some(0), "the old pod's operator did not exit 0 on SIGTERM: {old:?}");
    assert!(gone - deleting < grace, "the old pod took {:?}, more than its grace period {grace:?}", gone - deleting);
    let released = lease_released(&lease, upgraded);
    println!(
        "helm upgrade -> old pod {first} exit 0 in {:.1} s (grace {}s), Lease released {}, taken by {second} {:.1} s after the upgrade; edit made {:.1} s into the roll: 1 ARM write",
        (gone - deleting).as_secs_f64(),
        grace.as_secs(),
        released.map(|r| format!("{:.1} s after the pod began terminating", r.saturating_duration_since(deleting).as_secs_f64())).unwrap_or("(not seen)".into()),
        (taken - upgraded).as_secs_f64(),
        (edited_at - upgraded).as_secs_f64(),
    );
    assert!(second_pod.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0].restart_count == 0);

    // 4. The leader pod deleted (as a drain does): it exits 0 within its grace period, the
    // replacement takes the Lease within seconds, and the hand-over writes nothing to ARM.
    let requests_before = emulator.requests().len();
    let deleted = Instant::now();
    pods.delete(&second, &DeleteParams::default()).await.expect("delete the leader pod");
    let earlier = [first.clone(), second.clone()];
    let third_pod = eventually("the replacement pod Ready", Duration::from_secs(120), || ready_pod(&pods, release, &earlier)).await;
    let third = third_pod.name_any();
    let taken = eventually("the replacement holds the Lease", Duration::from_secs(30), || async { lease_taken(&lease, &third, deleted) }).await;
    let old = eventually("the deleted pod gone", Duration::from_secs(30), || async { seen.lock().unwrap().get(&second).filter(|p| p.gone_at.is_some()).cloned() }).await;
    let released = lease_released(&lease, deleted).expect("the deleted pod released the Lease (no expiry wait)");
    assert_eq!(old.exit.as_ref().map(|e| e.0), Some(0), "the deleted pod's operator did not exit 0: {old:?}");
    let stopped = old.gone_at.unwrap() - deleted;
    assert!(stopped < grace, "the deleted pod took {stopped:?}, more than its grace period {grace:?}");
    assert!(released - deleted < Duration::from_secs(5), "the Lease was released {:?} after the delete", released - deleted);
    assert!(taken - deleted < Duration::from_secs(20), "the replacement took the Lease {:?} after the delete", taken - deleted);
    println!(
        "leader pod {second} deleted: Lease released after {:.2} s, pod gone after {:.1} s (exit 0, grace {}s), replacement {third} holds the Lease after {:.1} s",
        (released - deleted).as_secs_f64(),
        stopped.as_secs_f64(),
        grace.as_secs(),
        (taken - deleted).as_secs_f64()
    );
    eventually("every example still Ready under the new leader", Duration::from_secs(60), all_ready).await;
    let writes = arm_writes_since(emulator, requests_before);
    assert!(writes.is_empty(), "the hand-over wrote to ARM: {writes:?}");

    // 5. helm uninstall: the operator goes; the CRDs, the objects and the Azure resources stay.
    let azure_before: BTreeSet<String> = emulator.resource_ids().into_iter().collect();
    let requests_before = emulator.requests().len();
    run_helm(&helm, &["uninstall", release, "--namespace", op_ns, "--wait", "--timeout", "60s"]);
    eventually("the operator pods gone", Duration::from_secs(60), || {
        let pods = pods.clone();
        let release = release.clone();
        async move { pods.list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={release}"))).await.ok()?.items.is_empty().then_some(()) }
    })
    .await;
    assert!(Api::<Deployment>::namespaced(admin.clone(), op_ns).get_opt(release).await.unwrap().is_none());
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    for crd in aml_operator::controller::kinds::crds() {
        assert!(crds.get_opt(&crd.name_any()).await.unwrap().is_some(), "helm uninstall deleted the CRD {}", crd.name_any());
    }
    for (api, name, plural) in &objects {
        assert!(api.get_opt(name).await.unwrap().is_some(), "helm uninstall deleted {plural}/{name}");
    }
    assert_eq!(emulator.resource_ids().into_iter().collect::<BTreeSet<_>>(), azure_before, "helm uninstall changed Azure");
    assert!(arm_writes_since(emulator, requests_before).is_empty());
    println!("helm uninstall: {} CRDs, {} objects and {} Azure resources stay", aml_operator::controller::kinds::crds().len(), objects.len(), azure_before.len());

    // Clean up: no operator runs any more, so the finalizers are removed by hand (the Azure
    // resources are the emulator's, gone with it).
    let unfinalize = json!({"metadata": {"finalizers": null}});
    for (api, name, _) in &objects {
        api.patch(name, &PatchParams::default(), &Patch::Merge(&unfinalize)).await.expect("finalizers removed");
    }
    Api::<Secret>::namespaced(admin.clone(), ns).patch("aml-credentials", &PatchParams::default(), &Patch::Merge(&unfinalize)).await.expect("Secret finalizers removed");
    pod_watch.abort();
    lease_watch.abort();
    world.finish(&admin).await;
}

/// Every pod of the release that is Ready and not terminating.
async fn ready_pods(pods: &Api<Pod>, release: &str) -> Vec<Pod> {
    let list = pods.list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={release}"))).await.map(|l| l.items).unwrap_or_default();
    list.into_iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect()
}

/// Each hand-over of the Lease since `since`: (released at, taken at, by whom). A holder replaced
/// without a release seen in between (an expiry, or a release and a take between two watch
/// events) counts as taken when released.
fn hand_overs(lease: &Seen<Vec<(Instant, String)>>, since: Instant) -> Vec<(Instant, Instant, String)> {
    let changes: Vec<(Instant, String)> = lease.lock().unwrap().iter().filter(|(t, _)| *t >= since).cloned().collect();
    let mut out = Vec::new();
    let mut released = None;
    for (at, holder) in changes {
        if holder.is_empty() {
            released.get_or_insert(at);
        } else {
            out.push((released.take().unwrap_or(at), at, holder));
        }
    }
    out
}

/// Two replicas, a leader and a ready standby: `helm install` with `replicas=2`, then `helm
/// upgrade` to a new tag rolls the pods one at a time; each old leader releases the Lease as it
/// stops and a standby takes it at once, every old pod exits 0 within its grace period, and an
/// edit made during the roll costs exactly one ARM write. Then the leader pod is deleted: the
/// waiting standby takes over without waiting for a new pod. On the one test node the two
/// hostNetwork pods cannot share a port, so the chart runs them with `probes.type=exec` and
/// `metrics.port=0` (the same /healthz and /readyz over a socket in each pod).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_roll_with_leader_hand_over_and_one_write_per_edit() {
    let Some(PodTest { admin, node, helm, image, _node_is_mine }) = pod_test().await else { return };
    let (repository, tag) = image.name.rsplit_once(':').expect("the archive's image name has a tag");
    let world = World::start(&admin, "aml-ha").await;
    let (emulator, ns, op_ns, release) = (&world.emulator, &world.ns, &world.op_ns, &world.release);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), op_ns);
    let (seen, pod_watch) = watch_pods(&admin, op_ns, release);
    let (lease, lease_watch) = watch_lease(&admin, op_ns, release);
    let holder = || lease.lock().unwrap().last().map(|(_, h)| h.clone()).unwrap_or_default();

    // 1. Two pods Ready through the exec probes: one holds the Lease, the other waits.
    let installed = Instant::now();
    world.install(&helm, &node, &image, &["replicas=2", "probes.type=exec", "metrics.port=0"]);
    let both = eventually("two operator pods Ready", Duration::from_secs(120), || async {
        let ready = ready_pods(&pods, release).await;
        (ready.len() == 2).then_some(ready)
    })
    .await;
    let names: Vec<String> = both.iter().map(|p| p.name_any()).collect();
    for pod in &both {
        let c = &pod.spec.as_ref().unwrap().containers[0];
        assert!(c.ports.is_none(), "a port on a pod that shares the node with its twin: {:?}", c.ports);
        let command = c.readiness_probe.as_ref().and_then(|p| p.exec.as_ref()).and_then(|e| e.command.clone()).expect("an exec readiness probe");
        assert_eq!(command[..2], ["/aml-operator", "probe"]);
    }
    let leader = eventually("one of them holds the Lease", Duration::from_secs(30), || async { Some(holder()).filter(|h| names.contains(h)) }).await;
    let standby = names.iter().find(|n| **n != leader).unwrap().clone();
    println!("helm install replicas=2 -> pods {names:?} Ready in {:.1} s; {leader} leads, {standby} waits (Ready)", installed.elapsed().as_secs_f64());

    // 2. A workspace converged by the leader.
    world.create_credentials(&admin).await;
    let (plural, mut workspace) = examples().into_iter().find(|(_, m)| m["kind"] == "AmlWorkspace").expect("examples/workspace.yaml");
    let ws_api = dynamic_api(&admin, ns, "AmlWorkspace", &plural);
    let name = workspace["metadata"]["name"].as_str().unwrap().to_string();
    ws_api.patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(&workspace)).await.expect("workspace applied");
    let at_generation = |generation: i64| {
        let (api, name) = (ws_api.clone(), name.clone());
        async move {
            let obj = serde_json::to_value(api.get(&name).await.ok()?).ok()?;
            (ready(&obj) && obj["metadata"]["generation"] == json!(generation)).then_some(obj)
        }
    };
    let converged = eventually("the workspace Ready", Duration::from_secs(90), || at_generation(1)).await;
    let ws_id = converged["status"]["armId"].as_str().unwrap().to_string();

    // 3. helm upgrade to another tag: both pods replaced one at a time, an edit during the roll.
    let upgrade_tag = format!("{tag}-{UPGRADE_SUFFIX}");
    let new_image = format!("{repository}:{upgrade_tag}");
    let puts_before = arm_puts(emulator, &ws_id);
    let upgraded = Instant::now();
    let new_tag = format!("image.tag={upgrade_tag}");
    run_helm(&helm, &["upgrade", release, CHART, "--namespace", op_ns, "--reuse-values", "--set", &new_tag]);
    let first_out = eventually("an old pod terminating", Duration::from_secs(30), || async {
        let seen = seen.lock().unwrap();
        names.iter().find(|n| seen.get(*n).is_some_and(|p| p.deleting_at.is_some())).cloned()
    })
    .await;
    let edited_at = Instant::now();
    workspace["spec"]["friendlyName"] = json!("Team A, edited during a two-replica roll");
    ws_api.patch(&name, &PatchParams::apply(MANAGER), &Patch::Apply(&workspace)).await.expect("edit accepted");
    let new_pods = eventually("two upgraded pods Ready", Duration::from_secs(180), || async {
        let ready = ready_pods(&pods, release).await;
        let upgraded: Vec<String> =
            ready.iter().filter(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some(new_image.as_str())).map(|p| p.name_any()).collect();
        (upgraded.len() == 2).then_some(upgraded)
    })
    .await;
    let old: Vec<PodSeen> = eventually("both old pods gone", Duration::from_secs(60), || async {
        let seen = seen.lock().unwrap();
        names.iter().map(|n| seen.get(n).filter(|p| p.gone_at.is_some()).cloned()).collect()
    })
    .await;
    let new_leader = eventually("an upgraded pod holds the Lease", Duration::from_secs(30), || async { Some(holder()).filter(|h| new_pods.contains(h)) }).await;
    eventually("the edit Ready at its generation", Duration::from_secs(90), || at_generation(2)).await;
    assert_eq!(emulator.resource(&ws_id).unwrap()["properties"]["friendlyName"], "Team A, edited during a two-replica roll");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(arm_puts(emulator, &ws_id) - puts_before, 1, "the edit during the roll cost one ARM write");
    let grace = Duration::from_secs(both[0].spec.as_ref().unwrap().termination_grace_period_seconds.expect("grace period") as u64);
    for (name, pod) in names.iter().zip(&old) {
        assert_eq!(pod.exit.as_ref().map(|e| e.0), Some(0), "old pod {name} did not exit 0 on SIGTERM: {pod:?}");
        let stopped = pod.gone_at.unwrap() - pod.deleting_at.unwrap();
        assert!(stopped < grace, "old pod {name} took {stopped:?}, more than its grace period {grace:?}");
    }
    // Each old leader released the Lease as it stopped and a waiting pod took it at once: no
    // expiry wait (15 s), no wait for a new pod to start.
    let handed = hand_overs(&lease, upgraded);
    assert!(!handed.is_empty() && handed.last().unwrap().2 == new_leader, "{handed:?}");
    for (released, taken, by) in &handed {
        assert!(*taken - *released < Duration::from_secs(3), "{by} took the Lease {:?} after it was released", *taken - *released);
    }
    let gaps: Vec<String> = handed.iter().map(|(r, t, by)| format!("{by} after {:.2} s", (*t - *r).as_secs_f64())).collect();
    let all_ready_at = new_pods.iter().filter_map(|n| seen.lock().unwrap().get(n)?.ready_at).max().unwrap_or(upgraded);
    let stops: Vec<String> = names.iter().zip(&old).map(|(n, p)| format!("{n} exit 0 in {:.1} s", (p.gone_at.unwrap() - p.deleting_at.unwrap()).as_secs_f64())).collect();
    println!(
        "helm upgrade replicas=2 -> {first_out} stopped first; {}; both upgraded pods Ready {:.1} s after the upgrade; Lease hand-overs: {}; edit made {:.1} s into the roll: 1 ARM write",
        stops.join(", "),
        (all_ready_at - upgraded).as_secs_f64(),
        gaps.join(", "),
        (edited_at - upgraded).as_secs_f64(),
    );

    // 4. The leader pod deleted: the standby that is already running takes the Lease as soon as it
    // is released, and the hand-over writes nothing to ARM.
    let waiting = new_pods.iter().find(|n| **n != new_leader).unwrap().clone();
    let requests_before = emulator.requests().len();
    let deleted = Instant::now();
    pods.delete(&new_leader, &DeleteParams::default()).await.expect("delete the leader pod");
    let taken = eventually("the standby holds the Lease", Duration::from_secs(30), || async { lease_taken(&lease, &waiting, deleted) }).await;
    let released = lease_released(&lease, deleted).unwrap_or(taken);
    let gone = eventually("the deleted pod gone", Duration::from_secs(30), || async { seen.lock().unwrap().get(&new_leader).filter(|p| p.gone_at.is_some()).cloned() }).await;
    assert_eq!(gone.exit.as_ref().map(|e| e.0), Some(0), "the deleted leader did not exit 0: {gone:?}");
    assert!(taken - deleted < Duration::from_secs(5), "the standby took the Lease {:?} after the delete", taken - deleted);
    let mut before = names.clone();
    before.push(new_leader.clone());
    eventually("the replacement pod Ready (a standby again)", Duration::from_secs(120), || async {
        let ready = ready_pods(&pods, release).await;
        (ready.len() == 2 && ready.iter().all(|p| !before.contains(&p.name_any()))).then_some(())
    })
    .await;
    assert_eq!(holder(), waiting, "the Lease moved again when the replacement started");
    eventually("the workspace still Ready under the new leader", Duration::from_secs(60), || at_generation(2)).await;
    let writes = arm_writes_since(emulator, requests_before);
    assert!(writes.is_empty(), "the hand-over wrote to ARM: {writes:?}");
    println!(
        "leader pod {new_leader} deleted: Lease released after {:.2} s, standby {waiting} took it {:.2} s after the delete (without waiting for a new pod); pod gone after {:.1} s, exit 0",
        (released - deleted).as_secs_f64(),
        (taken - deleted).as_secs_f64(),
        (gone.gone_at.unwrap() - deleted).as_secs_f64(),
    );

    // The new leader deletes the workspace in Azure. (Objects go before their namespace: with
    // watchNamespace the operator's Role lives there and goes with it; see the chart's README.)
    ws_api.delete(&name, &DeleteParams::default()).await.expect("delete the workspace");
    eventually("the workspace deleted through the operator", Duration::from_secs(90), || async { ws_api.get_opt(&name).await.ok()?.is_none().then_some(()) }).await;
    assert!(emulator.resource(&ws_id).is_none(), "the workspace is still in Azure");
    pod_watch.abort();
    lease_watch.abort();
    world.finish(&admin).await;
}

/// The fleet test's read rate: ARM's own (set through the chart); the burst is the operator's.
const READ_RATE: u32 = 25;

/// Objects in the fleet test (`AML_POD_FLEET` overrides).
const FLEET: usize = 3000;

/// The chart's memory numbers, measured in the pod: the operator converging a fleet of workspaces
/// that Azure already holds (each is adopted with one GET, the ARM read budget the bound), its
/// cgroup's peak memory read afterwards against the chart's request and limit, and the liveness
/// probe never failing while it works (no restart, no `Unhealthy` event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pod_converges_a_fleet_within_the_charts_memory() {
    let Some(PodTest { admin, node, helm, image, _node_is_mine }) = pod_test().await else { return };
    let world = World::start(&admin, "aml-fleet").await;
    let n: usize = std::env::var("AML_POD_FLEET").ok().and_then(|v| v.parse().ok()).unwrap_or(FLEET);

    // Azure holds the workspaces already, tagged as these objects' own (as after a reinstall of the
    // operator: the chart's default cluster name); each object takes its own back (GET, no write).
    let id_of = |i: usize| format!("/subscriptions/{}/resourceGroups/rg-fleet/providers/Microsoft.MachineLearningServices/workspaces/fleet-{i}", support::SUBSCRIPTION);
    for i in 0..n {
        let owner = format!("{}/{}/fleet-{i}", aml_operator::controller::owner::DEFAULT_CLUSTER_NAME, world.ns);
        world.emulator.insert_resource(&id_of(i), json!({"location": "eastus", "tags": {aml_operator::controller::owner::TAG: owner}}));
    }
    world.create_credentials(&admin).await;

    let pods: Api<Pod> = Api::namespaced(admin.clone(), &world.op_ns);
    let read_rate = format!("arm.rateLimits.readsPerSecond={READ_RATE}");
    world.install(&helm, &node, &image, &[&read_rate]);
    let pod = eventually("the operator pod Ready", Duration::from_secs(120), || ready_pod(&pods, &world.release, &[])).await;
    let name = pod.name_any();
    let pid = operator_pid(&name).expect("the operator process");
    let c = &pod.spec.as_ref().unwrap().containers[0];
    let resources = c.resources.clone().expect("resources");
    let quantity = |m: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| {
        m.as_ref().and_then(|m| m.get("memory")).map(|q| q.0.clone()).expect("memory set")
    };
    let (request, limit) = (quantity(&resources.requests), quantity(&resources.limits));
    let idle = memory_of(pid);

    let workspaces: Api<DynamicObject> = dynamic_api(&admin, &world.ns, "AmlWorkspace", "amlworkspaces");
    let applied = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = workspaces.clone();
            async move {
                let obj = json!({
                    "apiVersion": "amloperator.io/v1alpha1", "kind": "AmlWorkspace", "metadata": {"name": format!("fleet-{i}")},
                    "spec": {"resourceGroup": "rg-fleet", "location": "eastus", "deletionPolicy": "Orphan"}
                });
                api.patch(&format!("fleet-{i}"), &PatchParams::apply(MANAGER), &Patch::Apply(&obj)).await.expect("workspace accepted");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let created = applied.elapsed();
    // Counted from a watch (each status change decoded once), not by listing thousands of objects
    // over and over, which would load the machine the pod runs on.
    let deadline = Duration::from_secs(60 + n as u64 / 4);
    let mut ready_names = BTreeSet::new();
    let mut events = std::pin::pin!(watcher(workspaces.clone(), watcher::Config::default()));
    while ready_names.len() < n {
        let left = deadline.checked_sub(applied.elapsed()).unwrap_or_default();
        let event = tokio::time::timeout(left, events.next()).await;
        let Ok(Some(event)) = event else { panic!("{} of {n} workspaces Ready after {deadline:?}", ready_names.len()) };
        if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = event
            && ready(&serde_json::to_value(&o).unwrap())
        {
            ready_names.insert(o.name_any());
        }
    }
    let converged = applied.elapsed();
    let gets = world.emulator.requests().iter().filter(|r| r.method == "GET").count();
    let writes = arm_writes_since(&world.emulator, 0);
    assert!(writes.is_empty(), "adopting the fleet wrote to ARM: {} writes, e.g. {:?}", writes.len(), writes.first());

    let pod = pods.get(&name).await.expect("the pod");
    let restarts = pod.status.unwrap().container_statuses.unwrap()[0].restart_count;
    assert_eq!(restarts, 0, "the operator restarted while converging the fleet");
    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(admin.clone(), &world.op_ns).list(&ListParams::default()).await.unwrap();
    let unhealthy: Vec<String> = events.items.iter().filter(|e| e.reason.as_deref() == Some("Unhealthy")).filter_map(|e| e.message.clone()).collect();
    assert!(unhealthy.is_empty(), "probes failed while converging the fleet: {unhealthy:?}");
    let hwm = proc_status(pid, "VmHWM");
    let (peak, now, rss) = memory_of(pid).expect("the pod's memory cgroup (v1)");
    let read_burst = aml_operator::arm::limit::RateLimits::default().read_burst;
    println!(
        "fleet of {n} workspaces: applied in {:.1} s, all Ready {:.1} s after the first apply = {:.2} x the read budget's bound ({gets} ARM GETs, {:.1} per object, a burst of {read_burst} then at most {READ_RATE}/s); pod memory: cgroup peak {:.1} MiB (idle before the fleet {}), now {:.1} MiB ({:.1} MiB anonymous); process peak resident {hwm}; chart request {request}, limit {limit}",
        created.as_secs_f64(),
        converged.as_secs_f64(),
        converged.as_secs_f64() / (gets.saturating_sub(read_burst as usize) as f64 / f64::from(READ_RATE)).max(1.0),
        gets as f64 / n as f64,
        mib(peak),
        idle.map(|(p, _, _)| format!("{:.1} MiB", mib(p))).unwrap_or("n/a".into()),
        mib(now),
        mib(rss),
    );
    let parse_mi = |q: &str| q.strip_suffix("Mi").and_then(|v| v.parse::<u64>().ok()).map(|v| v << 20).unwrap_or_else(|| panic!("memory {q} is not in Mi"));
    assert!(peak < parse_mi(&request), "the fleet's peak {:.1} MiB is above the chart's memory request {request}", mib(peak));
    assert!(peak < parse_mi(&limit) / 2, "the fleet's peak {:.1} MiB leaves less than half the limit {limit} as headroom", mib(peak));

    // Clean up: the operator goes first, then the objects' finalizers are removed by hand (the
    // workspaces are the emulator's, gone with it), so the namespace goes at once.
    run_helm(&helm, &["uninstall", &world.release, "--namespace", &world.op_ns, "--wait", "--timeout", "60s"]);
    let unfinalize = json!({"metadata": {"finalizers": null}});
    futures::stream::iter(0..n)
        .map(|i| {
            let (api, unfinalize) = (workspaces.clone(), &unfinalize);
            async move {
                api.patch(&format!("fleet-{i}"), &PatchParams::default(), &Patch::Merge(unfinalize)).await.expect("finalizer removed");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    Api::<Secret>::namespaced(admin.clone(), &world.ns).patch("aml-credentials", &PatchParams::default(), &Patch::Merge(&unfinalize)).await.expect("Secret finalizers removed");
    world.finish(&admin).await;
}
