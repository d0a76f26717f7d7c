//! `aggregator nats read`: the frames of the NATS sink's stream, read back as NDJSON.

use std::io::Write;
use std::process::ExitCode;

use aggregator::sinks::reader::read_stream;
use aggregator::Config;

use crate::cli::NatsReadArgs;

/// Prints the stream's frames the flags ask for, one JSON object a line.
pub(crate) fn run(args: NatsReadArgs) -> ExitCode {
    let fails = |why: &dyn std::fmt::Display, status| {
        eprintln!("aggregator nats read: {why}");
        ExitCode::from(status)
    };
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(err) => return fails(&err, 2),
    };
    let Some(nats) = config.sinks.nats else {
        let why = format!("{} has no [sinks.nats]", args.config.display());
        return fails(&why, 2);
    };
    let mut filter = match args.window.filter(std::time::SystemTime::now()) {
        Ok(filter) => filter,
        Err(why) => return fails(&why, 2),
    };
    filter.priority = args.priority;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fails(&format!("cannot start the runtime: {err}"), 1),
    };
    let (mut out, mut printed, mut bad) = (std::io::stdout().lock(), 0u64, 0u64);
    let limit = args.limit.unwrap_or(u64::MAX);
    if limit == 0 {
        return ExitCode::SUCCESS;
    }
    let read = runtime.block_on(read_stream(&nats, &filter, |frame| {
        match frame {
            Ok(frame) => match writeln!(out, "{}", frame.json()) {
                Ok(()) => printed += 1,
                Err(_) => return false,
            },
            Err((sequence, why)) => {
                bad += 1;
                eprintln!("aggregator nats read: stream sequence {sequence}: {why}");
            }
        }
        printed < limit
    }));
    match read {
        Ok(messages) => {
            eprintln!(
                "read {messages} messages of stream {}: {printed} frames printed, {bad} not frames",
                nats.stream
            );
            ExitCode::from(u8::from(bad > 0))
        }
        Err(err) => fails(&err, 1),
    }
}
