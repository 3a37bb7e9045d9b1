//! The real receivers that `make test` starts with their scripts
//! (scripts/rsyslog.sh, scripts/smtp.sh), or private ones for tests that stop
//! or restart them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

/// One receiver started by a stack script: its ports, certificates, files.
pub struct Service {
    script: &'static str,
    pub info: HashMap<String, String>,
    env: Vec<(String, String)>,
    private: Option<tempfile::TempDir>,
}

/// rsyslog, as the syslog tests use it.
pub type Rsyslog = Service;

fn run(script_name: &str, env: &[(String, String)], args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(script(script_name))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("stack script runs");
    assert!(
        out.status.success(),
        "{script_name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn parse(info: &str) -> HashMap<String, String> {
    info.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Service {
    /// The shared rsyslog (started if it is not running).
    pub fn shared() -> Service {
        Service::shared_of("rsyslog.sh")
    }

    /// The shared instance of a stack script's receiver.
    pub fn shared_of(script: &'static str) -> Service {
        run(script, &[], &["start"]);
        Service {
            script,
            info: parse(&run(script, &[], &["info"])),
            env: Vec::new(),
            private: None,
        }
    }

    /// A private rsyslog on its own ports and state directory.
    pub fn private(base_port: u16) -> Service {
        Service::private_of(
            "rsyslog.sh",
            &[
                ("RSYSLOG_TCP_PORT", base_port),
                ("RSYSLOG_TLS_PORT", base_port + 1),
                ("RSYSLOG_MTLS_PORT", base_port + 2),
            ],
        )
    }

    /// A private instance of a stack script's receiver on the given ports.
    pub fn private_of(script: &'static str, ports: &[(&str, u16)]) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let mut env = vec![(
            "HERALD_STACK_DIR".to_string(),
            dir.path().display().to_string(),
        )];
        env.extend(ports.iter().map(|(k, p)| (k.to_string(), p.to_string())));
        run(script, &env, &["start"]);
        Service {
            script,
            info: parse(&run(script, &env, &["info"])),
            env,
            private: Some(dir),
        }
    }

    /// A private instance of a receiver whose script takes its own run
    /// directory (`run_dir_var`), so it shares the installed tools.
    pub fn private_in(script: &'static str, run_dir_var: &str, env: &[(&str, &str)]) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.push((run_dir_var.to_string(), dir.path().display().to_string()));
        run(script, &env, &["start"]);
        Service {
            script,
            info: parse(&run(script, &env, &["info"])),
            env,
            private: Some(dir),
        }
    }

    /// A private Kafka broker (ports `base_port`..+3) for tests that stop it;
    /// it shares the installed jars with the shared broker.
    pub fn private_kafka(base_port: u16) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let mut env = vec![(
            "KAFKA_RUN_DIR".to_string(),
            dir.path().display().to_string(),
        )];
        for (i, k) in [
            "KAFKA_PORT",
            "KAFKA_SSL_PORT",
            "KAFKA_SASL_PORT",
            "KAFKA_CONTROLLER_PORT",
        ]
        .iter()
        .enumerate()
        {
            env.push((k.to_string(), (base_port + i as u16).to_string()));
        }
        run("kafka.sh", &env, &["start"]);
        Service {
            script: "kafka.sh",
            info: parse(&run("kafka.sh", &env, &["info"])),
            env,
            private: Some(dir),
        }
    }

    /// Starts a stopped private broker again with its data (`KAFKA_KEEP_DATA`).
    pub fn start_kept(&self) {
        let mut env = self.env.clone();
        env.push(("KAFKA_KEEP_DATA".into(), "1".into()));
        run(self.script, &env, &["start"]);
    }

    pub fn get(&self, key: &str) -> &str {
        self.info
            .get(key)
            .unwrap_or_else(|| panic!("{} info has no {key}", self.script))
    }

    pub fn restart(&self) {
        run(self.script, &self.env, &["restart"]);
    }

    /// Runs another command of the stack script (e.g. kafka.sh restart-broker).
    pub fn command(&self, cmd: &str) {
        run(self.script, &self.env, &[cmd]);
    }

    /// Runs another command of the stack script and returns what it printed.
    pub fn output(&self, args: &[&str]) -> String {
        run(self.script, &self.env, args)
    }

    pub fn stop(&self) {
        run(self.script, &self.env, &["stop"]);
    }

    pub fn start(&self) {
        run(self.script, &self.env, &["start"]);
    }

    /// Lines of an output file (`out_tcp`, `out_tls`, `out_mtls`) that contain `marker`.
    pub fn lines(&self, file_key: &str, marker: &str) -> Vec<String> {
        std::fs::read_to_string(self.get(file_key))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(marker))
            .map(str::to_string)
            .collect()
    }

    /// Waits until at least `n` lines with `marker` are written.
    pub async fn wait_lines(
        &self,
        file_key: &str,
        marker: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<String> {
        let ok = super::eventually(timeout, || async {
            self.lines(file_key, marker).len() >= n
        })
        .await;
        let got = self.lines(file_key, marker);
        assert!(
            ok,
            "expected {n} lines with {marker} in {file_key}, got {}",
            got.len()
        );
        got
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.private.is_some() {
            let _ = Command::new("bash")
                .arg(script(self.script))
                .arg("stop")
                .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .status();
        }
    }
}
