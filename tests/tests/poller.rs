//! The management poller reads the depth of a queue the firehose shows a
//! message routed into, before the management API lists it.

use std::time::Duration;

use flowscope_collectors::config::{FirehoseConfig, ManagementConfig};
use flowscope_model::{Observation, SampleSource};
use flowscope_tests::amqp::{connect, publish, queue, wait_until_tapped};
use flowscope_tests::broker::TestVhost;
use flowscope_tests::observe::{CollectorSetup, ObservationLog, start_collectors};
use lapin::BasicProperties;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;

const WAIT: Duration = Duration::from_secs(15);

/// Whether `queue` was read by passive declare.
fn read_exactly(log: &ObservationLog, queue: &str) -> bool {
    log.all().iter().any(|o| {
        matches!(o, Observation::QueueSample(s)
            if s.queue == queue && s.source == SampleSource::PassiveDeclare)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_is_read_as_soon_as_a_message_is_routed_into_it() {
    let vhost = TestVhost::create().await.unwrap();
    let (_conn, ch) = connect(&vhost, "test-app").await;
    // The management API is asked for the queue list once, at the start.
    let management = ManagementConfig {
        poll_interval_ms: 3_600_000,
        topology_interval_ms: 3_600_000,
        ..Default::default()
    };
    let (_collectors, rx) = start_collectors(
        &vhost,
        CollectorSetup {
            firehose: Some(FirehoseConfig::default()),
            management: Some(management),
            ..Default::default()
        },
    );
    let log = ObservationLog::drain(rx);
    wait_until_tapped(&log, &ch).await;

    // Another connection's exclusive queue, routed into first: it cannot be
    // read, and must not stop the reads of the queues after it.
    let (_private_conn, private) = connect(&vhost, "private-app").await;
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    private
        .queue_declare("replies".into(), exclusive, FieldTable::default())
        .await
        .unwrap();
    publish(&ch, "", "replies", b"r", BasicProperties::default()).await;

    queue(&ch, "late", FieldTable::default()).await;
    for i in 0..3 {
        publish(
            &ch,
            "",
            "late",
            format!("{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    let started = std::time::Instant::now();
    let ready = log
        .wait_for(WAIT, "an exact count of the new queue", |o| match o {
            Observation::QueueSample(s)
                if s.queue == "late" && s.source == SampleSource::PassiveDeclare =>
            {
                s.messages_ready
            }
            _ => None,
        })
        .await;
    eprintln!("new queue read after {:?}", started.elapsed());
    assert_eq!(ready, 3, "the new queue's depth");
    assert!(!read_exactly(&log, "replies"), "exclusive: not readable");

    // Read on every round from now on: two more messages show in the exact count.
    publish(&ch, "", "late", b"3", BasicProperties::default()).await;
    publish(&ch, "", "late", b"4", BasicProperties::default()).await;
    log.wait_for(WAIT, "an exact count of 5", |o| match o {
        Observation::QueueSample(s)
            if s.queue == "late"
                && s.source == SampleSource::PassiveDeclare
                && s.messages_ready == Some(5) =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
}
