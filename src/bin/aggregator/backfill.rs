//! `aggregator backfill --link NAME FILE...`: station recordings into a running daemon, through
//! its monitor: each file is uploaded into the link's spool directory (`PUT
//! /links/{link}/spool/{file}`), and its import is followed (`GET` the same path) until the
//! daemon says every packet read from it is durable, or why it failed.
//!
//! One request at a time with `Connection: close`, as `catalog push` speaks to the monitor: no
//! HTTP client library. The file is streamed from the disk, so one of several GiB costs a
//! buffer.

use std::io::{IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use aggregator::catalog::push::{status_and_body, MonitorAccess};
use aggregator::tls::stream;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::catalog::monitor_access;
use crate::cli::BackfillArgs;

/// How many bytes of a file are sent at a time.
const SEND_BYTES: usize = 1 << 20;

/// How often an import's state is asked while it runs.
const ASK_EVERY: Duration = Duration::from_millis(250);

/// What the daemon says of a file (docs/http-api.md, "Backfill").
#[derive(Debug, Deserialize)]
struct Report {
    state: String,
    imported: Option<Imported>,
    reason: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct Imported {
    bytes: u64,
    packets: u64,
    stored: u64,
    held: u64,
    unplaced: u64,
    damaged_ranges: u64,
    /// Absent from a daemon before it.
    #[serde(default)]
    rejected: u64,
}

fn says(problem: impl std::fmt::Display) {
    eprintln!("aggregator backfill: {problem}");
}

pub(crate) fn run(args: BackfillArgs) -> ExitCode {
    let access = match monitor_access(args.token_file.as_deref(), &args.tls) {
        Ok(access) => access,
        Err(err) => {
            says(err);
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            says(format!("cannot start the runtime: {err}"));
            return ExitCode::from(2);
        }
    };
    let client = Client {
        addr: args.addr,
        access,
        link: args.link,
        terminal: std::io::stderr().is_terminal(),
    };
    let mut worst = 0u8;
    for file in &args.files {
        let status = match runtime.block_on(client.backfill(file)) {
            Ok(report) => client.summary(file, &report),
            Err(err) => {
                says(format!("{}: {err}", file.display()));
                2
            }
        };
        worst = worst.max(status);
    }
    ExitCode::from(worst)
}

/// The monitor and the link.
struct Client {
    addr: SocketAddr,
    access: MonitorAccess,
    link: String,
    terminal: bool,
}

impl Client {
    /// Uploads `file` and follows its import to its end.
    async fn backfill(&self, file: &Path) -> Result<Report, String> {
        let name = (file.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or("not a file name")?;
        let placed = self.upload(file, &name).await?;
        let path = spool_path(&self.link, &placed);
        let started = Instant::now();
        loop {
            let (status, body) = self.request("GET", &path, None).await?;
            if status != 200 {
                return Err(format!("HTTP {status}: {}", body.trim()));
            }
            let report: Report = serde_json::from_str(&body)
                .map_err(|err| format!("the daemon's answer is no report: {err}"))?;
            if matches!(report.state.as_str(), "done" | "failed") {
                self.clear();
                return Ok(report);
            }
            self.show_import(&report, started);
            tokio::time::sleep(ASK_EVERY).await;
        }
    }

    /// `PUT`s `file` as `name`; the name the daemon gave it.
    async fn upload(&self, file: &Path, name: &str) -> Result<String, String> {
        let open = std::fs::File::open(file).map_err(|err| format!("cannot read it: {err}"))?;
        let size = (open.metadata())
            .map_err(|err| format!("cannot read it: {err}"))?
            .len();
        let path = spool_path(&self.link, name);
        let (status, body) = self.request("PUT", &path, Some((open, size))).await?;
        if status != 201 {
            return Err(format!(
                "the daemon refused it (HTTP {status}): {}",
                body.trim()
            ));
        }
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        (answer["file"].as_str().map(str::to_owned))
            .ok_or_else(|| format!("the daemon's answer names no file: {}", body.trim()))
    }

    /// One request, with `body` streamed after the head; the status and the answer's body.
    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<(std::fs::File, u64)>,
    ) -> Result<(u16, String), String> {
        let unreachable =
            |err: std::io::Error| format!("cannot reach the monitor at {}: {err}", self.addr);
        let connected = TcpStream::connect(self.addr).await.map_err(unreachable)?;
        let (mut reader, mut writer) = stream::client(connected, self.access.tls.as_ref())
            .await
            .map_err(unreachable)?;
        let authorization = self.access.authorization();
        let length = body.as_ref().map_or(0, |(_, size)| *size);
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {length}\r\n{authorization}Connection: close\r\n\r\n",
            self.addr
        );
        writer
            .write_all(head.as_bytes())
            .await
            .map_err(unreachable)?;
        // A refusal may come before the body is read: a failed write is then not the story.
        let sent = match body {
            Some((file, size)) => self.send(&mut writer, file, size).await,
            None => Ok(()),
        };
        let sent = match sent {
            Ok(()) => writer.flush().await,
            failed => failed,
        };
        let mut answer = Vec::new();
        let read = reader.read_to_end(&mut answer).await;
        if answer.is_empty() {
            let err = sent.err().or(read.err());
            return Err(err.map_or("closed without an answer".into(), unreachable));
        }
        parse(&String::from_utf8_lossy(&answer))
    }

    /// Streams `file` (`size` bytes) into `writer`, showing the upload on a terminal.
    async fn send(
        &self,
        writer: &mut (impl AsyncWriteExt + Unpin),
        mut file: std::fs::File,
        size: u64,
    ) -> std::io::Result<()> {
        let (started, mut sent, mut buf) = (Instant::now(), 0u64, vec![0; SEND_BYTES]);
        let mut shown = Instant::now();
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            writer.write_all(&buf[..n]).await?;
            sent += n as u64;
            if shown.elapsed() >= ASK_EVERY || sent == size {
                shown = Instant::now();
                self.show_upload(sent, size, started);
            }
        }
    }
}

