//! Rows to and from model types, for both backends: no SQL here.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use flowscope_model::{FlowDetail, FlowSummary, Hop, Observation, QueueSample, SampleSource};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::blocks::{self, BlockRow};
use super::items::ItemValue;
use super::{Result, StoreError, WriteBatch};

/// What a store URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StoreUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl StoreUrl {
    pub(super) fn parse(url: &str) -> Result<Self> {
        let unsupported = || StoreError::UnsupportedUrl {
            url: redact_url(url),
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(url.to_owned()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(unsupported)?;
        let path = path.split('?').next().unwrap_or_default();
        if path.is_empty() {
            return Err(unsupported());
        }
        Ok(StoreUrl::Sqlite(PathBuf::from(path)))
    }
}

/// The URL with its password, if any, masked: fit for logs and errors.
pub(super) fn redact_url(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    let authority = &url[start..end];
    if let Some(at) = authority.rfind('@')
        && let Some(colon) = authority[..at].find(':')
    {
        return format!("{}:***{}", &url[..start + colon], &url[start + at..]);
    }
    url.to_owned()
}

/// One row of `queue_samples`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SampleRow {
    pub vhost: String,
    pub queue: String,
    pub unix_us: i64,
    pub source: &'static str,
    pub ready: Option<i64>,
    pub unacked: Option<i64>,
    pub consumers: Option<i64>,
    pub publish_rate: Option<f64>,
    pub deliver_rate: Option<f64>,
    pub ack_rate: Option<f64>,
    pub head_message_timestamp: Option<i64>,
}

/// `queue_samples` columns as read back, in [`super::sql::SAMPLE_COLUMNS`] order.
pub(super) type SampleTuple = (
    String,
    String,
    i64,
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<i64>,
);

/// One row of `flows`, with the flow's rows of `flow_keys`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FlowRow {
    pub id: String,
    pub business_key: Option<String>,
    pub status: &'static str,
    pub started_unix_us: i64,
    pub last_seen_unix_us: i64,
    pub services: String,
    pub event_types: String,
    /// zstd of the summary's JSON (~35 % smaller: a flow is rewritten as it grows).
    pub summary: Vec<u8>,
    /// zstd of the hops' JSON.
    pub hops: Vec<u8>,
    /// The values the flow can be looked up by, each once, sorted.
    pub keys: Vec<String>,
    /// How many of `items` are messages (the spans follow).
    pub num_messages: usize,
    /// The messages and spans with their identities, to be stored as
    /// references to their observations where the store knows them.
    pub items: Vec<(u64, ItemValue)>,
}

/// One row of `alerts`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct AlertRow {
    pub id: String,
    pub updated_unix_us: i64,
    pub doc: String,
}

/// A [`WriteBatch`] encoded, ready for one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct BatchRows {
    /// The observations (queue samples aside), in blocks.
    pub blocks: Vec<BlockRow>,
    pub samples: Vec<SampleRow>,
    /// Each flow once (its last version in the batch).
    pub flows: Vec<FlowRow>,
    pub deleted_flows: Vec<String>,
    /// Each alert once (its last version in the batch).
    pub alerts: Vec<AlertRow>,
}

impl BatchRows {
    /// Encodes a batch; fails on an alert without an id.
    pub(super) fn encode(batch: WriteBatch) -> Result<Self> {
        let mut rows = BatchRows::default();
        let mut kept = Vec::with_capacity(batch.observations.len());
        for observation in &batch.observations {
            match observation {
                Observation::QueueSample(sample) => rows.samples.push(sample_row(sample)),
                other => kept.push(other),
            }
        }
        rows.blocks = blocks::encode_blocks(&kept)?;
        rows.flows = last_by_key(batch.flows, |f| f.summary.id.clone())
            .into_iter()
            .map(flow_row)
            .collect::<Result<_>>()?;
        rows.deleted_flows = batch.deleted_flows;
        let alerts = batch
            .alerts
            .into_iter()
            .map(alert_row)
            .collect::<Result<Vec<_>>>()?;
        rows.alerts = last_by_key(alerts, |a| a.id.clone());
        Ok(rows)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.num_rows() == 0
    }

    /// Items written (keys aside): observations, not their blocks.
    pub(super) fn num_rows(&self) -> usize {
        self.num_observations()
            + self.samples.len()
            + self.flows.len()
            + self.deleted_flows.len()
            + self.alerts.len()
    }
}

