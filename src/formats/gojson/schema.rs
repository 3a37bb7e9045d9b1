//! The parts of StackRox's protobuf schema that the Go-JSON conversion needs:
//! `storage.Alert` and `v1.Audit.Message` with everything reachable from them,
//! fields in declaration order (proto/storage/alert.proto and friends).

/// How a field's value is written.
pub enum Kind {
    /// Strings, bools, 32-bit numbers: the same in both encodings.
    Scalar,
    /// 64-bit integers: strings in protojson, numbers in Go.
    Int64,
    Enum(&'static [(&'static str, i32)]),
    Message(&'static Message),
    Timestamp,
    Any,
    /// A map with this value kind (keys are strings, sorted).
    Map(&'static Kind),
}

pub struct Field {
    /// The protojson (lowerCamelCase) name.
    pub json: &'static str,
    /// The Go `json` tag name (the proto field name).
    pub go: &'static str,
    pub kind: Kind,
    /// For a oneof member: the Go interface field and the wrapper's field.
    pub oneof: Option<(&'static str, &'static str)>,
}

/// A message's fields in declaration order, with its oneof slots.
pub struct Message {
    pub fields: &'static [Field],
}

impl Message {
    /// Looks a field up by its protojson or proto name (parsers accept both).
    pub fn field(&self, name: &str) -> Option<(usize, &Field)> {
        self.fields
            .iter()
            .enumerate()
            .find(|(_, f)| f.json == name || f.go == name)
    }
}

const fn f(json: &'static str, go: &'static str, kind: Kind) -> Field {
    Field {
        json,
        go,
        kind,
        oneof: None,
    }
}

const fn one(json: &'static str, iface: &'static str, wrapper: &'static str, kind: Kind) -> Field {
    let go = json; // not used for oneof members: the Go names are iface/wrapper
    Field {
        json,
        go,
        kind,
        oneof: Some((iface, wrapper)),
    }
}

use Kind::{Any, Enum, Map, Message as M, Scalar as S, Timestamp as T};

pub const SEVERITY: &[(&str, i32)] = &[
    ("UNSET_SEVERITY", 0),
    ("LOW_SEVERITY", 1),
    ("MEDIUM_SEVERITY", 2),
    ("HIGH_SEVERITY", 3),
    ("CRITICAL_SEVERITY", 4),
];
const LIFECYCLE_STAGE: &[(&str, i32)] = &[("DEPLOY", 0), ("BUILD", 1), ("RUNTIME", 2)];
const VIOLATION_STATE: &[(&str, i32)] = &[
    ("ACTIVE", 0),
    ("SNOOZED", 1),
    ("RESOLVED", 2),
    ("ATTEMPTED", 3),
];
const ENTITY_TYPE: &[(&str, i32)] = &[
    ("UNSET", 0),
    ("DEPLOYMENT", 1),
    ("CONTAINER_IMAGE", 2),
    ("RESOURCE", 3),
    ("NODE", 4),
];
const RESOURCE_TYPE: &[(&str, i32)] = &[
    ("UNKNOWN", 0),
    ("SECRETS", 1),
    ("CONFIGMAPS", 2),
    ("CLUSTER_ROLES", 3),
    ("CLUSTER_ROLE_BINDINGS", 4),
    ("NETWORK_POLICIES", 5),
    ("SECURITY_CONTEXT_CONSTRAINTS", 6),
    ("EGRESS_FIREWALLS", 7),
    // Names of older Central versions.
    ("CLUSTERROLES", 3),
    ("CLUSTERROLEBINDINGS", 4),
    ("NETWORKPOLICIES", 5),
    ("SECURITYCONTEXTCONSTRAINTS", 6),
    ("EGRESSFIREWALLS", 7),
];
const VIOLATION_TYPE: &[(&str, i32)] = &[
    ("GENERIC", 0),
    ("K8S_EVENT", 1),
    ("NETWORK_FLOW", 2),
    ("NETWORK_POLICY", 3),
    ("FILE_ACCESS", 4),
];
const ENFORCEMENT_ACTION: &[(&str, i32)] = &[
    ("UNSET_ENFORCEMENT", 0),
    ("SCALE_TO_ZERO_ENFORCEMENT", 1),
    ("UNSATISFIABLE_NODE_CONSTRAINT_ENFORCEMENT", 2),
    ("KILL_POD_ENFORCEMENT", 3),
    ("FAIL_BUILD_ENFORCEMENT", 4),
    ("FAIL_KUBE_REQUEST_ENFORCEMENT", 5),
    ("FAIL_DEPLOYMENT_CREATE_ENFORCEMENT", 6),
    ("FAIL_DEPLOYMENT_UPDATE_ENFORCEMENT", 7),
];
const EVENT_SOURCE: &[(&str, i32)] = &[
    ("NOT_APPLICABLE", 0),
    ("DEPLOYMENT_EVENT", 1),
    ("AUDIT_LOG_EVENT", 2),
    ("NODE_EVENT", 3),
];
const POLICY_SOURCE: &[(&str, i32)] = &[("IMPERATIVE", 0), ("DECLARATIVE", 1)];
const BOOLEAN_OPERATOR: &[(&str, i32)] = &[("OR", 0), ("AND", 1)];
const L4_PROTOCOL: &[(&str, i32)] = &[
    ("L4_PROTOCOL_UNKNOWN", 0),
    ("L4_PROTOCOL_TCP", 1),
    ("L4_PROTOCOL_UDP", 2),
    ("L4_PROTOCOL_ICMP", 3),
    ("L4_PROTOCOL_RAW", 4),
    ("L4_PROTOCOL_SCTP", 5),
    ("L4_PROTOCOL_ANY", -1),
];
const NETWORK_ENTITY_TYPE: &[(&str, i32)] = &[
    ("UNKNOWN_TYPE", 0),
    ("DEPLOYMENT", 1),
    ("INTERNET", 2),
    ("LISTEN_ENDPOINT", 3),
    ("EXTERNAL_SOURCE", 4),
    ("INTERNAL_ENTITIES", 5),
];
const FILE_OPERATION: &[(&str, i32)] = &[
    ("CREATE", 0),
    ("UNLINK", 1),
    ("RENAME", 2),
    ("PERMISSION_CHANGE", 3),
    ("OWNERSHIP_CHANGE", 4),
    ("WRITE", 5),
    ("OPEN", 6),
];
const ACCESS: &[(&str, i32)] = &[
    ("NO_ACCESS", 0),
    ("READ_ACCESS", 1),
    ("READ_WRITE_ACCESS", 2),
];
const REQUEST_STATUS: &[(&str, i32)] = &[
    ("UNKNOWN_STATUS", 0),
    ("REQUEST_SUCCEEDED", 1),
    ("AUTH_FAILED", 2),
    ("REQUEST_FAILED", 3),
];
const ACCESS_METHOD: &[(&str, i32)] = &[("UNKNOWN_METHOD", 0), ("CLI", 1), ("UI", 2), ("API", 3)];
const INTERACTION: &[(&str, i32)] = &[
    ("UNKNOWN_INTERACTION", 0),
    ("CREATE", 1),
    ("UPDATE", 2),
    ("DELETE", 3),
];

const STRING: Kind = S;
static ACCESS_KIND: Kind = Enum(ACCESS);

pub static IMAGE_NAME: Message = Message {
    fields: &[
        f("registry", "registry", S),
        f("remote", "remote", S),
        f("tag", "tag", S),
        f("fullName", "full_name", S),
    ],
};

pub static CONTAINER_IMAGE: Message = Message {
    fields: &[
        f("id", "id", S),
        f("name", "name", M(&IMAGE_NAME)),
        f("notPullable", "not_pullable", S),
        f("isClusterLocal", "is_cluster_local", S),
        f("idV2", "id_v2", S),
    ],
};

static SCOPE_LABEL: Message = Message {
    fields: &[f("key", "key", S), f("value", "value", S)],
};

static SCOPE: Message = Message {
    fields: &[
        f("cluster", "cluster", S),
        f("namespace", "namespace", S),
        f("label", "label", M(&SCOPE_LABEL)),
    ],
};

static EXCLUSION_DEPLOYMENT: Message = Message {
    fields: &[f("name", "name", S), f("scope", "scope", M(&SCOPE))],
};

static EXCLUSION_IMAGE: Message = Message {
    fields: &[f("name", "name", S)],
};

static EXCLUSION: Message = Message {
    fields: &[
        f("name", "name", S),
        f("deployment", "deployment", M(&EXCLUSION_DEPLOYMENT)),
        f("image", "image", M(&EXCLUSION_IMAGE)),
        f("expiration", "expiration", T),
    ],
};

static POLICY_VALUE: Message = Message {
    fields: &[f("value", "value", S)],
};

static POLICY_GROUP: Message = Message {
    fields: &[
        f("fieldName", "field_name", S),
        f(
            "booleanOperator",
            "boolean_operator",
            Enum(BOOLEAN_OPERATOR),
        ),
        f("negate", "negate", S),
        f("values", "values", M(&POLICY_VALUE)),
    ],
};

static POLICY_SECTION: Message = Message {
    fields: &[
        f("sectionName", "section_name", S),
        f("policyGroups", "policy_groups", M(&POLICY_GROUP)),
    ],
};

static MITRE_VECTORS: Message = Message {
    fields: &[f("tactic", "tactic", S), f("techniques", "techniques", S)],
};

pub static POLICY: Message = Message {
    fields: &[
        f("id", "id", S),
        f("name", "name", S),
        f("description", "description", S),
        f("rationale", "rationale", S),
        f("remediation", "remediation", S),
        f("disabled", "disabled", S),
        f("categories", "categories", S),
        f("lifecycleStages", "lifecycle_stages", Enum(LIFECYCLE_STAGE)),
        f("eventSource", "event_source", Enum(EVENT_SOURCE)),
        f("exclusions", "exclusions", M(&EXCLUSION)),
        f("scope", "scope", M(&SCOPE)),
        f("severity", "severity", Enum(SEVERITY)),
        f(
            "enforcementActions",
            "enforcement_actions",
            Enum(ENFORCEMENT_ACTION),
        ),
        f("notifiers", "notifiers", S),
        f("lastUpdated", "last_updated", T),
        f("SORTName", "SORT_name", S),
        f("SORTLifecycleStage", "SORT_lifecycleStage", S),
        f("SORTEnforcement", "SORT_enforcement", S),
        f("policyVersion", "policy_version", S),
        f("policySections", "policy_sections", M(&POLICY_SECTION)),
        f(
            "mitreAttackVectors",
            "mitre_attack_vectors",
            M(&MITRE_VECTORS),
        ),
        f("criteriaLocked", "criteria_locked", S),
        f("mitreVectorsLocked", "mitre_vectors_locked", S),
        f("isDefault", "is_default", S),
        f("source", "source", Enum(POLICY_SOURCE)),
    ],
};

static DEPLOYMENT_CONTAINER: Message = Message {
    fields: &[
        f("image", "image", M(&CONTAINER_IMAGE)),
        f("name", "name", S),
    ],
};

static ALERT_DEPLOYMENT: Message = Message {
    fields: &[
        f("id", "id", S),
        f("name", "name", S),
        f("type", "type", S),
        f("namespace", "namespace", S),
        f("namespaceId", "namespace_id", S),
        f("labels", "labels", Map(&STRING)),
        f("clusterId", "cluster_id", S),
        f("clusterName", "cluster_name", S),
        f("containers", "containers", M(&DEPLOYMENT_CONTAINER)),
        f("annotations", "annotations", Map(&STRING)),
        f("inactive", "inactive", S),
    ],
};

static ALERT_RESOURCE: Message = Message {
    fields: &[
        f("resourceType", "resource_type", Enum(RESOURCE_TYPE)),
        f("name", "name", S),
        f("clusterId", "cluster_id", S),
        f("clusterName", "cluster_name", S),
        f("namespace", "namespace", S),
        f("namespaceId", "namespace_id", S),
    ],
};

static ALERT_NODE: Message = Message {
    fields: &[
        f("id", "id", S),
        f("name", "name", S),
        f("clusterId", "cluster_id", S),
        f("clusterName", "cluster_name", S),
    ],
};

static KEY_VALUE_ATTR: Message = Message {
    fields: &[f("key", "key", S), f("value", "value", S)],
};

static KEY_VALUE_ATTRS: Message = Message {
    fields: &[f("attrs", "attrs", M(&KEY_VALUE_ATTR))],
};

static FLOW_ENTITY: Message = Message {
    fields: &[
        f("name", "name", S),
        f("entityType", "entity_type", Enum(NETWORK_ENTITY_TYPE)),
        f("deploymentNamespace", "deployment_namespace", S),
        f("deploymentType", "deployment_type", S),
        f("port", "port", S),
    ],
};

static NETWORK_FLOW_INFO: Message = Message {
    fields: &[
        f("protocol", "protocol", Enum(L4_PROTOCOL)),
        f("source", "source", M(&FLOW_ENTITY)),
        f("destination", "destination", M(&FLOW_ENTITY)),
    ],
};

static FILE_METADATA: Message = Message {
    fields: &[
        f("uid", "uid", S),
        f("gid", "gid", S),
        f("mode", "mode", S),
        f("username", "username", S),
        f("group", "group", S),
    ],
};

/// Both layouts Central versions have used (path/hostPath, mountedPath/nodePath).
static FILE: Message = Message {
    fields: &[
        f("path", "path", S),
        f("hostPath", "host_path", S),
        f("mountedPath", "mounted_path", S),
        f("nodePath", "node_path", S),
        f("effectivePath", "effective_path", S),
        f("actualPath", "actual_path", S),
        f("meta", "meta", M(&FILE_METADATA)),
    ],
};

static LINEAGE_INFO: Message = Message {
    fields: &[
        f("parentUid", "parent_uid", S),
        f("parentExecFilePath", "parent_exec_file_path", S),
    ],
};

static PROCESS_SIGNAL: Message = Message {
    fields: &[
        f("id", "id", S),
        f("containerId", "container_id", S),
        f("time", "time", T),
        f("name", "name", S),
        f("args", "args", S),
        f("execFilePath", "exec_file_path", S),
        f("pid", "pid", S),
        f("uid", "uid", S),
        f("gid", "gid", S),
        f("lineage", "lineage", S),
        f("scraped", "scraped", S),
        f("lineageInfo", "lineage_info", M(&LINEAGE_INFO)),
    ],
};

static PROCESS_INDICATOR: Message = Message {
    fields: &[
        f("id", "id", S),
        f("deploymentId", "deployment_id", S),
        f("containerName", "container_name", S),
        f("podId", "pod_id", S),
        f("podUid", "pod_uid", S),
        f("signal", "signal", M(&PROCESS_SIGNAL)),
        f("clusterId", "cluster_id", S),
        f("namespace", "namespace", S),
        f("containerStartTime", "container_start_time", T),
        f("imageId", "image_id", S),
    ],
};

static FILE_ACCESS: Message = Message {
    fields: &[
        f("file", "file", M(&FILE)),
        f("operation", "operation", Enum(FILE_OPERATION)),
        f("moved", "moved", M(&FILE)),
        f("timestamp", "timestamp", T),
        f("process", "process", M(&PROCESS_INDICATOR)),
        f("hostname", "hostname", S),
    ],
};

static VIOLATION: Message = Message {
    fields: &[
        f("message", "message", S),
        one(
            "keyValueAttrs",
            "MessageAttributes",
            "KeyValueAttrs",
            M(&KEY_VALUE_ATTRS),
        ),
        one(
            "networkFlowInfo",
            "MessageAttributes",
            "NetworkFlowInfo",
            M(&NETWORK_FLOW_INFO),
        ),
        one(
            "fileAccess",
            "MessageAttributes",
            "FileAccess",
            M(&FILE_ACCESS),
        ),
        f("type", "type", Enum(VIOLATION_TYPE)),
        f("time", "time", T),
    ],
};

static PROCESS_VIOLATION: Message = Message {
    fields: &[
        f("message", "message", S),
        f("processes", "processes", M(&PROCESS_INDICATOR)),
    ],
};

static FILE_ACCESS_VIOLATION: Message = Message {
    fields: &[
        f("message", "message", S),
        f("accesses", "accesses", M(&FILE_ACCESS)),
    ],
};

static ENFORCEMENT: Message = Message {
    fields: &[
        f("action", "action", Enum(ENFORCEMENT_ACTION)),
        f("message", "message", S),
    ],
};

pub static ALERT: Message = Message {
    fields: &[
        f("id", "id", S),
        f("policy", "policy", M(&POLICY)),
        f("lifecycleStage", "lifecycle_stage", Enum(LIFECYCLE_STAGE)),
        f("clusterId", "cluster_id", S),
        f("clusterName", "cluster_name", S),
        f("namespace", "namespace", S),
        f("namespaceId", "namespace_id", S),
        one("deployment", "Entity", "Deployment", M(&ALERT_DEPLOYMENT)),
        one("image", "Entity", "Image", M(&CONTAINER_IMAGE)),
        one("resource", "Entity", "Resource", M(&ALERT_RESOURCE)),
        one("node", "Entity", "Node", M(&ALERT_NODE)),
        f("violations", "violations", M(&VIOLATION)),
        f(
            "processViolation",
            "process_violation",
            M(&PROCESS_VIOLATION),
        ),
        f(
            "fileAccessViolation",
            "file_access_violation",
            M(&FILE_ACCESS_VIOLATION),
        ),
        f("enforcement", "enforcement", M(&ENFORCEMENT)),
        f("time", "time", T),
        f("firstOccurred", "first_occurred", T),
        f("resolvedAt", "resolved_at", T),
        f("state", "state", Enum(VIOLATION_STATE)),
        f("platformComponent", "platform_component", S),
        f("entityType", "entity_type", Enum(ENTITY_TYPE)),
    ],
};

static ROLE: Message = Message {
    fields: &[
        f("name", "name", S),
        f("resourceToAccess", "resource_to_access", Map(&ACCESS_KIND)),
    ],
};

static RESOURCE_TO_ACCESS: Message = Message {
    fields: &[f(
        "resourceToAccess",
        "resource_to_access",
        Map(&ACCESS_KIND),
    )],
};

static USER_INFO: Message = Message {
    fields: &[
        f("username", "username", S),
        f("friendlyName", "friendly_name", S),
        f("permissions", "permissions", M(&RESOURCE_TO_ACCESS)),
        f("roles", "roles", M(&ROLE)),
    ],
};

static SOURCE_HEADERS: Message = Message {
    fields: &[
        f("xForwardedFor", "x_forwarded_for", S),
        f("remoteAddr", "remote_addr", S),
        f("requestAddr", "request_addr", S),
    ],
};

static REQUEST: Message = Message {
    fields: &[
        f("endpoint", "endpoint", S),
        f("method", "method", S),
        f("payload", "payload", Any),
        f("sourceHeaders", "source_headers", M(&SOURCE_HEADERS)),
        f("sourceIp", "source_ip", S),
    ],
};

pub static AUDIT_MESSAGE: Message = Message {
    fields: &[
        f("time", "time", T),
        f("status", "status", Enum(REQUEST_STATUS)),
        f("statusReason", "status_reason", S),
        f("user", "user", M(&USER_INFO)),
        f("request", "request", M(&REQUEST)),
        f("method", "method", Enum(ACCESS_METHOD)),
        f("interaction", "interaction", Enum(INTERACTION)),
    ],
};
