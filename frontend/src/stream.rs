//! The live stream hook: one `EventSource` on `/api/stream`, its messages
//! folded into the [`DashboardState`], reconnection with backoff, and the
//! connection state the header shows.
//!
//! States: `connecting` until the first snapshot, `live` while events
//! arrive (the server sends stats at least every publish tick), `stale` when
//! none came for [`STALE_AFTER_MS`], `reconnecting` after an error (or a
//! stale connection older than [`RECONNECT_AFTER_MS`]) until the next
//! snapshot. Each failed attempt doubles the wait, up to [`MAX_BACKOFF_MS`].

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use leptos::prelude::*;
use send_wrapper::SendWrapper;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{EventSource, MessageEvent};

use crate::state::DashboardState;

/// Where the stream is served.
pub const STREAM_PATH: &str = "/api/stream";
/// No event for this long: the data is stale.
pub const STALE_AFTER_MS: f64 = 5_000.0;
/// Stale for this long: reconnect.
pub const RECONNECT_AFTER_MS: f64 = 20_000.0;
/// The first retry waits this long.
pub const FIRST_BACKOFF_MS: u64 = 500;
/// Retries never wait longer.
pub const MAX_BACKOFF_MS: u64 = 15_000;

/// How the stream is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    Connecting,
    Live,
    Stale,
    Reconnecting,
}

impl ConnectionState {
    /// A word for the indicator.
    pub fn label(self) -> &'static str {
        match self {
            ConnectionState::Connecting => "connecting",
            ConnectionState::Live => "live",
            ConnectionState::Stale => "stale",
            ConnectionState::Reconnecting => "reconnecting",
        }
    }

    /// A sentence for the indicator's tooltip.
    pub fn explain(self) -> &'static str {
        match self {
            ConnectionState::Connecting => "connecting to the live stream",
            ConnectionState::Live => "receiving live updates",
            ConnectionState::Stale => {
                "no update for a few seconds: what you see may be out of date"
            }
            ConnectionState::Reconnecting => {
                "the live stream broke; reconnecting (what you see is out of date)"
            }
        }
    }
}

/// The wait before retry number `attempt` (1, 2, …): doubling, capped.
pub fn backoff_ms(attempt: u32) -> u64 {
    let doublings = attempt.saturating_sub(1).min(16);
    (FIRST_BACKOFF_MS << doublings).min(MAX_BACKOFF_MS)
}

/// What the pages read, provided as context by the app.
#[derive(Debug, Clone, Copy)]
pub struct LiveStream {
    pub state: RwSignal<DashboardState>,
    pub connection: RwSignal<ConnectionState>,
    /// Unix µs, ticking every second: ages and "stale" read it.
    pub now_us: RwSignal<i64>,
}

/// The stream of the page's context.
pub fn use_live() -> LiveStream {
    expect_context::<LiveStream>()
}

/// Milliseconds since the epoch, from the browser.
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

type Handler = Closure<dyn FnMut(web_sys::Event)>;

/// The connection, shared by its callbacks.
#[derive(Default)]
struct Conn {
    source: Option<EventSource>,
    handlers: Vec<Handler>,
    /// Handlers of closed sources, freed at the next connect (one of them
    /// may be running when its source is closed).
    retired: Vec<Handler>,
    attempt: u32,
    last_event_ms: f64,
    retry: Option<TimeoutHandle>,
    stopped: bool,
}

type Shared = Rc<RefCell<Conn>>;

/// Opens the live stream and keeps it open; call once, in the app.
pub fn use_live_stream() -> LiveStream {
    let live = LiveStream {
        state: RwSignal::new(DashboardState::default()),
        connection: RwSignal::new(ConnectionState::Connecting),
        now_us: RwSignal::new((now_ms() * 1000.0) as i64),
    };
    let conn: Shared = Rc::default();
    connect(&conn, live);
    let watchdog = {
        let conn = conn.clone();
        set_interval_with_handle(move || watch(&conn, live), Duration::from_secs(1)).ok()
    };
    let owned = SendWrapper::new(conn);
    on_cleanup(move || {
        if let Some(handle) = watchdog {
            handle.clear();
        }
        let conn = owned.take();
        let mut c = conn.borrow_mut();
        c.stopped = true;
        if let Some(retry) = c.retry.take() {
            retry.clear();
        }
        if let Some(source) = c.source.take() {
            source.close();
        }
    });
    live
}

