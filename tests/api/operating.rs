//! What an operator relies on: metrics, request ids, logs.

use std::{io::Write, process::Stdio, time::Duration};

use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::helpers::{JWT_SECRET, PASSWORD, TestApp, free_port};

/// The sum of the series named `series` whose labels include every one of `labels`
/// (`name="value"`); 0 when there is none yet.
fn sample(text: &str, series: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(name, _)| {
            let (metric, rest) = name.split_once('{').unwrap_or((name, ""));
            metric == series && labels.iter().all(|label| rest.contains(label))
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

async fn scrape(app: &TestApp) -> String {
    let response = reqwest::get(app.url("/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

/// `promtool check metrics`: the exposition format and Prometheus's naming rules.
fn promtool_check(text: &str) {
    crate::helpers::debian_package("/usr/bin/promtool", "prometheus");
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; .ci/run installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && complaints.trim().is_empty(),
        "promtool: {complaints}\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_pass_promtool_and_move_with_the_work() {
    let app = TestApp::spawn().await;
    let before = scrape(&app).await;
    let organizer = app.signup("ORGANIZER").await;
    let participant = app.signup("PARTICIPANT").await;
    let competition = app
        .new_competition(&organizer, json!({ "capacity": 1 }))
        .await;
    let register = "mutation Enter($id: ID!) { register(competitionId: $id) { id } }";
    let registered = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&participant.token)
        .header("idempotency-key", "metrics-1")
        .json(&json!({ "query": register, "variables": { "id": competition } }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 200);
    let late = app.signup("PARTICIPANT").await;
    let full = app
        .gql_as(
            Some(&late.token),
            "mutation Enter($id: ID!) { register(competitionId: $id, idempotencyKey: \"metrics-2\") { id } }",
            json!({ "id": competition }),
        )
        .await;
    assert_eq!(full["errors"][0]["extensions"]["code"], "COMPETITION_FULL");
    app.wait_for_count(
        "SELECT count(*) FROM registrations WHERE status = 'CONFIRMED'",
        1,
        Duration::from_secs(20),
    )
    .await;

    let after = scrape(&app).await;
    promtool_check(&after);
    // Other tests share the process's recorder: the counters only ever grow past ours.
    let grew = |series: &str, labels: &[&str], by: f64| {
        let (was, is) = (
            sample(&before, series, labels),
            sample(&after, series, labels),
        );
        assert!(is >= was + by, "{series}{labels:?}: {was} → {is}\n{after}");
    };
    grew("registrations_total", &[r#"outcome="PENDING""#], 1.0);
    grew(
        "registrations_total",
        &[r#"outcome="COMPETITION_FULL""#],
        1.0,
    );
    grew(
        "graphql_operations_total",
        &[r#"operation="Enter""#, r#"type="mutation""#, r#"code="OK""#],
        1.0,
    );
    grew(
        "graphql_operations_total",
        &[r#"operation="Enter""#, r#"code="COMPETITION_FULL""#],
        1.0,
    );
    grew(
        "graphql_operation_duration_seconds_count",
        &[r#"operation="Enter""#],
        2.0,
    );
    grew(
        "http_requests_total",
        &[r#"route="/graphql""#, r#"method="POST""#, r#"status="200""#],
        4.0,
    );
    grew("jobs_tasks_total", &[r#"outcome="succeeded""#], 1.0);
    grew("jobs_confirmation_lag_seconds_count", &[], 1.0);
    for (series, labels) in [
        (
            "pool_connections",
            [r#"pool="postgres""#, r#"state="idle""#],
        ),
        ("pool_connections", [r#"pool="redis""#, r#"state="in_use""#]),
    ] {
        assert!(
            after
                .lines()
                .any(|line| line.starts_with(series) && labels.iter().all(|l| line.contains(l))),
            "{series}{labels:?} missing:\n{after}"
        );
    }
    assert!(after.contains("jobs_queue_depth{"), "{after}");
}

/// `mini-compete <args>` with `environment`, its output once it ended.
async fn run_binary(args: &[&str], environment: &[(&str, &str)]) -> std::process::Output {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_mini-compete"))
        .args(args)
        .env_remove("JWT_SECRET")
        .envs(environment.iter().copied())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .expect("the binary ended")
        .expect("the binary runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_have_a_line_per_request_with_its_id_and_no_secrets() {
    let app = TestApp::spawn_without_workers().await;
    let port = free_port();
    let server = tokio::process::Command::new(env!("CARGO_BIN_EXE_mini-compete"))
        .arg("serve")
        .env("DATABASE_URL", &app.config.database_url)
        .env("REDIS_KEY_PREFIX", &app.config.redis_key_prefix)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("JWT_SECRET", JWT_SECRET)
        .env("WORKER_CONCURRENCY", "0")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("serve starts");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !reqwest::get(format!("{base}/readyz"))
        .await
        .is_ok_and(|response| response.status().is_success())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "serve never got ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = reqwest::Client::new();
    let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    let signed_up: serde_json::Value = client
        .post(format!("{base}/graphql"))
        .json(&json!({
            "query": "mutation SignMeUp($input: SignupInput!) { signup(input: $input) { token } }",
            "variables": { "input": { "name": "Log Test", "email": email, "password": PASSWORD, "role": "PARTICIPANT" } },
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = signed_up["data"]["signup"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let answered = client
        .post(format!("{base}/graphql"))
        .bearer_auth(&token)
        .header("x-request-id", "trace-me-42")
        .json(&json!({ "query": "query WhoAmI { me { id } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(answered.headers()["x-request-id"], "trace-me-42");
    let minted = client
        .get(format!("{base}/healthz"))
        .header("x-request-id", "not a sane id")
        .send()
        .await
        .unwrap();
    let minted_id = minted.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&minted_id).is_ok(), "{minted_id}");

    let pid = server.id().expect("running").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let output = server.wait_with_output().await.unwrap();
    let logs = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let request_line = |id: &str| {
        lines
            .iter()
            .find(|line| {
                line["span"]["request_id"] == id && line["fields"]["message"] == "answered"
            })
            .unwrap_or_else(|| panic!("no line for request {id}:\n{logs}"))
            .clone()
    };
    let me = request_line("trace-me-42");
    assert_eq!(me["level"], "INFO", "{me}");
    assert_eq!(me["span"]["method"], "POST", "{me}");
    assert_eq!(me["span"]["path"], "/graphql", "{me}");
    assert_eq!(me["span"]["operation"], "WhoAmI", "{me}");
    assert_eq!(me["fields"]["status"], 200, "{me}");
    assert!(me["fields"]["latency_ms"].is_number(), "{me}");
    assert_eq!(request_line(&minted_id)["span"]["path"], "/healthz");
    assert!(
        lines
            .iter()
            .any(|line| line["span"]["operation"] == "SignMeUp"),
        "{logs}"
    );
    for secret in [PASSWORD, token.as_str(), JWT_SECRET] {
        assert!(!logs.contains(secret), "a secret reached the log:\n{logs}");
    }
}

#[tokio::test]
async fn weak_jwt_secrets_refuse_to_start_unless_allowed_for_development() {
    for weak in [
        "change-me-in-production",
        "change-me-to-a-long-random-secret",
        "k3y",
    ] {
        let output = run_binary(
            &["serve"],
            &[
                ("JWT_SECRET", weak),
                ("BIND_ADDR", "127.0.0.1:0"),
                ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
            ],
        )
        .await;
        let said = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "started with {weak}: {said}");
        assert!(said.contains("JWT_SECRET"), "{said}");
        assert!(!said.contains(weak), "the secret was printed: {said}");
    }
    // Allowed: it gets past the secret (and then waits for its Postgres, which is not there).
    let mut allowed = tokio::process::Command::new(env!("CARGO_BIN_EXE_mini-compete"))
        .arg("serve")
        .env("JWT_SECRET", "k3y")
        .env("ALLOW_WEAK_JWT_SECRET", "true")
        .env("BIND_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = tokio::io::BufReader::new(allowed.stdout.take().unwrap());
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !seen.contains("ALLOW_WEAK_JWT_SECRET") {
        let mut line = String::new();
        let read = tokio::time::timeout_at(deadline, out.read_line(&mut line))
            .await
            .expect("no warning about the weak secret")
            .unwrap();
        assert!(read > 0, "serve ended: {seen}");
        seen.push_str(&line);
    }
    assert!(allowed.try_wait().unwrap().is_none(), "{seen}");
}

#[tokio::test]
async fn help_never_prints_secrets_from_the_environment() {
    let output = run_binary(
        &["--help"],
        &[
            ("DATABASE_URL", "postgres://app:pg-password-1@db/app"),
            ("REDIS_URL", "redis://:redis-password-2@cache"),
            ("JWT_SECRET", "jwt-secret-3-that-is-long-enough-to-use"),
        ],
    )
    .await;
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{help}");
    assert!(help.contains("DATABASE_URL"), "{help}");
    for secret in ["pg-password-1", "redis-password-2", "jwt-secret-3"] {
        assert!(!help.contains(secret), "--help printed {secret}:\n{help}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn healthcheck_subcommand_says_whether_the_server_is_ready() {
    let app = TestApp::spawn_without_workers().await;
    let ready = run_binary(&["healthcheck"], &[("BIND_ADDR", &app.addr.to_string())]).await;
    assert!(
        ready.status.success(),
        "{}",
        String::from_utf8_lossy(&ready.stderr)
    );
    let nobody = format!("0.0.0.0:{}", free_port());
    let down = run_binary(&["healthcheck"], &[("BIND_ADDR", &nobody)]).await;
    assert_eq!(down.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("BIND_ADDR"),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_serves_its_metrics_on_metrics_addr() {
    let mut config = crate::helpers::test_config();
    config.jobs.worker_concurrency = 0;
    let metrics_port = free_port();
    config.http.metrics_addr = Some(format!("127.0.0.1:{}", free_port()).parse().unwrap());
    let app = TestApp::spawn_with(config).await;
    // The API's listener no longer answers /metrics; METRICS_ADDR does.
    let on_api = reqwest::get(app.url("/metrics")).await.unwrap();
    assert_eq!(on_api.status(), 404);
    let own = format!("http://{}/metrics", app.config.http.metrics_addr.unwrap());
    assert_eq!(reqwest::get(&own).await.unwrap().status(), 200);

    let _worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_mini-compete"))
        .arg("worker")
        .env("DATABASE_URL", &app.config.database_url)
        .env("METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
        .env("JOB_POLL_INTERVAL_MS", "100")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("worker starts");
    let organizer = app.signup("ORGANIZER").await;
    let participant = app.signup("PARTICIPANT").await;
    let competition = app.new_competition(&organizer, json!({})).await;
    let registered = app
        .gql_as(
            Some(&participant.token),
            "mutation($id: ID!) { register(competitionId: $id, idempotencyKey: \"worker-metrics\") { id } }",
            json!({ "id": competition }),
        )
        .await;
    assert!(registered["errors"].is_null(), "{registered}");
    let worker_metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = reqwest::get(&worker_metrics).await {
            let text = response.text().await.unwrap();
            if sample(&text, "jobs_confirmation_lag_seconds_count", &[]) >= 1.0 {
                promtool_check(&text);
                assert!(
                    text.contains(r#"pool_connections{pool="postgres""#),
                    "{text}"
                );
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker's metrics never showed the confirmation"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
