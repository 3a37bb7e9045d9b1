//! Integration tests against the real stack: a real Kafka broker (started by
//! `make test` through scripts/kafka.sh), real HTTP receivers, and the herald
//! binary as a child process.

mod central;
mod chat;
mod cli;
mod delivery;
mod deploy;
mod email;
mod explain;
mod faults;
mod hostile;
mod ingest;
mod jira;
mod kit;
mod prometheus;
mod reconcile;
mod reload;
mod scc;
mod security_hub;
mod sentinel;
mod source;
mod splunk;
mod syslog;
mod test_messages;
mod webhook;
