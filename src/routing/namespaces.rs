//! The namespace-metadata file: labels and annotations of Kubernetes
//! namespaces, which alerts do not carry. Central reads them from its own
//! store; herald from this file (syslog `nslabels`, and the namespace step of
//! annotation routing).
//!
//! ```toml
//! [[namespaces]]
//! cluster = "prod-east"        # cluster name or id, as alerts carry them
//! name = "payments"
//! labels = { team = "pay" }
//! annotations = { "example.com/slack-webhook" = "https://hooks.slack.com/…" }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;

use crate::routing::annotations::NamespaceAnnotations;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    namespaces: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    cluster: String,
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

type StringMap = BTreeMap<String, String>;

/// One namespace's labels and annotations.
#[derive(Debug, Default)]
struct Namespace {
    labels: StringMap,
    annotations: StringMap,
}

/// Labels and annotations by (cluster, namespace).
#[derive(Debug, Default)]
pub struct NamespaceMetadata {
    by_key: HashMap<(String, String), Namespace>,
}

impl NamespaceMetadata {
    pub fn load(path: &Path) -> Result<NamespaceMetadata, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file: File =
            toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
        let by_key = file
            .namespaces
            .into_iter()
            .map(|e| {
                let ns = Namespace {
                    labels: e.labels,
                    annotations: e.annotations,
                };
                ((e.cluster, e.name), ns)
            })
            .collect();
        Ok(NamespaceMetadata { by_key })
    }

    /// The namespace's labels, looked up by cluster id, then cluster name.
    pub fn labels(
        &self,
        cluster_id: &str,
        cluster_name: &str,
        namespace: &str,
    ) -> Option<&BTreeMap<String, String>> {
        self.entry(cluster_id, cluster_name, namespace)
            .map(|e| &e.labels)
    }

    fn entry(&self, cluster_id: &str, cluster_name: &str, namespace: &str) -> Option<&Namespace> {
        [cluster_id, cluster_name]
            .into_iter()
            .filter(|c| !c.is_empty())
            .find_map(|c| self.by_key.get(&(c.to_string(), namespace.to_string())))
    }
}

impl NamespaceAnnotations for NamespaceMetadata {
    fn annotation(&self, cluster: &str, namespace: &str, key: &str) -> Option<&str> {
        self.entry(cluster, "", namespace)
            .and_then(|e| e.annotations.get(key))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_looks_up_by_cluster_id_or_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ns.toml");
        std::fs::write(
            &p,
            "[[namespaces]]\ncluster = \"c-id\"\nname = \"pay\"\nlabels = { team = \"pay\" }\nannotations = { owner = \"x\" }\n[[namespaces]]\ncluster = \"prod\"\nname = \"web\"\n",
        )
        .unwrap();
        let m = NamespaceMetadata::load(&p).unwrap();
        assert_eq!(m.labels("c-id", "prod", "pay").unwrap()["team"], "pay");
        assert!(m.labels("other", "prod", "web").unwrap().is_empty());
        assert!(m.labels("other", "dev", "web").is_none());
        assert_eq!(m.annotation("c-id", "pay", "owner"), Some("x"));
        std::fs::write(&p, "[[namespaces]]\ncluster = \"c\"\nnmae = \"x\"\n").unwrap();
        assert!(NamespaceMetadata::load(&p).unwrap_err().contains("nmae"));
    }
}
