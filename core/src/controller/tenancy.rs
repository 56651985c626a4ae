//! What a namespace may reach through the operator (issue 25): which namespaces may use the
//! operator-wide default credentials, and the bounds on what an `AmlRoleAssignment` may grant.
//! Both are the cluster admin's choice (flags of `run`, chart values) and are decided before any
//! ARM call or token request.
//!
//! - [`NamespaceSelector`]: a Kubernetes label selector (`team in (a,b)`, `env!=prod`, `!legacy`,
//!   `aml-operator.io/default-credentials=allowed`), `*` for every namespace, empty for none.
//!   Namespace labels come from a metadata-only watch of namespaces ([`Namespaces`]): no API call
//!   per reconcile, and a label change wakes the objects of that namespace at once.
//! - [`RoleAssignmentBounds`]: the roles that may be granted ([`GrantableRole`]) and the ARM id
//!   prefixes a `scopeId` may name ([`ScopePrefix`], compared segment by segment, ASCII
//!   case-insensitively). `workspaceRef` and `computeRef` scopes are objects of the same
//!   namespace and are always allowed.

use super::{Context, Error, secrets};
use crate::crd::{AmlRoleAssignment, BuiltInRole};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::core::{Expression, PartialObjectMeta, Selector, SelectorExt};
use kube::runtime::{WatchStreamExt, watcher};
use kube::ResourceExt;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::RwLock;
use tokio::sync::broadcast;
use tracing::{debug, warn};

/// Labels of a namespace.
pub type Labels = BTreeMap<String, String>;

// ---------------------------------------------------------------------------------------------
// Namespace selector.

/// Which namespaces may use the operator-wide default credentials.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum NamespaceSelector {
    /// No namespace (the flag unset or empty): the default.
    #[default]
    Nothing,
    /// Every namespace (`*`): the behaviour before the selector existed.
    Everything,
    /// The namespaces whose labels satisfy every requirement (kube's selector matches them).
    Labels {
        /// The requirements (all must hold).
        selector: Selector,
        /// The selector as written, for messages.
        text: String,
    },
}

impl fmt::Display for NamespaceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamespaceSelector::Nothing => f.write_str("\"\" (no namespace)"),
            NamespaceSelector::Everything => f.write_str("\"*\" (every namespace)"),
            NamespaceSelector::Labels { text, .. } => write!(f, "{text:?}"),
        }
    }
}

impl NamespaceSelector {
    /// Parses the flag: empty for no namespace, `*` for every namespace, else a Kubernetes label
    /// selector (`,`-separated requirements: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`,
    /// `k`, `!k`). Keys and values are checked as Kubernetes checks them.
    pub fn parse(text: &str) -> Result<NamespaceSelector, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(NamespaceSelector::Nothing);
        }
        if text == "*" {
            return Ok(NamespaceSelector::Everything);
        }
        let selector = split_requirements(text)?
            .into_iter()
            .map(|part| requirement(part.trim()).map_err(|e| format!("{e} in {part:?}")))
            .collect::<Result<Selector, _>>()?;
        Ok(NamespaceSelector::Labels { selector, text: text.to_string() })
    }

    /// Whether a namespace with these labels is selected.
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            NamespaceSelector::Nothing => false,
            NamespaceSelector::Everything => true,
            NamespaceSelector::Labels { selector, .. } => selector.matches(labels),
        }
    }
}

/// Splits at the commas outside parentheses.
fn split_requirements(text: &str) -> Result<Vec<&str>, String> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(format!("unbalanced parentheses in {text:?}"));
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced parentheses in {text:?}"));
    }
    out.push(&text[start..]);
    if out.iter().any(|p| p.trim().is_empty()) {
        return Err(format!("an empty requirement in {text:?}"));
    }
    Ok(out)
}

