//! Typed views of the fields herald reads. Unknown fields are ignored here; they
//! stay in the raw JSON. Enums accept the protojson name or the number.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer};
use serde::Deserialize;

/// Declares a protojson enum: deserialised from its name or its number, with the
/// proto number available for Go-JSON output.
macro_rules! proto_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $num:literal => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub enum $name {
            #[default]
            $($variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The protojson (proto enum value) name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// The proto enum number.
            pub fn number(self) -> i32 {
                match self { $($name::$variant => $num),+ }
            }

            pub fn from_name(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }

            pub fn from_number(n: i64) -> Option<Self> {
                match n { $($num => Some($name::$variant),)+ _ => None }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = serde_json::Value::deserialize(d)?;
                let found = match &v {
                    serde_json::Value::String(s) => $name::from_name(s),
                    serde_json::Value::Number(n) => n.as_i64().and_then($name::from_number),
                    _ => None,
                };
                found.ok_or_else(|| de::Error::custom(format!(
                    "unknown {} value {}", stringify!($name), v
                )))
            }
        }
    };
}

proto_enum!(
    /// `storage.Severity`.
    Severity {
        Unset = 0 => "UNSET_SEVERITY",
        Low = 1 => "LOW_SEVERITY",
        Medium = 2 => "MEDIUM_SEVERITY",
        High = 3 => "HIGH_SEVERITY",
        Critical = 4 => "CRITICAL_SEVERITY",
    }
);

proto_enum!(
    /// `storage.LifecycleStage`; absent means DEPLOY.
    LifecycleStage {
        Deploy = 0 => "DEPLOY",
        Build = 1 => "BUILD",
        Runtime = 2 => "RUNTIME",
    }
);

proto_enum!(
    /// `storage.ViolationState`; absent means ACTIVE.
    AlertState {
        Active = 0 => "ACTIVE",
        Snoozed = 1 => "SNOOZED",
        Resolved = 2 => "RESOLVED",
        Attempted = 3 => "ATTEMPTED",
    }
);

impl Severity {
    /// Central's `SeverityString` (central-compat §0.2).
    pub fn title(self) -> &'static str {
        match self {
            Severity::Unset => "Unset",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
        }
    }

    /// Parses the short config spelling (`low`, `medium`, `high`, `critical`).
    pub fn from_config(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "unset" => Some(Severity::Unset),
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

impl LifecycleStage {
    pub fn from_config(s: &str) -> Option<Self> {
        Self::from_name(&s.to_ascii_uppercase())
    }
}

/// A protobuf Timestamp in its protojson form (RFC 3339, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub DateTime<Utc>);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| Timestamp(t.with_timezone(&Utc)))
            .map_err(|e| de::Error::custom(format!("invalid timestamp {s:?}: {e}")))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AlertFields {
    pub id: String,
    pub policy: Policy,
    pub lifecycle_stage: LifecycleStage,
    pub cluster_id: String,
    pub cluster_name: String,
    pub namespace: String,
    pub namespace_id: String,
    pub deployment: Option<Deployment>,
    pub image: Option<ContainerImage>,
    pub resource: Option<Resource>,
    pub node: Option<Node>,
    pub violations: Vec<Violation>,
    pub process_violation: Option<ProcessViolation>,
    pub time: Option<Timestamp>,
    pub first_occurred: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    pub state: AlertState,
    /// Read for Cloud SCC only: a malformed one is left out rather than
    /// failing the alert for every destination.
    #[serde(deserialize_with = "lenient")]
    pub enforcement: Option<Enforcement>,
}

/// `Some` when the value has the expected shape, else `None`.
fn lenient<'de, D: Deserializer<'de>, T: serde::de::DeserializeOwned>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Ok(serde_json::from_value(serde_json::Value::deserialize(d)?).ok())
}

impl AlertFields {
    /// The cluster name from the entity, falling back to the top-level copy.
    pub fn cluster_name(&self) -> &str {
        let from_entity = match (&self.deployment, &self.resource, &self.node) {
            (Some(d), _, _) => d.cluster_name.as_str(),
            (_, Some(r), _) => r.cluster_name.as_str(),
            (_, _, Some(n)) => n.cluster_name.as_str(),
            _ => "",
        };
        if from_entity.is_empty() {
            &self.cluster_name
        } else {
            from_entity
        }
    }

    /// The cluster id from the entity, falling back to the top-level copy.
    pub fn cluster_id(&self) -> &str {
        let from_entity = match (&self.deployment, &self.resource, &self.node) {
            (Some(d), _, _) => d.cluster_id.as_str(),
            (_, Some(r), _) => r.cluster_id.as_str(),
            (_, _, Some(n)) => n.cluster_id.as_str(),
            _ => "",
        };
        if from_entity.is_empty() {
            &self.cluster_id
        } else {
            from_entity
        }
    }

