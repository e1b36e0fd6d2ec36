//! Subscriptions over WebSocket at `/graphql/ws`: the `graphql-transport-ws` protocol of
//! graphql-ws (and the older `graphql-ws` one), served by async-graphql, around which this
//! adds what a public endpoint needs:
//! - the token comes in `connection_init`'s payload (`{"Authorization": "Bearer …"}`);
//!   a bad one closes the socket with 4403, as graphql-ws defines it;
//! - at most `MAX_CONNECTIONS_PER_USER` sockets per user (per client address when
//!   anonymous) and `MAX_SUBSCRIPTIONS_PER_CONNECTION` subscriptions per socket;
//! - the documents meet the same limits as over HTTP, and results are spec-exact;
//! - a client that stops reading is dropped after `SEND_TIMEOUT`, never buffered for;
//! - on shutdown every socket is closed with 1001 (going away), so clients reconnect.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use async_graphql::{Data, Executor, Request, Response};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::{
    extract::{
        ConnectInfo, State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket},
    },
    http::HeaderMap,
    response::Response as HttpResponse,
};
use clap::Args;
use futures_util::{SinkExt, StreamExt, future, stream::BoxStream};
use serde_json::Value;
use tokio_util::{
    sync::{CancellationToken, PollSender},
    task::TaskTracker,
};

use super::{
    context::Viewer,
    errors::{classify, refusal},
    http::{BODY_LIMIT_BYTES, Endpoint, client_address},
    limits::Refused,
    loaders::DbLoader,
    subscription::SubscriptionSlots,
};
use crate::{auth::Claims, error::AppError};

/// How long a client may take to send `connection_init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one message may take to reach a client before it is dropped as too slow.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages waiting for a client's socket.
const OUTBOX: usize = 16;
/// A socket's read buffer; a larger message grows it while it is read.
const SOCKET_BUFFER_BYTES: usize = 4 * 1024;

pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION: usize = 20;
pub const DEFAULT_MAX_CONNECTIONS_PER_USER: usize = 10;

#[derive(Args, Clone, Debug)]
pub struct LiveLimits {
    /// Subscriptions one WebSocket may hold at once.
    #[arg(
        long,
        env = "MAX_SUBSCRIPTIONS_PER_CONNECTION",
        global = true,
        default_value_t = DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION
    )]
    pub max_subscriptions_per_connection: usize,

    /// WebSockets one user (or, anonymous, one client address) may hold at once, per process.
    #[arg(
        long,
        env = "MAX_CONNECTIONS_PER_USER",
        global = true,
        default_value_t = DEFAULT_MAX_CONNECTIONS_PER_USER
    )]
    pub max_connections_per_user: usize,
}

impl Default for LiveLimits {
    fn default() -> Self {
        Self {
            max_subscriptions_per_connection: DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
            max_connections_per_user: DEFAULT_MAX_CONNECTIONS_PER_USER,
        }
    }
}

/// Who holds how many sockets, and the sockets to close on shutdown.
#[derive(Clone)]
pub struct Sockets {
    limits: LiveLimits,
    held: Arc<Mutex<HashMap<Holder, usize>>>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Holder {
    User(uuid::Uuid),
    Address(IpAddr),
}

/// A socket's place in its holder's count, given back when the socket closes.
struct Held {
    held: Arc<Mutex<HashMap<Holder, usize>>>,
    holder: Holder,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.holder) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.holder);
            }
        }
    }
}

impl Sockets {
    pub fn new(limits: LiveLimits) -> Self {
        Self {
            limits,
            held: Arc::default(),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }

    fn hold(&self, holder: Holder) -> Option<Held> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(holder).or_default();
        if *count >= self.limits.max_connections_per_user {
            return None;
        }
        *count += 1;
        Some(Held {
            held: Arc::clone(&self.held),
            holder,
        })
    }
}