/// One requirement: `!k`, `k!=v`, `k==v`, `k=v`, `k in (a,b)`, `k notin (a,b)` or `k`.
fn requirement(part: &str) -> Result<Expression, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Expression::DoesNotExist(label_key(key.trim())?));
    }
    for (op, negate) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((k, v)) = part.split_once(op) {
            let value = label_value(v.trim())?;
            let key = label_key(k.trim())?;
            return Ok(if negate { Expression::NotEqual(key, value) } else { Expression::Equal(key, value) });
        }
    }
    if let Some(open) = part.find('(') {
        let head: Vec<&str> = part[..open].split_whitespace().collect();
        let rest = part[open + 1..].trim_end();
        let Some(inner) = rest.strip_suffix(')') else { return Err("expected `)` at the end".into()) };
        let values = inner.split(',').map(|v| label_value(v.trim())).collect::<Result<BTreeSet<_>, _>>()?;
        return match head.as_slice() {
            [key, "in"] => Ok(Expression::In(label_key(key)?, values)),
            [key, "notin"] => Ok(Expression::NotIn(label_key(key)?, values)),
            _ => Err("expected `key in (...)` or `key notin (...)`".into()),
        };
    }
    Ok(Expression::Exists(label_key(part)?))
}

/// A qualified name: at most 63 characters of `[A-Za-z0-9_.-]`, starting and ending alphanumeric.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A label key: `[prefix/]name`, the prefix a DNS subdomain.
fn label_key(key: &str) -> Result<String, String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') && !l.starts_with('-') && !l.ends_with('-'))
    });
    if prefix_ok && is_name(name) { Ok(key.to_string()) } else { Err(format!("{key:?} is not a valid label key")) }
}

/// A label value: empty, or a qualified name.
fn label_value(value: &str) -> Result<String, String> {
    if value.is_empty() || is_name(value) { Ok(value.to_string()) } else { Err(format!("{value:?} is not a valid label value")) }
}

// ---------------------------------------------------------------------------------------------
// Namespace labels, watched.

/// The labels of every namespace, from a metadata-only watch (`None` until its first listing is
/// complete). A namespace not seen yet is read once with a GET.
#[derive(Default)]
pub struct Namespaces {
    labels: RwLock<Option<HashMap<String, Labels>>>,
}

impl Namespaces {
    /// Whether objects in `namespace` may use the operator-wide default credentials.
    pub async fn may_use_default(&self, ctx: &Context, namespace: &str) -> Result<bool, Error> {
        let selector = &ctx.config.default_credentials_namespaces;
        if !matches!(selector, NamespaceSelector::Labels { .. }) {
            return Ok(selector.matches(&Labels::new()));
        }
        let known = self.labels.read().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(|m| m.get(namespace).cloned());
        let labels = match known {
            Some(labels) => labels,
            None => {
                // Not watched (plan, in-process tests) or not seen yet: one read.
                let api: Api<Namespace> = Api::all(ctx.client.clone());
                let found = api
                    .get_metadata_opt(namespace)
                    .await
                    .map_err(|source| Error::Kube { what: "reading the namespace's labels", source })?;
                found.map(|n| n.labels().clone()).unwrap_or_default()
            }
        };
        Ok(selector.matches(&labels))
    }

    fn set(&self, map: HashMap<String, Labels>) {
        *self.labels.write().unwrap_or_else(|e| e.into_inner()) = Some(map);
    }

    /// Records a namespace's labels; returns whether it was known before with other labels.
    fn update(&self, name: &str, labels: Option<Labels>) -> Option<Labels> {
        let mut guard = self.labels.write().unwrap_or_else(|e| e.into_inner());
        let map = guard.get_or_insert_with(HashMap::new);
        match labels {
            Some(l) => map.insert(name.to_string(), l),
            None => map.remove(name),
        }
    }
}

