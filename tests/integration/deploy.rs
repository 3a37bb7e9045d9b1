//! The deployment material under deploy/, parsed and checked for what the
//! schema validators cannot see (scripts/deploy-check.sh runs those:
//! kubernetes-validate, systemd-analyze, promtool check rules, hadolint):
//! the herald container's mounts, probes and security settings, the state
//! volume being a PersistentVolumeClaim, the ServiceMonitor pointing at the
//! Service, each herald.toml passing `herald check-config` with the files the
//! pod would see, the dashboard's queries, metric names, and the alerting
//! rules' unit tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use serde_json::Value;

const ETC: &str = "/etc/herald";
const STATE: &str = "/var/lib/herald";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `kubectl kustomize DIR` as JSON documents.
fn kustomize(dir: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(root().join(dir))
        .output()
        .expect("kubectl (kustomize is built in)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    yaml_docs(&String::from_utf8(out.stdout).unwrap())
}

fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = find(docs, kind);
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

fn by_name<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap_or_else(|| panic!("no list for {name}"))
        .iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

/// The files the herald container sees under /etc/herald (from its
/// projected, configMap or secret volume), by relative path.
fn etc_files(docs: &[Value], pod: &Value) -> BTreeMap<String, Vec<u8>> {
    let c = by_name(&pod["containers"], "herald");
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == ETC)
        .expect("a volume at /etc/herald");
    let vol = by_name(&pod["volumes"], mount["name"].as_str().unwrap());
    let sources: Vec<Value> = match vol["projected"]["sources"].as_array() {
        Some(s) => s.clone(),
        None => ["configMap", "secret"]
            .iter()
            .filter(|k| !vol[**k].is_null())
            .map(|k| serde_json::json!({ *k: vol[*k].clone() }))
            .collect(),
    };
    let mut files = BTreeMap::new();
    for s in sources {
        let (reference, data): (&Value, BTreeMap<String, Vec<u8>>) = if !s["configMap"].is_null() {
            let r = &s["configMap"];
            let cm = find(docs, "ConfigMap")
                .into_iter()
                .find(|d| d["metadata"]["name"] == r["name"])
                .unwrap_or_else(|| panic!("ConfigMap {} is not in the output", r["name"]));
            let data = cm["data"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().as_bytes().to_vec()))
                .collect();
            (r, data)
        } else if !s["secret"].is_null() {
            let r = &s["secret"];
            let sec = find(docs, "Secret")
                .into_iter()
                .find(|d| {
                    d["metadata"]["name"] == r["secretName"] || d["metadata"]["name"] == r["name"]
                })
                .unwrap_or_else(|| panic!("Secret {r} is not in the output"));
            let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
            for (k, v) in sec["data"].as_object().into_iter().flatten() {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v.as_str().unwrap().split_whitespace().collect::<String>())
                    .unwrap();
                data.insert(k.clone(), bytes);
            }
            for (k, v) in sec["stringData"].as_object().into_iter().flatten() {
                data.insert(k.clone(), v.as_str().unwrap().as_bytes().to_vec());
            }
            (r, data)
        } else {
            continue;
        };
        match reference["items"].as_array() {
            Some(items) => {
                for it in items {
                    let key = it["key"].as_str().unwrap();
                    let content = data
                        .get(key)
                        .unwrap_or_else(|| panic!("{ETC}/{}: key {key} missing", it["path"]));
                    files.insert(it["path"].as_str().unwrap().to_string(), content.clone());
                }
            }
            None => files.extend(data),
        }
    }
    files
}

/// Checks the herald container of a pod template; returns its herald.toml
/// (parsed) and the state volume's name.
fn check_pod(docs: &[Value], pod: &Value) -> (toml::Table, String) {
    let c = by_name(&pod["containers"], "herald");
    assert_eq!(
        c["args"],
        serde_json::json!(["run", "--config", format!("{ETC}/herald.toml")])
    );
    let sc = &c["securityContext"];
    let psc = &pod["securityContext"];
    assert!(
        sc["runAsNonRoot"] == true || psc["runAsNonRoot"] == true,
        "runAsNonRoot"
    );
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert!(
        sc["capabilities"]["drop"]
            .as_array()
            .unwrap()
            .contains(&"ALL".into()),
        "drop ALL"
    );
    let seccomp = if sc["seccompProfile"].is_null() {
        &psc["seccompProfile"]
    } else {
        &sc["seccompProfile"]
    };
    assert_eq!(seccomp["type"], "RuntimeDefault");
    for kind in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(!c["resources"][kind][r].is_null(), "resources.{kind}.{r}");
        }
    }
    let mounts = c["volumeMounts"].as_array().unwrap();
    let state = mounts
        .iter()
        .find(|m| m["mountPath"] == STATE)
        .expect("a volume at /var/lib/herald");
    assert_ne!(state["readOnly"], true);
    let state_name = state["name"].as_str().unwrap().to_string();

    let files = etc_files(docs, pod);
    let text = String::from_utf8(files["herald.toml"].clone()).unwrap();
    let cfg: toml::Table = toml::from_str(&text).expect("herald.toml parses");
    assert_eq!(cfg["state_dir"].as_str(), Some(STATE));
    // Probes on the [http] listener, which must not be loopback.
    let listen = cfg["http"]["listen"].as_str().unwrap();
    let (host, port) = listen.rsplit_once(':').unwrap();
    assert!(
        !["127.0.0.1", "localhost", "[::1]"].contains(&host),
        "{listen}"
    );
    let named: BTreeMap<&str, &Value> = c["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| (p["name"].as_str().unwrap_or(""), &p["containerPort"]))
        .collect();
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        let p = match &get["port"] {
            Value::String(name) => named[name.as_str()].to_string(),
            other => other.to_string(),
        };
        assert_eq!(p, port, "{probe} port against [http] listen {listen}");
    }
    check_config(&text, &files);
    (cfg, state_name)
}

