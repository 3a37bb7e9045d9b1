//! Which destinations an event goes to, and why the others do not.
//!
//! Central's rule first: an alert goes to the destinations whose `id` its
//! policy lists in `policy.notifiers` (or to a destination with
//! `all_alerts = true`); then each destination's own filters narrow it.
//! A destination's [`Rule`] holds all of it.

pub mod annotations;
pub mod clusters;
pub mod metadata;
pub mod namespaces;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::config::{join, Errors};
use crate::model::{AlertFields, AlertState, Event, LifecycleStage, Severity};

/// A destination's routing settings as written in its table.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawRule {
    /// The RHACS notifier id that policies list.
    #[serde(default)]
    pub id: String,
    /// Audit events too (default: the type's own default).
    #[serde(default)]
    pub audit: Option<bool>,
    #[serde(default)]
    pub all_alerts: bool,
    #[serde(default)]
    pub min_severity: Option<String>,
    #[serde(default)]
    pub lifecycle_stages: Vec<String>,
    #[serde(default)]
    pub clusters: Vec<String>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub policies: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
}

/// Filter settings as written in a destination's config.
pub type RawFilter = RawRule;

/// Which events one destination takes: its notifier id, whether audit
/// events go to it, and its filters.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    pub id: String,
    pub audit: bool,
    pub filter: Filter,
}

impl Rule {
    /// Validates `raw`; `default_audit` is the type's (syslog takes audit
    /// events unless told otherwise, as in Central).
    pub fn build(
        raw: &RawRule,
        default_audit: bool,
        path: &str,
        errs: &mut Errors,
    ) -> Option<Rule> {
        let before = errs.list.len();
        if raw.id.is_empty() && !raw.all_alerts && raw.audit != Some(true) && !default_audit {
            errs.push(
                &join(path, "id"),
                "is required unless all_alerts = true (policies route alerts by notifier id)",
            );
        }
        let filter = Filter::build(raw, path, errs);
        if errs.list.len() > before {
            return None;
        }
        Some(Rule {
            id: raw.id.clone(),
            audit: raw.audit.unwrap_or(default_audit),
            filter: filter?,
        })
    }
}

/// Compiled filters of one destination.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub all_alerts: bool,
    min_severity: Option<Severity>,
    stages: Vec<LifecycleStage>,
    clusters: Vec<String>,
    namespaces: Option<(GlobSet, Vec<String>)>,
    policies: Option<(GlobSet, Vec<String>)>,
    categories: Vec<String>,
}

impl Filter {
    pub fn build(raw: &RawFilter, path: &str, errs: &mut Errors) -> Option<Filter> {
        let before = errs.list.len();
        let min_severity = raw.min_severity.as_ref().and_then(|s| {
            let sev = Severity::from_config(s);
            if sev.is_none() {
                errs.push(
                    &join(path, "min_severity"),
                    format!("unknown severity {s:?} (expected low, medium, high or critical)"),
                );
            }
            sev
        });
        let mut stages = Vec::new();
        for (i, s) in raw.lifecycle_stages.iter().enumerate() {
            match LifecycleStage::from_config(s) {
                Some(st) => stages.push(st),
                None => errs.push(
                    &format!("{}[{i}]", join(path, "lifecycle_stages")),
                    format!("unknown lifecycle stage {s:?} (expected DEPLOY, BUILD or RUNTIME)"),
                ),
            }
        }
        let namespaces = globs(&raw.namespaces, &join(path, "namespaces"), errs);
        let policies = globs(&raw.policies, &join(path, "policies"), errs);
        if errs.list.len() > before {
            return None;
        }
        Some(Filter {
            all_alerts: raw.all_alerts,
            min_severity,
            stages,
            clusters: raw.clusters.clone(),
            namespaces,
            policies,
            categories: raw.categories.iter().map(|c| c.to_lowercase()).collect(),
        })
    }

    /// `Err(reason)` when this filter rejects the alert.
    fn check(&self, a: &AlertFields) -> Result<(), String> {
        if let Some(min) = self.min_severity {
            if a.policy.severity < min {
                return Err(format!(
                    "severity {} is below min_severity {}",
                    a.policy.severity.title(),
                    min.title()
                ));
            }
        }
        if !self.stages.is_empty() && !self.stages.contains(&a.lifecycle_stage) {
            return Err(format!(
                "lifecycle stage {} is not in lifecycle_stages",
                a.lifecycle_stage.as_str()
            ));
        }
        if !self.clusters.is_empty() {
            let (name, id) = (a.cluster_name(), a.cluster_id.as_str());
            if !self.clusters.iter().any(|c| c == name || c == id) {
                return Err(format!("cluster {name:?} is not in clusters"));
            }
        }
        if let Some((set, _)) = &self.namespaces {
            let ns = a.namespace();
            if !set.is_match(ns) {
                return Err(format!("namespace {ns:?} matches no pattern in namespaces"));
            }
        }
        if let Some((set, _)) = &self.policies {
            if !set.is_match(&a.policy.name) {
                return Err(format!(
                    "policy {:?} matches no pattern in policies",
                    a.policy.name
                ));
            }
        }
        if !self.categories.is_empty()
            && !a
                .policy
                .categories
                .iter()
                .any(|c| self.categories.contains(&c.to_lowercase()))
        {
            return Err("no policy category is in categories".into());
        }
        Ok(())
    }
}

fn globs(patterns: &[String], path: &str, errs: &mut Errors) -> Option<(GlobSet, Vec<String>)> {
    if patterns.is_empty() {
        return None;
    }
    let mut b = GlobSetBuilder::new();
    for (i, p) in patterns.iter().enumerate() {
        match Glob::new(p) {
            Ok(g) => {
                b.add(g);
            }
            Err(e) => errs.push(&format!("{path}[{i}]"), format!("invalid glob: {e}")),
        }
    }
    b.build().ok().map(|set| (set, patterns.to_vec()))
}

