//! The keep-alive: a source with nothing to send (a satellite between passes) sends PING, the
//! daemon answers PONG with the same token, and the connection outlives the idle timeout; a source
//! that sends nothing at all is closed (`tests/ingest_bad_input.rs`).

mod common;

use std::time::Duration;

use aggregator::protocol::ingest::{CloseReason, ServerMessage};
use aggregator::SourceKind;
use common::{ping_bytes, test_config, Archive, Client, TestDaemon};

#[tokio::test]
async fn a_quiet_source_that_pings_stays_connected_past_the_idle_timeout() {
    let mut config = test_config();
    let idle_timeout = Duration::from_millis(200);
    config.connection.idle_timeout = idle_timeout;
    let (archive, sink) = Archive::open();
    let daemon = TestDaemon::start(config, sink).await;
    let mut client = Client::source(daemon.uplink, SourceKind::LiveUplink, 4).await;
    client.send_routine(0..5).await;
    // Five idle timeouts with nothing but a PING every quarter of one, each answered.
    for token in 0..20u64 {
        tokio::time::sleep(idle_timeout / 4).await;
        client.send_raw(&ping_bytes(token)).await;
        loop {
            match client.recv_message().await {
                ServerMessage::Pong(answered) => {
                    assert_eq!(answered, token);
                    break;
                }
                ServerMessage::Ack { .. } => {}
                other => panic!("expected PONG {token}, got {other:?}"),
            }
        }
    }
    client.send_routine(5..10).await;
    client.finish_sending().await;
    let closed = client.read_to_close().await;
    assert_eq!(closed.reason, CloseReason::EndOfStream, "{}", closed.detail);
    assert_eq!(closed.final_ack, Some(9));
    assert_eq!(
        archive.sequences(SourceKind::LiveUplink, 4),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(daemon.stats.snapshot().protocol_errors, 0);
}
