//! Vexil's secrets: management tokens (`vxm_`), server SDK keys (`vxs_`), client SDK keys (`vxc_`), and
//! the dashboard's session cookies (`vxw_`).
//!
//! A secret looks like `vxs_<id>_<random>`: a kind prefix, a public id of 12 base62 characters (it
//! finds the record, and is safe to log) and 32 random base62 characters (~190 bits). Only the SHA-256
//! of the whole string is stored, and it is compared in constant time. A slow password hash would add
//! nothing: the secrets are random, not chosen by people, so there is nothing to brute-force.
//!
//! This is domain, not storage: the control plane generates and stores secrets, the data plane checks
//! presented SDK keys against the hashes it was sent, and the SDK checks that it was given a server key
//! — all with these functions.
//!
//! ```
//! use vexil_keys::{KeyKind, SecretKind};
//!
//! let new = vexil_keys::generate(SecretKind::Server);
//! assert_eq!(vexil_keys::sdk_key_id(&new.secret), Some((KeyKind::Server, new.id.as_str())));
//! assert!(vexil_keys::matches(&new.secret, &new.sha256));
//! assert_eq!(vexil_keys::id_of(SecretKind::Client, &new.secret), None);
//! ```
#![deny(missing_docs)]

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const ID_LEN: usize = 12;
const RANDOM_LEN: usize = 32;

/// What a secret grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// A management token (`vxm_`).
    Management,
    /// A server SDK key (`vxs_`): full configurations of one environment.
    Server,
    /// A client SDK key (`vxc_`): evaluated client-side flags of one environment.
    Client,
    /// A dashboard session (`vxw_`, in an httpOnly cookie): what the management token it was exchanged
    /// for may do, until it expires or is logged out.
    Session,
}

impl SecretKind {
    fn prefix(self) -> &'static str {
        match self {
            SecretKind::Management => "vxm",
            SecretKind::Server => "vxs",
            SecretKind::Client => "vxc",
            SecretKind::Session => "vxw",
        }
    }
}

/// What an SDK key grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum KeyKind {
    /// Secret; sees full configurations.
    Server,
    /// Public; sees evaluated values of client-side flags only.
    Client,
}

impl KeyKind {
    /// The kind as stored and sent (`server`, `client`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Server => "server",
            KeyKind::Client => "client",
        }
    }

    /// The kind [`as_str`](Self::as_str) wrote.
    pub fn parse(text: &str) -> Option<KeyKind> {
        match text {
            "server" => Some(KeyKind::Server),
            "client" => Some(KeyKind::Client),
            _ => None,
        }
    }

    /// The secret kind of this kind of key.
    pub fn secret_kind(self) -> SecretKind {
        match self {
            KeyKind::Server => SecretKind::Server,
            KeyKind::Client => SecretKind::Client,
        }
    }
}

/// A freshly generated secret: shown once, then only its hash is kept.
#[derive(Clone)]
pub struct NewSecret {
    /// The public id.
    pub id: String,
    /// The whole secret string, to hand to the user once.
    pub secret: String,
    /// SHA-256 of `secret`.
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for NewSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSecret").field("id", &self.id).field("secret", &"<redacted>").finish()
    }
}

/// `len` random base62 characters (`0-9A-Za-z`, ~5.95 bits each), from the thread's CSPRNG.
pub fn random_base62(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// Generates a new secret of `kind`.
pub fn generate(kind: SecretKind) -> NewSecret {
    let id = random_base62(ID_LEN);
    let secret = format!("{}_{id}_{}", kind.prefix(), random_base62(RANDOM_LEN));
    NewSecret { sha256: sha256(&secret), id, secret }
}

/// Builds the secret for a caller-chosen string (the bootstrap token): the id is derived from its hash.
pub fn from_chosen(secret: &str) -> NewSecret {
    let sha = sha256(secret);
    let id: String =
        sha.iter().take(ID_LEN).map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect();
    NewSecret { id: format!("boot{}", &id[4..]), secret: secret.to_owned(), sha256: sha }
}

/// SHA-256 of a secret string.
pub fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The public id of a presented secret of `kind`, if it has the shape: the kind's prefix, `_`, 12
/// letters or digits, `_`, and at least one more visible ASCII character.
pub fn id_of(kind: SecretKind, presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(kind.prefix())?.strip_prefix('_')?;
    let (id, random) = rest.split_once('_')?;
    let shaped = id.len() == ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric())
        && !random.is_empty()
        && random.bytes().all(|b| b.is_ascii_graphic());
    shaped.then_some(id)
}

/// The kind and public id of a presented SDK key (server or client), if it has an SDK key's shape.
pub fn sdk_key_id(presented: &str) -> Option<(KeyKind, &str)> {
    [KeyKind::Server, KeyKind::Client]
        .into_iter()
        .find_map(|kind| id_of(kind.secret_kind(), presented).map(|id| (kind, id)))
}

/// Whether `presented` hashes to `expected`, compared in constant time.
pub fn matches(presented: &str, expected: &[u8]) -> bool {
    sha256(presented).ct_eq(expected).into()
}

/// The first characters of a secret, safe to show in listings.
pub fn prefix_of(secret: &str) -> String {
    secret.chars().take(4 + ID_LEN + 4).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_secret_matches_its_hash_and_nothing_else() {
        let new = generate(SecretKind::Server);
        assert!(new.secret.starts_with("vxs_"));
        assert_eq!(id_of(SecretKind::Server, &new.secret), Some(new.id.as_str()));
        assert_eq!(id_of(SecretKind::Client, &new.secret), None);
        assert!(matches(&new.secret, &new.sha256));
        assert!(!matches(&format!("{}x", new.secret), &new.sha256));
        assert!(!format!("{new:?}").contains(&new.secret[8..]));
    }

    #[test]
    fn two_secrets_differ() {
        assert_ne!(generate(SecretKind::Management).secret, generate(SecretKind::Management).secret);
    }

    #[test]
    fn only_well_shaped_keys_have_an_id() {
        let id = |presented| id_of(SecretKind::Server, presented);
        assert_eq!(id("vxs_ABCDEFabcdef_0123456789abcdefghijABCDEFGHIJ0123"), Some("ABCDEFabcdef"));
        assert_eq!(id("vxc_ABCDEFabcdef_0123456789"), None, "a client key");
        assert_eq!(id("vxs_short_0123456789"), None);
        assert_eq!(id("vxs_ABCDEFabcdef_"), None);
        assert_eq!(id("vxs_ABCDEF-bcdef_0123"), None, "the id is letters and digits");
        assert_eq!(id("vxs_ABCDEFabcdef_with space"), None);
        assert_eq!(id(""), None);
    }

    #[test]
    fn an_sdk_key_says_its_kind() {
        let client = generate(SecretKind::Client);
        assert_eq!(sdk_key_id(&client.secret), Some((KeyKind::Client, client.id.as_str())));
        assert_eq!(sdk_key_id(&generate(SecretKind::Management).secret), None);
        for kind in [KeyKind::Server, KeyKind::Client] {
            assert_eq!(KeyKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn a_chosen_secret_gets_a_stable_id_of_the_usual_shape() {
        let chosen = from_chosen("any string at all");
        assert_eq!(chosen.id, from_chosen("any string at all").id);
        assert_eq!(chosen.id.len(), ID_LEN);
        assert!(chosen.id.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(matches("any string at all", &chosen.sha256));
    }
}