/// Whether `event` goes to a destination of type `kind` with `rule`:
/// `Err(reason)` names the rule that keeps it away.
pub fn decide(rule: &Rule, kind: &str, can_resolve: bool, event: &Event) -> Result<(), String> {
    match event {
        Event::Audit(_) => {
            if rule.audit {
                Ok(())
            } else {
                Err("audit events are off (audit = false)".into())
            }
        }
        Event::Alert(alert) => {
            let a = &alert.fields;
            let listed = !rule.id.is_empty() && a.policy.notifiers.iter().any(|n| n == &rule.id);
            if !listed && !rule.filter.all_alerts {
                return Err(format!(
                    "policy.notifiers does not list this destination's id {:?} and all_alerts is false",
                    rule.id
                ));
            }
            // Central sends resolutions only to notifiers that can resolve (central-compat §4.1).
            if a.state == AlertState::Resolved && !can_resolve {
                return Err(format!(
                    "RESOLVED alerts are not sent to {kind} destinations"
                ));
            }
            rule.filter.check(a)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decode;

    fn common(raw: RawFilter, id: &str) -> Rule {
        let mut errs = Errors::default();
        Rule::build(
            &RawRule {
                id: id.into(),
                ..raw
            },
            false,
            "d",
            &mut errs,
        )
        .unwrap()
    }

    fn decide(rule: &Rule, can_resolve: bool, event: &Event) -> Result<(), String> {
        super::decide(rule, "webhook", can_resolve, event)
    }

    fn alert(json: &str) -> Event {
        decode(json.as_bytes(), &crate::model::Limits::default()).unwrap()
    }

    const A: &str = r#"{"id":"a","clusterName":"prod","namespace":"payments","lifecycleStage":"RUNTIME","policy":{"name":"Shell Spawned","severity":"HIGH_SEVERITY","categories":["Anomalous Activity"],"notifiers":["n1"]}}"#;

    #[test]
    fn routes_by_policy_notifiers_or_all_alerts() {
        let e = alert(A);
        assert!(decide(&common(RawFilter::default(), "n1"), false, &e).is_ok());
        let err = decide(&common(RawFilter::default(), "n2"), false, &e).unwrap_err();
        assert!(err.contains("policy.notifiers"), "{err}");
        let all = RawFilter {
            all_alerts: true,
            ..Default::default()
        };
        assert!(decide(&common(all, "n2"), false, &e).is_ok());
    }

    #[test]
    fn each_filter_can_reject() {
        let e = alert(A);
        let cases: Vec<(RawFilter, bool)> = vec![
            (
                RawFilter {
                    min_severity: Some("critical".into()),
                    ..Default::default()
                },
                false,
            ),
            (
                RawFilter {
                    min_severity: Some("high".into()),
                    ..Default::default()
                },
                true,
            ),
            (
                RawFilter {
                    lifecycle_stages: vec!["DEPLOY".into()],
                    ..Default::default()
                },
                false,
            ),
            (
                RawFilter {
                    lifecycle_stages: vec!["runtime".into()],
                    ..Default::default()
                },
                true,
            ),
            (
                RawFilter {
                    clusters: vec!["dev".into()],
                    ..Default::default()
                },
                false,
            ),
            (
                RawFilter {
                    clusters: vec!["prod".into()],
                    ..Default::default()
                },
                true,
            ),
            (
                RawFilter {
                    namespaces: vec!["kube-*".into()],
                    ..Default::default()
                },
                false,
            ),
            (
                RawFilter {
                    namespaces: vec!["pay*".into()],
                    ..Default::default()
                },
                true,
            ),
            (
                RawFilter {
                    policies: vec!["*Privileged*".into()],
                    ..Default::default()
                },
                false,
            ),
            (
                RawFilter {
                    policies: vec!["Shell *".into()],
                    ..Default::default()
                },
                true,
            ),
            (
                RawFilter {
                    categories: vec!["Privileges".into()],
                    ..Default::default()
                },
                false,
            ),
            (
                RawFilter {
                    categories: vec!["anomalous activity".into()],
                    ..Default::default()
                },
                true,
            ),
        ];
        for (raw, expected) in cases {
            let dbg = format!("{raw:?}");
            assert_eq!(
                decide(&common(raw, "n1"), false, &e).is_ok(),
                expected,
                "{dbg}"
            );
        }
    }

    #[test]
    fn resolved_only_to_resolvable_and_audit_only_when_on() {
        let resolved = alert(&A.replace("\"id\":\"a\"", "\"id\":\"a\",\"state\":\"RESOLVED\""));
        assert!(decide(&common(RawFilter::default(), "n1"), false, &resolved).is_err());
        assert!(decide(&common(RawFilter::default(), "n1"), true, &resolved).is_ok());
        let audit = alert(r#"{"audit":{"status":"REQUEST_SUCCEEDED"}}"#);
        let mut c = common(RawFilter::default(), "n1");
        assert!(decide(&c, false, &audit).is_err());
        c.audit = true;
        assert!(decide(&c, false, &audit).is_ok());
    }

    #[test]
    fn bad_filter_values_name_their_field() {
        let mut errs = Errors::default();
        let raw = RawFilter {
            min_severity: Some("urgent".into()),
            lifecycle_stages: vec!["LATER".into()],
            namespaces: vec!["a[".into()],
            ..Default::default()
        };
        assert!(Filter::build(&raw, "destinations[0]", &mut errs).is_none());
        let paths: Vec<&str> = errs.list.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "destinations[0].min_severity",
                "destinations[0].lifecycle_stages[0]",
                "destinations[0].namespaces[0]"
            ]
        );
    }
}
