//! The builder: joins each raw `[[destinations]]` table of the config to the
//! parts that serve it — its routing [`Rule`], its delivery [`Policy`] and
//! its [`Notifier`] (by the `TYPES` registry row of its `type`) — and names
//! every problem by its field path, as the rest of the config does.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::config::{self, field, join, Config, DestinationTables, Errors};
use crate::delivery::policy::{Policy, RawPolicy, RETIRED};
use crate::notifiers::{self, BuildContext, Notifier};
use crate::routing::clusters::ClusterMetadata;
use crate::routing::metadata::{Metadata, Snapshot};
use crate::routing::namespaces::NamespaceMetadata;
use crate::routing::{RawRule, Rule};

/// One configured destination, ready to serve.
#[derive(Debug, Clone)]
pub struct Destination {
    pub name: String,
    /// The `type` (a `TYPES` row's name).
    pub kind: &'static str,
    pub rule: Rule,
    pub policy: Policy,
    pub notifier: Arc<dyn Notifier>,
    /// A hash of its table, the files it names (secrets, CAs) and the
    /// namespace metadata: a reload rebuilds it only when this changes.
    pub fingerprint: u64,
}

impl Destination {
    /// Whether `event` goes here: the routing rule, then what the type can
    /// take (`Err(reason)` for logs and `explain`).
    pub fn decide(&self, event: &crate::model::Event) -> Result<(), String> {
        crate::routing::decide(&self.rule, self.kind, self.notifier.can_resolve(), event)?;
        match self.notifier.refuses(event) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }
}

/// The keys every destination has besides its rule, policy and type settings.
#[derive(Deserialize)]
struct Head {
    name: String,
    #[serde(rename = "type")]
    #[allow(dead_code)]
    kind: String,
    /// Central's address, for alert links.
    #[serde(default)]
    ui_endpoint: String,
}

/// The metadata destinations share, and the fingerprints of its files.
struct Shared {
    metadata: Arc<Metadata>,
    namespaces_fingerprint: u64,
    clusters_fingerprint: u64,
}

/// Every destination of `config`, or every problem found, by field path.
pub fn build(config: &Config) -> Result<Vec<Destination>, Errors> {
    build_tables(&config.destinations, None)
}

