//! `aml-operator apply`: reconcile every manifest until Ready, or delete them all (`--delete`).
//!
//! The objects live in a local API server and go through `pipeline::reconcile` exactly as under
//! the controller, parents first, each again when its requeue is due (capped at 2 s against an
//! emulator). A child is woken as soon as its parent turns Ready.

use super::kinds::{self, Node};
use crate::controller::kinds::Kind;
use super::plan::{plan_all, store};
use super::{ApplyArgs, ArmSetup, CliError, Manifest, Session, load, say};
use crate::controller::error::reason::{self, WAITING_FOR_PARENT};
use crate::controller::{Error, Retry};
use crate::controller::plan::Change;
use crate::crd::{FINALIZER, condition};
use crate::localkube::path_of;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use std::io::Write;
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// One line rewritten in place per round (stdout is a terminal).
    Terminal,
    /// A plain line whenever an object's state changes.
    Lines,
}

/// How one object ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Ready=True.
    Ready,
    /// Not Ready, but nothing more will happen (managementPolicy Observe: absent or drifted).
    Settled(String),
    /// Stalled, invalid, or its parent failed: the message says why.
    Failed(String),
    /// Still converging when the timeout hit: its last state.
    TimedOut(String),
    /// Deleted in Azure (`--delete`).
    Deleted,
    /// Released while the Azure resource stays (`--delete` with Orphan or Observe).
    Kept,
    /// Not in Azure, nothing to delete (`--delete`).
    Absent,
}

impl Outcome {
    fn ok(&self) -> bool {
        matches!(self, Outcome::Ready | Outcome::Settled(_) | Outcome::Deleted | Outcome::Kept | Outcome::Absent)
    }
}

/// The outcome of `apply`.
#[derive(Clone, Debug)]
pub struct ApplyReport {
    /// Per object (parents first): `Kind namespace/name` and how it ended.
    pub objects: Vec<(String, Outcome)>,
    /// Documents skipped (unknown kinds).
    pub skipped: Vec<String>,
    /// Final objects (with status) as the local API server holds them (empty after `--delete`).
    pub statuses: Vec<Value>,
}

impl ApplyReport {
    /// 0: everything Ready (or deleted); 1: a failure or a timeout.
    pub fn exit_code(&self) -> u8 {
        if self.objects.iter().all(|(_, o)| o.ok()) { 0 } else { 1 }
    }

    /// How the object labelled `Kind namespace/name` ended.
    pub fn get(&self, label: &str) -> Option<&Outcome> {
        self.objects.iter().find(|(l, _)| l == label).map(|(_, o)| o)
    }
}

