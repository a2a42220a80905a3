//! OTLP/protobuf export requests read straight into [`Observation::Span`]s.
//!
//! The same result as decoding with prost and converting with
//! [`spans_from_otlp`](super::convert::spans_from_otlp) (a test holds them
//! equal), without prost's owned intermediate types: ids go from the wire to
//! hex, attribute keys and values are copied once, into the observation,
//! and a request's resource and scope are read once for all its spans.
//!
//! The protobuf wire format, as far as OTLP traces use it: each field is a
//! varint key `(number << 3) | wire type`, then a varint (0), 8 bytes (1),
//! a length and that many bytes (2) or 4 bytes (5). Unknown fields are
//! skipped, repeated fields append, a singular field seen twice: the last
//! wins (messages merge), as protobuf prescribes.

use std::collections::BTreeMap;
use std::sync::Arc;

use flowscope_model::protobuf::{
    self, KeyValueRef, ProtobufError, Reader, Wire, check_key_value, read_key_value, simple_key,
};
use flowscope_model::{
    Attributes, MessagingAttributes, Observation, SpanEvent, SpanId, SpanKind, SpanLink,
    SpanObservation, SpanStatus, StatusCode, TraceId,
};
use serde_json::Value;
use smallvec::SmallVec;

use super::convert::{ConvertError, UNKNOWN_SERVICE, check_id, nanos_to_micros};

/// Why a request's bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The bytes are not protobuf, or not an export request.
    #[error("invalid protobuf ({0})")]
    Malformed(String),
    /// The request decodes, but a span in it is invalid.
    #[error(transparent)]
    Invalid(#[from] ConvertError),
}

type Result<T> = std::result::Result<T, WireError>;

fn malformed<T>(what: impl Into<String>) -> Result<T> {
    Err(WireError::Malformed(what.into()))
}

impl From<ProtobufError> for WireError {
    fn from(err: ProtobufError) -> Self {
        WireError::Malformed(err.0)
    }
}

fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str> {
    Ok(protobuf::utf8(bytes, what)?)
}

/// Reads every span of an encoded `ExportTraceServiceRequest`, or refuses
/// the whole request.
pub fn spans_from_protobuf(bytes: &[u8], observed_unix_us: i64) -> Result<Vec<Observation>> {
    let mut observations = Vec::new();
    let mut request = Reader::new(bytes);
    while let Some(field) = request.field()? {
        match field {
            (1, Wire::Len(resource_spans)) => {
                read_resource_spans(resource_spans, observed_unix_us, &mut observations)?;
            }
            (1, _) => return malformed("resource_spans is not a message"),
            _ => {}
        }
    }
    Ok(observations)
}

/// One `ResourceSpans`: the resource is read first, wherever it is on the wire.
fn read_resource_spans(bytes: &[u8], observed: i64, out: &mut Vec<Observation>) -> Result<()> {
    let mut resource = BTreeMap::new();
    // On the stack while they are few (here and for a scope's spans): lists
    // grown push by push reallocated a few times per request (2 % of the
    // profile of tiny spans; side by side 0.99× the build before).
    let mut scopes: SmallVec<[&[u8]; 4]> = SmallVec::new();
    let mut reader = Reader::new(bytes);
    while let Some(field) = reader.field()? {
        match field {
            (1, Wire::Len(res)) => read_resource(res, &mut resource)?,
            (2, Wire::Len(scope_spans)) => scopes.push(scope_spans),
            (1 | 2, _) => return malformed("resource_spans holds a field of the wrong type"),
            _ => {}
        }
    }
    let service = match resource.remove("service.name") {
        Some(Value::String(name)) if !name.is_empty() => name.into(),
        _ => UNKNOWN_SERVICE.into(),
    };
    let context = SpanContext {
        observed,
        service,
        resource: Arc::new(resource),
    };
    for scope_spans in scopes {
        read_scope_spans(scope_spans, &context, out)?;
    }
    Ok(())
}

/// What every span of one resource shares (one copy for them all).
struct SpanContext {
    observed: i64,
    service: Arc<str>,
    resource: Arc<BTreeMap<String, Value>>,
}

fn read_resource(bytes: &[u8], attributes: &mut BTreeMap<String, Value>) -> Result<()> {
    let mut reader = Reader::new(bytes);
    while let Some(field) = reader.field()? {
        match field {
            (1, Wire::Len(kv)) => read_key_value(kv, attributes, 0)?,
            (1, _) => return malformed("resource attributes are not key-values"),
            _ => {}
        }
    }
    Ok(())
}

