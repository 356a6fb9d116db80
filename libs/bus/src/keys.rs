//! Redis key and channel names. The `{env:<id>}` hash tag puts all of one environment's names in one
//! cluster slot, so the compare-and-set script may touch both its keys and its channel lives on the same
//! node as its snapshot.

/// The hash holding `environment id → latest published revision` for every environment.
pub const REGISTRY: &str = "vexil:environments";

/// The sharded pub/sub channel carrying one environment's prost-encoded `ChangeEvent`s.
pub fn channel(environment_id: i64) -> String {
    format!("vexil:{{env:{environment_id}}}:changes")
}

/// The key holding one environment's prost-encoded `EnvironmentSnapshot`.
pub fn snapshot(environment_id: i64) -> String {
    format!("vexil:{{env:{environment_id}}}:snapshot")
}

/// The key holding the revision of the cached snapshot, as a decimal string.
pub fn revision(environment_id: i64) -> String {
    format!("vexil:{{env:{environment_id}}}:revision")
}

/// The stream holding one environment's data-plane events (exposures, custom events), JSON-encoded.
pub fn events(environment_id: i64) -> String {
    format!("vexil:{{env:{environment_id}}}:events")
}

#[cfg(test)]
mod tests {
    use super::*;
    use fred::util::redis_keyslot;

    #[test]
    fn an_environments_channel_and_keys_share_one_hash_slot() {
        let slot = redis_keyslot(channel(42).as_bytes());
        assert_eq!(redis_keyslot(snapshot(42).as_bytes()), slot);
        assert_eq!(redis_keyslot(revision(42).as_bytes()), slot);
        assert_eq!(redis_keyslot(events(42).as_bytes()), slot);
        assert_eq!(slot, redis_keyslot(b"env:42"));
    }

    #[test]
    fn names_follow_the_documented_scheme() {
        assert_eq!(channel(42), "vexil:{env:42}:changes");
        assert_eq!(snapshot(42), "vexil:{env:42}:snapshot");
        assert_eq!(revision(-3), "vexil:{env:-3}:revision");
        assert_eq!(events(42), "vexil:{env:42}:events");
    }
}
