//! `aggregator recording inspect`: a station's recording read through as a backfill would read
//! it, so that an operator knows before importing what a file holds and what it cost: its
//! format, frames, earth-receive times and damaged ranges.

use std::io::{self, Write};
use std::process::ExitCode;

use aggregator::domain::display::unix_ns_to_rfc3339;
use aggregator::links::recording::{
    Damage, RecordedFrame, RecordedItem, Recording, RecordingError,
};
use serde::Serialize;

use crate::cli::{RecordingInspectArgs, RecordingTool};

/// The damaged ranges a JSON report lists; the rest are counted.
const JSON_DAMAGE: usize = 1000;

pub(crate) fn run(tool: RecordingTool) -> ExitCode {
    match tool {
        RecordingTool::Inspect(args) => inspect(&args),
    }
}

/// What a recording holds, as `--json` prints it.
#[derive(Debug, Default, Serialize)]
struct Report {
    file: String,
    format: String,
    detected: bool,
    compression: &'static str,
    frames: u64,
    payload_bytes: u64,
    bytes: u64,
    first_earth_received: Option<String>,
    last_earth_received: Option<String>,
    damaged_ranges: u64,
    damaged_bytes: u64,
    damaged: Vec<DamageLine>,
    error: Option<String>,
    /// Where the last damaged range (or piece of one) ended: a long range comes in pieces.
    #[serde(skip)]
    damage_end: Option<u64>,
}

#[derive(Debug, Serialize)]
struct DamageLine {
    start: u64,
    end: u64,
    reason: String,
}

fn says(problem: impl std::fmt::Display) {
    eprintln!("aggregator recording inspect: {problem}");
}

fn inspect(args: &RecordingInspectArgs) -> ExitCode {
    let naming = match args.naming() {
        Ok(naming) => naming,
        Err(why) => {
            says(why);
            return ExitCode::from(2);
        }
    };
    let mut recording = match Recording::open(&args.file, &naming) {
        Ok(recording) => recording,
        Err(err) => {
            match err {
                RecordingError::Undetected { .. } => {
                    says(format_args!("{err}; name it with --format"))
                }
                err => says(err),
            }
            return ExitCode::from(2);
        }
    };
    let mut report = Report {
        file: args.file.display().to_string(),
        format: recording.format().to_string(),
        detected: recording.detected(),
        compression: recording.compression().as_str(),
        ..Report::default()
    };
    let mut out = io::stdout().lock();
    let written = read_through(&mut recording, &mut report, args.json, &mut out)
        .and_then(|()| print(&report, args.json, &mut out));
    if let Err(err) = written {
        says(format_args!("writing the report: {err}"));
        return ExitCode::from(2);
    }
    match (&report.error, report.damaged_ranges) {
        (Some(err), _) => {
            says(err);
            ExitCode::from(2)
        }
        (None, 0) => ExitCode::SUCCESS,
        (None, _) => ExitCode::FAILURE,
    }
}

/// Reads every item into `report`; damaged ranges are printed as they come, unless in JSON.
fn read_through(
    recording: &mut Recording,
    report: &mut Report,
    json: bool,
    out: &mut dyn Write,
) -> io::Result<()> {
    if !json {
        let how = if report.detected { "detected" } else { "named" };
        writeln!(
            out,
            "{}: {} ({how}), {}",
            report.file, report.format, report.compression
        )?;
    }
    for item in recording.by_ref() {
        match item {
            Ok(RecordedItem::Frame(frame)) => report.frame(&frame),
            Ok(RecordedItem::Damage(damage)) => {
                report.damage(&damage);
                if !json {
                    let (start, end) = (damage.start, damage.end);
                    let len = end - start;
                    writeln!(
                        out,
                        "damaged bytes {start}..{end} ({len} bytes): {}",
                        damage.reason
                    )?;
                }
            }
            Err(err) => report.error = Some(err.to_string()),
        }
    }
    report.bytes = recording.bytes_read();
    Ok(())
}

impl Report {
    fn frame(&mut self, frame: &RecordedFrame) {
        self.frames += 1;
        self.payload_bytes += frame.payload.len() as u64;
        if let Some(time) = frame.earth_unix_ns.map(unix_ns_to_rfc3339) {
            self.first_earth_received
                .get_or_insert_with(|| time.clone());
            self.last_earth_received = Some(time);
        }
    }

    fn damage(&mut self, damage: &Damage) {
        self.damaged_bytes += damage.end - damage.start;
        let goes_on = self.damage_end.replace(damage.end) == Some(damage.start);
        if goes_on {
            if let Some(last) = self.damaged.last_mut().filter(|l| l.end == damage.start) {
                last.end = damage.end;
            }
            return;
        }
        self.damaged_ranges += 1;
        if self.damaged.len() < JSON_DAMAGE {
            self.damaged.push(DamageLine {
                start: damage.start,
                end: damage.end,
                reason: damage.reason.to_string(),
            });
        }
    }
}

/// The summary: lines after the damaged ranges, or the whole report as JSON.
fn print(report: &Report, json: bool, out: &mut dyn Write) -> io::Result<()> {
    if json {
        let text = serde_json::to_string(report).map_err(io::Error::other)?;
        return writeln!(out, "{text}");
    }
    writeln!(
        out,
        "frames {}, payload bytes {}, bytes {}",
        report.frames, report.payload_bytes, report.bytes
    )?;
    match (&report.first_earth_received, &report.last_earth_received) {
        (Some(first), Some(last)) => writeln!(out, "earth received {first} to {last}")?,
        _ => writeln!(out, "earth received: no times in the file")?,
    }
    writeln!(
        out,
        "damaged ranges {}, damaged bytes {}",
        report.damaged_ranges, report.damaged_bytes
    )
}
