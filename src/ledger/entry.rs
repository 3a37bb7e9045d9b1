//! One ledger entry, stored as 25 fixed bytes.

use super::Retention;
use crate::model::AlertState;

/// What was last delivered for one (key, destination).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// ACTIVE, ATTEMPTED or RESOLVED.
    pub state: AlertState,
    /// When the destination accepted it (ms since the epoch).
    pub delivered_ms: i64,
    /// When the key was last seen on the topic.
    pub last_seen_ms: i64,
    /// For runtime alerts: the newest violation time notified (ms), else 0.
    pub newest_violation_ms: i64,
}

impl Entry {
    pub fn encode(&self) -> [u8; 25] {
        let mut b = [0u8; 25];
        b[0] = self.state.number() as u8;
        b[1..9].copy_from_slice(&self.delivered_ms.to_le_bytes());
        b[9..17].copy_from_slice(&self.last_seen_ms.to_le_bytes());
        b[17..25].copy_from_slice(&self.newest_violation_ms.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Entry> {
        if b.len() != 25 {
            return None;
        }
        let int = |r: std::ops::Range<usize>| i64::from_le_bytes(b[r].try_into().expect("8 bytes"));
        Some(Entry {
            state: AlertState::from_number(b[0] as i64)?,
            delivered_ms: int(1..9),
            last_seen_ms: int(9..17),
            newest_violation_ms: int(17..25),
        })
    }

    /// Expired `retention` after last seen, or sooner once resolved; audit keys sooner still.
    pub fn expired(&self, now_ms: i64, r: Retention, audit: bool) -> bool {
        let keep = if audit {
            r.audit
        } else if self.state == AlertState::Resolved {
            r.resolved.min(r.alerts)
        } else {
            r.alerts
        };
        now_ms - self.last_seen_ms > keep.as_millis() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let e = Entry {
            state: AlertState::Attempted,
            delivered_ms: -1,
            last_seen_ms: i64::MAX,
            newest_violation_ms: 1_714_564_997_451,
        };
        assert_eq!(Entry::decode(&e.encode()), Some(e));
        assert_eq!(Entry::decode(&[1, 2]), None);
    }
}