fn read_scope_spans(bytes: &[u8], context: &SpanContext, out: &mut Vec<Observation>) -> Result<()> {
    let mut scope = "";
    let mut spans: SmallVec<[&[u8]; 32]> = SmallVec::new();
    let mut reader = Reader::new(bytes);
    while let Some(field) = reader.field()? {
        match field {
            (1, Wire::Len(s)) => scope = read_scope_name(s, scope)?,
            (2, Wire::Len(span)) => spans.push(span),
            (1 | 2, _) => return malformed("scope_spans holds a field of the wrong type"),
            _ => {}
        }
    }
    let scope: Arc<str> = scope.into();
    out.reserve(spans.len());
    // Each span's attribute records, gathered here before they are copied
    // into its one block: one list for the scope's spans, not one (grown
    // twice or three times) per span.
    let mut attributes = Vec::with_capacity(16);
    for span in spans {
        let observation = read_span(span, context, &scope, &mut attributes)?;
        out.push(Observation::Span(Arc::new(observation)));
    }
    Ok(())
}

/// An `InstrumentationScope`'s name; a second copy of the message merges
/// into the first (its name, when it has one, wins).
fn read_scope_name<'a>(bytes: &'a [u8], before: &'a str) -> Result<&'a str> {
    let mut name = before;
    let mut reader = Reader::new(bytes);
    while let Some(field) = reader.field()? {
        match field {
            (1, Wire::Len(s)) => name = utf8(s, "scope name")?,
            (1, _) => return malformed("the scope name is not a string"),
            _ => {}
        }
    }
    Ok(name)
}

/// The fields of a span as they lie on the wire, before the ids are checked.
#[derive(Default)]
struct RawSpan<'a> {
    trace_id: &'a [u8],
    span_id: &'a [u8],
    parent_span_id: &'a [u8],
    name: &'a str,
    kind: i32,
    start: u64,
    end: u64,
    events: Vec<SpanEvent>,
    links: Vec<RawLink<'a>>,
    status: Option<SpanStatus>,
}