pub async fn upgrade(
    State((endpoint, sockets)): State<(Arc<Endpoint>, Sockets)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> HttpResponse {
    let address = client_address(peer.ip(), &headers, &endpoint.trusted_proxies);
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        // Thousands of mostly idle sockets: small buffers (the defaults are 128 KiB each way
        // per socket), each message written at once, and no message larger than a POST.
        .read_buffer_size(SOCKET_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(BODY_LIMIT_BYTES)
        .max_frame_size(BODY_LIMIT_BYTES)
        .on_upgrade(move |socket| {
            let tracker = sockets.tracker.clone();
            tracker.track_future(serve(endpoint, sockets, protocol, address, socket))
        })
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

async fn serve(
    endpoint: Arc<Endpoint>,
    sockets: Sockets,
    protocol: GraphQLProtocol,
    address: IpAddr,
    socket: WebSocket,
) {
    let (mut sink, mut incoming) = socket.split();
    // The handshake is ours: the caller must be known before any subscription starts.
    let first = tokio::select! {
        () = sockets.shutdown.cancelled() => None,
        first = tokio::time::timeout(INIT_TIMEOUT, incoming.next()) => first.ok().flatten(),
    };
    let Some(Ok(Message::Text(init))) = first else {
        let _ = sink
            .send(close(4408, "Connection initialisation timeout"))
            .await;
        return;
    };
    let viewer = match caller(&endpoint, &init).await {
        Ok(viewer) => viewer,
        Err(AppError::Unavailable(_)) => {
            let _ = sink
                .send(close(1011, "Service unavailable; retry later"))
                .await;
            return;
        }
        Err(_) => {
            let _ = sink.send(close(4403, "Forbidden")).await;
            return;
        }
    };
    let holder = viewer
        .as_ref()
        .map_or(Holder::Address(address), |claims| Holder::User(claims.sub));
    let Some(_held) = sockets.hold(holder) else {
        let _ = sink.send(close(4429, "Too many connections")).await;
        return;
    };
    let _counted = OpenSocket::counted();
    let mut data = Data::default();
    data.insert(Viewer(viewer));
    data.insert(SubscriptionSlots::new(
        sockets.limits.max_subscriptions_per_connection,
    ));
    data.insert(DbLoader::for_request(endpoint.app.db.clone()));
    let replayed = futures_util::stream::once(future::ready(Ok(Message::Text(init))));
    let (outbox, mut outgoing) = tokio::sync::mpsc::channel::<Message>(OUTBOX);
    let graphql = GraphQLWebSocket::new_with_pair(
        PollSender::new(outbox).sink_map_err(|_| axum::Error::new("closed")),
        replayed.chain(incoming),
        LiveExecutor(endpoint),
        protocol,
    )
    .with_data(data)
    .on_connection_init(|_| async { Ok(Data::default()) });
    let serving = tokio::spawn(graphql.serve());
    loop {
        tokio::select! {
            () = sockets.shutdown.cancelled() => {
                let _ = sink.send(close(1001, "Server shutting down")).await;
                break;
            }
            message = outgoing.recv() => {
                let Some(message) = message else { break };
                match tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await {
                    Ok(Ok(())) => {}
                    // Too slow to read its messages, or gone: dropped.
                    Ok(Err(_)) | Err(_) => break,
                }
            }
        }
    }
    serving.abort();
}

/// The caller named by `connection_init`'s payload (`Authorization`, any letter case).
async fn caller(endpoint: &Endpoint, init: &str) -> Result<Option<Claims>, AppError> {
    let message: Value = serde_json::from_str(init)
        .map_err(|_| AppError::Unauthenticated("connection_init must be JSON"))?;
    if message["type"] != "connection_init" {
        return Err(AppError::Unauthenticated("connection_init must come first"));
    }
    let authorization = message["payload"].as_object().and_then(|payload| {
        payload
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            .and_then(|(_, value)| value.as_str())
    });
    let Some(authorization) = authorization else {
        return Ok(None);
    };
    let token = authorization
        .trim()
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or(AppError::Unauthenticated(
            "Authorization must be \"Bearer <token>\"",
        ))?;
    let claims = endpoint.app.jwt.verify(token)?;
    endpoint.app.accounts.confirm(claims).await.map(Some)
}

/// Counts an open socket in the metrics while it lives.
struct OpenSocket;

impl OpenSocket {
    fn counted() -> Self {
        crate::metrics::websocket_opened();
        Self
    }
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        crate::metrics::websocket_closed();
    }
}

/// Runs what arrives over a socket: the same document limits as over HTTP, and spec-exact
/// results for every event.
#[derive(Clone)]
struct LiveExecutor(Arc<Endpoint>);

impl Executor for LiveExecutor {
    fn execute(&self, request: Request) -> impl Future<Output = Response> + Send {
        let schema = self.0.schema.clone();
        async move { schema.execute(request).await }
    }

    fn execute_stream(
        &self,
        mut request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let endpoint = self.0.clone();
        futures_util::stream::once(async move {
            let document = match endpoint
                .documents
                .prepare(&request.query, &endpoint.limits)
                .await
            {
                Ok(document) => document,
                Err(refused) => {
                    let error = match refused {
                        Refused::TooComplex(message) => AppError::TooComplex(message),
                        Refused::Invalid(message) => AppError::BadInput(message),
                    };
                    return futures_util::stream::once(future::ready(refusal(error))).boxed();
                }
            };
            let operation_name = request.operation_name.clone();
            let variables = request.variables.clone();
            request.set_parsed_query(document.document.clone());
            let session_data = session_data.unwrap_or_default();
            endpoint
                .schema
                .execute_stream_with_session_data(request, session_data)
                .map(move |mut response| {
                    response.errors.iter_mut().for_each(classify);
                    if response.data != async_graphql::Value::Null {
                        let data = std::mem::take(&mut response.data);
                        response.data = endpoint.shapes.complete(
                            &document.document,
                            operation_name.as_deref(),
                            &variables,
                            data,
                            !response.errors.is_empty(),
                        );
                    }
                    response
                })
                .boxed()
        })
        .flatten()
        .boxed()
    }
}