/// Every destination of `tables`, or every problem found, by field path.
/// `live` is Central's metadata (`[central]`), which replaces the files.
pub fn build_tables(
    tables: &DestinationTables,
    live: Option<&Arc<Metadata>>,
) -> Result<Vec<Destination>, Errors> {
    let mut errs = Errors::default();
    let shared = match live {
        Some(m) => Shared {
            metadata: m.clone(),
            namespaces_fingerprint: 0,
            clusters_fingerprint: 0,
        },
        None => files(tables, &mut errs),
    };
    let mut out: Vec<Destination> = Vec::new();
    let mut names = HashSet::new();
    for (i, item) in tables.tables.iter().enumerate() {
        let path = format!("destinations[{i}]");
        // Only the types that read the cluster file are rebuilt when it changes.
        let reads_clusters = item
            .get("type")
            .and_then(toml::Value::as_str)
            .and_then(notifiers::lookup)
            .is_some_and(|t| t.cluster_metadata);
        let files = if reads_clusters {
            shared.namespaces_fingerprint ^ shared.clusters_fingerprint.rotate_left(32)
        } else {
            shared.namespaces_fingerprint
        };
        let fingerprint = config::destination_fingerprint(item, files);
        out.extend(one(item, &path, &shared.metadata, fingerprint, &mut errs));
        if let Some(name) = item.get("name").and_then(toml::Value::as_str) {
            if !names.insert(name.to_string()) {
                errs.push(
                    &join(&path, "name"),
                    format!("duplicate destination name {name:?}"),
                );
            }
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

/// The metadata files, read as they are now.
fn files(tables: &DestinationTables, errs: &mut Errors) -> Shared {
    let (namespaces, namespaces_fingerprint) = match &tables.namespace_metadata {
        None => (NamespaceMetadata::default(), 0),
        Some(p) => match NamespaceMetadata::load(p) {
            Ok(m) => (m, config::file_fingerprint(p)),
            Err(e) => {
                errs.push("namespace_metadata", e);
                (NamespaceMetadata::default(), 0)
            }
        },
    };
    let (clusters, clusters_fingerprint) = match &tables.cluster_metadata {
        None => (ClusterMetadata::default(), 0),
        Some(p) => match ClusterMetadata::load(p) {
            Ok(m) => (m, config::file_fingerprint(p)),
            Err(e) => {
                errs.push("cluster_metadata", e);
                (ClusterMetadata::default(), 0)
            }
        },
    };
    Shared {
        metadata: Metadata::fixed(Snapshot {
            namespaces,
            clusters,
        }),
        namespaces_fingerprint,
        clusters_fingerprint,
    }
}

/// Reads and validates the file, then builds its destinations: what `run`,
/// `check-config` and every command that needs destinations call.
pub fn load(path: &Path) -> Result<(Config, Vec<Destination>), Errors> {
    load_with(path, None)
}

/// [`load`] with Central's live metadata (a running herald's reload). With
/// `[central]` and no `live`, the metadata last saved in `state_dir` is used.
pub fn load_with(
    path: &Path,
    live: Option<&Arc<Metadata>>,
) -> Result<(Config, Vec<Destination>), Errors> {
    load_inner(path, live, false).map(|(c, d, _)| (c, d))
}

/// Central's metadata a starting herald keeps current, as loaded from
/// `state_dir`, and when that read was made (ms; 0: none saved).
pub type Live = (Arc<Metadata>, i64);

/// [`load`] for `herald run`: with `[central]`, the destinations read live
/// metadata, starting from the last saved read, which the caller refreshes.
pub fn load_for_run(path: &Path) -> Result<(Config, Vec<Destination>, Option<Live>), Errors> {
    load_inner(path, None, true)
}

fn load_inner(
    path: &Path,
    live: Option<&Arc<Metadata>>,
    start_live: bool,
) -> Result<(Config, Vec<Destination>, Option<Live>), Errors> {
    let (config, tables) = Config::load_with_destinations(path);
    let mut errs = Errors::default();
    if let Err(e) = &config {
        errs.list.extend(e.list.iter().cloned());
    }
    // The ingest listener's certificate and key are read as at start.
    if let Some((cert, key)) = config
        .as_ref()
        .ok()
        .and_then(|c| c.ingest.as_ref())
        .and_then(|i| i.tls.as_ref())
    {
        crate::tls::server_config(cert, key, "ingest", &mut errs);
    }
    let mut started: Option<Live> = None;
    let central = config.as_ref().ok().and_then(|c| {
        let central = c.central.as_ref()?;
        crate::central::Client::build(central, None, &mut errs);
        Some(live.cloned().unwrap_or_else(|| {
            let (snapshot, read_at) =
                crate::central::metadata::saved(&c.state_dir).unwrap_or_default();
            if !start_live {
                return Metadata::fixed(snapshot);
            }
            let m = Metadata::live(snapshot);
            started = Some((m.clone(), read_at));
            m
        }))
    });
    let destinations =
        build_tables(&tables, central.as_ref()).map_err(|e| errs.list.extend(e.list));
    match (config, destinations) {
        (Ok(c), Ok(d)) if errs.is_empty() => Ok((c, d, started)),
        _ => Err(errs),
    }
}

fn one(
    item: &toml::Value,
    path: &str,
    metadata: &Arc<Metadata>,
    fingerprint: u64,
    errs: &mut Errors,
) -> Option<Destination> {
    let toml::Value::Table(table) = item else {
        errs.push(path, "must be a table");
        return None;
    };
    let kind = match table.get("type") {
        Some(toml::Value::String(s)) => s.clone(),
        Some(_) => {
            errs.push(&join(path, "type"), "must be a string");
            return None;
        }
        None => {
            errs.push(&join(path, "type"), "is required");
            return None;
        }
    };
    let Some(entry) = notifiers::lookup(&kind) else {
        errs.push(
            &join(path, "type"),
            format!(
                "unknown type {kind:?} (expected one of: {})",
                notifiers::type_names().join(", ")
            ),
        );
        return None;
    };
    let before = errs.list.len();
    let head = field::<Head>(item.clone(), path, errs);
    let raw_rule = field::<RawRule>(item.clone(), path, errs);
    let raw_policy = field::<RawPolicy>(item.clone(), path, errs);
    let (head, raw_rule, raw_policy) = (head?, raw_rule?, raw_policy?);
    let valid_name = !head.value.name.is_empty()
        && head
            .value
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !valid_name {
        errs.push(
            &join(path, "name"),
            "must be non-empty and use only a-z, 0-9, _ and -",
        );
    }
    let rule = Rule::build(&raw_rule.value, entry.default_audit, path, errs);
    let policy = Policy::build(raw_policy.value, path, errs);
    let (rule, policy) = (rule?, policy?);
    let ctx = BuildContext {
        timeout: policy.timeout,
        ui_endpoint: head.value.ui_endpoint.clone(),
        audit: rule.audit,
        metadata: metadata.clone(),
    };
    let (notifier, type_ignored) = (entry.parse)(item.clone(), path, &ctx, errs)?;

    // A key is unknown when no part of the destination knows it. serde_ignored
    // reports an unknown key once, without descending, so a nested path means
    // its parent table belongs to the part that reported it.
    let nested = |p: &str| p.contains(['.', '[']);
    let top = |ignored: &[String]| -> HashSet<String> {
        ignored.iter().filter(|p| !nested(p)).cloned().collect()
    };
    let parts = [
        &head.ignored,
        &raw_rule.ignored,
        &raw_policy.ignored,
        &type_ignored,
    ];
    let mut unknown: HashSet<String> = top(parts[0]);
    for part in &parts[1..] {
        unknown = unknown.intersection(&top(part)).cloned().collect();
    }
    let mut unknown: Vec<String> = unknown.into_iter().collect();
    unknown.sort();
    for key in unknown {
        match RETIRED.iter().find(|(k, _)| *k == key) {
            Some((_, what)) => errs.push(&join(path, &key), *what),
            None => errs.push(&join(path, &key), "unknown key"),
        }
    }
    for part in parts {
        for p in part.iter().filter(|p| nested(p)) {
            errs.push(&join(path, p), "unknown key");
        }
    }
    if errs.list.len() > before {
        return None;
    }
    Some(Destination {
        name: head.value.name,
        kind: entry.name,
        rule,
        policy,
        notifier,
        fingerprint,
    })
}

/// Credentials `config` and its destinations send in clear, one line each;
/// herald logs them at start and `check-config` prints them.
pub fn cleartext_warnings(config: &Config, destinations: &[Destination]) -> Vec<String> {
    let mut out = config.cleartext_warnings();
    for d in destinations {
        if let Some(w) = d.notifier.cleartext_credentials() {
            out.push(format!("destinations.{}: {w}", d.name));
        }
    }
    out
}

/// Builds the `[[destinations]]` tables `destinations` under a minimal
/// `[kafka]` section (tests); errors as printed.
#[cfg(test)]
pub(crate) fn parse(destinations: &str) -> Result<Vec<Destination>, Vec<String>> {
    let text = format!(
        "[kafka]\nbrokers = \"b:9092\"\ngroup_id = \"g\"\ntopics = [\"t\"]\ndead_letter_topic = \"d\"\n{destinations}"
    );
    let config = Config::parse(&text, &std::collections::HashMap::new())
        .map_err(|e| e.list.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
    build(&config).map_err(|e| e.list.iter().map(|e| e.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_rule_policy_and_notifier_and_names_unknown_keys() {
        let d = parse(
            "[[destinations]]\nname = \"w\"\nid = \"n1\"\ntype = \"webhook\"\nurl = \"https://x.example.com/h\"\nworkers = 7\nmin_severity = \"high\"\n[[destinations]]\nname = \"pd\"\nid = \"n1\"\ntype = \"pagerduty\"\nrouting_key = \"R0123456789abcdef0123456789abcdef\"\nrate_limit = 5\n",
        )
        .unwrap();
        assert_eq!(d[0].name, "w");
        assert_eq!(d[0].kind, "webhook");
        assert_eq!(d[0].policy.workers, 7);
        assert_eq!(d[0].rule.id, "n1");
        assert_eq!(d[0].policy.rate_limit, None);
        // A destination's own rate_limit wins over its type's default.
        assert_eq!(d[1].policy.rate_limit, Some((5, 5)));
        let errs = parse(
            "[[destinations]]\nname = \"w\"\nid = \"n1\"\ntype = \"webhook\"\nurl = \"https://x.example.com/h\"\nworkerz = 7\npark_queue_wait = \"5s\"\n[[destinations]]\nname = \"w\"\nid = \"n1\"\ntype = \"webhook\"\nurl = \"https://y.example.com/h\"\n",
        )
        .unwrap_err();
        assert_eq!(
            errs,
            [
                "destinations[0].park_queue_wait: no longer used: a full queue parks deliveries at once, so no destination holds up another",
                "destinations[0].workerz: unknown key",
                "destinations[1].name: duplicate destination name \"w\"",
            ]
        );
    }
}
