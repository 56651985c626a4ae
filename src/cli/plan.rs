//! `aml-operator plan`: per object, what applying would do. Reads ARM, never writes to it.

use super::kinds::{self, Node};
use crate::controller::kinds::Kind;
use super::{ArmSetup, CliError, Loaded, Manifest, PlanArgs, Session, load, say};
use crate::controller::plan::{Change, Planned};
use crate::crd::condition;
use crate::localkube::path_of;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use std::io::Write;

/// The outcome of `plan`.
#[derive(Clone, Debug)]
pub struct PlanReport {
    /// Per object (parents first): `Kind namespace/name` and its plan.
    pub entries: Vec<(String, Planned)>,
    /// Documents skipped (unknown kinds), with the reason.
    pub skipped: Vec<String>,
}

impl PlanReport {
    /// 0: no changes; 2: changes pending; 1: something is blocked.
    pub fn exit_code(&self) -> u8 {
        if self.entries.iter().any(|(_, p)| matches!(p.change, Change::Blocked { .. })) {
            1
        } else if self.entries.iter().any(|(_, p)| p.is_pending()) {
            2
        } else {
            0
        }
    }

    /// The plan of the object labelled `Kind namespace/name`.
    pub fn get(&self, label: &str) -> Option<&Planned> {
        self.entries.iter().find(|(l, _)| l == label).map(|(_, p)| p)
    }
}

/// Runs `plan`: prints one entry per object and a summary to `out`. `given` replaces the choice of
/// ARM from the flags (tests pass an emulator they share between commands).
pub async fn plan(args: &PlanArgs, given: Option<ArmSetup>, out: &mut (dyn Write + Send)) -> Result<PlanReport, CliError> {
    let kinds = kinds::registry();
    let loaded = load(&args.files, &kinds)?;
    let session = Session::start(&args.arm, !loaded.secrets.is_empty(), given, out, "").await?;
    for s in &loaded.skipped {
        say(out, &format!("skipped: {s}"))?;
    }
    store(&session, &loaded);
    let nodes = kinds::graph(&loaded.objects, &kinds);
    let planned = plan_all(&session, &loaded.objects, &nodes, &kinds).await;
    let mut entries = Vec::new();
    for i in kinds::parents_first(&nodes) {
        let label = loaded.objects[i].label();
        print_entry(out, &label, &planned[i])?;
        entries.push((label, planned[i].clone()));
    }
    let count = |f: fn(&Change) -> bool| entries.iter().filter(|(_, p)| f(&p.change)).count();
    let dependencies = entries
        .iter()
        .filter(|(_, p)| !matches!(p.change, Change::Blocked { .. }))
        .flat_map(|(_, p)| &p.dependencies)
        .filter(|d| !d.exists)
        .count();
    say(
        out,
        &format!(
            "\nPlan: {} to create, {} to update, {} to recreate, {} unchanged, {} blocked.",
            count(|c| matches!(c, Change::Create | Change::CreateAfterParent { .. })) + dependencies,
            count(|c| matches!(c, Change::Update)),
            count(|c| matches!(c, Change::Recreate { .. })),
            count(|c| matches!(c, Change::NoChange)),
            count(|c| matches!(c, Change::Blocked { .. })),
        ),
    )?;
    Ok(PlanReport { entries, skipped: loaded.skipped })
}

/// Stores the Secrets and objects of `loaded` in the session's API server.
pub(crate) fn store(session: &Session, loaded: &Loaded) {
    for s in &loaded.secrets {
        session.kube.put(s);
    }
    for m in &loaded.objects {
        session.kube.put(&m.value);
    }
}

/// Plans every object, parents first. A parent that exists in Azure is marked Ready in the local
/// API server (as the controller would have it) so its children resolve against it; the children
/// of a blocked parent are blocked too.
pub(crate) async fn plan_all(
    session: &Session,
    objects: &[Manifest],
    nodes: &[Node],
    kinds: &[&'static dyn Kind],
) -> Vec<Planned> {
    let mut planned: Vec<Option<Planned>> = vec![None; objects.len()];
    for i in kinds::parents_first(nodes) {
        let m = &objects[i];
        let parent_blocked = nodes[i]
            .parent
            .filter(|&p| planned[p].as_ref().is_some_and(|p| matches!(p.change, Change::Blocked { .. })))
            .map(|p| objects[p].label());
        let p = match (parent_blocked, kinds::handle(kinds, m.kind())) {
            (Some(parent), _) => Planned::blocked("ParentBlocked", format!("its parent {parent} is blocked")),
            (None, None) => Planned::blocked("UnknownKind", format!("no handler for kind {}", m.kind())),
            (None, Some(h)) => {
                let current = session.kube.raw(&path_of(&m.value)).unwrap_or_else(|| m.value.clone());
                h.plan(&current, &session.ctx).await
            }
        };
        if p.exists {
            mark_ready(session, &path_of(&m.value), &p);
        }
        planned[i] = Some(p);
    }
    planned.into_iter().map(|p| p.unwrap_or_else(|| Planned::blocked("NotPlanned", "not planned".into()))).collect()
}


/// Gives the stored object the status a controller would have written for a resource that
/// exists in Azure: its ARM id, location and Ready=True.
pub(crate) fn mark_ready(session: &Session, path: &str, p: &Planned) {
    let now = Timestamp::now().to_string();
    session.kube.edit(path, |obj| {
        let generation = obj["metadata"]["generation"].clone();
        obj["status"] = json!({
            "armId": p.arm_id,
            "location": p.location,
            "observedGeneration": generation,
            "conditions": [{
                "type": condition::READY,
                "status": "True",
                "reason": "ExistsInAzure",
                "message": "The resource exists in Azure",
                "observedGeneration": generation,
                "lastTransitionTime": now,
            }],
        });
        if let Value::Object(status) = &mut obj["status"] {
            status.extend(p.status.clone());
        }
    });
}

fn show(v: &Option<Value>) -> String {
    match v {
        None => "(absent)".into(),
        Some(v) => serde_json::to_string(v).unwrap_or_default(),
    }
}

fn print_entry(out: &mut (dyn Write + Send), label: &str, p: &Planned) -> Result<(), CliError> {
    let id = p.arm_id.as_deref().map(|id| format!(" {id}")).unwrap_or_default();
    let head = match &p.change {
        Change::Create => format!("create{id}"),
        Change::CreateAfterParent { parent } => format!("create (after parent {parent})"),
        Change::Update => format!("update{id}"),
        Change::NoChange => "no change".into(),
        Change::Recreate { immutable } => format!(
            "recreate needed{id}: {} cannot change in place (delete the resource, or revert the spec)",
            immutable.join(", ")
        ),
        Change::Blocked { reason, message } => format!("blocked: {reason}: {message}"),
    };
    say(out, &format!("{label}: {head}"))?;
    if !matches!(p.change, Change::Blocked { .. }) {
        for d in &p.dependencies {
            if !d.exists {
                say(out, &format!("    + create {} {}", d.resource_type, d.arm_id))?;
            } else if !d.drifted.is_empty() {
                say(out, &format!("    ~ repair {} {}: {}", d.resource_type, d.arm_id, d.drifted.join(", ")))?;
            }
        }
    }
    for f in &p.fields {
        say(out, &format!("    ~ {}: {} -> {}", f.path, show(&f.before), show(&f.after)))?;
    }
    if let Some(note) = &p.note {
        say(out, &format!("    ({note})"))?;
    }
    Ok(())
}
