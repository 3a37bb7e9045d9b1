//! Annotation routing (central-compat §3): a destination's target — Slack or Teams
//! webhook, Jira project, email recipient, webhook URL — can come from the
//! alert's deployment or namespace, so each team gets its own alerts.

use crate::model::{AlertFields, Event};

/// Which rule decided the target, for `herald explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    DeploymentAnnotation,
    DeploymentLabel,
    NamespaceAnnotation,
    Default,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::DeploymentAnnotation => "deployment annotation",
            Step::DeploymentLabel => "deployment label",
            Step::NamespaceAnnotation => "namespace annotation",
            Step::Default => "default",
        }
    }
}

/// Namespace annotations by (cluster id, namespace name), from the
/// namespace-metadata file when one is configured.
pub trait NamespaceAnnotations {
    fn annotation(&self, cluster_id: &str, namespace: &str, key: &str) -> Option<&str>;
}

/// Resolves `key` for an alert: deployment annotation, then deployment label,
/// then namespace annotation, then `default`. A key present with an empty
/// value still wins, as in Central. An empty `key` means the default.
pub fn resolve<'a>(
    alert: &'a AlertFields,
    key: &str,
    default: &'a str,
    namespaces: Option<&'a dyn NamespaceAnnotations>,
) -> (&'a str, Step) {
    if key.is_empty() {
        return (default, Step::Default);
    }
    if let Some(d) = &alert.deployment {
        if let Some(v) = d.annotations.get(key) {
            return (v, Step::DeploymentAnnotation);
        }
        if let Some(v) = d.labels.get(key) {
            return (v, Step::DeploymentLabel);
        }
    }
    let scope = match (&alert.deployment, &alert.resource) {
        (Some(d), _) => Some((d.cluster_id.as_str(), d.namespace.as_str())),
        // Cluster-scoped resources have no namespace to look in.
        (_, Some(r))
            if !matches!(
                r.resource_type.as_str(),
                "CLUSTER_ROLES" | "CLUSTER_ROLE_BINDINGS"
            ) =>
        {
            Some((r.cluster_id.as_str(), r.namespace.as_str()))
        }
        _ => None,
    };
    if let (Some((cluster, ns)), Some(meta)) = (scope, namespaces) {
        if !cluster.is_empty() && !ns.is_empty() {
            if let Some(v) = meta.annotation(cluster, ns, key) {
                return (v, Step::NamespaceAnnotation);
            }
        }
    }
    (default, Step::Default)
}

/// [`resolve`] for any event: audit events have no deployment or namespace,
/// so they get `default`.
pub fn resolve_event<'a>(
    event: &'a Event,
    key: &str,
    default: &'a str,
    namespaces: Option<&'a dyn NamespaceAnnotations>,
) -> (&'a str, Step) {
    match event {
        Event::Alert(a) => resolve(&a.fields, key, default, namespaces),
        Event::Audit(_) => (default, Step::Default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{decode, Event};
    use std::collections::HashMap;

    struct Meta(HashMap<(String, String, String), String>);

    impl NamespaceAnnotations for Meta {
        fn annotation(&self, c: &str, n: &str, k: &str) -> Option<&str> {
            self.0
                .get(&(c.into(), n.into(), k.into()))
                .map(String::as_str)
        }
    }

    fn fields(json: &str) -> Box<AlertFields> {
        match decode(json.as_bytes(), &crate::model::Limits::default()).unwrap() {
            Event::Alert(a) => a.fields,
            Event::Audit(_) => unreachable!(),
        }
    }

    #[test]
    fn follows_centrals_order_and_presence_rule() {
        let meta = Meta(HashMap::from([(
            ("c1".into(), "ns".into(), "team".into()),
            "ns-team".into(),
        )]));
        let m: Option<&dyn NamespaceAnnotations> = Some(&meta);
        let dep = |extra: &str| {
            fields(&format!(
                r#"{{"id":"a","policy":{{}},"deployment":{{"clusterId":"c1","namespace":"ns"{extra}}}}}"#
            ))
        };
        let a = dep(r#","annotations":{"team":"pay"},"labels":{"team":"label-team"}"#);
        assert_eq!(
            resolve(&a, "team", "def", m),
            ("pay", Step::DeploymentAnnotation)
        );
        let a = dep(r#","annotations":{"team":""}"#);
        assert_eq!(
            resolve(&a, "team", "def", m),
            ("", Step::DeploymentAnnotation),
            "empty still wins"
        );
        let a = dep(r#","labels":{"team":"label-team"}"#);
        assert_eq!(
            resolve(&a, "team", "def", m),
            ("label-team", Step::DeploymentLabel)
        );
        let a = dep("");
        assert_eq!(
            resolve(&a, "team", "def", m),
            ("ns-team", Step::NamespaceAnnotation)
        );
        assert_eq!(resolve(&a, "team", "def", None), ("def", Step::Default));
        assert_eq!(resolve(&a, "", "def", m), ("def", Step::Default));
        let res = fields(
            r#"{"id":"a","policy":{},"resource":{"resourceType":"SECRETS","clusterId":"c1","namespace":"ns"}}"#,
        );
        assert_eq!(
            resolve(&res, "team", "def", m),
            ("ns-team", Step::NamespaceAnnotation)
        );
        let role = fields(
            r#"{"id":"a","policy":{},"resource":{"resourceType":"CLUSTER_ROLES","clusterId":"c1","namespace":"ns"}}"#,
        );
        assert_eq!(resolve(&role, "team", "def", m), ("def", Step::Default));
        let image = fields(r#"{"id":"a","policy":{},"image":{"name":{"fullName":"x"}}}"#);
        assert_eq!(resolve(&image, "team", "def", m), ("def", Step::Default));
    }
}
