//! Encryption at rest of backed-up files with [age](https://age-encryption.org) (feature
//! `backup-encryption`): X25519 recipients (`BACKUP_ENCRYPT_TO=age1…`), identity files as
//! `age-keygen` writes them (`AGE-SECRET-KEY-1…` lines, `#` comments).
//!
//! Each file is encrypted as it is copied: read from the source in 64 KiB pieces, encrypted by
//! age's STREAM (64 KiB chunks, each authenticated with ChaCha20-Poly1305, the last one marked
//! so that truncation is detected) and written to the backup; no plaintext touches the backup's
//! disk and no file is held in memory whole. An encrypted file keeps its name (an `.age` suffix
//! could collide with a folder named `….age` in the source); the manifest says the backup is
//! encrypted and to whom, and records per file the size of the plaintext and the size and
//! BLAKE3 of the ciphertext, so `backup verify` checks the ciphertext without any key.
//!
//! The manifest holds no checksum of the plaintext: an unkeyed hash of a file's content lets
//! anyone who can read the backup confirm a guess of that content (that a backup holds a
//! given retail audiobook file, say). A restore needs none: age authenticates every chunk and
//! the end of the stream, so a decryption that completes proves the plaintext is exactly what
//! was encrypted; the restore then checks the plaintext's size against the manifest and reads
//! the written copy back against the hash taken while decrypting. (Like age itself this guards
//! against corruption, not against someone who can write to the backup folder: anyone who
//! knows the public recipient can encrypt a file of their own to it.)
//!
//! Secrets stay out of messages: errors name identity files and their *public* keys, never a
//! line of their content; an identity's `Debug` shows only those too.
// Without the feature the encrypting and decrypting halves are stubs that cannot be reached
// (neither `Recipients` nor `Identity` can be made), which leaves helpers unused.
#![cfg_attr(not(feature = "backup-encryption"), allow(dead_code, unused_imports))]
use super::copy::finish_file;
use crate::workflow::errors::{Error, Result};
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// What encrypting one file produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sealed {
    /// Bytes of plaintext read from the source.
    pub plain_size: u64,
    /// BLAKE3 of the plaintext as read (to compare with the source read again).
    pub plain_hash: blake3::Hash,
    /// Bytes of ciphertext written.
    pub cipher_size: u64,
    /// BLAKE3 of the ciphertext as written (to compare with the copy read back).
    pub cipher_hash: blake3::Hash,
}

/// The recipients backups are encrypted to (`BACKUP_ENCRYPT_TO`): public keys, which may be
/// shown and logged.
#[derive(Clone)]
pub struct Recipients {
    text: Vec<String>,
    #[cfg(feature = "backup-encryption")]
    keys: Vec<age::x25519::Recipient>,
}

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Recipients").field(&self.text).finish()
    }
}

/// Whether `s` looks like an age secret key (so that it is never repeated in a message).
pub(crate) fn looks_secret(s: &str) -> bool {
    s.to_ascii_uppercase().contains("AGE-SECRET-KEY-")
}

impl Recipients {
    /// Parses comma-separated `age1…` recipients (spaces around commas allowed); `None` when
    /// there are none. The error says what is wrong and never repeats a secret key pasted by
    /// mistake.
    pub fn parse(raw: &str) -> std::result::Result<Option<Recipients>, String> {
        let items: Vec<&str> = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if items.is_empty() {
            return Ok(None);
        }
        if items.iter().any(|s| looks_secret(s)) {
            return Err(
                "this is a secret key (an age identity), not a recipient: give its \
                 public key, age1… (`age-keygen -y KEYFILE` prints it), and keep the \
                 secret key out of the configuration"
                    .into(),
            );
        }
        Self::parse_keys(&items)
    }

    #[cfg(feature = "backup-encryption")]
    fn parse_keys(items: &[&str]) -> std::result::Result<Option<Recipients>, String> {
        let mut keys = Vec::with_capacity(items.len());
        for item in items {
            let key: age::x25519::Recipient = item.parse().map_err(|e| {
                format!(
                    "{item:?} is not an age X25519 recipient ({e}); expected age1… public keys \
                     as age-keygen prints them, comma-separated"
                )
            })?;
            keys.push(key);
        }
        Ok(Some(Recipients {
            text: keys.iter().map(|k| k.to_string()).collect(),
            keys,
        }))
    }

    #[cfg(not(feature = "backup-encryption"))]
    fn parse_keys(_: &[&str]) -> std::result::Result<Option<Recipients>, String> {
        Err(
            "this aiom4b was built without the `backup-encryption` feature: it cannot \
             encrypt backups; leave it empty or use a build with the feature"
                .into(),
        )
    }

    /// The recipients as `age1…` strings.
    pub fn keys(&self) -> &[String] {
        &self.text
    }
}