/// What a terminal shows while a file goes in; nothing elsewhere.
impl Client {
    fn show(&self, line: &str) {
        if self.terminal {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
        }
    }

    fn clear(&self) {
        self.show("");
    }

    fn show_upload(&self, sent: u64, size: u64, started: Instant) {
        let seconds = started.elapsed().as_secs_f64().max(1e-3);
        let rate = sent as f64 / seconds;
        let left = (size.saturating_sub(sent)) as f64 / rate.max(1.0);
        let percent = 100.0 * sent as f64 / (size.max(1) as f64);
        self.show(&format!(
            "uploading {percent:5.1} % {} of {} at {}/s, {left:.0} s left",
            mib(sent),
            mib(size),
            mib(rate as u64)
        ));
    }

    fn show_import(&self, report: &Report, started: Instant) {
        let imported = report.imported.unwrap_or_default();
        let seconds = started.elapsed().as_secs_f64().max(1e-3);
        self.show(&format!(
            "{} {}: {} packets read ({:.0}/s), {} stored, {} already held",
            report.state,
            mib(imported.bytes),
            imported.packets,
            imported.packets as f64 / seconds,
            imported.stored,
            imported.held
        ));
    }

    /// Prints the summary line of `file`; its exit status: 0 when every packet read from it is
    /// durable, 1 when it failed.
    fn summary(&self, file: &Path, report: &Report) -> u8 {
        let imported = report.imported.unwrap_or_default();
        let counts = format!(
            "packets {}, stored {}, already held {}, unplaced {}, damaged ranges {}, \
             rejected {}",
            imported.packets,
            imported.stored,
            imported.held,
            imported.unplaced,
            imported.damaged_ranges,
            imported.rejected
        );
        match report.state.as_str() {
            "done" => {
                println!("{}: durable: {counts}", file.display());
                0
            }
            _ => {
                let why = report.reason.as_deref().unwrap_or("no reason given");
                println!("{}: failed: {why}; {counts}", file.display());
                1
            }
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// `/links/LINK/spool/FILE`, each name percent-encoded but its unreserved characters.
fn spool_path(link: &str, file: &str) -> String {
    let encode = |name: &str| -> String {
        (name.bytes())
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect()
    };
    format!("/links/{}/spool/{}", encode(link), encode(file))
}

/// The status and body of an HTTP answer read to its end.
fn parse(answer: &str) -> Result<(u16, String), String> {
    let (status, body) = status_and_body(answer).ok_or_else(|| {
        let start: String = answer.chars().take(80).collect();
        format!("the monitor's answer is not HTTP: {start:?}")
    })?;
    Ok((status, body.to_owned()))
}
