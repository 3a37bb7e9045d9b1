//! Labels and annotations of Kubernetes namespaces, which alerts do not
//! carry (syslog `nslabels`, and the namespace step of annotation routing):
//! from Central's `GET /v1/namespaces` (`[central]`), or offline from the
//! namespace-metadata file:
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
    /// Namespaces listed (each is found under two keys when Central names
    /// its cluster by id and by name).
    listed: usize,
}

impl NamespaceMetadata {
    pub fn load(path: &Path) -> Result<NamespaceMetadata, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file: File =
            toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
        let listed = file.namespaces.len();
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
        Ok(NamespaceMetadata { by_key, listed })
    }

    /// Central's answer to `GET /v1/namespaces` (`{"namespaces": [{"metadata":
    /// {...}}]}`), each namespace found by cluster id and by cluster name.
    pub fn from_central(v: &serde_json::Value) -> Result<NamespaceMetadata, String> {
        #[derive(Deserialize)]
        struct List {
            #[serde(default)]
            namespaces: Option<Vec<Item>>,
        }
        #[derive(Deserialize)]
        struct Item {
            #[serde(default)]
            metadata: Option<Meta>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Meta {
            #[serde(default)]
            name: String,
            #[serde(default)]
            cluster_id: String,
            #[serde(default)]
            cluster_name: String,
            #[serde(default)]
            labels: Option<StringMap>,
            #[serde(default)]
            annotations: Option<StringMap>,
        }
        // A struct also reads from a JSON array: only an object is an answer.
        let object = if v.is_object() {
            v
        } else {
            &serde_json::Value::Null
        };
        let list = List::deserialize(object).map_err(|e| {
            format!("not the JSON of Central's GET /v1/namespaces ({{\"namespaces\": [...]}}): {e}")
        })?;
        let (mut by_key, mut listed) = (HashMap::new(), 0);
        for m in list
            .namespaces
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| i.metadata)
        {
            if m.name.is_empty() {
                continue;
            }
            listed += 1;
            for cluster in [&m.cluster_id, &m.cluster_name] {
                if cluster.is_empty() {
                    continue;
                }
                let ns = Namespace {
                    labels: m.labels.clone().unwrap_or_default(),
                    annotations: m.annotations.clone().unwrap_or_default(),
                };
                by_key.insert((cluster.clone(), m.name.clone()), ns);
            }
        }
        Ok(NamespaceMetadata { by_key, listed })
    }

    /// The namespace's annotations, if it is known (by cluster id or name).
    pub fn annotations_of(&self, cluster: &str, namespace: &str) -> Option<&StringMap> {
        self.entry(cluster, "", namespace).map(|e| &e.annotations)
    }

    /// Namespaces listed.
    pub fn len(&self) -> usize {
        self.listed
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
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
        self.annotations_of(cluster, namespace)
            .and_then(|a| a.get(key))
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

    #[test]
    fn reads_centrals_namespace_list() {
        let m = NamespaceMetadata::from_central(
            &serde_json::from_str(r#"{"namespaces":[
              {"metadata":{"id":"n1","name":"pay","clusterId":"c1","clusterName":"prod","labels":{"team":"pay"},
                "annotations":{"owner":"x"},"creationTime":"2026-01-01T00:00:00Z","priority":"3"},"numDeployments":4},
              {"metadata":{"id":"n2","name":"web","clusterId":"c2","clusterName":"","labels":null}},
              {"metadata":{"name":"","clusterId":"c3"}},
              {}
            ]}"#)
            .unwrap(),
        )
        .unwrap();
        assert_eq!(m.labels("c1", "", "pay").unwrap()["team"], "pay");
        assert_eq!(m.labels("zz", "prod", "pay").unwrap()["team"], "pay");
        assert_eq!(m.annotation("c1", "pay", "owner"), Some("x"));
        assert!(m.labels("c2", "", "web").unwrap().is_empty());
        assert!(m.annotations_of("c2", "web").is_some() && m.annotations_of("c2", "pay").is_none());
        assert_eq!(m.len(), 2);
        assert!(NamespaceMetadata::from_central(&serde_json::json!({}))
            .unwrap()
            .is_empty());
        assert!(NamespaceMetadata::from_central(&serde_json::json!([]))
            .unwrap_err()
            .starts_with("not the JSON of Central's GET /v1/namespaces"));
    }
}
