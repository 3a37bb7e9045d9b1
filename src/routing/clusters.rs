//! Where each secured cluster runs (its `providerMetadata`: GKE project,
//! region and name; other clouds), which alerts do not carry. Google SCC's
//! `resourceName` is built from it. From Central's `GET /v1/clusters`
//! (`[central]`), or offline from the cluster-metadata file, Central's own
//! answer saved as it comes:
//!
//! ```sh
//! curl -H "Authorization: Bearer $ROX_API_TOKEN" https://central/v1/clusters > clusters.json
//! ```
//!
//! Only `clusters[].id`, `.name` and `.status.providerMetadata` are read.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::model::ProviderMetadata;

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    clusters: Option<Vec<Entry>>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    status: Status,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Status {
    #[serde(default)]
    provider_metadata: ProviderMetadata,
}

const NOT_CLUSTERS: &str = "not the JSON of Central's GET /v1/clusters ({\"clusters\": [...]})";

/// Provider metadata by cluster id and by cluster name.
#[derive(Debug, Default)]
pub struct ClusterMetadata {
    by_id: HashMap<String, Arc<ProviderMetadata>>,
    by_name: HashMap<String, Arc<ProviderMetadata>>,
}

impl ClusterMetadata {
    pub fn load(path: &Path) -> Result<ClusterMetadata, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<ClusterMetadata, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("{NOT_CLUSTERS}: {e}"))?;
        Self::from_value(&v)
    }

    /// [`ClusterMetadata::parse`] of an answer already read.
    pub fn from_value(v: &serde_json::Value) -> Result<ClusterMetadata, String> {
        // A struct also reads from a JSON array: only an object is an answer.
        if !v.is_object() {
            return Err(format!("{NOT_CLUSTERS}: not an object"));
        }
        let file = File::deserialize(v).map_err(|e| format!("{NOT_CLUSTERS}: {e}"))?;
        let mut out = ClusterMetadata::default();
        for e in file.clusters.unwrap_or_default() {
            let meta = Arc::new(e.status.provider_metadata);
            if !e.id.is_empty() {
                out.by_id.insert(e.id, meta.clone());
            }
            if !e.name.is_empty() {
                out.by_name.insert(e.name, meta);
            }
        }
        Ok(out)
    }

    /// The cluster's provider metadata, by id, then by name.
    pub fn get(&self, cluster_id: &str, cluster_name: &str) -> Option<&ProviderMetadata> {
        self.by_id
            .get(cluster_id)
            .or_else(|| self.by_name.get(cluster_name))
            .map(|m| m.as_ref())
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty() && self.by_name.is_empty()
    }

    /// Clusters known (by id, or by name when Central gave no id).
    pub fn len(&self) -> usize {
        self.by_id.len().max(self.by_name.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_centrals_cluster_list_by_id_then_name() {
        let m = ClusterMetadata::parse(
            r#"{"clusters":[
              {"id":"c1","name":"prod","mainImage":"x","status":{"sensorVersion":"4.6",
                "providerMetadata":{"region":"us-central1","zone":"us-central1-a","verified":true,
                  "google":{"project":"acme-prod","clusterName":"gke-prod"},
                  "cluster":{"type":"GKE","name":"gke-prod","id":"123"}}}},
              {"id":"c2","name":"osd","status":{"providerMetadata":{"cluster":{"type":6,"name":"aws-cluster"}}}},
              {"id":"c3","name":"bare"}
            ]}"#,
        )
        .unwrap();
        let gke = m.get("c1", "").unwrap();
        assert_eq!(gke.region, "us-central1");
        assert_eq!(gke.google.as_ref().unwrap().project, "acme-prod");
        assert_eq!(gke.cluster.as_ref().unwrap().kind, "GKE");
        // By name when the id is unknown; a number for the type is its name.
        let osd = m.get("nope", "osd").unwrap();
        assert_eq!(osd.cluster.as_ref().unwrap().kind, "OSD");
        assert_eq!(m.get("c3", "").unwrap(), &ProviderMetadata::default());
        assert!(m.get("x", "y").is_none());
        assert!(ClusterMetadata::parse("[]")
            .unwrap_err()
            .starts_with("not the JSON of Central's GET /v1/clusters"));
    }
}
