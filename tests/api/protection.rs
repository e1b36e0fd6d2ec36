//! The server protects itself: password attempts are rate-limited across processes (and
//! per process while Redis is down), each request has a time budget, and past its
//! in-flight limit the server sheds load at once; under a crowd, connections are lent in the
//! order callers asked, and a crowd's own connections all wait in the listen queue.

use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestRedis, error_code, test_config};

const LOGIN: &str = "mutation($input: LoginInput!) { login(input: $input) { token } }";

async fn login_from(app: &TestApp, email: &str, forwarded_for: Option<&str>) -> Value {
    let mut request = app.client.post(app.url("/graphql")).json(&json!({
        "query": LOGIN,
        "variables": { "input": { "email": email, "password": "Wrong-pass-1" } },
    }));
    if let Some(address) = forwarded_for {
        request = request.header("x-forwarded-for", address);
    }
    request.send().await.unwrap().json().await.unwrap()
}

fn retry_after(body: &Value) -> u64 {
    body["errors"][0]["extensions"]["retryAfter"]
        .as_u64()
        .unwrap_or_else(|| panic!("no retryAfter: {body}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn login_attempts_are_limited_per_address_across_server_processes() {
    let mut config = test_config();
    config.rate_limits.per_address = 4;
    config.rate_limits.per_account = 1_000;
    let first = TestApp::spawn_with(config.clone()).await;
    let second = TestApp::spawn_with(config).await;

    // Four attempts, alternating between the two servers, each with another account.
    for attempt in 0..4 {
        let server = if attempt % 2 == 0 { &first } else { &second };
        let body = login_from(server, &format!("u{attempt}@example.com"), None).await;
        assert_eq!(
            error_code(&body),
            "UNAUTHENTICATED",
            "attempt {attempt}: {body}"
        );
    }
    for server in [&first, &second] {
        let body = login_from(server, "fresh@example.com", None).await;
        assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
        let wait = retry_after(&body);
        assert!((1..=60).contains(&wait), "{wait}");
    }
    // Sign-up is password work too.
    let signup = first
        .gql(
            "mutation($input: SignupInput!) { signup(input: $input) { token } }",
            json!({ "input": { "name": "N", "email": "new@example.com", "password": "Correct-Horse-1", "role": "PARTICIPANT" } }),
        )
        .await;
    assert_eq!(error_code(&signup), "RATE_LIMITED", "{signup}");
}

#[tokio::test(flavor = "multi_thread")]
async fn login_attempts_are_limited_per_account_and_forwarded_for_counts_only_from_trusted_proxies()
{
    let mut config = test_config();
    config.rate_limits.per_address = 3;
    config.rate_limits.per_account = 5;
    let untrusted = TestApp::spawn_with(config.clone()).await;
    // Not a trusted proxy: every forwarded address is the same client, 127.0.0.1.
    for attempt in 0..3 {
        let body = login_from(
            &untrusted,
            "victim@example.com",
            Some(&format!("10.0.0.{attempt}")),
        )
        .await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
    }
    let body = login_from(&untrusted, "other@example.com", Some("10.9.9.9")).await;
    assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");

    config.http.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    config.redis_key_prefix = format!("{}-proxied", config.redis_key_prefix);
    let proxied = TestApp::spawn_with(config).await;
    // Behind the proxy each client has its own budget: the account's limit (5) stops them.
    for attempt in 0..5 {
        let client = format!("203.0.113.{attempt}, 127.0.0.1");
        let body = login_from(&proxied, "victim@example.com", Some(&client)).await;
        assert_eq!(
            error_code(&body),
            "UNAUTHENTICATED",
            "attempt {attempt}: {body}"
        );
    }
    let body = login_from(&proxied, "victim@example.com", Some("203.0.113.99")).await;
    assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
    // Another account from a fresh client is not affected.
    let body = login_from(&proxied, "someone@example.com", Some("203.0.113.100")).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn logins_keep_working_and_limited_per_process_while_redis_is_down() {
    let redis = TestRedis::start().await;
    let mut config = test_config();
    config.redis_url = redis.url();
    config.rate_limits.per_address = 3;
    let app = TestApp::spawn_with(config).await;
    let participant = app.signup("PARTICIPANT").await;
    let port = redis.kill();

    let login =
        |password: &str| json!({ "input": { "email": participant.email, "password": password } });
    let started = Instant::now();
    let ok = app.gql(LOGIN, login(crate::helpers::PASSWORD)).await;
    assert!(ok["data"]["login"]["token"].is_string(), "{ok}");
    let second = app.gql(LOGIN, login("Wrong-pass-1")).await;
    assert_eq!(error_code(&second), "UNAUTHENTICATED", "{second}");
    let third = app.gql(LOGIN, login("Wrong-pass-1")).await;
    assert_eq!(error_code(&third), "UNAUTHENTICATED", "{third}");
    let limited = app.gql(LOGIN, login("Wrong-pass-1")).await;
    assert_eq!(error_code(&limited), "RATE_LIMITED", "{limited}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "logins waited on Redis"
    );

    // Redis back (empty): the shared counts take over again by themselves.
    let _redis = TestRedis::start_on(port).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = login_from(&app, "someone-else@example.com", None).await;
        if error_code(&body) == "UNAUTHENTICATED" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Redis never took over again: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Holds `LOCK TABLE competitions` until dropped, so that listings wait.
async fn lock_competitions(app: &TestApp) -> AsyncPgConnection {
    let mut conn = AsyncPgConnection::establish(&app.config.database_url)
        .await
        .unwrap();
    diesel::sql_query("BEGIN").execute(&mut conn).await.unwrap();
    diesel::sql_query("LOCK TABLE competitions IN ACCESS EXCLUSIVE MODE")
        .execute(&mut conn)
        .await
        .unwrap();
    conn
}

async fn listing(app: &TestApp) -> reqwest::Response {
    app.client
        .post(app.url("/graphql"))
        .json(&json!({ "query": "{ competitions { totalCount } }" }))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_past_its_time_budget_is_answered_503() {
    let mut config = test_config();
    config.http.request_timeout_secs = 1;
    let app = TestApp::spawn_with(config).await;
    let lock = lock_competitions(&app).await;

    let response = listing(&app).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "SERVICE_UNAVAILABLE", "{body}");

    drop(lock);
    let after = listing(&app).await.json::<Value>().await.unwrap();
    assert_eq!(after["data"]["competitions"]["totalCount"], 0, "{after}");
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_in_flight_limit_requests_are_shed_at_once() {
    let mut config = test_config();
    config.http.max_in_flight = 2;
    // Only the two held requests wait for the lock: a worker's claim, which reads
    // competitions to confirm, would wait too.
    config.jobs.worker_concurrency = 0;
    let app = TestApp::spawn_with(config).await;
    let lock = lock_competitions(&app).await;
    let held: Vec<_> = (0..2)
        .map(|_| {
            let client = app.client.clone();
            let url = app.url("/graphql");
            tokio::spawn(async move {
                client
                    .post(url)
                    .json(&json!({ "query": "{ competitions { totalCount } }" }))
                    .send()
                    .await
                    .map(|response| response.status())
            })
        })
        .collect();
    app.wait_for_count(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        2,
        Duration::from_secs(10),
    )
    .await;

    let shed = listing(&app).await;
    assert_eq!(shed.status(), 503);
    assert!(shed.headers().contains_key("retry-after"));
    let body: Value = shed.json().await.unwrap();
    assert_eq!(error_code(&body), "SERVICE_UNAVAILABLE", "{body}");

    drop(lock);
    for request in held {
        assert_eq!(request.await.unwrap().unwrap(), 200);
    }
    assert_eq!(listing(&app).await.status(), 200);
}

/// Under a crowd, connections go to callers in the order they asked: a caller arriving just
/// as a connection comes back must not take it from one already waiting (each such loss sent
/// a waiter to the back of the queue, the tail of `spread`'s latency).
#[tokio::test(flavor = "multi_thread")]
async fn connections_are_lent_in_the_order_callers_asked() {
    let app = TestApp::spawn().await;
    let pool = mini_compete::db::pool(&app.config.database_url, 1);
    let held = pool.get().await.unwrap();

    // Polled once, the first caller is queued.
    let mut waiting = std::pin::pin!(pool.get());
    assert!(futures_util::poll!(waiting.as_mut()).is_pending());

    drop(held);
    let mut late = std::pin::pin!(pool.get());
    assert!(
        futures_util::poll!(late.as_mut()).is_pending(),
        "a caller arriving as the connection returned took it before the waiting one"
    );
    drop(waiting.await.unwrap());
    late.await.unwrap();
    // Both waited, and `/metrics` counts them (bb8's own count no longer sees such waits),
    // beside the first caller, who waited for the connection to be opened.
    assert_eq!(pool.state().waited, 3);
    assert_eq!(pool.state().timed_out, 0);
}

/// A caller whose turn does not come within the pool's time-out is told so (the server
/// answers `SERVICE_UNAVAILABLE` for it) and counted in `pool_timeouts_total`.
#[tokio::test(flavor = "multi_thread")]
async fn a_caller_whose_turn_does_not_come_gives_up_and_is_counted() {
    let app = TestApp::spawn().await;
    let pool = mini_compete::db::pool(&app.config.database_url, 1);
    let held = pool.get().await.unwrap();
    let waited = pool
        .get()
        .await
        .err()
        .expect("no connection for the second caller");
    assert!(
        matches!(waited, bb8_redis::bb8::RunError::TimedOut),
        "{waited:?}"
    );
    assert_eq!(pool.state().timed_out, 1);
    drop(held);
    pool.get()
        .await
        .expect("lent again once the connection is back");
}

/// The kernel's count of connections dropped because a listen queue was full.
fn listen_overflows() -> u64 {
    let netstat = std::fs::read_to_string("/proc/net/netstat").expect("/proc/net/netstat");
    let mut tcp_ext = netstat.lines().filter(|line| line.starts_with("TcpExt:"));
    let (names, values) = (tcp_ext.next().unwrap(), tcp_ext.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "ListenOverflows")
        .and_then(|(_, value)| value.parse().ok())
        .expect("TcpExt ListenOverflows")
}

/// A flash crowd opens its connections all at once. The listen queue holds them all: a
/// connection dropped from a full queue waits a second for its SYN to be sent again.
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_connections_at_once_all_wait_in_the_listen_queue() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = TestApp::spawn_without_workers().await;
    let dropped_before = listen_overflows();
    let connections =
        futures_util::future::join_all((0..1000).map(|_| tokio::net::TcpStream::connect(app.addr)))
            .await;
    let dropped = listen_overflows() - dropped_before;

    let served = futures_util::future::join_all(connections.into_iter().map(|connection| async {
        let mut connection = connection.expect("connected");
        connection
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
            .await
            .expect("request sent");
        let mut answer = String::new();
        connection
            .read_to_string(&mut answer)
            .await
            .expect("answer read");
        answer.starts_with("HTTP/1.1 200")
    }))
    .await;
    assert!(served.iter().all(|served| *served), "a connection unserved");
    assert_eq!(dropped, 0, "connections dropped from a full listen queue");
}
