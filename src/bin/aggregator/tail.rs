//! `aggregator tail`: a running daemon's archive, frame by frame, through its follow listener.

use std::process::ExitCode;
use std::time::SystemTime;

use aggregator::follow::client::{self, TailOptions};
use aggregator::follow::protocol::Subscription;

use crate::cli::{at, TailArgs};

/// Prints frames until --limit or the daemon's END.
pub(crate) fn run(args: TailArgs) -> ExitCode {
    let (since, until) = match window(&args) {
        Ok(window) => window,
        Err(why) => {
            eprintln!("aggregator tail: {why}");
            return ExitCode::from(2);
        }
    };
    let subscription = Subscription::new(args.from, args.source, args.priority);
    let subscription = subscription.within(since, until);
    if subscription.filter.is_backwards(None) {
        eprintln!("aggregator tail: --since is after --until");
        return ExitCode::from(2);
    }
    let options = TailOptions {
        addr: args.addr,
        subscription: match args.from_oldest_on_gap {
            true => subscription.going_on_past_gaps(),
            false => subscription,
        },
        limit: args.limit,
        json: args.json,
        tls: match args.tls.client() {
            Ok(tls) => tls,
            Err(err) => {
                eprintln!("aggregator tail: {err}");
                return ExitCode::from(2);
            }
        },
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("aggregator tail: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    match runtime.block_on(client::tail(&options, &mut out)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("aggregator tail: {err}");
            ExitCode::FAILURE
        }
    }
}

/// --since and --until, their times ago counted back from one reading of the clock, so that they
/// are as far apart as they say.
fn window(args: &TailArgs) -> Result<(Option<u64>, Option<u64>), String> {
    let now = SystemTime::now();
    let since = at(args.since.as_ref(), now).map_err(|why| format!("--since: {why}"))?;
    let until = at(args.until.as_ref(), now).map_err(|why| format!("--until: {why}"))?;
    Ok((since, until))
}