/// Watches namespaces (metadata only) while the default credentials are limited by a label
/// selector, keeping `ctx.namespaces` current; a namespace whose right to the default changes
/// wakes its objects (sent to `tx` as a change of its `aml-credentials`, which wakes exactly the
/// objects that fall back to the default). `watched`: the one namespace the operator watches, if
/// any (then only that namespace is read, by name).
pub async fn watch_namespaces(ctx: std::sync::Arc<Context>, watched: Option<String>, tx: broadcast::Sender<secrets::SecretRef>) {
    let selector = ctx.config.default_credentials_namespaces.clone();
    if ctx.config.default_credentials.is_none() || !matches!(selector, NamespaceSelector::Labels { .. }) {
        return;
    }
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(ctx.client.clone());
    let mut config = watcher::Config::default().any_semantic();
    if let Some(ns) = &watched {
        config = config.fields(&format!("metadata.name={ns}"));
    }
    let mut initial: Option<HashMap<String, Labels>> = None;
    let mut events = watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => initial = Some(HashMap::new()),
            Ok(watcher::Event::InitApply(n)) => {
                if let Some(m) = initial.as_mut() {
                    m.insert(n.name_any(), n.labels().clone());
                }
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(m) = initial.take() {
                    ctx.namespaces.set(m);
                }
            }
            Ok(watcher::Event::Apply(n)) => {
                let name = n.name_any();
                let before = ctx.namespaces.update(&name, Some(n.labels().clone()));
                let was = before.as_ref().is_some_and(|l| selector.matches(l));
                if was != selector.matches(n.labels()) {
                    debug!(namespace = %name, allowed = !was, "namespace labels changed its right to the default credentials");
                    let _ = tx.send((name, crate::crd::DEFAULT_CREDENTIALS_SECRET.to_string()));
                }
            }
            Ok(watcher::Event::Delete(n)) => {
                ctx.namespaces.update(&n.name_any(), None);
            }
            Err(e) => warn!(error = %e, "watching namespaces failed; retrying (namespace labels are read once per object meanwhile)"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Role assignment bounds.

/// A role an `AmlRoleAssignment` may grant, as the admin names it in `--role-assignment-allow-roles`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GrantableRole {
    /// A built-in role the kind names in `spec.role` (or its GUID in `roleDefinitionId`).
    BuiltIn(BuiltInRoleName),
    /// User Access Administrator (only by GUID in `roleDefinitionId`).
    UserAccessAdministrator,
    /// Role Based Access Control Administrator (only by GUID in `roleDefinitionId`).
    RbacAdministrator,
    /// Any other `roleDefinitionId`: a custom role (or a built-in role this list does not name).
    Custom,
}

/// [`BuiltInRole`] with an order, for sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BuiltInRoleName(u8);

/// Role definition GUID of User Access Administrator.
pub const USER_ACCESS_ADMINISTRATOR_GUID: &str = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9";
/// Role definition GUID of Role Based Access Control Administrator.
pub const RBAC_ADMINISTRATOR_GUID: &str = "f58310d9-a9f6-439a-9e8d-f62e7b41a168";

impl GrantableRole {
    fn built_in(role: BuiltInRole) -> GrantableRole {
        let i = BuiltInRole::ALL.iter().position(|r| *r == role).unwrap_or_default();
        GrantableRole::BuiltIn(BuiltInRoleName(i as u8))
    }

    /// The roles granted unless the admin says otherwise: the AzureML roles, Reader, Contributor.
    pub fn defaults() -> BTreeSet<GrantableRole> {
        BuiltInRole::ALL.into_iter().filter(|r| *r != BuiltInRole::Owner).map(GrantableRole::built_in).collect()
    }

    /// Every role (what `--role-assignment-allow-roles=*` means).
    pub fn every() -> BTreeSet<GrantableRole> {
        let mut all: BTreeSet<_> = BuiltInRole::ALL.into_iter().map(GrantableRole::built_in).collect();
        all.extend([GrantableRole::UserAccessAdministrator, GrantableRole::RbacAdministrator, GrantableRole::Custom]);
        all
    }

    /// The name the flag takes.
    pub fn name(self) -> String {
        match self {
            GrantableRole::BuiltIn(BuiltInRoleName(i)) => {
                let role = BuiltInRole::ALL.get(usize::from(i)).copied().unwrap_or(BuiltInRole::Reader);
                serde_json::to_value(role).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
            }
            GrantableRole::UserAccessAdministrator => "UserAccessAdministrator".into(),
            GrantableRole::RbacAdministrator => "RoleBasedAccessControlAdministrator".into(),
            GrantableRole::Custom => "Custom".into(),
        }
    }

    /// Parses one name of the flag (case and spaces ignored: `User Access Administrator` works).
    pub fn parse(name: &str) -> Result<GrantableRole, String> {
        let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
        let wanted = squash(name);
        GrantableRole::every()
            .into_iter()
            .find(|r| squash(&r.name()) == wanted)
            .ok_or_else(|| {
                let names: Vec<String> = GrantableRole::every().into_iter().map(GrantableRole::name).collect();
                format!("unknown role {name:?} (known: {}, or * for all)", names.join(", "))
            })
    }

    /// What the object asks for: its built-in role, or its role definition GUID classified
    /// (a built-in role's GUID counts as that role, so `roleDefinitionId` cannot smuggle Owner in).
    pub fn of(obj: &AmlRoleAssignment) -> Option<GrantableRole> {
        if let Some(role) = obj.spec.role {
            return Some(GrantableRole::built_in(role));
        }
        let guid = crate::arm::ids::role_guid(obj.spec.role_definition_id.as_deref()?);
        Some(match BuiltInRole::from_guid(&guid) {
            Some(role) => GrantableRole::built_in(role),
            None if guid == USER_ACCESS_ADMINISTRATOR_GUID => GrantableRole::UserAccessAdministrator,
            None if guid == RBAC_ADMINISTRATOR_GUID => GrantableRole::RbacAdministrator,
            None => GrantableRole::Custom,
        })
    }
}

/// An ARM id prefix a `scopeId` may be under: its segments, compared ASCII case-insensitively.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopePrefix {
    segments: Vec<String>,
    text: String,
}

