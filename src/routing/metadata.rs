//! What destinations look up and alerts do not carry: namespaces' labels and
//! annotations (syslog `nslabels`, the namespace step of annotation routing)
//! and clusters' provider metadata (Google SCC's `resourceName`).
//!
//! Fixed, from the `namespace_metadata` and `cluster_metadata` files, or
//! live: Central's API, which `crate::central` loads at start and refreshes
//! in the background, swapping a new [`Snapshot`] in. A lookup takes the
//! snapshot of the moment; a live lookup that finds no such namespace or
//! cluster asks for an early refresh ([`Metadata::next_miss`]), once per
//! namespace or cluster until a scheduled refresh (one that stays unknown —
//! outside the token's access scope, deleted — costs no more reads).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use super::annotations::NamespaceAnnotations;
use super::clusters::ClusterMetadata;
use super::namespaces::NamespaceMetadata;
use crate::model::ProviderMetadata;

/// Namespaces and clusters as known at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub namespaces: NamespaceMetadata,
    pub clusters: ClusterMetadata,
}

/// The metadata destinations share (one per process when live).
#[derive(Debug, Default)]
pub struct Metadata {
    current: RwLock<Arc<Snapshot>>,
    live: bool,
    miss: tokio::sync::Notify,
    /// Keys that asked for a refresh since the last scheduled one.
    missed: Mutex<HashSet<String>>,
}

/// The most keys remembered as missed.
const MAX_MISSED: usize = 10_000;

impl Metadata {
    fn new(snapshot: Snapshot, live: bool) -> Arc<Metadata> {
        Arc::new(Metadata {
            current: RwLock::new(Arc::new(snapshot)),
            live,
            miss: tokio::sync::Notify::new(),
            missed: Mutex::default(),
        })
    }

    /// Metadata that never changes (the files, or none).
    pub fn fixed(snapshot: Snapshot) -> Arc<Metadata> {
        Metadata::new(snapshot, false)
    }

    /// Metadata kept current by a refresher, starting from `snapshot` (the
    /// last one saved, or an empty one).
    pub fn live(snapshot: Snapshot) -> Arc<Metadata> {
        Metadata::new(snapshot, true)
    }

    /// The snapshot of the moment.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Swaps `snapshot` in; lookups from now on see it. `scheduled`: a
    /// refresh on the interval, after which every key may miss again.
    pub fn replace(&self, snapshot: Snapshot, scheduled: bool) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snapshot);
        if scheduled {
            self.missed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }
    }

    /// A lookup found no such namespace or cluster (`key`, made only when
    /// live): a live refresher hears of it the first time (it decides how
    /// often that may cost a refresh).
    fn missed(&self, key: impl FnOnce() -> String) {
        if !self.live {
            return;
        }
        let mut missed = self.missed.lock().unwrap_or_else(|p| p.into_inner());
        if missed.len() < MAX_MISSED && missed.insert(key()) {
            self.miss.notify_one();
        }
    }

    /// Resolves once a lookup has missed since the last call.
    pub async fn next_miss(&self) {
        self.miss.notified().await
    }

    /// The namespace's labels, by cluster id, then cluster name.
    pub fn labels<'s>(
        &self,
        snapshot: &'s Snapshot,
        cluster_id: &str,
        cluster_name: &str,
        namespace: &str,
    ) -> Option<&'s BTreeMap<String, String>> {
        let found = snapshot
            .namespaces
            .labels(cluster_id, cluster_name, namespace);
        if found.is_none() && !namespace.is_empty() {
            self.missed(|| format!("ns\0{cluster_id}\0{cluster_name}\0{namespace}"));
        }
        found
    }

    /// The cluster's provider metadata, by id, then name.
    pub fn provider<'s>(
        &self,
        snapshot: &'s Snapshot,
        cluster_id: &str,
        cluster_name: &str,
    ) -> Option<&'s ProviderMetadata> {
        let found = snapshot.clusters.get(cluster_id, cluster_name);
        if found.is_none() && !(cluster_id.is_empty() && cluster_name.is_empty()) {
            self.missed(|| format!("cluster\0{cluster_id}\0{cluster_name}"));
        }
        found
    }

    /// The namespace step's view of `snapshot`: misses reach the refresher.
    pub fn annotations<'s>(&'s self, snapshot: &'s Snapshot) -> Annotations<'s> {
        Annotations {
            metadata: self,
            snapshot,
        }
    }
}