/// The identities of an age identity file, for restoring encrypted backups. Its `Debug` and
/// everything it reports name the file and its public keys only.
pub struct Identity {
    file: PathBuf,
    public: Vec<String>,
    #[cfg(feature = "backup-encryption")]
    keys: Vec<Box<dyn age::Identity + Send + Sync>>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("file", &self.file)
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Reads an age identity file (`AGE-SECRET-KEY-1…` lines; empty lines and `#` comments
    /// ignored). Errors name the file and a line number, never a line.
    #[cfg(feature = "backup-encryption")]
    pub fn from_file(path: &Path) -> Result<Identity> {
        let f = File::open(path).map_err(|e| Error::io(path, "read identity file", e))?;
        // age's parser zeroizes each line and reports a bad one by number only.
        let parsed = age::IdentityFile::from_buffer(io::BufReader::new(f)).map_err(|e| {
            Error::Invalid(format!(
                "{}: not an age identity file ({e}); expected AGE-SECRET-KEY-1… lines as \
                 age-keygen writes them",
                path.display()
            ))
        })?;
        let mut public = Vec::new();
        parsed.write_recipients_file(&mut public).map_err(|_| {
            Error::Invalid(format!(
                "{}: holds no age identity; expected AGE-SECRET-KEY-1… lines as age-keygen \
                     writes them",
                path.display()
            ))
        })?;
        let public = String::from_utf8_lossy(&public)
            .lines()
            .map(str::to_string)
            .collect();
        let keys = parsed
            .into_identities()
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        Ok(Identity {
            file: path.to_path_buf(),
            public,
            keys,
        })
    }

    /// Without the `backup-encryption` feature there is nothing to decrypt with.
    #[cfg(not(feature = "backup-encryption"))]
    pub fn from_file(path: &Path) -> Result<Identity> {
        Err(Error::Invalid(format!(
            "{}: this aiom4b was built without the `backup-encryption` feature and cannot \
             decrypt backups",
            path.display()
        )))
    }

    /// The identity file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The public keys (`age1…`) of the identities in the file.
    pub fn public_keys(&self) -> &[String] {
        &self.public
    }
}

/// Hashes and counts what passes through to `inner`.
struct Tee<W> {
    inner: W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W> Tee<W> {
    fn new(inner: W) -> Self {
        Tee {
            inner,
            hasher: blake3::Hasher::new(),
            bytes: 0,
        }
    }
}

/// Which side of a copy failed.
enum Side {
    Input(io::Error),
    Output(io::Error),
}

/// Copies `from` to `to` in 64 KiB pieces (age's chunk size), hashing what was read.
fn pump(
    from: &mut impl Read,
    to: &mut impl Write,
) -> std::result::Result<(u64, blake3::Hash), Side> {
    let mut buf = vec![0u8; 64 << 10];
    let mut hasher = blake3::Hasher::new();
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Side::Input(e)),
        };
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n]).map_err(Side::Output)?;
        total += n as u64;
    }
    Ok((total, hasher.finalize()))
}

/// Encrypts `src` into the new file `dst` for `to`, streaming; copies permissions and
/// modification time; durable on return.
#[cfg(feature = "backup-encryption")]
pub(super) fn encrypt_file(src: &Path, dst: &Path, to: &Recipients) -> Result<Sealed> {
    let mut from = File::open(src).map_err(|e| Error::io(src, "open", e))?;
    let meta = from.metadata().map_err(|e| Error::io(src, "read", e))?;
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(|e| Error::io(dst, "create", e))?;
    let encryptor =
        age::Encryptor::with_recipients(to.keys.iter().map(|k| k as &dyn age::Recipient))
            .map_err(|e| Error::Invalid(format!("encrypting to {}: {e}", to.text.join(", "))))?;
    let mut sink = encryptor
        .wrap_output(Tee::new(BufWriter::with_capacity(128 << 10, file)))
        .map_err(|e| Error::io(dst, "write", e))?;
    let (plain_size, plain_hash) = pump(&mut from, &mut sink).map_err(|side| match side {
        Side::Input(e) => Error::io(src, "read", e),
        Side::Output(e) => Error::io(dst, "write", e),
    })?;
    let tee = sink.finish().map_err(|e| Error::io(dst, "write", e))?;
    let (cipher_size, cipher_hash) = (tee.bytes, tee.hasher.finalize());
    let file = tee
        .inner
        .into_inner()
        .map_err(|e| Error::io(dst, "write", e.into_error()))?;
    finish_file(&file, dst, &meta)?;
    Ok(Sealed {
        plain_size,
        plain_hash,
        cipher_size,
        cipher_hash,
    })
}