/// `herald check-config` of a herald.toml, with the mounted files laid out
/// as the pod sees them (paths moved into a temporary directory).
fn check_config(text: &str, files: &BTreeMap<String, Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    for (rel, content) in files {
        let p = etc.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    // Every *_file under /etc/herald must be in the volume.
    for line in text.lines() {
        let line = line.trim();
        if let Some((key, value)) = line.split_once('=') {
            let value = value.trim().trim_matches('"');
            if key.trim().ends_with("_file") && value.starts_with(ETC) {
                assert!(
                    files.contains_key(&value[ETC.len() + 1..]),
                    "{value} not mounted"
                );
            }
        }
    }
    let moved = text
        .replace(&format!("{ETC}/"), &format!("{}/", etc.display()))
        .replace(STATE, &dir.path().join("state").display().to_string());
    let config = dir.path().join("herald.toml");
    std::fs::write(&config, moved).unwrap();
    let out = crate::kit::cli(&["check-config"], &config);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn labels_within(small: &Value, big: &Value) -> bool {
    let (Some(s), Some(b)) = (small.as_object(), big.as_object()) else {
        return false;
    };
    !s.is_empty() && s.iter().all(|(k, v)| b.get(k) == Some(v))
}

#[test]
fn sidecar_overlay_adds_herald_to_central_with_a_persistent_ledger() {
    let _busy = crate::kit::busy();
    let docs = kustomize("deploy/kubernetes/sidecar/overlay");
    let dep = find(&docs, "Deployment")
        .into_iter()
        .find(|d| d["metadata"]["name"] == "central")
        .expect("Deployment central");
    assert_eq!(dep["metadata"]["namespace"], "stackrox");
    assert_eq!(
        dep["spec"]["strategy"]["type"], "Recreate",
        "a ReadWriteOnce PVC"
    );
    let pod = &dep["spec"]["template"]["spec"];
    by_name(&pod["containers"], "central");
    let (cfg, state) = check_pod(&docs, pod);
    let vol = by_name(&pod["volumes"], &state);
    assert!(
        vol["emptyDir"].is_null(),
        "parked deliveries must survive a reschedule"
    );
    let claim = vol["persistentVolumeClaim"]["claimName"].as_str().unwrap();
    let pvc = one(&docs, "PersistentVolumeClaim");
    assert_eq!(pvc["metadata"]["name"], claim);
    assert_eq!(pvc["metadata"]["namespace"], "stackrox");
    // Central posts to herald's ingest endpoint inside the pod.
    assert_eq!(cfg["ingest"]["listen"].as_str(), Some("127.0.0.1:9465"));
}

#[test]
fn standalone_statefulset_service_and_servicemonitor_fit_together() {
    let _busy = crate::kit::busy();
    let docs = kustomize("deploy/kubernetes/standalone");
    for d in &docs {
        if d["kind"] != "Namespace" {
            assert_eq!(d["metadata"]["namespace"], "herald", "{}", d["kind"]);
        }
    }
    let sts = one(&docs, "StatefulSet");
    assert_eq!(sts["spec"]["replicas"], 1);
    let pod = &sts["spec"]["template"]["spec"];
    let (cfg, state) = check_pod(&docs, pod);
    let claims: Vec<&Value> = sts["spec"]["volumeClaimTemplates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["metadata"]["name"])
        .collect();
    assert!(
        claims.contains(&&Value::from(state.clone())),
        "{state} is a volumeClaimTemplate"
    );
    let svc = one(&docs, "Service");
    assert!(labels_within(
        &svc["spec"]["selector"],
        &sts["spec"]["template"]["metadata"]["labels"]
    ));
    let http = by_name(&svc["spec"]["ports"], "http");
    let listen = cfg["http"]["listen"].as_str().unwrap();
    let c = by_name(&pod["containers"], "herald");
    let target = match &http["targetPort"] {
        Value::String(n) => by_name(&c["ports"], n)["containerPort"].to_string(),
        other => other.to_string(),
    };
    assert_eq!(Some(target.as_str()), listen.rsplit_once(':').map(|x| x.1));

    // The ServiceMonitor (no schema in kubernetes-validate): parsed here.
    let text =
        std::fs::read_to_string(root().join("deploy/kubernetes/standalone/servicemonitor.yaml"))
            .unwrap();
    let file_sm = &yaml_docs(&text)[0];
    let sm = one(&docs, "ServiceMonitor");
    assert_eq!(&file_sm["spec"], &sm["spec"]);
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    let ep = &sm["spec"]["endpoints"][0];
    assert_eq!(ep["port"], "http");
    assert_eq!(ep["path"], "/metrics");
    assert_eq!(ep["interval"], "30s");
    assert!(labels_within(
        &sm["spec"]["selector"]["matchLabels"],
        &svc["metadata"]["labels"]
    ));
    let ns = &sm["spec"]["namespaceSelector"]["matchNames"];
    assert!(
        ns.is_null()
            || ns
                .as_array()
                .unwrap()
                .contains(&svc["metadata"]["namespace"])
    );
}

/// Metric names herald exports (from src/telemetry/metrics.rs).
fn known_metrics() -> BTreeSet<String> {
    let src = std::fs::read_to_string(root().join("src/telemetry/metrics.rs")).unwrap();
    src.split('"')
        .filter(|s| {
            s.starts_with("herald_") && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        })
        .map(str::to_string)
        .collect()
}

fn used_metrics(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("herald_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let before_ok = i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric();
        if before_ok {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

#[test]
fn dashboard_and_rules_use_only_metrics_herald_exports_and_queries_parse() {
    let _busy = crate::kit::busy();
    let known = known_metrics();
    assert!(known.len() > 25, "{known:?}");
    let dashboard_text =
        std::fs::read_to_string(root().join("deploy/grafana/herald-dashboard.json")).unwrap();
    for file in [
        "deploy/prometheus/herald-rules.yml",
        "deploy/prometheus/herald-rules.test.yml",
        "deploy/grafana/herald-dashboard.json",
    ] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        for name in used_metrics(&text) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                known.contains(&name) || known.contains(base),
                "{file}: {name} is not exported"
            );
        }
    }
    // The dashboard: valid JSON, a datasource variable, every panel's query
    // parses as PromQL (promtool, as recording rules).
    let d: Value = serde_json::from_str(&dashboard_text).expect("dashboard JSON");
    assert!(d["schemaVersion"].as_i64().unwrap() >= 36);
    assert!(d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["name"] == "datasource" && v["type"] == "datasource"));
    let mut rules = Vec::new();
    let mut ids = BTreeSet::new();
    for panel in d["panels"].as_array().unwrap() {
        assert!(
            ids.insert(panel["id"].as_i64().unwrap()),
            "panel ids are unique"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        let targets = panel["targets"].as_array().expect("queries");
        assert!(!targets.is_empty(), "{}", panel["title"]);
        for t in targets {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "5m")
                .replace("$job", ".+")
                .replace("$instance", ".+");
            rules.push(serde_json::json!({
                "record": format!("dashboard:panel_{}_{}", panel["id"], t["refId"].as_str().unwrap()),
                "expr": expr,
            }));
        }
    }
    assert!(rules.len() >= 9, "{} queries", rules.len());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yml");
    // JSON is YAML: promtool reads it.
    std::fs::write(
        &file,
        serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string(),
    )
    .unwrap();
    promtool(&["check", "rules", file.to_str().unwrap()], dir.path());
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (Debian package prometheus)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn alerting_rules_pass_their_unit_tests() {
    let _busy = crate::kit::busy();
    // The unit tests assert labels, not the prose: run them on a copy of the
    // rules without annotations.
    let rules_text =
        std::fs::read_to_string(root().join("deploy/prometheus/herald-rules.yml")).unwrap();
    let mut rules: Value = yaml_docs(&rules_text).remove(0);
    let mut names = Vec::new();
    for g in rules["groups"].as_array_mut().unwrap() {
        for r in g["rules"].as_array_mut().unwrap() {
            names.push(r["alert"].as_str().unwrap_or_default().to_string());
            r.as_object_mut().unwrap().remove("annotations");
        }
    }
    for expected in crate::kit::ALERT_RULES {
        assert!(names.contains(&expected.to_string()), "{expected}");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("herald-rules.yml"), rules.to_string()).unwrap();
    std::fs::copy(
        root().join("deploy/prometheus/herald-rules.test.yml"),
        dir.path().join("herald-rules.test.yml"),
    )
    .unwrap();
    let out = promtool(&["test", "rules", "herald-rules.test.yml"], dir.path());
    assert!(out.contains("SUCCESS"), "{out}");
}
