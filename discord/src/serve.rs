//! `exliar-discord serve`: Discord's interactions endpoint,
//! `POST /interactions`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::config::Config;
use crate::interactions::{self, Command};

/// The largest request body taken.
pub const BODY_LIMIT: usize = 64 * 1024;

pub struct Server {
    pub config: Config,
    pub root: PathBuf,
    /// A command still running then is answered "thinking" (type 5) and
    /// its outcome sent as an edit of that answer (Discord allows 3 s).
    pub defer_after: Duration,
    /// How long exliar may run in all.
    pub command_timeout: Duration,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn json_response(v: &Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn unauthorized(why: &str) -> Response {
    tracing::warn!("interaction refused (401): {why}");
    (StatusCode::UNAUTHORIZED, "invalid request signature").into_response()
}

/// The router (also used by the tests through the binary).
pub fn router(server: Arc<Server>) -> Router {
    Router::new()
        .route("/interactions", post(interaction))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(server)
}

async fn interaction(State(srv): State<Arc<Server>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(key) = srv.config.public_key else {
        return unauthorized("no public key configured");
    };
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let (Some(sig), Some(ts)) = (h("x-signature-ed25519"), h("x-signature-timestamp")) else {
        return unauthorized("missing signature headers");
    };
    if let Err(why) = interactions::verify(&key, sig, ts, &body, now_unix()) {
        return unauthorized(why);
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    match v.get("type").and_then(Value::as_u64) {
        Some(1) => json_response(&json!({"type": 1})),
        Some(2) => application_command(srv, &v).await,
        _ => (StatusCode::BAD_REQUEST, "unsupported interaction type").into_response(),
    }
}

async fn application_command(srv: Arc<Server>, v: &Value) -> Response {
    let user = interactions::user_id(v).unwrap_or("");
    if !srv.config.allowed_users.iter().any(|u| u == user) {
        tracing::warn!("command from user {user:?} refused: not in allowed_users");
        return json_response(&interactions::reply("not allowed"));
    }
    let cmd = match interactions::command(v.get("data").unwrap_or(&Value::Null)) {
        Ok(c) => c,
        Err(why) => return json_response(&interactions::reply(&why)),
    };
    let args = interactions::argv(&cmd, &srv.root, &srv.config.connect);
    tracing::info!("user {user} runs exliar {}", args.join(" "));
    let exliar = srv.config.exliar.clone();
    let limit = srv.command_timeout;
    let mut task = tokio::spawn(async move {
        match tokio::time::timeout(limit, interactions::run(&exliar, &args)).await {
            Ok(run) => run,
            Err(_) => interactions::Run {
                code: None,
                stdout: String::new(),
                stderr: format!(
                    "exliar took longer than {} s and was stopped",
                    limit.as_secs()
                ),
            },
        }
    });
    match tokio::time::timeout(srv.defer_after, &mut task).await {
        Ok(Ok(run)) => json_response(&interactions::reply(&interactions::summary(&cmd, &run))),
        Ok(Err(e)) => json_response(&interactions::reply(&format!("internal error: {e}"))),
        Err(_) => {
            // Too slow for Discord's 3 s: say "thinking", edit it later.
            let app = v
                .get("application_id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let token = v
                .get("token")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            tokio::spawn(follow_up(srv.clone(), cmd, task, app, token));
            json_response(&json!({"type": 5, "data": {"flags": 64}}))
        }
    }
}

async fn follow_up(
    srv: Arc<Server>,
    cmd: Command,
    task: tokio::task::JoinHandle<interactions::Run>,
    app: String,
    token: String,
) {
    let text = match task.await {
        Ok(run) => interactions::summary(&cmd, &run),
        Err(e) => format!("internal error: {e}"),
    };
    let safe = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    };
    if !safe(&app) || !safe(&token) {
        tracing::warn!(
            "cannot edit the answer: the interaction had no usable application_id/token"
        );
        return;
    }
    let url = format!(
        "{}/webhooks/{app}/{token}/messages/@original",
        srv.config.discord_api
    );
    let body = interactions::reply(&text)["data"].to_string();
    let res = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        agent
            .patch(&url)
            .header("content-type", "application/json")
            .send(body.as_bytes())
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string().replace(&url, "<interaction webhook>"))
    })
    .await;
    match res {
        Ok(Ok(s)) if (200..300).contains(&s) => {}
        Ok(Ok(s)) => tracing::warn!("editing the answer: HTTP {s}"),
        Ok(Err(e)) => tracing::warn!("editing the answer: {e}"),
        Err(e) => tracing::warn!("editing the answer: {e}"),
    }
}