/// Namespace annotations from one snapshot, for the annotation resolver.
pub struct Annotations<'s> {
    metadata: &'s Metadata,
    snapshot: &'s Snapshot,
}

impl NamespaceAnnotations for Annotations<'_> {
    fn annotation(&self, cluster_id: &str, namespace: &str, key: &str) -> Option<&str> {
        // One lookup: a known namespace without the key is not a miss.
        match self
            .snapshot
            .namespaces
            .annotations_of(cluster_id, namespace)
        {
            Some(annotations) => annotations.get(key).map(String::as_str),
            None => {
                self.metadata
                    .missed(|| format!("ns\0{cluster_id}\0\0{namespace}"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        Snapshot {
            namespaces: NamespaceMetadata::from_central(&serde_json::json!({"namespaces": [{"metadata": {
                "id": "n1", "name": "pay", "clusterId": "c1", "clusterName": "prod",
                "labels": {"team": "pay"}, "annotations": {"example.com/slack": "https://hooks.slack.com/x"}}}]}))
            .unwrap(),
            clusters: ClusterMetadata::parse(r#"{"clusters":[{"id":"c1","name":"prod"}]}"#).unwrap(),
        }
    }

    #[tokio::test]
    async fn a_live_lookup_that_finds_nothing_asks_for_a_refresh() {
        let m = Metadata::live(Snapshot::default());
        let s = m.snapshot();
        assert!(m.labels(&s, "c1", "prod", "pay").is_none());
        // The miss was noted: the refresher's wait ends at once.
        tokio::time::timeout(std::time::Duration::from_secs(1), m.next_miss())
            .await
            .expect("a miss is heard");
        m.replace(snapshot(), false);
        let s = m.snapshot();
        assert_eq!(m.labels(&s, "c1", "", "pay").unwrap()["team"], "pay");
        assert_eq!(m.labels(&s, "", "prod", "pay").unwrap()["team"], "pay");
        assert!(m.provider(&s, "c1", "").is_some());
        let a = m.annotations(&s);
        assert_eq!(
            a.annotation("c1", "pay", "example.com/slack"),
            Some("https://hooks.slack.com/x")
        );
        // A known namespace without the annotation is not a miss.
        assert_eq!(a.annotation("c1", "pay", "other"), None);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), m.next_miss())
                .await
                .is_err(),
            "no miss since"
        );
        // An unknown one is; cluster-scoped lookups (no namespace) are not.
        assert!(m.labels(&s, "c1", "prod", "").is_none());
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), m.next_miss())
                .await
                .is_err()
        );
        assert_eq!(a.annotation("c1", "web", "example.com/slack"), None);
        tokio::time::timeout(std::time::Duration::from_secs(1), m.next_miss())
            .await
            .expect("a miss is heard");
        // The same unknown namespace again asks for nothing until a
        // scheduled refresh.
        assert_eq!(a.annotation("c1", "web", "example.com/slack"), None);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), m.next_miss())
                .await
                .is_err()
        );
        m.replace(snapshot(), true);
        let s = m.snapshot();
        assert_eq!(m.annotations(&s).annotation("c1", "web", "x"), None);
        tokio::time::timeout(std::time::Duration::from_secs(1), m.next_miss())
            .await
            .expect("a miss is heard again");
    }

    #[tokio::test]
    async fn fixed_metadata_never_asks() {
        let m = Metadata::fixed(Snapshot::default());
        let s = m.snapshot();
        assert!(m.provider(&s, "c9", "x").is_none());
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), m.next_miss())
                .await
                .is_err()
        );
    }
}
