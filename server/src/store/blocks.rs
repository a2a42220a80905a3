//! Observation blocks: the observations of a write batch, stored once, as
//! zstd-compressed JSON lines (one observation per line, in the order they
//! were written), at most [`BLOCK_MAX_OBSERVATIONS`] or
//! [`BLOCK_MAX_JSON_BYTES`] per block.
//!
//! A block is named by a random 64-bit `id` chosen when it is encoded, so a
//! flow can refer to one of its observations as `(block id, line)` before the
//! block reaches the database. A line deleted by retention becomes empty, so
//! the lines after it keep their number.

use std::hash::{Hash, Hasher};

use flowscope_model::{BrokerMessage, Observation, SpanObservation};

use super::{Result, StoreError};

/// Observations per block, at most: a flow read decompresses whole blocks,
/// so they stay small (~10–20 KB compressed), while still large enough for
/// zstd to find the repetition between events.
pub(super) const BLOCK_MAX_OBSERVATIONS: usize = 128;
/// JSON bytes per block, at most (large observations, such as topology snapshots).
pub(super) const BLOCK_MAX_JSON_BYTES: usize = 128 * 1024;
/// zstd's default level: ~5× on the shop's events at a few hundred MB/s.
const ZSTD_LEVEL: i32 = 3;

/// One row of `observation_blocks`, ready to insert.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct BlockRow {
    pub id: i64,
    pub min_unix_us: i64,
    pub max_unix_us: i64,
    pub num_observations: i64,
    /// zstd of the JSON lines.
    pub data: Vec<u8>,
    /// `(identity, line)` of the messages and spans in it, for flows to refer to.
    pub identities: Vec<(u64, u32)>,
}

/// Encodes observations into blocks, in order.
pub(super) fn encode_blocks(observations: &[&Observation]) -> Result<Vec<BlockRow>> {
    let mut blocks = Vec::new();
    let mut builder = Builder::default();
    for observation in observations {
        builder.push(observation)?;
        if builder.lines >= BLOCK_MAX_OBSERVATIONS || builder.json.len() >= BLOCK_MAX_JSON_BYTES {
            blocks.push(std::mem::take(&mut builder).finish()?);
        }
    }
    if builder.lines > 0 {
        blocks.push(builder.finish()?);
    }
    Ok(blocks)
}

#[derive(Default)]
struct Builder {
    json: Vec<u8>,
    lines: usize,
    min_unix_us: i64,
    max_unix_us: i64,
    identities: Vec<(u64, u32)>,
}

impl Builder {
    fn push(&mut self, observation: &Observation) -> Result<()> {
        let at = observed_unix_us(observation);
        if self.lines == 0 {
            (self.min_unix_us, self.max_unix_us) = (at, at);
        }
        self.min_unix_us = self.min_unix_us.min(at);
        self.max_unix_us = self.max_unix_us.max(at);
        if let Some(identity) = observation_identity(observation) {
            self.identities.push((identity, self.lines as u32));
        }
        serde_json::to_writer(&mut self.json, observation).map_err(|source| StoreError::Json {
            what: "encode an observation",
            source,
        })?;
        self.json.push(b'\n');
        self.lines += 1;
        Ok(())
    }

    fn finish(self) -> Result<BlockRow> {
        Ok(BlockRow {
            id: new_block_id(),
            min_unix_us: self.min_unix_us,
            max_unix_us: self.max_unix_us,
            num_observations: self.lines as i64,
            data: compress(&self.json)?,
            identities: self.identities,
        })
    }
}

/// A random id: blocks are named before the database sees them, by several
/// servers at once on PostgreSQL.
fn new_block_id() -> i64 {
    let (high, _) = uuid::Uuid::new_v4().as_u64_pair();
    high as i64
}

thread_local! {
    /// One compression context per thread, reused: creating one (zeroing
    /// ~1 MiB of tables) per call took a quarter of the ingest CPU with the
    /// store on, as several small values of each flow are compressed.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

pub(super) fn compress(bytes: &[u8]) -> Result<Vec<u8>> {
    let error = |source| StoreError::Compression {
        what: "compress",
        source,
    };
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let compressor = match cell.as_mut() {
            Some(compressor) => compressor,
            None => cell.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(error)?),
        };
        compressor.compress(bytes).map_err(error)
    })
}

pub(super) fn decompress(bytes: &[u8]) -> Result<Vec<u8>> {
    zstd::stream::decode_all(bytes).map_err(|source| StoreError::Compression {
        what: "decompress",
        source,
    })
}

/// A block's lines, decompressed; an empty line is one retention deleted.
pub(super) struct BlockLines {
    json: Vec<u8>,
}

impl BlockLines {
    pub(super) fn decode(data: &[u8]) -> Result<Self> {
        Ok(Self {
            json: decompress(data)?,
        })
    }

    /// Every line with its number, deleted ones included (as empty).
    pub(super) fn lines(&self) -> impl Iterator<Item = (u32, &[u8])> {
        let json = self.json.strip_suffix(b"\n").unwrap_or(&self.json);
        json.split(|b| *b == b'\n')
            .enumerate()
            .filter(|_| !self.json.is_empty())
            .map(|(i, line)| (i as u32, line))
    }
}

