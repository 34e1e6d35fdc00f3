//! The node's persistent identity: an Ed25519 key in a file.
//!
//! The file holds the key in libp2p's protobuf encoding. A missing file is
//! created with owner-only permissions; an unreadable or corrupt one is an
//! error, never silently replaced, because a new key means a new peer id and
//! every address others saved for this node would stop working.

use std::{
    fs, io,
    io::Write,
    path::{Path, PathBuf},
};

use dht_core::ErrorCode;
use libp2p::identity::Keypair;
use libp2p_webrtc::tokio::Certificate;

/// Why the identity could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IdentityError {
    #[error("cannot read the identity key file {}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the identity file {} is not a valid key or certificate; refusing to replace it \
         with a new identity. Restore it from a backup, or delete it to start over under a new \
         peer id and address",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot create the identity key file {}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ErrorCode for IdentityError {
    fn code(&self) -> &'static str {
        match self {
            IdentityError::Unreadable { .. } => "identity-unreadable",
            IdentityError::Corrupt { .. } => "identity-corrupt",
            IdentityError::Create { .. } => "identity-create",
        }
    }
}

/// Loads the key at `path`, creating it (and its directory) if missing.
/// Returns the key and whether it was created now.
pub(crate) fn load_or_create(path: &Path) -> Result<(Keypair, bool), IdentityError> {
    match fs::read(path) {
        Ok(bytes) => {
            let keypair =
                Keypair::from_protobuf_encoding(&bytes).map_err(|e| IdentityError::Corrupt {
                    path: path.to_owned(),
                    source: e.into(),
                })?;
            warn_if_exposed(path);
            Ok((keypair, false))
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            write_new(path, &keypair).map_err(|source| IdentityError::Create {
                path: path.to_owned(),
                source,
            })?;
            Ok((keypair, true))
        }
        Err(source) => Err(IdentityError::Unreadable {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Loads the WebRTC certificate at `path`, creating it if missing. Its hash
/// is part of the node's WebRTC-direct address, so like the key it is kept
/// across restarts and never silently replaced.
pub(crate) fn load_or_create_certificate(
    path: &Path,
) -> Result<(Certificate, bool), IdentityError> {
    match fs::read_to_string(path) {
        Ok(pem) => {
            let corrupt =
                |source: Box<dyn std::error::Error + Send + Sync>| IdentityError::Corrupt {
                    path: path.to_owned(),
                    source,
                };
            // The parser below slices the first block without checking its
            // length; refuse what would make it panic.
            if !expires_block_is_sound(&pem) {
                return Err(corrupt("no EXPIRES block".into()));
            }
            let certificate = Certificate::from_pem(&pem).map_err(|e| corrupt(e.into()))?;
            warn_if_exposed(path);
            Ok((certificate, false))
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            let certificate =
                Certificate::generate(&mut rand::rng()).map_err(|e| IdentityError::Create {
                    path: path.to_owned(),
                    source: io::Error::other(e.to_string()),
                })?;
            write_private(path, certificate.serialize_pem().as_bytes()).map_err(|source| {
                IdentityError::Create {
                    path: path.to_owned(),
                    source,
                }
            })?;
            Ok((certificate, true))
        }
        Err(source) => Err(IdentityError::Unreadable {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Whether the PEM starts with an `EXPIRES` block of at least 8 bytes.
fn expires_block_is_sound(pem: &str) -> bool {
    let Some(first) = pem.split("\n\n").next() else {
        return false;
    };
    let mut lines = first.lines().map(str::trim);
    if lines.next() != Some("-----BEGIN EXPIRES-----") {
        return false;
    }
    let body: String = lines.take_while(|l| !l.starts_with("-----END")).collect();
    // 8 bytes are 11 base64 digits before padding.
    body.trim_end_matches('=').len() >= 11
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

fn write_new(path: &Path, keypair: &Keypair) -> io::Result<()> {
    let bytes = keypair
        .to_protobuf_encoding()
        .map_err(|e| io::Error::other(e.to_string()))?;
    write_private(path, &bytes)
}

/// Creates `path` (and its directory) readable by the owner only, whole
/// or not at all: the bytes go to a temporary file beside it, which is
/// synced and then linked into place, so a crash or a full disk mid-write
/// leaves no truncated key behind. An existing `path` is never replaced.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
    }
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(temporary_name);
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    // A hard link never replaces an existing file: a key that appeared in
    // the meantime stays.
    let placed = written.and_then(|()| fs::hard_link(&temporary, path));
    let _ = fs::remove_file(&temporary);
    placed?;
    // The new name must reach the disk too.
    #[cfg(unix)]
    if let Some(dir) = dir {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn warn_if_exposed(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "the identity key file is readable by other users; `chmod 600` it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ns-dht-identity-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_missing_key_is_created_private_and_then_reused() {
        let dir = temp_dir("create");
        let path = dir.join("nested/identity.key");
        let (first, created) = load_or_create(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let (second, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(first.public().to_peer_id(), second.public().to_peer_id());
        fs::remove_dir_all(dir).unwrap();
    }

    /// A key file cut short anywhere (a full disk, a kill mid-write by some
    /// other tool) is a clear error, never a panic or a different identity.
    #[test]
    fn a_truncated_key_is_an_error_at_every_length() {
        let dir = temp_dir("truncated");
        let path = dir.join("identity.key");
        let (key, _) = load_or_create(&path).unwrap();
        let whole = fs::read(&path).unwrap();
        for len in 0..whole.len() {
            fs::write(&path, &whole[..len]).unwrap();
            assert!(
                matches!(load_or_create(&path), Err(IdentityError::Corrupt { .. })),
                "{len} bytes"
            );
            assert_eq!(fs::read(&path).unwrap(), &whole[..len], "left alone");
        }
        fs::write(&path, &whole).unwrap();
        let (again, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(again.public(), key.public());
        fs::remove_dir_all(dir).unwrap();
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]
        #[test]
        fn any_bytes_on_disk_load_or_fail_cleanly(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120)) {
            let dir = temp_dir("random");
            fs::create_dir_all(&dir).unwrap();
            let path = dir.join("identity.key");
            fs::write(&path, &bytes).unwrap();
            let loaded = load_or_create(&path);
            let clean = matches!(loaded, Ok((_, false)) | Err(IdentityError::Corrupt { .. }));
            proptest::prop_assert!(clean, "{:?}", loaded.err());
            fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn a_corrupt_key_is_an_error_and_is_left_alone() {
        let dir = temp_dir("corrupt");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("identity.key");
        fs::write(&path, b"not a key").unwrap();
        let error = load_or_create(&path).unwrap_err();
        assert!(matches!(error, IdentityError::Corrupt { .. }));
        assert_eq!(error.code(), "identity-corrupt");
        assert_eq!(fs::read(&path).unwrap(), b"not a key");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_certificate_is_created_then_reused_and_a_corrupt_one_refused() {
        let dir = temp_dir("certificate");
        let path = dir.join("webrtc.pem");
        let (first, created) = load_or_create_certificate(&path).unwrap();
        assert!(created);
        let (second, created) = load_or_create_certificate(&path).unwrap();
        assert!(!created);
        assert_eq!(first.fingerprint(), second.fingerprint());
        for garbage in [
            "",
            "junk",
            "-----BEGIN EXPIRES-----\nAA==\n-----END EXPIRES-----\n\nx",
        ] {
            fs::write(&path, garbage).unwrap();
            let error = load_or_create_certificate(&path).unwrap_err();
            assert!(
                matches!(error, IdentityError::Corrupt { .. }),
                "{garbage:?}: {error}"
            );
        }
        fs::remove_dir_all(dir).unwrap();
    }

    /// Regression: the key was written in place, so a crash or a full disk
    /// mid-write left a truncated file that every later start refused.
    #[test]
    fn a_key_is_written_whole_and_a_crashed_write_leaves_nothing_in_the_way() {
        let dir = temp_dir("atomic");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("identity.key");
        // What a write cut short by a crash leaves: a partial temporary file.
        fs::write(dir.join(".identity.key.999999.tmp"), b"\x08\x01\x12").unwrap();
        let (first, created) = load_or_create(&path).unwrap();
        assert!(created);
        let (second, _) = load_or_create(&path).unwrap();
        assert_eq!(first.public().to_peer_id(), second.public().to_peer_id());
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n.contains(&std::process::id().to_string())),
            "our own temporary file is gone: {names:?}"
        );
        // An existing key is never replaced.
        assert_eq!(
            write_private(&path, b"another").unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_unreadable_key_is_an_error() {
        let dir = temp_dir("unreadable");
        fs::create_dir_all(dir.join("identity.key")).unwrap();
        let error = load_or_create(&dir.join("identity.key")).unwrap_err();
        assert!(matches!(error, IdentityError::Unreadable { .. }), "{error}");
        fs::remove_dir_all(dir).unwrap();
    }
}