impl BatchRows {
    /// Observations in the blocks.
    pub(super) fn num_observations(&self) -> usize {
        self.blocks
            .iter()
            .map(|b| usize::try_from(b.num_observations).unwrap_or(0))
            .sum()
    }
}

/// Each item once, its last occurrence kept, in the order of those.
fn last_by_key<T, K: std::hash::Hash + Eq>(items: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut last = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        last.insert(key(item), i);
    }
    items
        .into_iter()
        .enumerate()
        .filter(|(i, item)| last.get(&key(item)) == Some(i))
        .map(|(_, item)| item)
        .collect()
}

fn sample_row(s: &QueueSample) -> SampleRow {
    let int = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    SampleRow {
        vhost: s.vhost.clone(),
        queue: s.queue.clone(),
        unix_us: s.observed_unix_us,
        source: s.source.as_str(),
        ready: int(s.messages_ready),
        unacked: int(s.messages_unacked),
        consumers: int(s.consumers),
        publish_rate: s.publish_rate,
        deliver_rate: s.deliver_rate,
        ack_rate: s.ack_rate,
        head_message_timestamp: s.head_message_timestamp,
    }
}

/// A queue sample from its row.
pub(super) fn sample_from_tuple(t: SampleTuple) -> QueueSample {
    let (vhost, queue, unix_us, source, ready, unacked, consumers, publish, deliver, ack, head) = t;
    let uint = |v: Option<i64>| v.map(|v| u64::try_from(v).unwrap_or(0));
    QueueSample {
        observed_unix_us: unix_us,
        source: match source.as_str() {
            "passive_declare" => SampleSource::PassiveDeclare,
            "firehose" => SampleSource::Firehose,
            _ => SampleSource::Management,
        },
        vhost,
        queue,
        messages_ready: uint(ready),
        messages_unacked: uint(unacked),
        consumers: uint(consumers),
        publish_rate: publish,
        deliver_rate: deliver,
        ack_rate: ack,
        head_message_timestamp: head,
    }
}

fn flow_row(flow: FlowDetail) -> Result<FlowRow> {
    let keys = flow_keys(&flow);
    let hops = blocks::compress(to_json(&flow.hops, "encode a flow's hops")?.as_bytes())?;
    let s = &flow.summary;
    let num_messages = flow.messages.len();
    let mut items = Vec::with_capacity(num_messages + flow.spans.len());
    for m in flow.messages {
        items.push((
            blocks::message_identity(&m),
            ItemValue::Message(Box::new(m)),
        ));
    }
    for span in flow.spans {
        items.push((blocks::span_identity(&span), ItemValue::Span(span)));
    }
    Ok(FlowRow {
        id: s.id.clone(),
        business_key: s.key.clone(),
        status: s.status.as_str(),
        started_unix_us: s.started_unix_us,
        last_seen_unix_us: s.last_seen_unix_us,
        services: list_text(&s.services),
        event_types: list_text(&s.event_types),
        summary: blocks::compress(to_json(s, "encode a flow summary")?.as_bytes())?,
        hops,
        keys,
        num_messages,
        items,
    })
}

/// The identifiers a flow can be looked up by (its business key, trace
/// ids, message ids, correlation ids), each once, sorted. Their kind is not
/// kept: a lookup matches any of them.
pub(super) fn flow_keys(flow: &FlowDetail) -> Vec<String> {
    let mut keys = BTreeSet::new();
    let mut add = |value: Option<&str>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            keys.insert(v.to_owned());
        }
    };
    let s = &flow.summary;
    add(s.key.as_deref());
    s.trace_ids.iter().for_each(|t| add(Some(t)));
    for hop in &flow.hops {
        add(Some(&hop.message_id));
    }
    for m in &flow.messages {
        add(m.properties.message_id.as_deref());
        add(m.properties.correlation_id.as_deref());
        add(m.trace.as_ref().map(|t| t.trace_id.as_str()));
    }
    for span in &flow.spans {
        add(Some(&span.trace_id.to_string()));
        let messaging = span.messaging.as_ref();
        add(messaging.and_then(|m| m.message_id()));
        add(messaging.and_then(|m| m.conversation_id()));
    }
    keys.into_iter().collect()
}

/// Whether an alert record has the string `"id"` it is stored by.
pub(super) fn has_alert_id(doc: &Value) -> bool {
    doc.get("id")
        .and_then(Value::as_str)
        .is_some_and(|id| !id.is_empty())
}

