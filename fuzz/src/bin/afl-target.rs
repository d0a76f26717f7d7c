//! The AFL++ entry point: `afl-target NAME` fuzzes the target of that name ([`TARGETS`]).

use aggregator_fuzz::TARGETS;

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(target) = TARGETS.iter().find(|t| t.name == name) else {
        let names: Vec<_> = TARGETS.iter().map(|t| t.name).collect();
        eprintln!("usage: afl-target NAME, NAME one of {}", names.join(", "));
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| (target.run)(data));
}
