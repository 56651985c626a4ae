//! The CLI's view of the operator's kinds (`controller::kinds::ALL`): which handles a set of
//! manifests, and in what order (parents before children).

use crate::controller::kinds::{self, Kind};

/// Every kind the CLI handles: the operator's table.
pub fn registry() -> Vec<&'static dyn Kind> {
    kinds::ALL.to_vec()
}

/// Finds the handle of `kind`.
pub(crate) fn handle<'a>(kinds: &[&'a dyn Kind], kind: &str) -> Option<&'a dyn Kind> {
    kinds.iter().copied().find(|k| k.name() == kind)
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
pub(crate) fn graph(objects: &[super::Manifest], kinds: &[&dyn Kind]) -> Vec<Node> {
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
    use crate::controller::kinds::Reconciled;
    use crate::controller::plan::Planned;
    use crate::controller::run::Shared;
    use crate::controller::{BoxFuture, Context};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::ApiResource;
    use serde_json::{Value, json};
    use std::sync::Arc;

    /// A kind whose objects name their parent in `spec.parent` as `Kind/name`.
    struct Fake(&'static str);

    impl Kind for Fake {
        fn name(&self) -> &'static str {
            self.0
        }
        fn resource(&self) -> ApiResource {
            unimplemented!("not used by the ordering tests")
        }
        fn crd(&self) -> CustomResourceDefinition {
            unimplemented!("not used by the ordering tests")
        }
        fn parse(&self, _: &Value) -> Result<(), String> {
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
        fn reconcile(&self, _: Value, _: Arc<Context>) -> BoxFuture<'static, Result<Reconciled, String>> {
            unimplemented!("not used by the ordering tests")
        }
        fn run(&self, _: Shared, _: Box<dyn FnOnce() + Send>) -> BoxFuture<'static, ()> {
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
        let kinds: Vec<&dyn Kind> = vec![&Fake("Ws"), &Fake("Ep"), &Fake("Dep")];
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
