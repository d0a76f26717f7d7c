//! Reception metadata end to end (`docs/ground-segment.md`, "Reception metadata"): a KISS link
//! fed by a TNC the test plays stores each packet with its link, station, mode, AX.25 addresses
//! and the earth-receive time of the KISS time frame (command `09`) before it; `aggregator tail
//! --json`, `GET /archive/frames` and `aggregator archive export` show them; a time frame of the
//! wrong length is bad input and the next packet goes without; another port's is passed over.

mod common;

use std::process::Command;

use aggregator::archive::read::Start;
use aggregator::follow::client::Follower;
use aggregator::follow::protocol::Subscription;
use aggregator::protocol::ax25::{self, Callsign};
use aggregator::protocol::kiss;
use common::process::{json_field, Daemon};
use common::{http_get, http_get_json, kiss_time_frame, packet, wait_until_async, PATIENCE};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// The earth-receive time of the first packet, in Unix milliseconds.
const EARTH_MS: u64 = 1_700_000_000_123;

/// A UI frame from N0CALL-1 to CQ holding packet `i`, as one KISS data frame of `port`.
fn ui_frame(i: u16, port: u8, wire: &mut Vec<u8>) {
    let call = |text: &str| text.parse::<Callsign>().unwrap();
    let mut frame = Vec::new();
    ax25::encode(call("CQ"), call("N0CALL-1"), &[], &packet(i), &mut frame);
    kiss::encode(port, &frame, wire);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn lines(bytes: &[u8]) -> Vec<Value> {
    (String::from_utf8_lossy(bytes).lines())
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

#[tokio::test]
async fn a_links_reception_is_stored_and_shown() {
    let tnc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = tnc.local_addr().unwrap();
    let extra = format!(
        "[consumer]\nenabled = true\nlisten = \"127.0.0.1:0\"\n\
         [[links]]\nname = \"uhf\"\nstation = \"Svalbard, SG-1\"\ntransport = \"tcp-connect\"\n\
         address = \"{address}\"\nframing = \"kiss\"\nkiss_payload = \"ax25\"\nkiss_port = 0\n\
         source_id = 500\nplayback = true\n"
    );
    let daemon = Daemon::start_configured("reception", "json", &extra);
    let listening = daemon.logged(&["aggregator listening"]).unwrap();
    let consumer = json_field(&listening, "consumer").to_string();

    let mut wire = Vec::new();
    kiss_time_frame(0, &EARTH_MS.to_be_bytes(), &mut wire);
    // docs/ground-segment.md's example.
    let documented = [0xC0, 0x09, 0, 0, 0x01, 0x8B, 0xCF, 0xE5, 0x68, 0x7B, 0xC0];
    assert_eq!(wire, documented);
    ui_frame(0, 0, &mut wire);
    ui_frame(1, 0, &mut wire);
    kiss_time_frame(0, &[1, 2, 3], &mut wire);
    ui_frame(2, 0, &mut wire);
    kiss_time_frame(1, &(EARTH_MS + 9).to_be_bytes(), &mut wire);
    ui_frame(3, 0, &mut wire);
    let (mut station, _) = tokio::time::timeout(PATIENCE, tnc.accept())
        .await
        .unwrap()
        .unwrap();
    station.write_all(&wire).await.unwrap();
    wait_until_async("4 packets stored", PATIENCE, || async {
        let stats = http_get_json(daemon.monitor, "/stats").await;
        stats["links"][0]["packets"] == 4
    })
    .await;
    let stats = http_get_json(daemon.monitor, "/stats").await;
    assert_eq!(stats["links"][0]["bad_input"], 1, "the short time frame");

    let tail = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["tail", "--json", "--limit", "4", "--addr", &consumer])
        .output()
        .unwrap();
    assert!(tail.status.success(), "{tail:?}");
    let tailed = lines(&tail.stdout);
    let earth = "2023-11-14T22:13:20.123000000Z";
    for (i, frame) in tailed.iter().enumerate() {
        assert_eq!(frame["payload_hex"], hex(&packet(i as u16)), "{frame}");
        assert_eq!(
            (&frame["link"], &frame["station"], &frame["mode"]),
            (&"uhf".into(), &"Svalbard, SG-1".into(), &"playback".into())
        );
        assert_eq!(
            (&frame["ax25_from"], &frame["ax25_to"]),
            (&"N0CALL-1".into(), &"CQ".into())
        );
        let expected = if i == 0 { earth.into() } else { Value::Null };
        assert_eq!(frame["earth_received"], expected, "packet {i}");
    }

    // A follower of protocol version 3 gets the same frames without their reception.
    let mut v3 = Subscription::new(Start::Oldest, Vec::new(), None);
    v3.version = 3;
    let mut follower = Follower::subscribe(consumer.parse().unwrap(), &v3, None)
        .await
        .unwrap();
    for i in 0..4 {
        let frame = follower.next().await.unwrap().unwrap();
        assert_eq!(frame.frame.payload, packet(i));
        assert_eq!(frame.frame.reception, None);
    }

    let (status, _, body) = http_get(daemon.monitor, "/archive/frames?format=ndjson").await;
    assert_eq!(status, 200, "{body}");
    let rows = lines(common::dechunked(&body).as_bytes());
    assert_eq!(rows.len(), 4);
    assert_eq!(
        (&rows[0]["earth_received"], &rows[0]["station"]),
        (&earth.into(), &"Svalbard, SG-1".into())
    );
    let (status, _, csv) = http_get(daemon.monitor, "/archive/frames?format=csv").await;
    assert_eq!(status, 200, "{csv}");
    let csv = common::dechunked(&csv);
    let csv: Vec<&str> = csv.lines().collect();
    assert!(
        csv[0].ends_with(",link,station,mode,earth_received,ax25_from,ax25_to,recording"),
        "{}",
        csv[0]
    );
    assert!(
        csv[1].ends_with(&format!(
            ",uhf,\"Svalbard, SG-1\",playback,{earth},N0CALL-1,CQ,"
        )),
        "{}",
        csv[1]
    );
    assert!(
        csv[2].ends_with(",uhf,\"Svalbard, SG-1\",playback,,N0CALL-1,CQ,"),
        "{}",
        csv[2]
    );
    drop(station);
}
