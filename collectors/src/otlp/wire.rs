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

use base64::Engine as _;
use flowscope_model::{Observation, SpanEvent, SpanKind, SpanLink, SpanObservation, SpanStatus};
use serde_json::Value;

use super::convert::{ConvertError, UNKNOWN_SERVICE, hex, messaging_attributes, nanos_to_micros};

/// How deep attribute values may nest (arrays in key-value lists in …):
/// deeper requests are refused rather than risking the stack.
const MAX_VALUE_DEPTH: u32 = 32;

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
    let mut scopes: Vec<&[u8]> = Vec::new();
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
        Some(Value::String(name)) if !name.is_empty() => name,
        _ => UNKNOWN_SERVICE.to_owned(),
    };
    let context = SpanContext {
        observed,
        service,
        resource,
    };
    for scope_spans in scopes {
        read_scope_spans(scope_spans, &context, out)?;
    }
    Ok(())
}

/// What every span of one resource and scope shares.
struct SpanContext {
    observed: i64,
    service: String,
    resource: BTreeMap<String, Value>,
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
    let mut scope = String::new();
    let mut spans: Vec<&[u8]> = Vec::new();
    let mut reader = Reader::new(bytes);
    while let Some(field) = reader.field()? {
        match field {
            (1, Wire::Len(s)) => scope = read_scope_name(s, std::mem::take(&mut scope))?,
            (2, Wire::Len(span)) => spans.push(span),
            (1 | 2, _) => return malformed("scope_spans holds a field of the wrong type"),
            _ => {}
        }
    }
    out.reserve(spans.len());
    for span in spans {
        let mut observation = read_span(span, context.observed)?;
        observation.service.clone_from(&context.service);
        observation.resource.clone_from(&context.resource);
        observation.scope.clone_from(&scope);
        out.push(Observation::Span(Arc::new(observation)));
    }
    Ok(())
}

