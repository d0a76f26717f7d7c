//! `aggregator tail`: a running daemon's archive, frame by frame, through its follow listener.

use std::process::ExitCode;

use aggregator::follow::client::{self, TailOptions};
use aggregator::follow::protocol::Subscription;

use crate::TailArgs;

/// Prints frames until --limit or the daemon's END.
pub(crate) fn run(args: TailArgs) -> ExitCode {
    let subscription = Subscription::new(args.from, args.source, args.priority);
    let subscription = subscription.within(args.since, args.until);
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
