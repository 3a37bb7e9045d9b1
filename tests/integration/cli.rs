//! The command line: `check-config` names the faulty field; `version`.

use std::process::Command;

use crate::kit;

fn check(config: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(kit::herald_bin())
        .args(["check-config", "--config"])
        .arg(&path)
        .env_remove("HERALD__KAFKA__BROKERS")
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn errors(stderr: &str) -> Vec<&str> {
    stderr.lines().skip(1).collect()
}

const VALID: &str = r#"
[kafka]
brokers = "127.0.0.1:9092"
group_id = "herald"
topics = ["rhacs-alerts"]
dead_letter_topic = "rhacs-alerts-dlq"

[[destinations]]
name = "soc-webhook"
id = "n1"
type = "webhook"
url = "https://receiver.example.com/rhacs"
extra_fields = { source = "rhacs" }
timeout = "5s"
"#;

#[test]
fn valid_config_and_the_example_pass() {
    let (code, out, _) = check(VALID);
    assert_eq!(code, 0);
    assert!(out.ends_with("valid (1 destination)\n"), "{out}");
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/herald.example.toml"
    ))
    .unwrap();
    assert_eq!(check(&example).0, 0);
}

#[test]
fn names_the_field_for_missing_mistyped_out_of_range_and_unknown_keys() {
    let cases: Vec<(String, Vec<&str>)> = vec![
        (VALID.replace("brokers = \"127.0.0.1:9092\"\n", ""), vec!["kafka.brokers: is required"]),
        (
            VALID.replace("topics = [\"rhacs-alerts\"]", "topics = \"rhacs-alerts\""),
            vec!["kafka.topics: invalid type: string \"rhacs-alerts\", expected a sequence"],
        ),
        (
            VALID.replace("timeout = \"5s\"", "timeout = \"0s\"\nworkers = 0"),
            vec!["destinations[0].timeout: must be greater than 0", "destinations[0].workers: must be 1..256"],
        ),
        (
            VALID.replace("group_id", "max_in_flight = 0\ngroup_id"),
            vec!["kafka.max_in_flight: must be at least 1"],
        ),
        (
            VALID.replace("group_id", "brokerz = 1\ngroup_id").replace("timeout =", "urll = \"x\"\ntimeout ="),
            vec!["kafka.brokerz: unknown key", "destinations[0].urll: unknown key"],
        ),
        (
            VALID.replace("timeout = \"5s\"", "timeout = \"soon\""),
            vec!["destinations[0].timeout: invalid duration \"soon\"; write it like \"250ms\", \"5s\" or \"24h\""],
        ),
        (VALID.replace("type = \"webhook\"", "type = \"pigeon\""), vec!["destinations[0].type: unknown type \"pigeon\" (expected one of: webhook, aws_security_hub, email, google_scc, jira, microsoft_sentinel, pagerduty, slack, splunk, sumologic, syslog, teams)"]),
        (VALID.replace("url = \"https://receiver.example.com/rhacs\"\n", ""), vec!["destinations[0].url: is required"]),
        (format!("{VALID}\n[surprise]\nx = 1\n"), vec!["surprise: unknown key"]),
        (VALID.replace("name = \"soc-webhook\"", "name = \"SOC Webhook\""), vec!["destinations[0].name: must be non-empty and use only a-z, 0-9, _ and -"]),
    ];
    for (config, expected) in cases {
        let (code, _, stderr) = check(&config);
        assert_eq!(code, 1, "{config}");
        assert_eq!(errors(&stderr), expected, "{stderr}");
    }
}

#[test]
fn version_prints_the_crate_version() {
    let out = Command::new(kit::herald_bin())
        .arg("version")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("herald {}\n", env!("CARGO_PKG_VERSION"))
    );
}