    /// The namespace from the entity, falling back to the top-level copy.
    pub fn namespace(&self) -> &str {
        let from_entity = match (&self.deployment, &self.resource) {
            (Some(d), _) => d.namespace.as_str(),
            (_, Some(r)) => r.namespace.as_str(),
            _ => "",
        };
        if from_entity.is_empty() {
            &self.namespace
        } else {
            from_entity
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Policy {
    pub id: String,
    pub name: String,
    pub description: String,
    pub rationale: String,
    pub remediation: String,
    pub categories: Vec<String>,
    pub lifecycle_stages: Vec<LifecycleStage>,
    pub severity: Severity,
    pub notifiers: Vec<String>,
    pub policy_sections: Vec<PolicySection>,
    pub mitre_attack_vectors: Vec<MitreVectors>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PolicySection {
    pub section_name: String,
    pub policy_groups: Vec<PolicyGroup>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PolicyGroup {
    pub field_name: String,
    /// `OR` (absent) or `AND`.
    pub boolean_operator: String,
    pub negate: bool,
    pub values: Vec<PolicyValue>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PolicyValue {
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MitreVectors {
    pub tactic: String,
    pub techniques: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Deployment {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub namespace: String,
    pub namespace_id: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub cluster_id: String,
    pub cluster_name: String,
    pub containers: Vec<Container>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Container {
    pub image: Option<ContainerImage>,
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerImage {
    pub id: String,
    pub name: Option<ImageName>,
    pub id_v2: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ImageName {
    pub registry: String,
    pub remote: String,
    pub tag: String,
    pub full_name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Resource {
    pub resource_type: String,
    pub name: String,
    pub cluster_id: String,
    pub cluster_name: String,
    pub namespace: String,
    pub namespace_id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub cluster_id: String,
    pub cluster_name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Violation {
    pub message: String,
    /// `GENERIC`, `K8S_EVENT`, `NETWORK_FLOW`, …
    #[serde(rename = "type")]
    pub kind: String,
    pub key_value_attrs: Option<KeyValueAttrs>,
    pub file_access: Option<FileAccess>,
    pub time: Option<Timestamp>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KeyValueAttrs {
    pub attrs: Vec<KeyValue>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FileAccess {
    pub file: Option<FileRef>,
    pub process: Option<ProcessRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FileRef {
    pub effective_path: String,
    pub actual_path: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProcessRef {
    pub signal: Option<ProcessSignal>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProcessSignal {
    pub name: String,
    pub exec_file_path: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProcessViolation {
    pub message: String,
}

/// `storage.Alert.Enforcement`: what the admission controller or sensor did.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Enforcement {
    /// The `storage.EnforcementAction` name. Numbers are mapped to names; a
    /// value this herald does not know stays as written (a newer Central may
    /// add actions), so it never fails the alert.
    #[serde(deserialize_with = "enforcement_action")]
    pub action: String,
    pub message: String,
}

/// `storage.EnforcementAction` names by number.
pub const ENFORCEMENT_ACTIONS: [&str; 8] = [
    "UNSET_ENFORCEMENT",
    "SCALE_TO_ZERO_ENFORCEMENT",
    "UNSATISFIABLE_NODE_CONSTRAINT_ENFORCEMENT",
    "KILL_POD_ENFORCEMENT",
    "FAIL_BUILD_ENFORCEMENT",
    "FAIL_KUBE_REQUEST_ENFORCEMENT",
    "FAIL_DEPLOYMENT_CREATE_ENFORCEMENT",
    "FAIL_DEPLOYMENT_UPDATE_ENFORCEMENT",
];

/// `storage.ClusterMetadata.Type` names by number.
pub const CLUSTER_TYPES: [&str; 8] = [
    "UNSPECIFIED",
    "AKS",
    "ARO",
    "EKS",
    "GKE",
    "OCP",
    "OSD",
    "ROSA",
];

/// An enum field kept as its name: a number is looked up in `names`, an
/// unknown one stays as written, anything else is empty.
fn enum_name<'de, D: Deserializer<'de>>(d: D, names: &[&str]) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n
            .as_u64()
            .and_then(|i| names.get(usize::try_from(i).ok()?))
            .map_or_else(|| n.to_string(), |s| (*s).to_string()),
        _ => String::new(),
    })
}

fn enforcement_action<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    enum_name(d, &ENFORCEMENT_ACTIONS)
}

fn cluster_type<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    enum_name(d, &CLUSTER_TYPES)
}

/// A cluster's `storage.ProviderMetadata` (Central's cluster status): where
/// it runs. Unknown fields are ignored.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ProviderMetadata {
    pub region: String,
    pub zone: String,
    pub google: Option<GoogleProviderMetadata>,
    pub cluster: Option<ClusterProviderMetadata>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct GoogleProviderMetadata {
    pub project: String,
    pub cluster_name: String,
}

/// `storage.ClusterMetadata`: the type (`GKE`, `EKS`, `OCP`, …) and the name
/// the provider knows the cluster by.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterProviderMetadata {
    #[serde(rename = "type", deserialize_with = "cluster_type")]
    pub kind: String,
    pub name: String,
    pub id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AuditFields {
    pub time: Option<Timestamp>,
    pub status: String,
    pub status_reason: String,
    pub user: Option<AuditUser>,
    pub request: Option<AuditRequest>,
    pub method: String,
    pub interaction: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AuditUser {
    pub username: String,
    pub friendly_name: String,
    pub roles: Vec<AuditRole>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AuditRole {
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AuditRequest {
    pub endpoint: String,
    pub method: String,
}
