//! Where each shard's segments live in the archive directory.
//!
//! Shard 0 writes in the archive directory itself, as every daemon did before shards: an archive
//! written then is shard 0 of one written now, and a daemon with one shard writes exactly what it
//! wrote before. Shard `k` writes in `shard-KK/` inside it (`shard-01` to `shard-63`). Readers
//! (recovery, the tools, followers, sinks) read every shard directory they find, not only the
//! ones the running config has: a daemon restarted with fewer shards still reads and resumes
//! what the others stored.
//!
//! The offline readers (`archive verify`, `inspect`, `repair`, the replay) all go through
//! [`list_shard_segments`], so they agree on which files make up an archive: a second way of
//! walking the shards would sooner or later find a different set.

use super::names;
use std::fs;
use std::path::{Path, PathBuf};

use super::error::ArchiveError;
use crate::domain::shard::MAX_SHARDS;

const PREFIX: &str = "shard-";

/// The directory shard `shard` writes its segments in.
pub fn shard_dir(root: &Path, shard: usize) -> PathBuf {
    match shard {
        0 => root.to_path_buf(),
        k => root.join(format!("{PREFIX}{k:02}")),
    }
}

/// The shard a directory name belongs to (`shard-07` is 7); `None` for any other name.
fn shard_of_name(name: &str) -> Option<usize> {
    let digits = name.strip_prefix(PREFIX)?;
    if digits.len() != 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse()
        .ok()
        .filter(|&k| (1..MAX_SHARDS).contains(&k))
}

/// Every shard's directory in the archive at `root`, shard 0 (`root` itself) first, then the
/// `shard-KK` directories that exist, by shard.
pub(crate) fn list_shards(root: &Path) -> Result<Vec<(usize, PathBuf)>, ArchiveError> {
    let mut shards = vec![(0, root.to_path_buf())];
    let entries = fs::read_dir(root).map_err(ArchiveError::io(root, "list"))?;
    for entry in entries {
        let entry = entry.map_err(ArchiveError::io(root, "list"))?;
        let shard = entry.file_name().to_str().and_then(shard_of_name);
        let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        if let (Some(shard), true) = (shard, is_dir) {
            shards.push((shard, entry.path()));
        }
    }
    shards.sort();
    Ok(shards)
}

/// Takes every shard directory's lock ([`names::lock_directory`]), the archive directory's
/// first: what a tool that changes the archive holds, so that it never runs beside a daemon.
pub(crate) fn lock_shards(root: &Path) -> Result<Vec<fs::File>, ArchiveError> {
    list_shards(root)?
        .iter()
        .map(|(_, dir)| names::lock_directory(dir))
        .collect()
}

/// One shard's segment stream, as the archive's readers find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSegments {
    pub shard: usize,
    /// The shard's directory ([`shard_dir`]): the archive directory itself for shard 0.
    pub dir: PathBuf,
    /// Its segments, by index ([`names::list_segments`]).
    pub segments: Vec<(u64, PathBuf)>,
    /// Its emergency journals, by generation: the segment format, and frames a crash may have
    /// left nowhere else, which the next start stores (`docs/archive-format.md`, "Emergency journals").
    pub journals: Vec<PathBuf>,
}

/// The segments of every shard of the archive at `root` ([`list_shards`]): shard 0 first, then by
/// shard, each shard's by index. A shard directory without segments is listed, empty. An `Err`
/// names the directory that cannot be listed.
pub fn list_shard_segments(root: &Path) -> Result<Vec<ShardSegments>, ArchiveError> {
    list_shards(root)?
        .into_iter()
        .map(|(shard, dir)| {
            let segments = names::list_segments(&dir)?;
            let journals = names::list_journals(&dir)?
                .into_iter()
                .map(|(_, path)| path)
                .collect();
            Ok(ShardSegments {
                shard,
                dir,
                segments,
                journals,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::format;

    #[test]
    fn shard_zero_is_the_root_and_the_others_are_named_directories() {
        let root = Path::new("/var/lib/aggregator");
        assert_eq!(shard_dir(root, 0), root);
        assert_eq!(shard_dir(root, 3), root.join("shard-03"));
        assert_eq!(shard_of_name("shard-03"), Some(3));
        assert_eq!(shard_of_name("shard-00"), None, "shard 0 is the root");
        assert_eq!(shard_of_name("shard-64"), None);
        assert_eq!(shard_of_name("shard-3"), None);
        assert_eq!(shard_of_name("segment-00000000000000000001.seg"), None);
    }

    #[test]
    fn every_shard_directory_is_listed_in_order_and_files_are_not() {
        let root = std::env::temp_dir().join(format!("layout-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for name in ["shard-12", "shard-02", "shard-xx"] {
            fs::create_dir_all(root.join(name)).unwrap();
        }
        fs::write(root.join("shard-05"), b"a file").unwrap();
        let listed = list_shards(&root).unwrap();
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(
            listed,
            vec![
                (0, root.clone()),
                (2, root.join("shard-02")),
                (12, root.join("shard-12"))
            ]
        );
    }

    #[test]
    fn each_shard_lists_its_own_segments_and_an_empty_shard_is_listed_empty() {
        let root = std::env::temp_dir().join(format!("layout-segments-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for (shard, index) in [(0, 1), (0, 2), (2, 7)] {
            let dir = shard_dir(&root, shard);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(format::segment_name(index)), format::MAGIC).unwrap();
        }
        fs::create_dir_all(shard_dir(&root, 1)).unwrap();
        let listed = list_shard_segments(&root).unwrap();
        fs::remove_dir_all(&root).unwrap();
        let found: Vec<_> = listed
            .iter()
            .map(|s| {
                (
                    s.shard,
                    s.segments.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(found, vec![(0, vec![1, 2]), (1, vec![]), (2, vec![7])]);
        let shard_two = &listed[2];
        assert_eq!(shard_two.dir, root.join("shard-02"));
        assert_eq!(
            shard_two.segments[0].1,
            root.join("shard-02").join(format::segment_name(7))
        );
    }
}