/// Reads one stored line.
pub(super) fn decode_line(line: &[u8]) -> Result<Observation> {
    serde_json::from_slice(line).map_err(|source| StoreError::Json {
        what: "read a stored observation",
        source,
    })
}

/// What is left of a block after deleting its observations older than
/// `cutoff`: `None` when nothing was deleted; the new row otherwise (with
/// `num_observations` 0 when every line went).
pub(super) fn trim_block(data: &[u8], cutoff: i64) -> Result<Option<TrimmedBlock>> {
    let lines = BlockLines::decode(data)?;
    let mut json = Vec::with_capacity(lines.json.len());
    let (mut kept, mut deleted) = (0i64, 0u64);
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for (_, line) in lines.lines() {
        if !line.is_empty() {
            let at = observed_unix_us(&decode_line(line)?);
            if at < cutoff {
                deleted += 1;
            } else {
                json.extend_from_slice(line);
                kept += 1;
                (min, max) = (min.min(at), max.max(at));
            }
        }
        json.push(b'\n');
    }
    if deleted == 0 {
        return Ok(None);
    }
    Ok(Some(TrimmedBlock {
        data: compress(&json)?,
        num_observations: kept,
        min_unix_us: if kept > 0 { min } else { cutoff },
        max_unix_us: if kept > 0 { max } else { cutoff },
        num_deleted: deleted,
    }))
}

/// A block after retention deleted some of its lines.
#[derive(Debug)]
pub(super) struct TrimmedBlock {
    pub data: Vec<u8>,
    pub num_observations: i64,
    pub min_unix_us: i64,
    pub max_unix_us: i64,
    pub num_deleted: u64,
}

/// When flowscope saw it.
pub(super) fn observed_unix_us(observation: &Observation) -> i64 {
    match observation {
        Observation::Publish(m) | Observation::Deliver(m) | Observation::DeadLetter(m) => {
            m.observed_unix_us
        }
        Observation::Span(s) => s.observed_unix_us,
        Observation::QueueSample(s) => s.observed_unix_us,
        Observation::Topology(t) => t.observed_unix_us,
    }
}

/// The identity of an observation a flow can hold (a message or a span).
pub(super) fn observation_identity(observation: &Observation) -> Option<u64> {
    match observation {
        Observation::Publish(m) | Observation::Deliver(m) | Observation::DeadLetter(m) => {
            Some(message_identity(m))
        }
        Observation::Span(s) => Some(span_identity(s)),
        _ => None,
    }
}

/// A message's identity: what tells one broker event from another (time to
/// the microsecond, where it went, which message), without encoding it
/// whole. Two messages equal in all of these are taken as the same event.
pub(super) fn message_identity(m: &BrokerMessage) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    (b'm', m.observed_unix_us, &m.vhost, &m.node, &m.exchange).hash(&mut h);
    (&m.routing_keys, &m.queue, &m.routed_queues, m.redelivered).hash(&mut h);
    (&m.connection, m.channel, &m.service, m.deaths.len()).hash(&mut h);
    let p = &m.properties;
    (&p.message_id, &p.correlation_id, &p.kind, p.timestamp).hash(&mut h);
    m.trace
        .as_ref()
        .map(|t| (&t.trace_id, &t.span_id))
        .hash(&mut h);
    m.body.as_ref().map(|b| b.content.len()).hash(&mut h);
    h.finish()
}

/// A span's identity: its trace and span ids, times and status.
pub(super) fn span_identity(s: &SpanObservation) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    (b's', &s.trace_id, &s.span_id, s.observed_unix_us).hash(&mut h);
    (s.start_unix_us, s.end_unix_us, &s.status.code, &s.service).hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowscope_model::{QueueSample, SampleSource};

    fn sample(t: i64) -> Observation {
        Observation::QueueSample(Box::new(QueueSample {
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
        }))
    }

    #[test]
    fn blocks_round_trip_and_trimming_keeps_line_numbers() {
        let observations: Vec<Observation> = (0..300).map(sample).collect();
        let refs: Vec<&Observation> = observations.iter().collect();
        let blocks = encode_blocks(&refs).unwrap();
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[0].num_observations, BLOCK_MAX_OBSERVATIONS as i64);
        assert_eq!((blocks[2].min_unix_us, blocks[2].max_unix_us), (256, 299));
        let lines = BlockLines::decode(&blocks[2].data).unwrap();
        let read: Vec<Observation> = lines
            .lines()
            .map(|(_, l)| decode_line(l).unwrap())
            .collect();
        assert_eq!(read, observations[256..]);

        let trimmed = trim_block(&blocks[2].data, 290).unwrap().unwrap();
        assert_eq!((trimmed.num_deleted, trimmed.num_observations), (34, 10));
        assert_eq!(trimmed.min_unix_us, 290);
        let lines = BlockLines::decode(&trimmed.data).unwrap();
        let kept: Vec<(u32, Observation)> = lines
            .lines()
            .filter(|(_, l)| !l.is_empty())
            .map(|(i, l)| (i, decode_line(l).unwrap()))
            .collect();
        assert_eq!(kept[0], (34, sample(290)));
        assert_eq!(kept.len(), 10);
        assert!(trim_block(&trimmed.data, 290).unwrap().is_none());
    }
}
