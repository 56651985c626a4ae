//! The operator's kinds behind one object-safe handle, so the commands work on a mixed set of
//! manifests. Adding a kind to the CLI is one line in [`registry`].

use crate::controller::plan::{self, Planned};
use crate::controller::{AmlKind, BoxFuture, Context, Error, ParentRef, pipeline};
use crate::crd::{
    AmlCompute, AmlOnlineDeployment, AmlOnlineEndpoint, AmlRoleAssignment, AmlWorkspace, DeletionPolicy, ManagementPolicy,
};
use crate::localkube::LocalKube;
use kube::runtime::controller::Action;
use serde_json::Value;
use std::marker::PhantomData;
use std::sync::Arc;

/// What one reconcile returned, with the requeue the controller would use on failure.
pub struct Reconciled {
    /// The pipeline's result.
    pub result: Result<(), Error>,
    /// When the controller would run it again (`error_policy` for failures).
    pub action: Action,
}

/// One kind, type-erased.
pub trait KindHandle: Send + Sync {
    /// `kind`, e.g. `AmlWorkspace`.
    fn kind(&self) -> &'static str;
    /// Whether `obj` is a valid object of this kind (the typed spec parses).
    fn check(&self, obj: &Value) -> Result<(), String>;
    /// The parent object `obj` names: (kind, name) in the same namespace.
    fn parent(&self, obj: &Value) -> Option<(String, String)>;
    /// Whether deleting `obj` leaves its Azure resource in place (Orphan or Observe).
    fn keeps_azure(&self, obj: &Value) -> bool;
    /// Plans `obj` (see [`plan::plan`]).
    fn plan<'a>(&'a self, obj: &'a Value, ctx: &'a Context) -> BoxFuture<'a, Planned>;
    /// Reconciles the object stored at `path` once, as the controller would. None when it is gone.
    fn reconcile(&self, kube: &LocalKube, path: &str, ctx: Arc<Context>) -> BoxFuture<'static, Option<Reconciled>>;
}

struct Typed<K>(PhantomData<fn() -> K>);

fn typed<K: AmlKind>(obj: &Value) -> Result<K, String> {
    crate::crd::from_value(obj.clone())
}

impl<K: AmlKind> KindHandle for Typed<K> {
    fn kind(&self) -> &'static str {
        // `Resource::kind` of a derived CRD borrows a static string.
        match K::kind(&()) {
            std::borrow::Cow::Borrowed(s) => s,
            std::borrow::Cow::Owned(_) => "Unknown",
        }
    }

    fn check(&self, obj: &Value) -> Result<(), String> {
        typed::<K>(obj).map(|_| ())
    }

    fn parent(&self, obj: &Value) -> Option<(String, String)> {
        let o = typed::<K>(obj).ok()?;
        match o.parent()? {
            ParentRef::Object { kind, name } => Some((kind.resource().kind, name.to_string())),
            ParentRef::ArmId(_) => None,
        }
    }

    fn keeps_azure(&self, obj: &Value) -> bool {
        typed::<K>(obj).is_ok_and(|o| {
            let p = o.policies();
            p.deletion == DeletionPolicy::Orphan || p.management == ManagementPolicy::Observe
        })
    }

    fn plan<'a>(&'a self, obj: &'a Value, ctx: &'a Context) -> BoxFuture<'a, Planned> {
        Box::pin(async move {
            match typed::<K>(obj) {
                Ok(o) => plan::plan(&o, ctx).await,
                Err(e) => Planned {
                    change: plan::Change::Blocked { reason: "InvalidSpec".into(), message: e },
                    arm_id: None,
                    location: None,
                    exists: false,
                    fields: Vec::new(),
                    note: None,
                    dependencies: Vec::new(),
                    status: Default::default(),
                },
            }
        })
    }

    fn reconcile(&self, kube: &LocalKube, path: &str, ctx: Arc<Context>) -> BoxFuture<'static, Option<Reconciled>> {
        let obj: Option<K> = kube.get(path);
        Box::pin(async move {
            let obj = Arc::new(obj?);
            Some(match pipeline::reconcile(obj.clone(), ctx.clone()).await {
                Ok(action) => Reconciled { result: Ok(()), action },
                Err(e) => {
                    let action = pipeline::error_policy(obj, &e, ctx);
                    Reconciled { result: Err(e), action }
                }
            })
        })
    }
}

