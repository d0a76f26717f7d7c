//! Names the commit a binary was built from, for `aggregator --version`: `AGGREGATOR_COMMIT` when
//! the build sets it (a package built from a tarball), else `git rev-parse` of the tree, else
//! `unknown`. Cargo runs it again when HEAD moves.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=AGGREGATOR_COMMIT");
    let git = |args: &[&str]| {
        let out = Command::new("git").args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        out.status.success().then(|| text.trim().to_owned())
    };
    let head = git(&["symbolic-ref", "-q", "HEAD"]);
    for path in ["HEAD"].into_iter().chain(head.as_deref()) {
        if let Some(file) = git(&["rev-parse", "--path-format=absolute", "--git-path", path]) {
            println!("cargo:rerun-if-changed={file}");
        }
    }
    let commit = (std::env::var("AGGREGATOR_COMMIT").ok())
        .filter(|commit| !commit.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=AGGREGATOR_COMMIT={commit}");
}