fn connect(conn: &Shared, live: LiveStream) {
    let mut c = conn.borrow_mut();
    if c.stopped {
        return;
    }
    c.retired.clear();
    let url = crate::auth::stream_url(STREAM_PATH, crate::auth::stored_token().as_deref());
    let Ok(source) = EventSource::new(&url) else {
        drop(c);
        schedule_reconnect(conn, live);
        return;
    };
    let weak = Rc::downgrade(conn);
    let on_message: Handler = Closure::new(move |event: web_sys::Event| {
        let Some(text) = event
            .dyn_ref::<MessageEvent>()
            .and_then(|m| m.data().as_string())
        else {
            return;
        };
        match crate::wire::stream_message(&text) {
            Ok(message) => {
                live.state.update(|state| state.apply(message));
                if live.connection.get_untracked() != ConnectionState::Live {
                    live.connection.set(ConnectionState::Live);
                }
                if let Some(conn) = weak.upgrade() {
                    let mut c = conn.borrow_mut();
                    c.attempt = 0;
                    c.last_event_ms = now_ms();
                }
            }
            Err(err) => leptos::logging::warn!("flowscope: unreadable stream message: {err}"),
        }
    });
    let weak = Rc::downgrade(conn);
    let on_error: Handler = Closure::new(move |_: web_sys::Event| {
        if let Some(conn) = weak.upgrade() {
            schedule_reconnect(&conn, live);
        }
        // An EventSource cannot tell a refused token from a broken line: ask.
        crate::auth::check_session();
    });
    for name in ["snapshot", "update"] {
        let _ = source.add_event_listener_with_callback(name, on_message.as_ref().unchecked_ref());
    }
    source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    c.source = Some(source);
    c.handlers = vec![on_message, on_error];
    c.last_event_ms = now_ms();
}

/// Closes the current source and connects again after the backoff.
fn schedule_reconnect(conn: &Shared, live: LiveStream) {
    let mut c = conn.borrow_mut();
    if c.stopped || c.retry.is_some() {
        return;
    }
    if let Some(source) = c.source.take() {
        source.close();
    }
    let handlers = std::mem::take(&mut c.handlers);
    c.retired.extend(handlers);
    c.attempt += 1;
    live.connection.set(ConnectionState::Reconnecting);
    let delay = Duration::from_millis(backoff_ms(c.attempt));
    let again = conn.clone();
    c.retry = set_timeout_with_handle(
        move || {
            again.borrow_mut().retry = None;
            connect(&again, live);
        },
        delay,
    )
    .ok();
}

/// Every second: tick the clock, mark silence as stale, end long silences.
fn watch(conn: &Shared, live: LiveStream) {
    let now = now_ms();
    live.now_us.set((now * 1000.0) as i64);
    let silent_ms = now - conn.borrow().last_event_ms;
    match live.connection.get_untracked() {
        ConnectionState::Live if silent_ms > STALE_AFTER_MS => {
            live.connection.set(ConnectionState::Stale)
        }
        ConnectionState::Stale | ConnectionState::Connecting if silent_ms > RECONNECT_AFTER_MS => {
            schedule_reconnect(conn, live)
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_ms(1), 500);
        assert_eq!(backoff_ms(2), 1_000);
        assert_eq!(backoff_ms(4), 4_000);
        assert_eq!(backoff_ms(6), MAX_BACKOFF_MS);
        assert_eq!(backoff_ms(u32::MAX), MAX_BACKOFF_MS);
    }
}
