//! `aggregator catalog push`: publishes a catalog file through a running daemon's monitor.

use std::path::Path;
use std::process::ExitCode;

use aggregator::catalog::push::{push, MonitorAccess, PushError};
use aggregator::tls::client::TlsArgs;

use crate::cli::CatalogTool;

/// Runs a catalog tool.
pub(crate) fn run(tool: CatalogTool) -> ExitCode {
    let CatalogTool::Push {
        file,
        addr,
        content_type,
        token_file,
        tls,
    } = tool;
    let access = match monitor_access(token_file.as_deref(), &tls) {
        Ok(access) => access,
        Err(err) => {
            eprintln!("aggregator catalog push: {err}");
            return ExitCode::from(2);
        }
    };
    let body = match std::fs::read(&file) {
        Ok(body) => body,
        Err(err) => {
            eprintln!(
                "aggregator catalog push: cannot read {}: {err}",
                file.display()
            );
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let pushed = match runtime {
        Ok(runtime) => runtime.block_on(push(addr, &content_type, &body, &access)),
        Err(err) => {
            eprintln!("aggregator catalog push: cannot start the runtime: {err}");
            return ExitCode::from(2);
        }
    };
    match pushed {
        Ok(version) => {
            println!(
                "catalog version {version} published ({} bytes, {content_type})",
                body.len()
            );
            ExitCode::SUCCESS
        }
        Err(err @ PushError::Refused { .. }) => {
            eprintln!("aggregator catalog push: {err}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("aggregator catalog push: {err}");
            ExitCode::from(2)
        }
    }
}

/// The monitor's TLS and token, from `--tls-*` and `--token-file`.
pub(crate) fn monitor_access(
    token_file: Option<&Path>,
    tls: &TlsArgs,
) -> Result<MonitorAccess, String> {
    let token = match token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|err| format!("--token-file: cannot read {}: {err}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let tls = tls.client().map_err(|err| err.to_string())?;
    Ok(MonitorAccess { tls, token })
}
