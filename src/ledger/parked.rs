//! A parked delivery: what the store keeps of a delivery waiting for its
//! destination to come back, and how it is written: its details as JSON,
//! its message value beside them, as is (version 1 files kept the value in
//! the JSON, base64; they still read).

use serde::{Deserialize, Serialize};

/// A delivery waiting in the store for its destination to come back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parked {
    pub destination: String,
    /// The annotation-routed target (a secret such as a webhook URL, or "").
    #[serde(default)]
    pub target: String,
    /// The target as listings show it (never the secret parts).
    #[serde(default, rename = "target_label")]
    pub target_shown: String,
    /// The ledger key (alert id or audit key); deliveries of one key keep order.
    pub key: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    #[serde(default, with = "opt_b64")]
    pub message_key: Option<Vec<u8>>,
    /// The message value: stored beside the row, not in its JSON.
    #[serde(default, with = "b64", skip_serializing)]
    pub value: Vec<u8>,
    /// Send attempts so far, over every retry pass.
    pub attempts: u32,
    /// Retry rounds from the store so far (the interval grows with them).
    #[serde(default)]
    pub rounds: u32,
    pub first_error: String,
    pub last_error: String,
    pub parked_at_ms: i64,
    pub next_attempt_ms: i64,
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

mod opt_b64 {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::b64::serialize(v, s),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct W(#[serde(with = "super::b64")] Vec<u8>);
        Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
    }
}

/// A stored row: a parked delivery, or bytes that no longer read as one
/// (dead-lettered as they are, never skipped).
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    Parked(Box<Parked>),
    Unreadable(Vec<u8>),
}

impl Row {
    /// A row from its JSON and, when stored apart, its value.
    pub fn decode(bytes: &[u8], value: Option<&[u8]>) -> Row {
        match serde_json::from_slice::<Parked>(bytes) {
            Ok(mut p) => {
                if let Some(v) = value {
                    p.value = v.to_vec();
                }
                Row::Parked(Box::new(p))
            }
            Err(_) => Row::Unreadable(bytes.to_vec()),
        }
    }
}

impl Parked {
    /// The row's JSON (its value is stored apart).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a parked delivery serialises")
    }
}