/// The requeue time an `Action` carries. kube's `Action` has no getter, so this reads its derived
/// `Debug` (`Action { requeue_after: Some(1.5s) }`); a unit test pins that format.
pub(crate) fn requeue_after(action: &Action) -> Option<Duration> {
    let text = format!("{action:?}");
    let inner = text.split_once("Some(")?.1.rsplit_once(')')?.0.trim();
    let split = inner.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = inner.split_at(split);
    let n: f64 = number.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "ms" => n / 1e3,
        "µs" => n / 1e6,
        "ns" => n / 1e9,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

/// Runs `apply` (or `apply --delete`): progress and the final statuses go to `out`.
pub async fn apply(
    args: &ApplyArgs,
    given: Option<ArmSetup>,
    out: &mut (dyn Write + Send),
    progress: Progress,
) -> Result<ApplyReport, CliError> {
    let kinds = kinds::registry();
    let mut loaded = load(&args.files, &kinds)?;
    // Context objects follow the objects acted on, so indexes below `acted` are the latter.
    let acted = loaded.objects.len();
    if !args.context.is_empty() {
        let context = load(&args.context, &kinds)?;
        let named = |m: &Manifest| loaded.objects.iter().any(|o| path_of(&o.value) == path_of(&m.value));
        let extra: Vec<Manifest> = context.objects.into_iter().filter(|m| !named(m)).collect();
        loaded.objects.extend(extra);
        loaded.secrets.extend(context.secrets);
    }
    let session = Session::start(&args.arm, !loaded.secrets.is_empty(), given, out, "").await?;
    for s in &loaded.skipped {
        say(out, &format!("skipped: {s}"))?;
    }
    store(&session, &loaded);
    let nodes = kinds::graph(&loaded.objects, &kinds);
    let mut run = Run::new(&session, &loaded.objects, &nodes, &kinds, progress, args.timeout);
    for i in acted..loaded.objects.len() {
        run.slots[i].done = Some(Outcome::Absent);
        run.slots[i].context = true;
    }
    if args.delete {
        run.delete(out).await?;
    } else {
        run.converge(out).await?;
    }
    let order: Vec<usize> = kinds::parents_first(&nodes).into_iter().filter(|&i| i < acted).collect();
    let objects: Vec<(String, Outcome)> = order
        .iter()
        .map(|&i| (loaded.objects[i].label(), run.outcome(i)))
        .collect();
    let mut statuses = Vec::new();
    if !args.delete {
        for &i in &order {
            if let Some(obj) = session.kube.raw(&path_of(&loaded.objects[i].value)) {
                let shown = json!({
                    "apiVersion": obj["apiVersion"],
                    "kind": obj["kind"],
                    "metadata": {"name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"]},
                    "status": obj["status"],
                });
                let yaml = serde_yaml::to_string(&shown).map_err(CliError::Yaml)?;
                write!(out, "---\n{yaml}").map_err(|source| CliError::Write { what: "output".into(), source })?;
                statuses.push(obj);
            }
        }
    }
    say(out, "")?;
    for (label, outcome) in &objects {
        let line = match outcome {
            Outcome::Ready => "ready".to_string(),
            Outcome::Settled(m) => format!("settled, not ready: {m}"),
            Outcome::Failed(m) => format!("FAILED: {m}"),
            Outcome::TimedOut(m) => format!("TIMED OUT after {:?}: {m}", args.timeout),
            Outcome::Deleted => "deleted in Azure".to_string(),
            Outcome::Kept => "released; the Azure resource stays (deletionPolicy Orphan or managementPolicy Observe)".to_string(),
            Outcome::Absent => "not in Azure, nothing to delete".to_string(),
        };
        say(out, &format!("{label}: {line}"))?;
    }
    Ok(ApplyReport { objects, skipped: loaded.skipped, statuses })
}

/// Per-object bookkeeping of one run.
struct Slot {
    path: String,
    due: Instant,
    done: Option<Outcome>,
    /// Consecutive rounds that asked to run again at once (a finalizer just added).
    immediate: u32,
    /// Short state after the last reconcile.
    last: String,
    /// The state last printed (progress as lines).
    shown: String,
    /// Read from `--context`: locates its children in Azure, is never acted on or shown.
    context: bool,
}

struct Run<'a> {
    session: &'a Session,
    objects: &'a [Manifest],
    nodes: &'a [Node],
    kinds: &'a [&'static dyn Kind],
    progress: Progress,
    start: Instant,
    deadline: Instant,
    slots: Vec<Slot>,
}

/// Far enough to mean "until woken".
const PARKED: Duration = Duration::from_secs(365 * 24 * 3600);

