//! Live updates over graphql-ws, with the protocol's reference client (graphql-ws, run by
//! Node): changes made through one server process, or by a worker process, reach
//! subscribers of another; authentication, limits, completion, shutdown, and a client that
//! stops reading its socket.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

use crate::helpers::{Account, TestApp, test_config};

const WAIT: Duration = Duration::from_secs(30);
const COMPETITION: &str = "subscription($id: ID!) { competitionChanged(id: $id) {
    registeredCount waitlistCount seatsLeft title cancelledAt organizer { name } } }";
const MINE: &str =
    "subscription { myRegistrationChanged { id status waitlistPosition competition { id } } }";
const REGISTER: &str = "mutation($id: ID!, $key: String, $waitlist: Boolean) {
    register(competitionId: $id, idempotencyKey: $key, waitlist: $waitlist) { id status } }";

/// A graphql-ws client subscribed through `tests/frontend/live.mjs`.
struct Subscriber {
    /// Held to keep the client running (killed when dropped).
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Subscriber {
    async fn start(app: &TestApp, token: Option<&str>, query: &str, variables: Value) -> Self {
        crate::frontend::node_packages();
        let url = format!("ws://{}/graphql/ws", app.addr);
        let mut child = Command::new("node")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/frontend/live.mjs"))
            .args([&url, token.unwrap_or("-"), query, &variables.to_string()])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        Self {
            _child: child,
            lines,
        }
    }

    /// The next line the client reported, within `WAIT`.
    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("the subscriber reported in time")
            .expect("readable")
            .expect("the subscriber is still running");
        serde_json::from_str(&line).expect("a JSON line")
    }

    /// The next event's data, skipping the connection report.
    async fn event(&mut self) -> Value {
        loop {
            let line = self.next().await;
            if line.get("connected").is_some() {
                continue;
            }
            return line["event"].clone();
        }
    }

    /// Events until `done` holds for one; that one.
    async fn until(&mut self, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let event = self.event().await;
            if done(&event) {
                return event;
            }
            assert!(Instant::now() < deadline, "no matching event: last {event}");
        }
    }
}

async fn competition(app: &TestApp, organizer: &Account, capacity: i64) -> String {
    app.new_competition(
        organizer,
        json!({ "capacity": capacity, "title": "Live Cup" }),
    )
    .await
}

async fn register(app: &TestApp, who: &Account, competition: &str, waitlist: bool) -> Value {
    app.gql_as(
        Some(&who.token),
        REGISTER,
        json!({ "id": competition, "key": uuid::Uuid::new_v4().to_string(), "waitlist": waitlist }),
    )
    .await["data"]["register"]
        .clone()
}