/// One span; `attributes` is a list to gather its `KeyValue`s in (checked,
/// kept as they are).
fn read_span<'a>(
    bytes: &'a [u8],
    context: &SpanContext,
    scope: &Arc<str>,
    attributes: &mut Vec<&'a [u8]>,
) -> Result<SpanObservation> {
    let mut raw = RawSpan::default();
    attributes.clear();
    // The messaging key-values, as checked: read into the span's messaging
    // attributes without looking for them among its attributes again.
    let mut messaging: SmallVec<[KeyValueRef<'a>; 8]> = SmallVec::new();
    // Where the attribute records lie, while they lie one after another
    // (as every encoder writes them): copied as one run.
    let mut run: Option<std::ops::Range<usize>> = None;
    let mut one_run = true;
    let mut reader = Reader::new(bytes);
    loop {
        let at = bytes.len() - reader.remaining();
        // Taken apart at once: a field kept whole (for its number in the
        // error below) was copied as a whole, its number read back as part
        // of a wider word than it was written as — a store the processor
        // cannot forward, waited for after every field.
        let Some((number, wire)) = reader.field()? else {
            break;
        };
        match (number, wire) {
            (1, Wire::Len(id)) => raw.trace_id = id,
            (2, Wire::Len(id)) => raw.span_id = id,
            (4, Wire::Len(id)) => raw.parent_span_id = id,
            (5, Wire::Len(name)) => raw.name = utf8(name, "span name")?,
            (6, Wire::Varint(kind)) => raw.kind = kind as i32,
            (7, Wire::Fixed64(t)) => raw.start = t,
            (8, Wire::Fixed64(t)) => raw.end = t,
            (9, Wire::Len(kv)) => {
                // Checked whole either way; the usual one by its key alone.
                let key = match simple_key(kv) {
                    Some(key) => key,
                    None => check_key_value(kv, 0)?.key_bytes(),
                };
                if key.starts_with(b"messaging.") {
                    messaging.push(check_key_value(kv, 0)?);
                }
                attributes.push(kv);
                let end = bytes.len() - reader.remaining();
                run = match run {
                    None => Some(at..end),
                    Some(r) if r.end == at => Some(r.start..end),
                    Some(r) => {
                        one_run = false;
                        Some(r)
                    }
                };
            }
            (11, Wire::Len(event)) => raw.events.push(read_event(event)?),
            (13, Wire::Len(link)) => raw.links.push(read_link(link)?),
            (15, Wire::Len(status)) => raw.status = Some(read_status(status, raw.status.take())?),
            (3, Wire::Len(state)) => {
                utf8(state, "trace state")?;
            }
            (1..=9 | 11 | 13 | 15, _) => {
                return malformed(format!("span field {number} has the wrong type"));
            }
            _ => {}
        }
    }
    let messaging = MessagingAttributes::from_key_value_slice(&messaging);
    let attributes = match run {
        Some(run) if one_run => Attributes::from_checked_span_field(&bytes[run]),
        _ => Attributes::from_checked_key_values(attributes),
    };
    finish_span(raw, attributes, messaging, context, scope)
}

/// Checks the ids (the error names the span) and builds the observation.
/// Built whole, without a default first: an empty `Arc` is an allocation.
fn finish_span(
    raw: RawSpan<'_>,
    attributes: Attributes,
    messaging: Option<MessagingAttributes>,
    context: &SpanContext,
    scope: &Arc<str>,
) -> Result<SpanObservation> {
    let (name, id) = (raw.name, raw.span_id);
    let trace_id = TraceId(check_id(raw.trace_id, "trace id", name, id)?);
    let span_id = SpanId(check_id(raw.span_id, "span id", name, id)?);
    let parent_span_id = if raw.parent_span_id.iter().all(|b| *b == 0) {
        None
    } else {
        Some(SpanId(check_id(
            raw.parent_span_id,
            "parent span id",
            name,
            id,
        )?))
    };
    let mut links = Vec::with_capacity(raw.links.len());
    for (trace, span, attributes) in raw.links {
        links.push(SpanLink {
            trace_id: TraceId(check_id(trace, "link trace id", name, id)?),
            span_id: SpanId(check_id(span, "link span id", name, id)?),
            attributes,
        });
    }
    let status = raw.status.unwrap_or_default();
    Ok(SpanObservation {
        observed_unix_us: context.observed,
        service: Arc::clone(&context.service),
        scope: Arc::clone(scope),
        resource: Arc::clone(&context.resource),
        trace_id,
        span_id,
        parent_span_id,
        kind: SpanKind::from_otlp(raw.kind),
        start_unix_us: nanos_to_micros(raw.start),
        end_unix_us: nanos_to_micros(raw.end),
        status,
        messaging,
        attributes,
        events: raw.events,
        links,
        name: raw.name.into(),
    })
}

fn read_event(bytes: &[u8]) -> Result<SpanEvent> {
    let mut event = SpanEvent::default();
    let mut time = 0;
    let mut reader = Reader::new(bytes);
    while let Some(field) = reader.field()? {
        match field {
            (1, Wire::Fixed64(t)) => time = t,
            (2, Wire::Len(name)) => event.name = utf8(name, "event name")?.to_owned(),
            (3, Wire::Len(kv)) => read_key_value(kv, &mut event.attributes, 0)?,
            (1..=3, _) => return malformed("a span event holds a field of the wrong type"),
            _ => {}
        }
    }
    event.time_unix_us = nanos_to_micros(time);
    Ok(event)
}

type RawLink<'a> = (&'a [u8], &'a [u8], BTreeMap<String, Value>);

fn read_link(bytes: &[u8]) -> Result<RawLink<'_>> {
    let (mut trace, mut span, mut attributes): RawLink<'_> = (&[], &[], BTreeMap::new());
    let mut reader = Reader::new(bytes);
    while let Some(field) = reader.field()? {
        match field {
            (1, Wire::Len(id)) => trace = id,
            (2, Wire::Len(id)) => span = id,
            (3, Wire::Len(state)) => {
                utf8(state, "link trace state")?;
            }
            (4, Wire::Len(kv)) => read_key_value(kv, &mut attributes, 0)?,
            (1..=4, _) => return malformed("a span link holds a field of the wrong type"),
            _ => {}
        }
    }
    Ok((trace, span, attributes))
}

/// A `Status`; a second copy merges into the first.
fn read_status(bytes: &[u8], before: Option<SpanStatus>) -> Result<SpanStatus> {
    let mut status = before.unwrap_or_default();
    let mut reader = Reader::new(bytes);
    while let Some(field) = reader.field()? {
        match field {
            (2, Wire::Len(message)) => status.message = utf8(message, "status message")?.to_owned(),
            (3, Wire::Varint(code)) => status.code = StatusCode::from_otlp(code as i32),
            (2 | 3, _) => return malformed("a span status holds a field of the wrong type"),
            _ => {}
        }
    }
    Ok(status)
}