fn alert_row(doc: Value) -> Result<AlertRow> {
    let Some(id) = doc
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
    else {
        return Err(StoreError::AlertWithoutId {
            doc: doc.to_string().chars().take(200).collect(),
        });
    };
    let id = id.to_owned();
    let updated_unix_us = doc
        .get("updated_unix_us")
        .and_then(Value::as_i64)
        .unwrap_or_else(flowscope_model::now_unix_us);
    Ok(AlertRow {
        id,
        updated_unix_us,
        doc: to_json(&doc, "encode an alert")?,
    })
}

fn to_json<T: Serialize + ?Sized>(value: &T, what: &'static str) -> Result<String> {
    serde_json::to_string(value).map_err(|source| StoreError::Json { what, source })
}

fn from_json<T: for<'de> Deserialize<'de>>(json: &str, what: &'static str) -> Result<T> {
    serde_json::from_str(json).map_err(|source| StoreError::Json { what, source })
}

/// A flow's summary from its column (zstd of JSON).
pub(super) fn decode_summary(summary: &[u8]) -> Result<FlowSummary> {
    let json = blocks::decompress(summary)?;
    serde_json::from_slice(&json).map_err(|source| StoreError::Json {
        what: "read a stored flow summary",
        source,
    })
}

/// A flow's hops from their column.
pub(super) fn decode_hops(hops: &[u8]) -> Result<Vec<Hop>> {
    let json = blocks::decompress(hops)?;
    serde_json::from_slice(&json).map_err(|source| StoreError::Json {
        what: "read a stored flow's hops",
        source,
    })
}

pub(super) fn decode_alert(json: &str) -> Result<Value> {
    from_json(json, "read a stored alert")
}

/// A list as one text column, `|a|b|`, so that `|a|` finds a member.
pub(super) fn list_text(items: &[String]) -> String {
    let mut text = String::from("|");
    for item in items {
        text.push_str(item);
        text.push('|');
    }
    text
}

/// What finds `item` in a [`list_text`] column.
pub(super) fn list_needle(item: &str) -> String {
    format!("|{item}|")
}

/// A `LIKE … ESCAPE '\'` pattern matching any text containing `text`.
pub(super) fn like_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The bucket width that cuts `[min, max]` in at most `max_points` buckets.
pub(super) fn bucket_width(min: i64, max: i64, max_points: usize) -> i64 {
    let points = i64::try_from(max_points.max(1)).unwrap_or(i64::MAX);
    (max.saturating_sub(min) / points).saturating_add(1)
}

/// Keeps `max_points` samples, the last of each equal run, oldest first.
pub(super) fn thin_samples(samples: &mut Vec<QueueSample>, max_points: usize) {
    let len = samples.len();
    if len <= max_points || max_points == 0 {
        return;
    }
    let keep: BTreeSet<usize> = (1..=max_points)
        .map(|i| (i * len).div_ceil(max_points) - 1)
        .collect();
    let mut i = 0;
    samples.retain(|_| {
        i += 1;
        keep.contains(&(i - 1))
    });
}

/// A count from the database (never negative).
pub(super) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_passwords_are_masked() {
        assert_eq!(
            StoreUrl::parse("sqlite://data/flowscope.db").unwrap(),
            StoreUrl::Sqlite("data/flowscope.db".into())
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///tmp/x.db?mode=rwc").unwrap(),
            StoreUrl::Sqlite("/tmp/x.db".into())
        );
        assert!(matches!(
            StoreUrl::parse("postgresql://u@h/db"),
            Ok(StoreUrl::Postgres(_))
        ));
        assert!(StoreUrl::parse("mysql://x").is_err());
        assert!(StoreUrl::parse("sqlite://").is_err());
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db?x=1"),
            "postgres://u:***@h:5432/db?x=1"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn thinning_keeps_the_last_of_each_run() {
        let sample = |t| QueueSample {
            observed_unix_us: t,
            source: SampleSource::Management,
            vhost: "/".into(),
            queue: "q".into(),
            messages_ready: None,
            messages_unacked: None,
            consumers: None,
            publish_rate: None,
            deliver_rate: None,
            ack_rate: None,
            head_message_timestamp: None,
        };
        let mut samples: Vec<_> = (0..10).map(sample).collect();
        thin_samples(&mut samples, 3);
        let times: Vec<_> = samples.iter().map(|s| s.observed_unix_us).collect();
        assert_eq!(times, [3, 6, 9]);
        assert_eq!(like_pattern("a_b%"), "%a\\_b\\%%");
        assert_eq!(list_text(&["a".into(), "b".into()]), "|a|b|");
    }
}