impl<'a> Run<'a> {
    fn new(
        session: &'a Session,
        objects: &'a [Manifest],
        nodes: &'a [Node],
        kinds: &'a [&'static dyn Kind],
        progress: Progress,
        timeout: Duration,
    ) -> Self {
        let start = Instant::now();
        let slots = objects
            .iter()
            .map(|m| Slot { path: path_of(&m.value), due: start, done: None, immediate: 0, last: String::new(), shown: String::new(), context: false })
            .collect();
        Run { session, objects, nodes, kinds, progress, start, deadline: start + timeout, slots }
    }

    fn outcome(&self, i: usize) -> Outcome {
        self.slots[i].done.clone().unwrap_or_else(|| Outcome::TimedOut(self.slots[i].last.clone()))
    }

    fn pending(&self) -> Vec<usize> {
        (0..self.slots.len()).filter(|&i| self.slots[i].done.is_none()).collect()
    }

    fn children(&self, i: usize) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&j| self.nodes[j].parent == Some(i)).collect()
    }

    fn fail(&mut self, i: usize, message: String) {
        self.slots[i].done = Some(Outcome::Failed(message));
        let label = self.objects[i].label();
        for j in self.children(i) {
            if self.slots[j].done.is_none() {
                self.fail(j, format!("its parent {label} failed"));
            }
        }
    }

    /// When to run `i` again after a reconcile that returned `action`.
    fn reschedule(&mut self, i: usize, action: &Action) {
        let now = Instant::now();
        let slot = &mut self.slots[i];
        slot.due = match requeue_after(action) {
            Some(d) => {
                slot.immediate = 0;
                now + self.session.cap(d)
            }
            // `await_change` (the finalizer was just added): at once, but not in a tight loop.
            None => {
                slot.immediate += 1;
                if slot.immediate <= 2 { now } else { now + Duration::from_secs(1) }
            }
        };
    }

    async fn converge(&mut self, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
        let order = kinds::parents_first(self.nodes);
        loop {
            let now = Instant::now();
            for &i in &order {
                if self.slots[i].done.is_some() || self.slots[i].due > now {
                    continue;
                }
                let Some(handle) = kinds::handle(self.kinds, self.objects[i].kind()) else {
                    self.fail(i, "no handler for this kind".into());
                    continue;
                };
                let Some(stored) = self.session.kube.raw(&self.slots[i].path) else {
                    self.fail(i, "the object disappeared".into());
                    continue;
                };
                let r = match handle.reconcile(stored, self.session.ctx.clone()).await {
                    Ok(r) => r,
                    Err(e) => {
                        self.fail(i, e);
                        continue;
                    }
                };
                let obj = self.session.kube.raw(&self.slots[i].path).unwrap_or(Value::Null);
                let ready = find_condition(&obj, condition::READY);
                let stalled = find_condition(&obj, condition::STALLED).filter(|c| c["status"] == "True");
                let reason = ready.as_ref().and_then(|c| c["reason"].as_str()).unwrap_or_default().to_string();
                let message = ready.as_ref().and_then(|c| c["message"].as_str()).unwrap_or_default().to_string();
                if let Err(e) = &r.result
                    && e.retry() == Retry::AwaitChange
                {
                    self.fail(i, e.message());
                } else if ready.as_ref().is_some_and(|c| c["status"] == "True") {
                    self.slots[i].done = Some(Outcome::Ready);
                    self.wake_waiting();
                } else if let Some(s) = stalled {
                    self.fail(i, format!("{}: {}", s["reason"].as_str().unwrap_or_default(), s["message"].as_str().unwrap_or_default()));
                } else if reason == WAITING_FOR_PARENT {
                    match self.nodes[i].parent {
                        // Nothing in this run will create the parent.
                        None => self.fail(i, message),
                        Some(_) => self.slots[i].due = now + PARKED,
                    }
                } else if matches!(reason.as_str(), "NotFoundInAzure" | "Drifted") {
                    self.slots[i].done = Some(Outcome::Settled(message));
                    let label = self.objects[i].label();
                    for j in self.children(i) {
                        if self.slots[j].done.is_none() {
                            self.fail(j, format!("its parent {label} will not become ready (managementPolicy Observe)"));
                        }
                    }
                } else {
                    self.reschedule(i, &r.action);
                }
                let now_summary = summary(&obj);
                if now_summary != self.slots[i].last {
                    // Any change may unblock a waiting child (an endpoint waiting for its
                    // deployments is ready for them without being Ready itself).
                    self.wake_waiting();
                }
                self.slots[i].last = now_summary;
            }
            self.show(out)?;
            if self.pending().is_empty() || Instant::now() >= self.deadline {
                return self.end_line(out);
            }
            self.sleep(out).await?;
        }
    }

    /// An object became Ready: whatever waits without an ARM operation of its own may go on.
    fn wake_waiting(&mut self) {
        let now = Instant::now();
        for j in self.pending() {
            let obj = self.session.kube.raw(&self.slots[j].path).unwrap_or(Value::Null);
            // An ARM operation of its own in flight: its Retry-After stands.
            let in_flight = !obj["status"]["operation"].is_null();
            if !in_flight {
                self.slots[j].due = self.slots[j].due.min(now);
            }
        }
    }

    async fn delete(&mut self, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
        // Learn which objects exist in Azure (reads only), and give those the status and finalizer
        // a controller would have left, so the pipeline's cleanup deletes them.
        let planned = plan_all(self.session, self.objects, self.nodes, self.kinds).await;
        for (i, p) in planned.iter().enumerate() {
            if self.slots[i].context {
                continue;
            }
            match &p.change {
                // Its parent is not among the manifests: where it is in Azure is unknown.
                Change::Blocked { reason, .. } if reason == WAITING_FOR_PARENT && self.nodes[i].parent.is_none() => {
                    let parent = kinds::handle(self.kinds, self.objects[i].kind())
                        .and_then(|h| h.parent(&self.objects[i].value))
                        .map_or_else(|| "its parent".to_string(), |(kind, name)| format!("{kind} {}/{name}", self.objects[i].namespace()));
                    self.fail(i, format!(
                        "{WAITING_FOR_PARENT}: {parent} is not among the manifests, so where this object is in Azure is unknown; \
                         give the parent's manifest (and its workspace's) with --context, which reads them and deletes nothing"
                    ));
                }
                Change::Blocked { reason, message } => self.fail(i, format!("{reason}: {message}")),
                _ if !p.exists => self.slots[i].done = Some(Outcome::Absent),
                _ => self.session.kube.edit(&self.slots[i].path, |o| o["metadata"]["finalizers"] = json!([FINALIZER])),
            }
        }
        for i in self.pending() {
            self.session.kube.delete(&self.slots[i].path);
        }
        let mut order = kinds::parents_first(self.nodes);
        order.reverse();
        loop {
            let now = Instant::now();
            for &i in &order {
                if self.slots[i].done.is_some() || self.slots[i].due > now {
                    continue;
                }
                let keeps = kinds::handle(self.kinds, self.objects[i].kind()).is_some_and(|h| h.keeps_azure(&self.objects[i].value));
                let Some(handle) = kinds::handle(self.kinds, self.objects[i].kind()) else {
                    self.fail(i, "no handler for this kind".into());
                    continue;
                };
                let r = match self.session.kube.raw(&self.slots[i].path) {
                    Some(stored) => handle.reconcile(stored, self.session.ctx.clone()).await.ok(),
                    None => None,
                };
                let obj = self.session.kube.raw(&self.slots[i].path);
                match (r, obj) {
                    (_, None) | (None, _) => {
                        self.slots[i].done = Some(if keeps { Outcome::Kept } else { Outcome::Deleted });
                        // A child waiting for this one's deletion may go on now.
                        self.wake_waiting();
                    }
                    (Some(r), Some(obj)) => {
                        self.slots[i].last = summary(&obj);
                        match &r.result {
                            Err(e) if e.is_stalled() => self.fail(i, e.message()),
                            // It waits for objects that use it (a deployment serving a model
                            // version): others still being deleted in this run may be those.
                            Err(Error::DeletePending { gate: Some(reason::WAITING_FOR_USERS), .. }) if self.pending().len() > 1 => {
                                self.reschedule(i, &r.action)
                            }
                            // It waits for another resource to change (its endpoint's traffic):
                            // nothing this run deletes will change it, so say what would.
                            Err(Error::DeletePending { gate: Some(reason), .. }) => {
                                let message = find_condition(&obj, condition::READY)
                                    .and_then(|c| c["message"].as_str().map(str::to_string))
                                    .unwrap_or_default();
                                self.fail(i, format!("{reason}: {message}"));
                            }
                            _ => self.reschedule(i, &r.action),
                        }
                    }
                }
            }
            self.show(out)?;
            if self.pending().is_empty() || Instant::now() >= self.deadline {
                return self.end_line(out);
            }
            self.sleep(out).await?;
        }
    }

    async fn sleep(&mut self, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
        let now = Instant::now();
        let next = self.pending().iter().map(|&i| self.slots[i].due).min().unwrap_or(now).min(self.deadline);
        let wait = next.saturating_duration_since(now);
        if wait >= Duration::from_secs(5) && self.progress == Progress::Lines {
            say(out, &format!("[{:>4}s] next check in {}s", self.start.elapsed().as_secs(), wait.as_secs()))?;
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    fn show(&mut self, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
        let t = self.start.elapsed().as_secs();
        let io = |source| CliError::Write { what: "progress".into(), source };
        match self.progress {
            Progress::Terminal => {
                let acted = self.slots.iter().filter(|s| !s.context);
                let (done, all) = acted.fold((0, 0), |(d, a), s| (d + usize::from(s.done.is_some()), a + 1));
                let mut line = format!("[{t:>4}s] {done}/{all} done");
                for i in self.pending() {
                    line.push_str(&format!(" · {} {}", self.objects[i].name(), self.slots[i].last));
                }
                let line: String = line.chars().take(150).collect();
                write!(out, "\r\x1b[2K{line}").map_err(io)?;
                out.flush().map_err(io)
            }
            Progress::Lines => {
                for i in 0..self.slots.len() {
                    let state = match &self.slots[i].done {
                        Some(Outcome::Ready) => "Ready".to_string(),
                        Some(Outcome::Deleted) => "Deleted".to_string(),
                        Some(Outcome::Failed(m)) => format!("Failed: {m}"),
                        Some(Outcome::Absent) | Some(Outcome::Kept) => continue,
                        _ => self.slots[i].last.clone(),
                    };
                    if state.is_empty() || self.slots[i].shown == state {
                        continue;
                    }
                    say(out, &format!("[{t:>4}s] {}: {state}", self.objects[i].label()))?;
                    self.slots[i].shown = state;
                }
                Ok(())
            }
        }
    }

    fn end_line(&self, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
        if self.progress == Progress::Terminal {
            say(out, "")?;
        }
        Ok(())
    }
}

fn find_condition(obj: &Value, type_: &str) -> Option<Value> {
    obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_).cloned()
}

/// A short state for progress: Ready, ARM's provisioningState, or the Ready reason.
fn summary(obj: &Value) -> String {
    let ready = find_condition(obj, condition::READY);
    if ready.as_ref().is_some_and(|c| c["status"] == "True") {
        return "Ready".into();
    }
    let reason = ready.as_ref().and_then(|c| c["reason"].as_str()).unwrap_or("Pending");
    match obj["status"]["provisioningState"].as_str() {
        Some(state) if state != reason => format!("{state} ({reason})"),
        Some(state) => state.to_string(),
        None => reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::requeue_after;
    use kube::runtime::controller::Action;
    use std::time::Duration;

    #[test]
    fn the_requeue_time_of_an_action_is_read_back() {
        for d in [
            Duration::from_millis(1500),
            Duration::from_secs(600),
            Duration::from_millis(250),
            Duration::from_micros(7),
            Duration::from_nanos(3),
            Duration::from_secs_f64(108.123456789),
        ] {
            let back = requeue_after(&Action::requeue(d)).expect("parsed");
            assert!(back.as_secs_f64() - d.as_secs_f64() < 1e-6, "{d:?} read back as {back:?}");
        }
        assert_eq!(requeue_after(&Action::await_change()), None);
    }
}
