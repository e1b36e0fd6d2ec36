//! The `subscribers` scenario: thousands of graphql-ws subscriptions on one server to one
//! competition, while `hot` fills it through another server; how fast and how often the
//! changes arrive, and what it costs.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};
use uuid::Uuid;

/// What one subscriber saw: (registeredCount, when, in seconds since the epoch).
pub type Seen = Arc<Mutex<Vec<(i64, f64)>>>;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

/// Opens a socket, subscribes to `competitionChanged(id)` and records every count it
/// receives until `until` is seen (or the socket ends). Returns once subscribed.
pub async fn subscribe(
    ws_url: &str,
    competition: Uuid,
    until: i64,
    seen: Seen,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut request = ws_url.into_client_request()?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .context("websocket connect")?;
    socket
        .send(Message::text(
            json!({ "type": "connection_init", "payload": {} }).to_string(),
        ))
        .await?;
    let ack = socket.next().await.context("no ack")??;
    anyhow::ensure!(
        ack.to_text()?.contains("connection_ack"),
        "not acked: {ack}"
    );
    let subscribe = json!({
        "id": "1",
        "type": "subscribe",
        "payload": {
            "query": "subscription($id: ID!) { competitionChanged(id: $id) { registeredCount } }",
            "variables": { "id": competition },
        },
    });
    socket.send(Message::text(subscribe.to_string())).await?;
    Ok(tokio::spawn(async move {
        while let Some(Ok(message)) = socket.next().await {
            let Ok(text) = message.to_text() else {
                continue;
            };
            let Ok(event) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if event["type"] == "ping" {
                let _ = socket.send(Message::text(r#"{"type":"pong"}"#)).await;
                continue;
            }
            let Some(count) =
                event["payload"]["data"]["competitionChanged"]["registeredCount"].as_i64()
            else {
                continue;
            };
            seen.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((count, now()));
            if count >= until {
                break;
            }
        }
        let _ = socket.close(None).await;
    }))
}

/// How long to let the last changes arrive after the load stopped.
pub const SETTLE: Duration = Duration::from_secs(30);
