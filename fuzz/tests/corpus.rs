//! Replays every seed of every target's corpus (`corpus/TARGET/`) and every input that once made a
//! target fail (`regressions/TARGET/`) through the target, so that `cargo test` keeps what the
//! fuzzer found fixed, without AFL++ installed.

use std::fs;
use std::path::Path;

use aggregator_fuzz::TARGETS;

fn replay(folder: &str) -> usize {
    let mut replayed = 0;
    for target in TARGETS {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(folder)
            .join(target.name);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a corpus folder lists").path();
            let input = fs::read(&path).expect("a corpus file reads");
            eprintln!("{}", path.display());
            (target.run)(&input);
            replayed += 1;
        }
    }
    replayed
}

#[test]
fn every_seed_passes_every_target() {
    for target in TARGETS {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target.name);
        let seeds = fs::read_dir(&dir).map_or(0, |entries| entries.count());
        assert!(seeds > 0, "{} has no seeds", dir.display());
    }
    replay("corpus");
}

#[test]
fn every_input_that_once_failed_passes() {
    replay("regressions");
}
