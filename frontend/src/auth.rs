//! Bearer tokens, for a server that requires them (the server's
//! `api/auth.rs`). The token is asked for once, kept in localStorage, sent as
//! `Authorization: Bearer` on every fetch ([`crate::api`]) and as
//! `?access_token=` on the live stream, since an `EventSource` cannot set
//! headers.
//!
//! Any call answered 401 ([`note_unauthorized`]) shows the [`SignIn`] form.
//! Signing in or out reloads the page, so that the stream and every page
//! start afresh with the new token.

use std::cell::Cell;

use leptos::prelude::*;

use crate::api::{self, UiConfig};
use crate::format::path_segment;

/// Where the token is kept in localStorage.
pub const TOKEN_KEY: &str = "flowscope.token";

/// `path` with the token as `access_token`, when there is one.
pub fn stream_url(path: &str, token: Option<&str>) -> String {
    match token.map(str::trim).filter(|t| !t.is_empty()) {
        Some(token) => format!("{path}?access_token={}", path_segment(token)),
        None => path.to_owned(),
    }
}

/// The `Authorization` header's value for `token`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {}", token.trim())
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

/// The token kept in this browser, if any.
pub fn stored_token() -> Option<String> {
    storage()?
        .get_item(TOKEN_KEY)
        .ok()
        .flatten()
        .filter(|t| !t.trim().is_empty())
}

fn keep_token(token: Option<&str>) {
    if let Some(storage) = storage() {
        let _ = match token {
            Some(token) => storage.set_item(TOKEN_KEY, token.trim()),
            None => storage.remove_item(TOKEN_KEY),
        };
    }
}

fn reload() {
    if let Some(window) = web_sys::window() {
        let _ = window.location().reload();
    }
}

/// What the app knows about its standing with the server, as context.
#[derive(Debug, Clone, Copy)]
pub struct Session {
    /// A call was answered 401: a token is needed (or the one kept was refused).
    pub refused: RwSignal<bool>,
    /// `GET /api/ui-config`, once it answered.
    pub config: RwSignal<Option<UiConfig>>,
}

thread_local! {
    /// The session, for calls made outside any component.
    static SESSION: Cell<Option<Session>> = const { Cell::new(None) };
}

/// Creates the session, provides it as context and asks for the UI config; call once, in the app.
pub fn provide_session() -> Session {
    let session = Session {
        refused: RwSignal::new(false),
        config: RwSignal::new(None),
    };
    SESSION.with(|s| s.set(Some(session)));
    provide_context(session);
    check_session();
    session
}

/// The session of the page's context.
pub fn use_session() -> Session {
    expect_context::<Session>()
}

/// Asks `GET /api/ui-config` again: a 401 shows the sign-in form, an answer fills the config.
pub fn check_session() {
    leptos::task::spawn_local(async {
        if let Ok(config) = api::ui_config().await
            && let Some(session) = SESSION.with(Cell::get)
        {
            session.config.set(Some(config));
            session.refused.set(false);
        }
    });
}

/// A call was answered 401: show the sign-in form.
pub fn note_unauthorized() {
    if let Some(session) = SESSION.with(Cell::get)
        && !session.refused.get_untracked()
    {
        session.refused.set(true);
    }
}

/// The form asking for a token, shown while the server refuses the calls.
#[component]
pub fn SignIn() -> impl IntoView {
    let session = use_session();
    let token = RwSignal::new(String::new());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let entered = token.get_untracked();
        if !entered.trim().is_empty() {
            keep_token(Some(&entered));
            reload();
        }
    };
    view! {
        <Show when=move || session.refused.get()>
            <div class="panel sign-in" role="dialog" aria-labelledby="sign-in-title">
                <h2 id="sign-in-title">"Sign in"</h2>
                <p>
                    {if stored_token().is_some() {
                        "The server refused the token kept in this browser (wrong, or no longer valid). Enter another one."
                    } else {
                        "This flowscope server needs an access token. Ask whoever runs it for one."
                    }}
                </p>
                <form on:submit=submit>
                    <input
                        type="password"
                        autocomplete="current-password"
                        placeholder="access token"
                        aria-label="Access token"
                        prop:value=move || token.get()
                        on:input=move |ev| token.set(event_target_value(&ev))
                    />
                    " "
                    <button type="submit" class="primary">"Sign in"</button>
                </form>
                <p class="muted">"The token is kept in this browser until you sign out."</p>
            </div>
        </Show>
    }
}

/// Who is signed in and a way out; nothing when no token is kept.
#[component]
pub fn SessionBadge() -> impl IntoView {
    let session = use_session();
    let sign_out = move |_| {
        keep_token(None);
        reload();
    };
    stored_token().map(|_| {
        view! {
            <span class="session muted">
                {move || session.config.with(|c| c.as_ref().map(|c| format!("{} ({})", c.user, c.role)))}
            </span>
            <button class="sign-out" on:click=sign_out>"Sign out"</button>
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_carries_the_token_encoded_and_only_when_there_is_one() {
        assert_eq!(stream_url("/api/stream", None), "/api/stream");
        assert_eq!(stream_url("/api/stream", Some("  ")), "/api/stream");
        assert_eq!(
            stream_url("/api/stream", Some("v+1/=x")),
            "/api/stream?access_token=v%2B1%2F%3Dx"
        );
        assert_eq!(bearer(" op-456\n"), "Bearer op-456");
    }
}
