//! The Sumo Logic body (central-compat §2.10).

use serde_json::Value;

use super::prune::prune_alert;
use crate::model::Event;

/// Central's pruning size for Sumo Logic.
pub const SUMO_MAX_SIZE: usize = 10_000;

/// The Sumo Logic body: the bare alert, pruned to 10,000 bytes, policy text kept.
pub fn sumo_body(event: &Event) -> Result<Vec<u8>, String> {
    match event {
        Event::Alert(a) => {
            let mut v: Value = serde_json::from_str(a.raw.get()).map_err(|e| e.to_string())?;
            prune_alert(&mut v, SUMO_MAX_SIZE);
            serde_json::to_vec(&v).map_err(|e| e.to_string())
        }
        Event::Audit(_) => Err("Sumo Logic takes no audit messages".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_event as ev;

    #[test]
    fn sumo_is_the_bare_pruned_alert() {
        let big = "v".repeat(12_000);
        let e = ev(&format!(
            r#"{{"id":"a","policy":{{"description":"keep"}},"deployment":{{"name":"d","annotations":{{"big":"{big}","small":"s"}}}}}}"#
        ));
        let body = String::from_utf8(sumo_body(&e).unwrap()).unwrap();
        assert_eq!(
            body,
            r#"{"id":"a","policy":{"description":"keep"},"deployment":{"name":"d","annotations":{"small":"s"}}}"#
        );
    }
}
