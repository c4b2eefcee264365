//! age key pairs for the encrypted-backup tests: a fresh X25519 identity written as an identity
//! file the way `age-keygen` writes it (comment lines, then the secret key), with the secret
//! key's text kept so a test can check that it shows up nowhere.
use age::secrecy::ExposeSecret;
use std::path::{Path, PathBuf};

/// A key pair: the identity file, the secret key's text and the public key (`age1…`).
pub struct AgeKey {
    pub file: PathBuf,
    pub secret: String,
    pub public: String,
}

/// Generates a key pair and writes its identity file as `dir/name`.
pub fn age_key(dir: &Path, name: &str) -> AgeKey {
    let id = age::x25519::Identity::generate();
    let secret = id.to_string().expose_secret().to_string();
    let public = id.to_public().to_string();
    let file = dir.join(name);
    std::fs::write(
        &file,
        format!("# created: 2026-01-01T00:00:00+00:00\n# public key: {public}\n{secret}\n"),
    )
    .expect("writing an age identity file");
    AgeKey {
        file,
        secret,
        public,
    }
}