/// An `InstrumentationScope`'s name; a second copy of the message merges
/// into the first (its name, when it has one, wins).
fn read_scope_name(bytes: &[u8], before: String) -> Result<String> {
    let mut name = before;
    let mut reader = Reader::new(bytes);
    while let Some(field) = reader.field()? {
        match field {
            (1, Wire::Len(s)) => name = utf8(s, "scope name")?.to_owned(),
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
    attributes: BTreeMap<String, Value>,
    events: Vec<SpanEvent>,
    links: Vec<RawLink<'a>>,
    status: Option<SpanStatus>,
}

fn read_span(bytes: &[u8], observed_unix_us: i64) -> Result<SpanObservation> {
    let mut raw = RawSpan::default();
    let mut reader = Reader::new(bytes);
    while let Some(field) = reader.field()? {
        match field {
            (1, Wire::Len(id)) => raw.trace_id = id,
            (2, Wire::Len(id)) => raw.span_id = id,
            (4, Wire::Len(id)) => raw.parent_span_id = id,
            (5, Wire::Len(name)) => raw.name = utf8(name, "span name")?,
            (6, Wire::Varint(kind)) => raw.kind = kind as i32,
            (7, Wire::Fixed64(t)) => raw.start = t,
            (8, Wire::Fixed64(t)) => raw.end = t,
            (9, Wire::Len(kv)) => read_key_value(kv, &mut raw.attributes, 0)?,
            (11, Wire::Len(event)) => raw.events.push(read_event(event)?),
            (13, Wire::Len(link)) => raw.links.push(read_link(link)?),
            (15, Wire::Len(status)) => raw.status = Some(read_status(status, raw.status.take())?),
            (3, Wire::Len(state)) => {
                utf8(state, "trace state")?;
            }
            (1..=9 | 11 | 13 | 15, _) => {
                return malformed(format!("span field {} has the wrong type", field.0));
            }
            _ => {}
        }
    }
    finish_span(raw, observed_unix_us)
}

/// Checks the ids (the error names the span) and builds the observation.
fn finish_span(raw: RawSpan<'_>, observed_unix_us: i64) -> Result<SpanObservation> {
    let invalid = |id: &[u8], len: usize, what: &str| -> Result<String> {
        if id.len() != len || id.iter().all(|b| *b == 0) {
            return Err(ConvertError::InvalidId(format!(
                "span {:?} (span id {}) has an invalid {what} {:?}: expected {len} bytes, not all zero",
                raw.name,
                hex(raw.span_id),
                hex(id),
            ))
            .into());
        }
        Ok(hex(id))
    };
    let trace_id = invalid(raw.trace_id, 16, "trace id")?;
    let span_id = invalid(raw.span_id, 8, "span id")?;
    let parent_span_id = if raw.parent_span_id.iter().all(|b| *b == 0) {
        None
    } else {
        Some(invalid(raw.parent_span_id, 8, "parent span id")?)
    };
    let mut links = Vec::with_capacity(raw.links.len());
    for (trace, span, attributes) in raw.links {
        links.push(SpanLink {
            trace_id: invalid(trace, 16, "link trace id")?,
            span_id: invalid(span, 8, "link span id")?,
            attributes,
        });
    }
    let status = raw.status.unwrap_or_else(|| SpanStatus {
        code: "unset".into(),
        message: String::new(),
    });
    Ok(SpanObservation {
        observed_unix_us,
        trace_id,
        span_id,
        parent_span_id,
        kind: SpanKind::from_otlp(raw.kind),
        start_unix_us: nanos_to_micros(raw.start),
        end_unix_us: nanos_to_micros(raw.end),
        status,
        messaging: messaging_attributes(&raw.attributes),
        attributes: raw.attributes,
        events: raw.events,
        links,
        name: raw.name.to_owned(),
        ..SpanObservation::default()
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
    let code_name = |code: u64| match code as i32 {
        1 => "ok",
        2 => "error",
        _ => "unset",
    };
    let mut status = before.unwrap_or_else(|| SpanStatus {
        code: "unset".into(),
        message: String::new(),
    });
    let mut reader = Reader::new(bytes);
    while let Some(field) = reader.field()? {
        match field {
            (2, Wire::Len(message)) => status.message = utf8(message, "status message")?.to_owned(),
            (3, Wire::Varint(code)) => status.code = code_name(code).into(),
            (2 | 3, _) => return malformed("a span status holds a field of the wrong type"),
            _ => {}
        }
    }
    Ok(status)
}

/// One `KeyValue` into a map (a repeated key: the last one wins).
fn read_key_value(bytes: &[u8], map: &mut BTreeMap<String, Value>, depth: u32) -> Result<()> {
    let mut key = "";
    let mut value = None;
    let mut reader = Reader::new(bytes);
    while let Some(field) = reader.field()? {
        match field {
            (1, Wire::Len(k)) => key = utf8(k, "attribute key")?,
            (2, Wire::Len(v)) => value = Some(read_any_value(v, value.take(), depth)?),
            (1 | 2, _) => return malformed("an attribute holds a field of the wrong type"),
            _ => {}
        }
    }
    map.insert(key.to_owned(), value.unwrap_or(Value::Null));
    Ok(())
}

/// An `AnyValue` as JSON, as [`convert`](super::convert) makes it: bytes in
/// base64, key-value lists as objects, non-finite doubles as their names,
/// empty (or a string-table index, unsupported) as `null`. A second copy
/// of the message merges: its value, when it has one, wins.
fn read_any_value(bytes: &[u8], before: Option<Value>, depth: u32) -> Result<Value> {
    if depth >= MAX_VALUE_DEPTH {
        return malformed(format!(
            "attribute values nested deeper than {MAX_VALUE_DEPTH}"
        ));
    }
    let mut value = before.unwrap_or(Value::Null);
    let mut reader = Reader::new(bytes);
    while let Some(field) = reader.field()? {
        value = match field {
            (1, Wire::Len(s)) => Value::String(utf8(s, "string value")?.to_owned()),
            (2, Wire::Varint(b)) => Value::Bool(b != 0),
            (3, Wire::Varint(i)) => Value::from(i as i64),
            (4, Wire::Fixed64(bits)) => {
                let d = f64::from_bits(bits);
                serde_json::Number::from_f64(d)
                    .map_or_else(|| Value::String(d.to_string()), Value::Number)
            }
            (5, Wire::Len(array)) => read_array(array, depth + 1)?,
            (6, Wire::Len(list)) => {
                let mut map = BTreeMap::new();
                let mut entries = Reader::new(list);
                while let Some(entry) = entries.field()? {
                    match entry {
                        (1, Wire::Len(kv)) => read_key_value(kv, &mut map, depth + 1)?,
                        (1, _) => return malformed("a key-value list holds a non-message"),
                        _ => {}
                    }
                }
                Value::Object(map.into_iter().collect())
            }
            (7, Wire::Len(b)) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
            (8, Wire::Varint(_)) => Value::Null,
            (1..=8, _) => return malformed("an attribute value has the wrong type"),
            _ => continue,
        };
    }
    Ok(value)
}

fn read_array(bytes: &[u8], depth: u32) -> Result<Value> {
    let mut values = Vec::new();
    let mut reader = Reader::new(bytes);
    while let Some(field) = reader.field()? {
        match field {
            (1, Wire::Len(v)) => values.push(read_any_value(v, None, depth)?),
            (1, _) => return malformed("an array value holds a non-message"),
            _ => {}
        }
    }
    Ok(Value::Array(values))
}

fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str> {
    std::str::from_utf8(bytes).or_else(|_| malformed(format!("the {what} is not valid UTF-8")))
}

/// One field's value, by wire type.
#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32,
}

/// A cursor over one message's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// The next field, `None` at the end of the message.
    fn field(&mut self) -> Result<Option<(u32, Wire<'a>)>> {
        if self.bytes.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return malformed(format!("field number {number} is out of range"));
        }
        let value = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(self.take::<8>()?)),
            2 => {
                let len = self.varint()?;
                if len > self.bytes.len() as u64 {
                    return malformed("a length runs past the end of the message");
                }
                let (head, rest) = self.bytes.split_at(len as usize);
                self.bytes = rest;
                Wire::Len(head)
            }
            5 => {
                self.take::<4>()?;
                Wire::Fixed32
            }
            other => return malformed(format!("unsupported wire type {other}")),
        };
        Ok(Some((number as u32, value)))
    }

    fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for (i, byte) in self.bytes.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if i == 9 && *byte > 1 {
                    break;
                }
                self.bytes = &self.bytes[i + 1..];
                return Ok(value);
            }
        }
        malformed("a varint is cut short or too long")
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let Some((head, rest)) = self.bytes.split_first_chunk::<N>() else {
            return malformed("a fixed-width value is cut short");
        };
        self.bytes = rest;
        Ok(*head)
    }
}
