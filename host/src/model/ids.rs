//! Identifiers and secrets.

use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new id such as `cb_01J…`: a prefix naming the kind, then a ULID.
///
/// ULIDs from one generator increase strictly, so records created in the
/// same millisecond still sort in creation order; history relies on it.
pub fn new_id(prefix: &str) -> String {
    static GENERATOR: Mutex<ulid::Generator> = Mutex::new(ulid::Generator::new());
    let mut generator = GENERATOR.lock().unwrap_or_else(|p| p.into_inner());
    let ulid = generator.generate().unwrap_or_else(|_| ulid::Ulid::new());
    format!("{prefix}_{ulid}")
}

/// A bearer token: `prefix` then 32 random bytes in URL-safe base64.
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// A Standard Webhooks signing secret: `whsec_` then 24 random bytes in
/// base64, the form receivers' libraries expect.
pub fn new_signing_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// Hex SHA-256 of a token: what is stored in place of the token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_in_creation_order() {
        let ids: Vec<String> = (0..1000).map(|_| new_id("act")).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert!(ids[0].starts_with("act_"));
    }

    #[test]
    fn secrets_have_their_documented_shape() {
        let secret = new_signing_secret();
        let key = STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap();
        assert_eq!(key.len(), 24);
        assert_ne!(new_token("hg_"), new_token("hg_"));
        assert_eq!(token_hash("x").len(), 64);
    }
}
