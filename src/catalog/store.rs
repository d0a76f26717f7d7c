//! The latest catalog on disk: one file, `catalog.bin`, next to the archive's segments.
//!
//! A publication must survive a crash once `PUT /catalog` has answered, so the file is replaced
//! the way a database replaces a page it cannot afford to tear: the new contents go to
//! `catalog.bin.new`, which is synced, renamed over `catalog.bin`, and the directory synced. A
//! crash leaves the old file or the new one, never a mix. A CRC over the whole file catches a
//! damaged one, which stops the daemon with the file named rather than start it with a version
//! number that would go backwards.
//!
//! Format (all integers big-endian):
//!
//! | bytes | field |
//! | --- | --- |
//! | 8 | magic `TACATLG1` |
//! | 8 | version |
//! | 8 | published, Unix milliseconds |
//! | 1 | content type length T |
//! | T | content type (ASCII) |
//! | 4 | body length B |
//! | B | body |
//! | 4 | CRC-32 (IEEE) of every byte before it |

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::domain::catalog::Catalog;

/// The file's name in the archive's directory.
pub(crate) const FILE_NAME: &str = "catalog.bin";
const MAGIC: &[u8; 8] = b"TACATLG1";

/// Where the latest catalog is kept.
#[derive(Debug, Clone)]
pub struct Store {
    path: PathBuf,
}

/// Why the stored catalog could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is damaged: {reason}; move it aside to start without a catalog")]
    Damaged { path: PathBuf, reason: Damage },
}

/// What is wrong with the bytes of a catalog file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    #[error("{0} bytes, shorter than any catalog file")]
    Short(usize),
    #[error("checksum mismatch")]
    Checksum,
    #[error("not a catalog file (bad magic)")]
    Magic,
    #[error("content type runs past the end")]
    ContentTypeLength,
    #[error("content type is not UTF-8")]
    ContentTypeUtf8,
    #[error("body length {expected} but {left} bytes follow")]
    BodyLength { expected: usize, left: usize },
}

impl Store {
    /// The store in `dir` (created if missing when the first catalog is saved).
    pub fn in_dir(dir: &Path) -> Store {
        Store {
            path: dir.join(FILE_NAME),
        }
    }

    /// The stored catalog; `None` when none was ever published.
    pub fn load(&self) -> Result<Option<Catalog>, LoadError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LoadError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        decode(Bytes::from(bytes))
            .map(Some)
            .map_err(|reason| LoadError::Damaged {
                path: self.path.clone(),
                reason,
            })
    }

    /// Replaces the stored catalog with `catalog`, durably, before returning.
    pub fn save(&self, catalog: &Catalog) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let staged = self.path.with_extension("bin.new");
        let mut file = File::create(&staged)?;
        file.write_all(&encode(catalog))?;
        file.sync_all()?;
        drop(file);
        fs::rename(&staged, &self.path)?;
        File::open(dir)?.sync_all()
    }
}

/// The file's bytes, laid out as the table above says.
pub fn encode(catalog: &Catalog) -> BytesMut {
    let mut out = BytesMut::with_capacity(33 + catalog.content_type.len() + catalog.body.len());
    out.put_slice(MAGIC);
    out.put_u64(catalog.version);
    out.put_u64(catalog.published_unix_ms);
    out.put_u8(catalog.content_type.len() as u8);
    out.put_slice(catalog.content_type.as_bytes());
    out.put_u32(catalog.body.len() as u32);
    out.put_slice(&catalog.body);
    let crc = crc32fast::hash(&out);
    out.put_u32(crc);
    out
}

/// Reads a file's bytes, or says what is wrong with them.
pub fn decode(mut bytes: Bytes) -> Result<Catalog, Damage> {
    if bytes.len() < 33 {
        return Err(Damage::Short(bytes.len()));
    }
    let (content, crc) = bytes.split_at(bytes.len() - 4);
    let expected = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(content) != expected {
        return Err(Damage::Checksum);
    }
    bytes.truncate(bytes.len() - 4);
    if &bytes[..8] != MAGIC {
        return Err(Damage::Magic);
    }
    bytes.advance(8);
    let version = bytes.get_u64();
    let published_unix_ms = bytes.get_u64();
    let type_len = usize::from(bytes.get_u8());
    if bytes.len() < type_len + 4 {
        return Err(Damage::ContentTypeLength);
    }
    let content_type = String::from_utf8(bytes.split_to(type_len).to_vec())
        .map_err(|_| Damage::ContentTypeUtf8)?;
    let body_len = bytes.get_u32() as usize;
    if bytes.len() != body_len {
        return Err(Damage::BodyLength {
            expected: body_len,
            left: bytes.len(),
        });
    }
    Ok(Catalog {
        version,
        content_type,
        body: bytes,
        published_unix_ms,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::any;
    use proptest::strategy::Strategy;

    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("catalog-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn catalog(version: u64) -> Catalog {
        Catalog {
            version,
            content_type: "text/plain".into(),
            body: Bytes::from(format!(
                "ISS (ZARYA) v{version}\n1 25544U ...\n2 25544 ...\n"
            )),
            published_unix_ms: 1_795_000_000_000 + version,
        }
    }

    #[test]
    fn a_saved_catalog_loads_back_and_the_newest_wins() {
        let dir = dir("roundtrip");
        let store = Store::in_dir(&dir);
        assert!(store.load().unwrap().is_none(), "nothing published yet");
        store.save(&catalog(1)).unwrap();
        store.save(&catalog(2)).unwrap();
        assert_eq!(store.load().unwrap(), Some(catalog(2)));
        assert!(!dir.join("catalog.bin.new").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_file_is_named_not_trusted() {
        let dir = dir("damaged");
        let store = Store::in_dir(&dir);
        store.save(&catalog(3)).unwrap();
        let path = dir.join(FILE_NAME);
        let mut bytes = fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(
            err.contains("catalog.bin") && err.contains("checksum"),
            "{err}"
        );
        fs::write(&path, b"short").unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("shorter"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    fn any_catalog() -> impl Strategy<Value = Catalog> {
        let body = proptest::collection::vec(any::<u8>(), 0..200);
        // Up to 60 characters of up to 4 bytes: within the content type's length byte.
        (any::<u64>(), "\\PC{0,60}", body, any::<u64>()).prop_map(
            |(version, content_type, body, published_unix_ms)| Catalog {
                version,
                content_type,
                body: body.into(),
                published_unix_ms,
            },
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(128))]

        /// Any catalog reads back as saved; the file cut short anywhere, or with any byte
        /// flipped, is damage, never another catalog.
        #[test]
        fn any_catalog_reads_back_and_any_damage_is_refused(
            catalog in any_catalog(),
            at in any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let bytes = encode(&catalog).freeze();
            proptest::prop_assert_eq!(decode(bytes.clone()), Ok(catalog));
            let at = at.index(bytes.len());
            proptest::prop_assert!(decode(bytes.slice(..at)).is_err());
            let mut flipped = bytes.to_vec();
            flipped[at] ^= flip;
            proptest::prop_assert!(decode(Bytes::from(flipped)).is_err());
        }
    }
}