impl ScopePrefix {
    /// Parses an ARM id prefix: `/` (every scope), or an id starting with `/subscriptions/` or
    /// `/providers/Microsoft.Management/managementGroups/`, without `.`/`..`, empty segments, `%`
    /// or `\`. A trailing `/` is ignored.
    pub fn parse(text: &str) -> Result<ScopePrefix, String> {
        let trimmed = text.trim();
        let segments = id_segments(trimmed).ok_or_else(|| format!("{text:?} is not an ARM id prefix (it must start with /, without empty, `.` or `..` segments, `%` or `\\`)"))?;
        if let Some(first) = segments.first() {
            let managed = first.eq_ignore_ascii_case("subscriptions")
                || (first.eq_ignore_ascii_case("providers") && segments.get(1).is_some_and(|s| s.eq_ignore_ascii_case("Microsoft.Management")));
            if !managed || segments.len() < 2 {
                return Err(format!("{text:?} is not an ARM scope prefix: use /subscriptions/{{sub}}[/resourceGroups/{{rg}}...], /providers/Microsoft.Management/managementGroups/{{id}}, or / for every scope"));
            }
        }
        let text = format!("/{}", segments.join("/"));
        Ok(ScopePrefix { segments, text })
    }

    /// Whether `scope` is this prefix or under it, segment by segment.
    pub fn contains(&self, scope: &[String]) -> bool {
        scope.len() >= self.segments.len() && self.segments.iter().zip(scope).all(|(p, s)| p.eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for ScopePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The segments of an ARM id: `None` when it is not a clean absolute path (no leading `/`, an
/// empty segment inside, a `.` or `..` segment, `%`, `\`, whitespace or control characters, `?`
/// or `#`). One trailing `/` is allowed. `/` alone has no segments.
pub fn id_segments(id: &str) -> Option<Vec<String>> {
    let rest = id.strip_prefix('/')?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let clean = |s: &&str| !s.is_empty() && *s != "." && *s != ".." && !s.contains(|c: char| matches!(c, '%' | '\\' | '?' | '#') || c.is_whitespace() || c.is_control());
    let segments: Vec<&str> = rest.split('/').collect();
    segments.iter().all(clean).then(|| segments.into_iter().map(str::to_string).collect())
}

/// What an `AmlRoleAssignment` may grant, set by the admin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleAssignmentBounds {
    /// Roles that may be granted.
    pub roles: BTreeSet<GrantableRole>,
    /// Prefixes a `scopeId` may be under (none: `scopeId` is refused; `workspaceRef` and
    /// `computeRef` always work).
    pub scope_prefixes: Vec<ScopePrefix>,
}

impl Default for RoleAssignmentBounds {
    fn default() -> Self {
        RoleAssignmentBounds { roles: GrantableRole::defaults(), scope_prefixes: Vec::new() }
    }
}

/// Why a role assignment is outside the bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutOfBounds {
    /// The role is not in `--role-assignment-allow-roles`.
    Role {
        /// The role asked for.
        role: String,
        /// The roles allowed.
        allowed: String,
    },
    /// The `scopeId` is not under any `--role-assignment-scope-prefix`.
    Scope {
        /// The scope asked for.
        scope: String,
        /// The prefixes allowed (empty: none).
        prefixes: String,
    },
}

impl RoleAssignmentBounds {
    /// Every role and every scope: the behaviour before the bounds existed (and the CLI's, which
    /// acts with the user's own credentials).
    pub fn unbounded() -> Self {
        RoleAssignmentBounds { roles: GrantableRole::every(), scope_prefixes: vec![ScopePrefix { segments: Vec::new(), text: "/".into() }] }
    }

    /// Parses the flags: role names (or `*`) and scope prefixes.
    pub fn parse(roles: &[String], prefixes: &[String]) -> Result<Self, String> {
        let mut set = BTreeSet::new();
        for name in roles.iter().map(|r| r.trim()).filter(|r| !r.is_empty()) {
            if name == "*" {
                set.extend(GrantableRole::every());
            } else {
                set.insert(GrantableRole::parse(name).map_err(|e| format!("--role-assignment-allow-roles: {e}"))?);
            }
        }
        let scope_prefixes = prefixes
            .iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| ScopePrefix::parse(p).map_err(|e| format!("--role-assignment-scope-prefix: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RoleAssignmentBounds { roles: set, scope_prefixes })
    }

    /// Whether `scope_id` (a `scopeId`) is under an allowed prefix.
    pub fn scope_allowed(&self, scope_id: &str) -> bool {
        id_segments(scope_id).is_some_and(|segs| self.scope_prefixes.iter().any(|p| p.contains(&segs)))
    }

    /// Checks an object against the bounds (pure; before any ARM call).
    pub fn check(&self, obj: &AmlRoleAssignment) -> Result<(), OutOfBounds> {
        if let Some(role) = GrantableRole::of(obj)
            && !self.roles.contains(&role)
        {
            let asked = match (role, &obj.spec.role_definition_id) {
                (GrantableRole::Custom, Some(id)) => format!("the custom role {id}"),
                (_, Some(id)) => format!("{} (roleDefinitionId {id})", role.name()),
                _ => role.name(),
            };
            return Err(OutOfBounds::Role { role: asked, allowed: self.roles_text() });
        }
        let by_reference = obj.spec.workspace_ref.is_some() || obj.spec.compute_ref.is_some();
        if !by_reference
            && let Some(scope) = &obj.spec.scope_id
            && !self.scope_allowed(scope)
        {
            return Err(OutOfBounds::Scope { scope: scope.clone(), prefixes: self.prefixes_text() });
        }
        Ok(())
    }

    fn roles_text(&self) -> String {
        if self.roles.is_empty() { "none".into() } else { self.roles.iter().map(|r| r.name()).collect::<Vec<_>>().join(",") }
    }

    fn prefixes_text(&self) -> String {
        if self.scope_prefixes.is_empty() { "none".into() } else { self.scope_prefixes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ") }
    }
}

impl fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutOfBounds::Role { role, allowed } => write!(
                f,
                "the operator may not grant {role}: the cluster admin allows only {allowed} (--role-assignment-allow-roles, chart value roleAssignments.allowedRoles); ask them to allow it, or choose an allowed role (role and roleDefinitionId are immutable: delete this object and create another)"
            ),
            OutOfBounds::Scope { scope, prefixes } => write!(
                f,
                "the operator may not grant roles at scopeId {scope}: it is not under an ARM id prefix the cluster admin allows ({prefixes}; --role-assignment-scope-prefix, chart value roleAssignments.scopePrefixes); use workspaceRef or computeRef for a workspace or compute of this namespace, or ask the admin to allow the scope (scopeId is immutable: delete this object and create another)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn selectors_match_as_kubernetes_does() {
        let a = labels(&[("team", "a"), ("aml-operator.io/default-credentials", "allowed")]);
        let b = labels(&[("team", "b"), ("env", "prod")]);
        let c = labels(&[("team", "c"), ("legacy", "")]);
        let none = labels(&[]);
        // (selector, a, b, c, none)
        let table: &[(&str, [bool; 4])] = &[
            ("", [false, false, false, false]),
            ("*", [true, true, true, true]),
            ("team in (a,b)", [true, true, false, false]),
            ("team in ( a , b )", [true, true, false, false]),
            ("team notin (a,b)", [false, false, true, true]),
            ("team=a", [true, false, false, false]),
            ("team==a", [true, false, false, false]),
            ("team!=a", [false, true, true, true]),
            ("aml-operator.io/default-credentials=allowed", [true, false, false, false]),
            ("team", [true, true, true, false]),
            ("!team", [false, false, false, true]),
            ("legacy", [false, false, true, false]),
            ("team in (a,b,c),env!=prod", [true, false, true, false]),
            ("team,!legacy,env notin (prod)", [true, false, false, false]),
            ("team=", [false, false, false, false]),
        ];
        for (text, expect) in table {
            let s = NamespaceSelector::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            let got = [s.matches(&a), s.matches(&b), s.matches(&c), s.matches(&none)];
            assert_eq!(&got, expect, "selector {text:?}");
        }
    }

    #[test]
    fn malformed_selectors_are_refused_with_a_reason() {
        for bad in ["team in (a", "team in a,b)", "team in (a,,b)x", "te am=a", "team=a b", ",team", "team=a,", "-team=a", "team=-a", "Foo.COM/x=y", "team in (a))", "team =~ a", "a/b/c=d"] {
            let err = NamespaceSelector::parse(bad).expect_err(bad);
            assert!(!err.is_empty(), "{bad}");
        }
    }

    fn assignment(spec: serde_json::Value) -> AmlRoleAssignment {
        let mut base = json!({"principalId": "aaaaaaaa-0000-0000-0000-000000000001", "principalType": "Group"});
        base.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
        serde_json::from_value(json!({"apiVersion": "amloperator.io/v1alpha1", "kind": "AmlRoleAssignment",
            "metadata": {"name": "ra", "namespace": "team-a"}, "spec": base})).unwrap()
    }

    #[test]
    fn roles_are_bounded_by_default_to_the_azureml_roles_reader_and_contributor() {
        let bounds = RoleAssignmentBounds::default();
        let ws = json!({"workspaceRef": {"name": "ws"}});
        let with = |extra: serde_json::Value| {
            let mut s = ws.clone();
            s.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            assignment(s)
        };
        let owner_guid = BuiltInRole::Owner.guid();
        let table: &[(serde_json::Value, bool)] = &[
            (json!({"role": "AzureMLDataScientist"}), true),
            (json!({"role": "AzureMLComputeOperator"}), true),
            (json!({"role": "AzureMLRegistryUser"}), true),
            (json!({"role": "Reader"}), true),
            (json!({"role": "Contributor"}), true),
            (json!({"role": "Owner"}), false),
            // Owner by its GUID, in any form or case: still Owner.
            (json!({"roleDefinitionId": owner_guid}), false),
            (json!({"roleDefinitionId": owner_guid.to_uppercase()}), false),
            (json!({"roleDefinitionId": format!("/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/{owner_guid}")}), false),
            (json!({"roleDefinitionId": USER_ACCESS_ADMINISTRATOR_GUID}), false),
            (json!({"roleDefinitionId": RBAC_ADMINISTRATOR_GUID}), false),
            (json!({"roleDefinitionId": "11111111-2222-3333-4444-555555555555"}), false),
            // A built-in role by GUID counts as that role.
            (json!({"roleDefinitionId": BuiltInRole::Reader.guid()}), true),
        ];
        for (spec, allowed) in table {
            let r = bounds.check(&with(spec.clone()));
            assert_eq!(r.is_ok(), *allowed, "{spec}: {r:?}");
            if let Err(e) = r {
                assert!(e.to_string().contains("--role-assignment-allow-roles"), "{e}");
            }
        }
        let opened = RoleAssignmentBounds::parse(&["Reader".into(), "owner".into(), "User Access Administrator".into(), "Custom".into()], &[]).unwrap();
        assert!(opened.check(&with(json!({"role": "Owner"}))).is_ok());
        assert!(opened.check(&with(json!({"roleDefinitionId": USER_ACCESS_ADMINISTRATOR_GUID}))).is_ok());
        assert!(opened.check(&with(json!({"roleDefinitionId": "11111111-2222-3333-4444-555555555555"}))).is_ok());
        assert!(opened.check(&with(json!({"roleDefinitionId": RBAC_ADMINISTRATOR_GUID}))).is_err(), "Custom does not open the privileged built-ins");
        assert!(opened.check(&with(json!({"role": "Contributor"}))).is_err(), "the list is the whole allowlist");
        assert!(RoleAssignmentBounds::parse(&["*".into()], &[]).unwrap().roles == GrantableRole::every());
        assert!(RoleAssignmentBounds::parse(&["Admin".into()], &[]).is_err());
    }

    #[test]
    fn scope_prefixes_match_segment_by_segment_and_cannot_be_escaped() {
        let bounds = RoleAssignmentBounds::parse(&["Reader".into()], &["/subscriptions/x/resourceGroups/rg-ml/".into()]).unwrap();
        let table: &[(&str, bool)] = &[
            ("/subscriptions/x/resourceGroups/rg-ml", true),
            ("/subscriptions/x/resourceGroups/rg-ml/", true),
            ("/SUBSCRIPTIONS/X/resourcegroups/RG-ML", true),
            ("/subscriptions/x/resourceGroups/rg-ml/providers/Microsoft.Storage/storageAccounts/sa", true),
            ("/subscriptions/x/resourceGroups/rg-ml2", false),
            ("/subscriptions/x/resourceGroups/rg-m", false),
            ("/subscriptions/x/resourceGroups", false),
            ("/subscriptions/x", false),
            ("/subscriptions/x/resourceGroups/rg-ml/..", false),
            ("/subscriptions/x/resourceGroups/rg-ml/../rg-other", false),
            ("/subscriptions/x/resourceGroups/rg-ml/./", false),
            ("/subscriptions/x/resourceGroups/rg-ml/%2e%2e/rg-other", false),
            ("/subscriptions/x/resourceGroups/rg-ml//providers", false),
            ("/subscriptions/x/resourceGroups/rg-ml\\..\\rg-other", false),
            ("/subscriptions/x/resourceGroups/rg-ml ", false),
            ("subscriptions/x/resourceGroups/rg-ml", false),
            ("/providers/Microsoft.Management/managementGroups/root", false),
            ("/providers/Microsoft.Management/managementGroups/rg-ml", false),
            ("/subscriptions/y/resourceGroups/rg-ml", false),
            ("/", false),
            ("", false),
            // Unicode look-alikes are not case-folded into ASCII.
            ("/subscriptions/x/resourceGroups/rg-mℓ", false),
        ];
        for (scope, allowed) in table {
            assert_eq!(bounds.scope_allowed(scope), *allowed, "{scope:?}");
            let obj = assignment(json!({"scopeId": scope, "role": "Reader"}));
            assert_eq!(bounds.check(&obj).is_ok(), *allowed, "{scope:?}");
        }
        // No prefix: every scopeId is refused; workspaceRef and computeRef are always allowed.
        let default = RoleAssignmentBounds::default();
        let err = default.check(&assignment(json!({"scopeId": "/subscriptions/x", "role": "Reader"}))).unwrap_err();
        assert!(err.to_string().contains("--role-assignment-scope-prefix") && err.to_string().contains("none"), "{err}");
        assert!(default.check(&assignment(json!({"workspaceRef": {"name": "ws"}, "role": "Reader"}))).is_ok());
        assert!(default.check(&assignment(json!({"computeRef": {"name": "c"}, "role": "Reader"}))).is_ok());
        // A management group prefix, and `/` for every scope.
        let mg = RoleAssignmentBounds::parse(&[], &["/providers/Microsoft.Management/managementGroups/ml".into()]).unwrap();
        assert!(mg.scope_allowed("/providers/microsoft.management/managementgroups/ML"));
        assert!(!mg.scope_allowed("/providers/Microsoft.Management/managementGroups/ml-prod"));
        assert!(!mg.scope_allowed("/subscriptions/x"));
        let all = RoleAssignmentBounds::parse(&[], &["/".into()]).unwrap();
        assert!(all.scope_allowed("/subscriptions/x") && all.scope_allowed("/providers/Microsoft.Management/managementGroups/root"));
        assert!(!all.scope_allowed("/subscriptions/x/../y"));
    }

    #[test]
    fn bad_prefixes_are_refused_at_start() {
        for bad in ["subscriptions/x", "/subscriptions/x/../y", "/subscriptions", "/resourceGroups/rg", "/subscriptions//x", "/subscriptions/x%2f", "/providers/Microsoft.Storage"] {
            assert!(RoleAssignmentBounds::parse(&[], &[bad.into()]).is_err(), "{bad}");
        }
        assert!(RoleAssignmentBounds::parse(&[], &["".into()]).unwrap().scope_prefixes.is_empty(), "an empty value is no prefix");
    }
}
