//! The `aggregator` daemon binary: the command line, and which module runs it. Each module says
//! its results in the binary's words, its reports on standard output and problems on standard
//! error, and gives the exit status; the work is the library's:
//! - `cli`: the flags and subcommands, as clap parses them.
//! - `serve`: the daemon itself (no subcommand): the config, logging, signals, listeners.
//! - `archive_cli`: `aggregator archive ...`, the tools on an archive directory, a file each.
//! - `catalog`: `aggregator catalog push`.
//! - `recording`: `aggregator recording inspect`, a station's recording file read through.
//! - `tail`: `aggregator tail`, a running daemon's frames as they come.
//! - `nats`: `aggregator nats read`, the NATS sink's stream read back.

mod archive_cli;
mod backfill;
mod catalog;
mod cli;
mod nats;
mod recording;
mod serve;
mod tail;
mod version;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, NatsTool};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Archive { tool }) => archive_cli::run(tool),
        Some(Command::Backfill(args)) => backfill::run(args),
        Some(Command::Catalog { tool }) => catalog::run(tool),
        Some(Command::Recording { tool }) => recording::run(tool),
        Some(Command::Tail(args)) => tail::run(args),
        Some(Command::Nats {
            tool: NatsTool::Read(args),
        }) => nats::run(args),
        None => serve::run(&cli),
    }
}