/// The real `mini-compete worker` on a test's database.
fn worker(app: &TestApp) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mini-compete"))
        .arg("worker")
        .env("DATABASE_URL", &app.config.database_url)
        .env("JOB_POLL_INTERVAL_MS", "200")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("worker starts")
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_made_through_another_process_reach_subscribers() {
    let mut config = test_config();
    config.jobs.worker_concurrency = 0;
    let watched = TestApp::spawn_with(config.clone()).await;
    let other = TestApp::spawn_with(config).await;
    let organizer = other.signup("ORGANIZER").await;
    let competition = competition(&other, &organizer, 2).await;
    let people = other.bulk_participants(3).await;

    let mut seats =
        Subscriber::start(&watched, None, COMPETITION, json!({ "id": competition })).await;
    let first = seats.event().await;
    assert_eq!(
        first["data"]["competitionChanged"],
        json!({ "registeredCount": 0, "waitlistCount": 0, "seatsLeft": 2, "title": "Live Cup",
                "cancelledAt": null, "organizer": { "name": "Test User" } })
    );
    let mut mine = Subscriber::start(&watched, Some(&people[2].token), MINE, json!({})).await;
    assert_eq!(mine.next().await["connected"], true);

    // Through the other server: two seats, then a waiting place.
    let seat = register(&other, &people[0], &competition, false).await;
    register(&other, &people[1], &competition, false).await;
    let full = seats
        .until(|event| event["data"]["competitionChanged"]["registeredCount"] == 2)
        .await;
    assert_eq!(full["data"]["competitionChanged"]["seatsLeft"], 0);
    let queued = register(&other, &people[2], &competition, true).await;
    assert_eq!(queued["status"], "WAITLISTED");
    let waiting = mine.event().await;
    assert_eq!(
        waiting["data"]["myRegistrationChanged"]["status"], "WAITLISTED",
        "{waiting}"
    );
    assert_eq!(
        waiting["data"]["myRegistrationChanged"]["waitlistPosition"],
        1
    );
    seats
        .until(|event| event["data"]["competitionChanged"]["waitlistCount"] == 1)
        .await;

    // A cancellation promotes; a worker process confirms the promoted registration.
    let cancelled = other
        .gql_as(
            Some(&people[0].token),
            "mutation($id: ID!) { cancelRegistration(registrationId: $id) { status } }",
            json!({ "id": seat["id"] }),
        )
        .await;
    assert_eq!(
        cancelled["data"]["cancelRegistration"]["status"],
        "CANCELLED"
    );
    let promoted = mine.event().await;
    assert_eq!(
        promoted["data"]["myRegistrationChanged"]["status"], "PENDING",
        "{promoted}"
    );
    let _worker = worker(&other);
    let confirmed = mine.event().await;
    assert_eq!(
        confirmed["data"]["myRegistrationChanged"]["status"], "CONFIRMED",
        "{confirmed}"
    );
    seats
        .until(|event| {
            let state = &event["data"]["competitionChanged"];
            state["waitlistCount"] == 0 && state["registeredCount"] == 2
        })
        .await;

    // An organizer's edit, then the end: a cancelled competition completes the stream.
    other
        .gql_as(
            Some(&organizer.token),
            "mutation($id: ID!) { updateCompetition(id: $id, input: { title: \"Live Cup II\" }) { title } }",
            json!({ "id": competition }),
        )
        .await;
    seats
        .until(|event| event["data"]["competitionChanged"]["title"] == "Live Cup II")
        .await;
    other
        .gql_as(
            Some(&organizer.token),
            "mutation($id: ID!) { cancelCompetition(id: $id) { id } }",
            json!({ "id": competition }),
        )
        .await;
    let last = seats
        .until(|event| !event["data"]["competitionChanged"]["cancelledAt"].is_null())
        .await;
    assert_eq!(last["data"]["competitionChanged"]["registeredCount"], 0);
    assert_eq!(seats.next().await, json!({ "complete": true }));
    let cancelled_mine = mine.event().await;
    assert_eq!(
        cancelled_mine["data"]["myRegistrationChanged"]["status"],
        "CANCELLED"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_and_limits_are_enforced_on_the_socket() {
    let mut config = test_config();
    config.jobs.worker_concurrency = 0;
    config.live.max_subscriptions_per_connection = 1;
    config.live.max_connections_per_user = 2;
    let app = TestApp::spawn_with(config).await;
    let participant = app.signup("PARTICIPANT").await;

    let mut bad = Subscriber::start(&app, Some("not-a-token"), MINE, json!({})).await;
    assert_eq!(bad.next().await["closed"], 4403);
    let mut anonymous = Subscriber::start(&app, None, MINE, json!({})).await;
    let refused = anonymous.event().await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{refused}"
    );

    let mut first = Subscriber::start(&app, Some(&participant.token), MINE, json!({})).await;
    assert_eq!(first.next().await["connected"], true);
    let mut second = Subscriber::start(&app, Some(&participant.token), MINE, json!({})).await;
    assert_eq!(second.next().await["connected"], true);
    let mut third = Subscriber::start(&app, Some(&participant.token), MINE, json!({})).await;
    assert_eq!(third.next().await["closed"], 4429);
    drop(first);
    // The count frees up when a socket closes.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut again = Subscriber::start(&app, Some(&participant.token), MINE, json!({})).await;
        if again.next().await["connected"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed socket was never given back"
        );
    }
    drop(second);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_that_falls_behind_is_dropped_not_buffered_for() {
    let app = TestApp::spawn_without_workers().await;
    let organizer = app.signup("ORGANIZER").await;
    let participant = app.bulk_participants(1).await.remove(0);
    let competition = competition(&app, &organizer, 5).await;
    let registration = register(&app, &participant, &competition, false).await;
    let id: uuid::Uuid = registration["id"].as_str().unwrap().parse().unwrap();
    let user: uuid::Uuid = participant.id.parse().unwrap();

    let db = mini_compete::db::pool(&app.config.database_url, 4);
    let ready = tokio::sync::watch::channel(true).1;
    let hub = mini_compete::live::Hub::spawn(db.clone(), app.config.database_url.clone(), ready);
    let mut never_read = hub.watch_registrations(user);
    let changes = mini_compete::live::Changes::spawn(db);
    // More changes than a subscriber may have unread, each in a publish window of its own.
    let change = mini_compete::live::Change::Registration {
        user_id: user,
        registration_id: id,
    };
    let backlog = mini_compete::live::USER_BACKLOG;
    let deadline = Instant::now() + WAIT;
    while never_read.len() < backlog {
        assert!(Instant::now() < deadline, "the backlog never filled");
        changes.publish(change);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    changes.publish(change);
    while !never_read.is_closed() {
        assert!(
            Instant::now() < deadline,
            "a subscriber this far behind was kept"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Dropped: what was buffered is there, then the stream ends; nothing more piles up.
    let mut received = 0;
    while tokio::time::timeout(WAIT, never_read.recv())
        .await
        .expect("ends")
        .is_some()
    {
        received += 1;
    }
    assert_eq!(received, backlog);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_closes_every_socket_with_going_away() {
    let config = test_config();
    let port = crate::helpers::free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_mini-compete"))
        .arg("serve")
        .env("DATABASE_URL", &config.database_url)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("REDIS_URL", &config.redis_url)
        .env("WORKER_CONCURRENCY", "0")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + WAIT;
    while !client
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .is_ok_and(|response| response.status() == 200)
    {
        assert!(Instant::now() < deadline, "serve never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    crate::frontend::node_packages();
    let mut subscriber = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/frontend/live.mjs"))
        .args([
            &format!("ws://127.0.0.1:{port}/graphql/ws"),
            "-",
            "subscription { competitionChanged(id: \"00000000-0000-0000-0000-000000000000\") { id } }",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(subscriber.stdout.take().unwrap()).lines();
    // The subscription fails (no such competition); the socket stays open.
    let connected = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(connected.is_some_and(|line| line.contains("connected")));
    let pid = server.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap()
            .success()
    );
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match lines.next_line().await {
                Ok(Some(line)) if line.contains("closed") => return line,
                Ok(Some(_)) => continue,
                _ => return String::new(),
            }
        }
    })
    .await
    .expect("the socket was closed");
    let closed: Value = serde_json::from_str(&closed).expect("a JSON line");
    assert_eq!(closed["closed"], 1001, "{closed}");
    let status = tokio::time::timeout(WAIT, server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    mini_compete::db::drop_database(&config.database_url)
        .await
        .unwrap();
}

/// A WebSocket of the graphql-transport-ws protocol, initialised with `token`: `Ok` once
/// acknowledged, `Err(code)` when the server closed it instead.
async fn open_socket(
    app: &TestApp,
    token: &str,
    stream: tokio::net::TcpStream,
) -> Result<WebSocketStream<tokio::net::TcpStream>, u16> {
    let mut request = format!("ws://{}/graphql/ws", app.addr)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut socket, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    socket.send(Message::text(init.to_string())).await.unwrap();
    let answer = tokio::time::timeout(WAIT, socket.next())
        .await
        .expect("the server answered connection_init in time");
    match answer {
        Some(Ok(Message::Text(text))) if text.contains("connection_ack") => Ok(socket),
        Some(Ok(Message::Close(Some(frame)))) => Err(u16::from(frame.code)),
        other => panic!("neither an ack nor a close: {other:?}"),
    }
}

/// A client that stops reading its socket is let go by the server once a message has
/// waited too long for it (the server does not buffer for it, nor hold the socket): with
/// one socket allowed per user, a second one is refused while the silent one is held, and
/// accepted once the server dropped it, though that client never closed it.
#[tokio::test(flavor = "multi_thread")]
async fn a_socket_whose_client_stops_reading_is_dropped_by_the_server() {
    let mut config = test_config();
    config.live.max_connections_per_user = 1;
    let app = TestApp::spawn_with(config).await;
    let organizer = app.signup("ORGANIZER").await;
    // Large messages, so the socket's buffers fill in moments.
    let competition = app
        .new_competition(
            &organizer,
            json!({ "title": "Silent Cup", "description": "x".repeat(5_000) }),
        )
        .await;

    // A client with a small receive buffer, which subscribes as often as it may and then
    // never reads again.
    let small = tokio::net::TcpSocket::new_v4().unwrap();
    small.set_recv_buffer_size(4 * 1024).unwrap();
    let stream = small.connect(app.addr).await.unwrap();
    let mut silent = open_socket(&app, &organizer.token, stream)
        .await
        .expect("the first socket is accepted");
    for n in 0..mini_compete::graphql::ws::DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION {
        let subscribe = json!({
            "id": n.to_string(),
            "type": "subscribe",
            "payload": {
                "query": "subscription($id: ID!) { competitionChanged(id: $id) { title description } }",
                "variables": { "id": competition },
            },
        });
        silent
            .send(Message::text(subscribe.to_string()))
            .await
            .unwrap();
    }
    let second = || async {
        let stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        open_socket(&app, &organizer.token, stream).await
    };
    assert_eq!(
        second().await.err(),
        Some(4429),
        "one socket per user while the silent one is held"
    );

    // Changes keep coming (each refreshes all twenty subscriptions) until the server has
    // let the silent socket go.
    let update = "mutation($id: ID!, $title: String!) {
        updateCompetition(id: $id, input: { title: $title }) { id } }";
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut change = 0;
    loop {
        for _ in 0..10 {
            change += 1;
            let title = format!("Silent Cup {change}");
            let body = app
                .gql_as(
                    Some(&organizer.token),
                    update,
                    json!({ "id": competition, "title": title }),
                )
                .await;
            assert!(body["errors"].is_null(), "{body}");
        }
        match second().await {
            Ok(_) => break,
            Err(code) => assert_eq!(code, 4429),
        }
        assert!(
            Instant::now() < deadline,
            "the server still holds a socket whose client stopped reading"
        );
    }
    drop(silent);
}
