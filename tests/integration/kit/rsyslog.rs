//! The real rsyslog that `make test` starts (scripts/rsyslog.sh), or a private
//! one for tests that restart it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/rsyslog.sh")
}

/// One rsyslogd: its ports, certificates and output files.
pub struct Rsyslog {
    pub info: HashMap<String, String>,
    env: Vec<(String, String)>,
    private: Option<tempfile::TempDir>,
}

fn run(env: &[(String, String)], args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("rsyslog.sh");
    assert!(
        out.status.success(),
        "rsyslog.sh {args:?}: {}",
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

impl Rsyslog {
    /// The shared instance (started if it is not running).
    pub fn shared() -> Rsyslog {
        run(&[], &["start"]);
        Rsyslog {
            info: parse(&run(&[], &["info"])),
            env: Vec::new(),
            private: None,
        }
    }

    /// A private instance on its own ports and state directory.
    pub fn private(base_port: u16) -> Rsyslog {
        let dir = tempfile::tempdir().unwrap();
        let env = vec![
            (
                "HERALD_STACK_DIR".to_string(),
                dir.path().display().to_string(),
            ),
            ("RSYSLOG_TCP_PORT".to_string(), base_port.to_string()),
            ("RSYSLOG_TLS_PORT".to_string(), (base_port + 1).to_string()),
            ("RSYSLOG_MTLS_PORT".to_string(), (base_port + 2).to_string()),
        ];
        run(&env, &["start"]);
        Rsyslog {
            info: parse(&run(&env, &["info"])),
            env,
            private: Some(dir),
        }
    }

    pub fn get(&self, key: &str) -> &str {
        self.info
            .get(key)
            .unwrap_or_else(|| panic!("rsyslog info has no {key}"))
    }

    pub fn restart(&self) {
        run(&self.env, &["restart"]);
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

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if self.private.is_some() {
            let _ = Command::new("bash")
                .arg(script())
                .arg("stop")
                .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .status();
        }
    }
}
