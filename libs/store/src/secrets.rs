//! Secrets: management tokens and SDK keys.
//!
//! A secret looks like `vxm_<id>_<random>`: a kind prefix, a public id (used to find the record) and
//! 32 random base62 characters (~190 bits). Only the SHA-256 of the whole string is stored, and it is
//! compared in constant time. A slow password hash would add nothing: the secrets are random, not
//! chosen by people, so there is nothing to brute-force.

use rand::Rng;
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
}

impl SecretKind {
    fn prefix(self) -> &'static str {
        match self {
            SecretKind::Management => "vxm",
            SecretKind::Server => "vxs",
            SecretKind::Client => "vxc",
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

fn random_string(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

/// Generates a new secret of `kind`.
pub fn generate(kind: SecretKind) -> NewSecret {
    let id = random_string(ID_LEN);
    let secret = format!("{}_{id}_{}", kind.prefix(), random_string(RANDOM_LEN));
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

/// The public id of a presented secret of `kind`, if it has the right shape.
pub fn id_of(kind: SecretKind, presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(kind.prefix())?.strip_prefix('_')?;
    let (id, random) = rest.split_once('_')?;
    (id.len() == ID_LEN && !random.is_empty()).then_some(id)
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
}