/// Every kind the CLI handles.
pub fn registry() -> Vec<Box<dyn KindHandle>> {
    vec![
        Box::new(Typed::<AmlWorkspace>(PhantomData)),
        Box::new(Typed::<AmlCompute>(PhantomData)),
        Box::new(Typed::<AmlOnlineEndpoint>(PhantomData)),
        Box::new(Typed::<AmlOnlineDeployment>(PhantomData)),
        Box::new(Typed::<AmlRoleAssignment>(PhantomData)),
    ]
}

/// Finds the handle of `kind`.
pub(crate) fn handle<'a>(kinds: &'a [Box<dyn KindHandle>], kind: &str) -> Option<&'a dyn KindHandle> {
    kinds.iter().find(|k| k.kind() == kind).map(|k| k.as_ref())
}

/// Where an object stands among the others: its parent in the same set, and how deep it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    /// Index of the parent object in the set, if the parent is there.
    pub parent: Option<usize>,
    /// 0 for objects without a parent in the set, parent's depth + 1 otherwise.
    pub depth: usize,
}

/// Parents and depths of `objects`: an object whose parent is in the set goes after it.
pub(crate) fn graph(objects: &[super::Manifest], kinds: &[Box<dyn KindHandle>]) -> Vec<Node> {
    let parents: Vec<Option<usize>> = objects
        .iter()
        .map(|m| {
            let (kind, name) = handle(kinds, m.kind())?.parent(&m.value)?;
            objects.iter().position(|p| p.kind() == kind && p.name() == name && p.namespace() == m.namespace())
        })
        .collect();
    (0..objects.len())
        .map(|i| {
            let mut depth = 0;
            let mut at = i;
            // Bounded walk: a cycle (impossible with real kinds) cannot loop forever.
            while let Some(p) = parents[at] {
                depth += 1;
                at = p;
                if depth > objects.len() {
                    break;
                }
            }
            Node { parent: parents[i], depth }
        })
        .collect()
}

/// Indexes of `objects` with parents before children (stable within a depth).
pub(crate) fn parents_first(nodes: &[Node]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by_key(|&i| nodes[i].depth);
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A kind whose objects name their parent in `spec.parent` as `Kind/name`.
    struct Fake(&'static str);

    impl KindHandle for Fake {
        fn kind(&self) -> &'static str {
            self.0
        }
        fn check(&self, _: &Value) -> Result<(), String> {
            Ok(())
        }
        fn parent(&self, obj: &Value) -> Option<(String, String)> {
            let (k, n) = obj["spec"]["parent"].as_str()?.split_once('/')?;
            Some((k.to_string(), n.to_string()))
        }
        fn keeps_azure(&self, _: &Value) -> bool {
            false
        }
        fn plan<'a>(&'a self, _: &'a Value, _: &'a Context) -> BoxFuture<'a, Planned> {
            unimplemented!("not used by the ordering tests")
        }
        fn reconcile(&self, _: &LocalKube, _: &str, _: Arc<Context>) -> BoxFuture<'static, Option<Reconciled>> {
            unimplemented!("not used by the ordering tests")
        }
    }

    fn object(kind: &str, ns: &str, name: &str, parent: Option<&str>) -> super::super::Manifest {
        super::super::Manifest {
            source: "test".into(),
            value: json!({"kind": kind, "metadata": {"name": name, "namespace": ns}, "spec": {"parent": parent}}),
        }
    }

    #[test]
    fn parents_go_before_their_children_whatever_the_file_order() {
        let kinds: Vec<Box<dyn KindHandle>> = vec![Box::new(Fake("Ws")), Box::new(Fake("Ep")), Box::new(Fake("Dep"))];
        let objects = vec![
            object("Dep", "a", "blue", Some("Ep/ep")),
            object("Ep", "a", "ep", Some("Ws/ws")),
            object("Ws", "a", "ws", None),
            // Same names in another namespace are other objects; a parent outside the set is ignored.
            object("Ep", "b", "ep", Some("Ws/ws")),
            object("Dep", "a", "green", Some("Ep/missing")),
        ];
        let nodes = graph(&objects, &kinds);
        assert_eq!(nodes[0], Node { parent: Some(1), depth: 2 });
        assert_eq!(nodes[1], Node { parent: Some(2), depth: 1 });
        assert_eq!(nodes[3], Node { parent: None, depth: 0 });
        assert_eq!(nodes[4], Node { parent: None, depth: 0 });
        assert_eq!(parents_first(&nodes), vec![2, 3, 4, 1, 0]);
    }
}