#[cfg(not(feature = "backup-encryption"))]
pub(super) fn encrypt_file(_: &Path, dst: &Path, _: &Recipients) -> Result<Sealed> {
    // Unreachable: Recipients cannot be made without the feature.
    Err(Error::Invalid(format!(
        "{}: built without the `backup-encryption` feature",
        dst.display()
    )))
}

/// Why an encrypted file of a backup cannot be decrypted with an identity.
#[derive(Debug)]
pub(super) enum Undecryptable {
    /// None of the identity's keys opens the file's header.
    WrongKey,
    /// The file is not an age file, or is damaged; the reason, for a message.
    Damaged(String),
    /// Reading it failed.
    Io(io::Error),
}

/// Checks that `identity` opens the header of the encrypted file `src` (its file key is
/// unwrapped; no content is read past the header).
#[cfg(feature = "backup-encryption")]
pub(super) fn check_opens(
    src: &Path,
    identity: &Identity,
) -> std::result::Result<(), Undecryptable> {
    open(src, identity).map(drop)
}

#[cfg(feature = "backup-encryption")]
fn open(
    src: &Path,
    identity: &Identity,
) -> std::result::Result<age::stream::StreamReader<io::BufReader<File>>, Undecryptable> {
    let f = File::open(src).map_err(Undecryptable::Io)?;
    let decryptor = age::Decryptor::new_buffered(io::BufReader::with_capacity(128 << 10, f))
        .map_err(undecryptable)?;
    decryptor
        .decrypt(
            identity
                .keys
                .iter()
                .map(|k| k.as_ref() as &dyn age::Identity),
        )
        .map_err(undecryptable)
}

#[cfg(feature = "backup-encryption")]
fn undecryptable(e: age::DecryptError) -> Undecryptable {
    match e {
        age::DecryptError::NoMatchingKeys => Undecryptable::WrongKey,
        age::DecryptError::Io(e)
            if e.kind() != io::ErrorKind::UnexpectedEof
                && e.kind() != io::ErrorKind::InvalidData =>
        {
            Undecryptable::Io(e)
        }
        other => Undecryptable::Damaged(format!("not a readable age file ({other})")),
    }
}

/// Decrypts the backup's file `src` into the new file `dst`, streaming; copies permissions
/// and modification time; durable on return. Returns the plaintext's size and BLAKE3.
#[cfg(feature = "backup-encryption")]
pub(super) fn decrypt_file(
    src: &Path,
    dst: &Path,
    identity: &Identity,
) -> std::result::Result<(u64, blake3::Hash), DecryptFailure> {
    let mut reader = open(src, identity).map_err(DecryptFailure::Source)?;
    let meta =
        std::fs::metadata(src).map_err(|e| DecryptFailure::Other(Error::io(src, "read", e)))?;
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(|e| DecryptFailure::Other(Error::io(dst, "create", e)))?;
    let mut out = BufWriter::with_capacity(128 << 10, file);
    let (size, hash) = pump(&mut reader, &mut out).map_err(|side| match side {
        // age reports a chunk that fails authentication, or a stream cut short, as
        // InvalidData / UnexpectedEof.
        Side::Input(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
            ) =>
        {
            DecryptFailure::Source(Undecryptable::Damaged(format!(
                "does not decrypt ({e}): it was changed or cut short"
            )))
        }
        Side::Input(e) => DecryptFailure::Source(Undecryptable::Io(e)),
        Side::Output(e) => DecryptFailure::Other(Error::io(dst, "write", e)),
    })?;
    let file = out
        .into_inner()
        .map_err(|e| DecryptFailure::Other(Error::io(dst, "write", e.into_error())))?;
    finish_file(&file, dst, &meta).map_err(DecryptFailure::Other)?;
    Ok((size, hash))
}

/// Without the feature an [`Identity`] cannot be made, so this is never reached.
#[cfg(not(feature = "backup-encryption"))]
pub(super) fn check_opens(_: &Path, _: &Identity) -> std::result::Result<(), Undecryptable> {
    Err(Undecryptable::Damaged(
        "built without the `backup-encryption` feature".into(),
    ))
}

/// Without the feature an [`Identity`] cannot be made, so this is never reached.
#[cfg(not(feature = "backup-encryption"))]
pub(super) fn decrypt_file(
    src: &Path,
    _: &Path,
    _: &Identity,
) -> std::result::Result<(u64, blake3::Hash), DecryptFailure> {
    Err(DecryptFailure::Other(Error::Invalid(format!(
        "{}: built without the `backup-encryption` feature",
        src.display()
    ))))
}

/// Why [`decrypt_file`] failed: the backup's file, or anything else (the destination).
#[derive(Debug)]
pub(super) enum DecryptFailure {
    Source(Undecryptable),
    Other(Error),
}
