//! Faults heal by themselves: backends terminated mid-request, a Postgres outage (a cluster
//! of the test's own, really stopped), Redis killed and restarted empty (a Redis of the
//! test's own), workers started while Postgres is down, and start-up that fails fast on
//! what waiting will not fix.

use std::{
    collections::HashSet,
    process::Stdio,
    time::{Duration, Instant},
};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

use crate::helpers::{
    Account, MAIL_INSERTS_BLOCKED, TestApp, TestPostgres, TestRedis, error_code, free_port,
    test_config, test_jobs_config,
};

const REGISTER: &str = "mutation($id: ID!, $key: String) { register(competitionId: $id, idempotencyKey: $key) { id status } }";
const CANCEL: &str = "mutation($id: ID!) { cancelRegistration(registrationId: $id) { id status } }";
const CONFIRMED: &str = "SELECT count(*) FROM registrations WHERE status = 'CONFIRMED'";
const WAIT: Duration = Duration::from_secs(30);

async fn competition(app: &TestApp, capacity: i64) -> String {
    let organizer = app.signup("ORGANIZER").await;
    let body = app
        .create_competition(&organizer, json!({ "capacity": capacity }))
        .await;
    body["data"]["createCompetition"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

async fn register(app: &TestApp, who: &Account, competition: &str, key: &str) -> Value {
    app.gql_as(
        Some(&who.token),
        REGISTER,
        json!({ "id": competition, "key": key }),
    )
    .await
}

fn registration_id(body: &Value) -> String {
    body["data"]["register"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

/// Holds `LOCK TABLE competitions`, so that whatever touches the table waits.
async fn lock_competitions(app: &TestApp) -> AsyncPgConnection {
    let mut conn = AsyncPgConnection::establish(&app.config.database_url)
        .await
        .unwrap();
    for sql in ["BEGIN", "LOCK TABLE competitions IN ACCESS EXCLUSIVE MODE"] {
        diesel::sql_query(sql).execute(&mut conn).await.unwrap();
    }
    conn
}

/// Sends `query` while the competitions are locked, terminates the backend it waits in
/// (as a server shutdown does: SQLSTATE 57P01), and returns the answer.
async fn answer_with_backend_terminated(
    app: &TestApp,
    token: &str,
    query: &'static str,
    variables: Value,
) -> Value {
    let mut lock = lock_competitions(app).await;
    let request = {
        let (client, url, token) = (app.client.clone(), app.url("/graphql"), token.to_owned());
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({ "query": query, "variables": variables }))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    const WAITING: &str = "SELECT count(*) FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock'";
    app.wait_for_count(WAITING, 1, WAIT).await;
    let terminated = app
        .count(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .await;
    assert_eq!(terminated, 1);
    diesel::sql_query("ROLLBACK")
        .execute(&mut lock)
        .await
        .unwrap();
    request.await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_lost_mid_request_is_service_unavailable_and_writes_nothing() {
    let app = TestApp::spawn_without_workers().await;
    let competition = competition(&app, 5).await;
    let (holder, newcomer) = (
        app.signup("PARTICIPANT").await,
        app.signup("PARTICIPANT").await,
    );
    let held = registration_id(&register(&app, &holder, &competition, "first").await);
    let before = app.checksums().await;

    let registering = answer_with_backend_terminated(
        &app,
        &newcomer.token,
        REGISTER,
        json!({ "id": competition, "key": "cut-off" }),
    )
    .await;
    assert_eq!(
        error_code(&registering),
        "SERVICE_UNAVAILABLE",
        "{registering}"
    );
    let cancelling =
        answer_with_backend_terminated(&app, &holder.token, CANCEL, json!({ "id": held })).await;
    assert_eq!(
        error_code(&cancelling),
        "SERVICE_UNAVAILABLE",
        "{cancelling}"
    );
    let reading = answer_with_backend_terminated(
        &app,
        &holder.token,
        "{ competitions { totalCount } }",
        json!({}),
    )
    .await;
    assert_eq!(error_code(&reading), "SERVICE_UNAVAILABLE", "{reading}");
    for body in [&registering, &cancelling, &reading] {
        assert!(!body.to_string().contains("terminating"), "leaks: {body}");
    }
    assert_eq!(app.checksums().await, before, "something was written");

    // Nothing was written, the key was released: the retry goes through.
    let retried = register(&app, &newcomer, &competition, "cut-off").await;
    assert_eq!(
        retried["data"]["register"]["status"], "PENDING",
        "{retried}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_the_server_ended_while_idle_are_never_lent() {
    let app = TestApp::spawn_without_workers().await;
    const READ: &str = "{ competitions { totalCount } }";
    // Several connections in the pool, all idle afterwards.
    let warming: Vec<_> = (0..8).map(|_| app.gql(READ, json!({}))).collect();
    for body in futures_util::future::join_all(warming).await {
        assert!(body["errors"].is_null(), "{body}");
    }
    app.run_sql(
        "CREATE TABLE ended AS SELECT pid FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .await;
    assert!(app.count("SELECT count(*) FROM ended").await >= 2);
    app.run_sql("SELECT pg_terminate_backend(pid) FROM ended")
        .await;
    app.wait_for_count(
        "SELECT count(*) FROM pg_stat_activity WHERE pid IN (SELECT pid FROM ended)",
        0,
        WAIT,
    )
    .await;

    // The pool lends none of them (lending one would fail its request).
    for _ in 0..20 {
        let body = app.gql(READ, json!({})).await;
        assert!(body["errors"].is_null(), "{body}");
    }
}

/// Logs, from inside Postgres, every attempt counted against a task.
const LOG_ATTEMPTS: [&str; 3] = [
    "CREATE TABLE counted_attempts (task_id uuid, retries integer, error_message text)",
    "CREATE FUNCTION log_attempt() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN INSERT INTO counted_attempts VALUES (NEW.id, NEW.retries, NEW.error_message);
     RETURN NEW; END $$",
    "CREATE TRIGGER log_attempt AFTER UPDATE ON fang_tasks FOR EACH ROW
     WHEN (NEW.retries > OLD.retries OR NEW.state = 'failed') EXECUTE FUNCTION log_attempt()",
];

#[tokio::test(flavor = "multi_thread")]
async fn confirmations_cut_off_by_an_outage_finish_within_seconds_of_postgres_returning() {
    let cluster = TestPostgres::start().await;
    let mut config = test_config();
    config.database_url = cluster.url("mc_outage");
    // A short lease: were a live worker's tasks ever taken from it, it would show here.
    config.jobs = test_jobs_config();
    config.jobs.job_stall_timeout_secs = 3;
    let app = TestApp::spawn_with(config).await;
    for sql in LOG_ATTEMPTS {
        app.run_sql(sql).await;
    }
    let competition = competition(&app, 100).await;
    let participants = app.bulk_participants(12).await;

    // Confirmations hang on the mailbox; the workers are in the midst of them when Postgres
    // stops.
    let mut lock = AsyncPgConnection::establish(&app.config.database_url)
        .await
        .unwrap();
    for sql in ["BEGIN", "LOCK TABLE mailbox IN SHARE ROW EXCLUSIVE MODE"] {
        diesel::sql_query(sql).execute(&mut lock).await.unwrap();
    }
    for (index, who) in participants.iter().enumerate() {
        let body = register(&app, who, &competition, &format!("k{index}")).await;
        assert_eq!(body["data"]["register"]["status"], "PENDING", "{body}");
    }
    app.wait_for_count(MAIL_INSERTS_BLOCKED, 1, WAIT).await;
    cluster.stop();
    drop(lock);
    // The outage lasts longer than a lease.
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.start_again().await;
    let back = Instant::now();
    app.wait_for_count(CONFIRMED, 12, Duration::from_secs(5))
        .await;
    eprintln!("all confirmed {:?} after Postgres returned", back.elapsed());
    assert_eq!(app.count("SELECT count(*) FROM counted_attempts").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM failed_jobs").await, 0);
    assert_eq!(
        app.count("SELECT count(*) FROM mailbox WHERE kind = 'CONFIRMATION'")
            .await,
        12
    );
}

/// The keys this test's Redis holds under the app's prefix.
async fn redis_keys(redis: &TestRedis, prefix: &str) -> usize {
    let client = bb8_redis::redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = bb8_redis::redis::cmd("KEYS")
        .arg(format!("{prefix}:idem:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn registering_survives_redis_dying_and_coming_back_empty() {
    let redis = TestRedis::start().await;
    let mut config = test_config();
    config.jobs.worker_concurrency = 0;
    config.redis_url = redis.url();
    let app = TestApp::spawn_with(config).await;
    let competition = competition(&app, 1_000).await;
    let participants = app.bulk_participants(41).await;
    let register_all = |who: &'static [Account], offset: usize| {
        let app = &app;
        let competition = competition.clone();
        async move {
            futures_util::future::join_all(who.iter().enumerate().map(|(index, who)| {
                let competition = competition.clone();
                async move {
                    let body =
                        register(app, who, &competition, &format!("key-{}", offset + index)).await;
                    registration_id(&body)
                }
            }))
            .await
        }
    };
    let participants: &'static [Account] = Box::leak(participants.into_boxed_slice());
    let before = register_all(&participants[..20], 0).await;
    assert!(redis_keys(&redis, &app.config.redis_key_prefix).await >= 20);
    let port = redis.kill();

    // Redis gone: registrations keep succeeding, a duplicate storm registers once.
    let during = register_all(&participants[20..40], 20).await;
    let storm = futures_util::future::join_all(
        (0..6).map(|_| register(&app, &participants[40], &competition, "storm")),
    )
    .await;
    let storm_ids: HashSet<String> = storm.iter().map(registration_id).collect();
    assert_eq!(storm_ids.len(), 1, "{storm:?}");

    // Redis back, empty: replays still return their registrations.
    let redis = TestRedis::start_on(port).await;
    for (index, expected) in before.iter().chain(&during).enumerate() {
        let body = register(
            &app,
            &participants[index],
            &competition,
            &format!("key-{index}"),
        )
        .await;
        assert_eq!(&registration_id(&body), expected, "replay of key-{index}");
    }
    assert_eq!(app.count("SELECT count(*) FROM registrations").await, 41);
    assert_eq!(
        app.count("SELECT count(*) FROM fang_tasks WHERE task_type = 'confirmation'")
            .await,
        41
    );
    assert_eq!(
        app.count("SELECT registered_count FROM competitions").await,
        41
    );
    // The fast path resumes by itself: replays are recorded in Redis again.
    let deadline = Instant::now() + WAIT;
    while redis_keys(&redis, &app.config.redis_key_prefix).await == 0 {
        assert!(Instant::now() < deadline, "Redis never used again");
        let body = register(&app, &participants[0], &competition, "key-0").await;
        registration_id(&body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A participant and a competition with fixed ids, as a seed script would make them in
/// every database it fills; returns the participant's token and the competition's id.
async fn fixed_world(app: &TestApp) -> (String, String) {
    const PARTICIPANT: &str = "00000000-0000-4000-8000-000000000001";
    const ORGANIZER: &str = "00000000-0000-4000-8000-000000000002";
    const COMPETITION: &str = "00000000-0000-4000-8000-000000000003";
    app.run_sql(&format!(
        "INSERT INTO users (id, name, email, password_hash, role) VALUES
           ('{PARTICIPANT}', 'Pia', 'pia@fixed.example', '!', 'PARTICIPANT'),
           ('{ORGANIZER}', 'Olga', 'olga@fixed.example', '!', 'ORGANIZER')"
    ))
    .await;
    app.run_sql(&format!(
        "INSERT INTO competitions (id, organizer_id, title, description, capacity, reg_deadline, start_date)
         VALUES ('{COMPETITION}', '{ORGANIZER}', 'Fixed Cup', '', 5,
                 now() + interval '2 days', now() + interval '3 days')"
    ))
    .await;
    let user = mini_compete::users::User {
        id: PARTICIPANT.parse().unwrap(),
        name: "Pia".into(),
        email: "pia@fixed.example".into(),
        role: mini_compete::users::Role::Participant,
        created_at: chrono::Utc::now(),
    };
    let token = mini_compete::auth::JwtKeys::new(crate::helpers::JWT_SECRET.as_bytes(), 3600)
        .issue(&user)
        .unwrap();
    (token, COMPETITION.to_owned())
}

async fn register_as(app: &TestApp, token: &str, competition: &str, key: &str) -> Value {
    app.gql_as(
        Some(token),
        REGISTER,
        json!({ "id": competition, "key": key }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_created_afresh_never_meets_the_keys_of_the_old_one() {
    let mut config = test_config();
    config.jobs.worker_concurrency = 0;
    let old = TestApp::spawn_with(config.clone()).await;
    let (token, competition) = fixed_world(&old).await;
    let first = registration_id(&register_as(&old, &token, &competition, "k").await);

    // The same name, dropped and created again, filled with the same ids; Redis still
    // holds the old key under the same prefix.
    mini_compete::db::drop_database(&config.database_url)
        .await
        .unwrap();
    mini_compete::db::prepare(&config.database_url)
        .await
        .unwrap();
    fixed_world(&old).await;

    // The server that lived through it reads the old key, and Postgres overrules it.
    let again = register_as(&old, &token, &competition, "k").await;
    assert_eq!(again["data"]["register"]["status"], "PENDING", "{again}");
    let second = registration_id(&again);
    assert_ne!(second, first);
    // A server started on the new database never looks at the old keys at all.
    let fresh = TestApp::spawn_with(config).await;
    let replay = register_as(&fresh, &token, &competition, "k").await;
    assert_eq!(registration_id(&replay), second);
    assert_eq!(fresh.count("SELECT count(*) FROM registrations").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn registering_again_after_cancelling_gets_a_new_confirmation_mail() {
    let app = TestApp::spawn().await;
    let competition = competition(&app, 5).await;
    let participant = app.signup("PARTICIPANT").await;
    let id = registration_id(&register(&app, &participant, &competition, "one").await);
    app.wait_for_count(CONFIRMED, 1, WAIT).await;
    let cancelled = app
        .gql_as(Some(&participant.token), CANCEL, json!({ "id": id }))
        .await;
    assert_eq!(
        cancelled["data"]["cancelRegistration"]["status"],
        "CANCELLED"
    );
    let again = registration_id(&register(&app, &participant, &competition, "two").await);
    assert_eq!(again, id, "the row is reactivated");
    app.wait_for_count(CONFIRMED, 1, WAIT).await;
    app.wait_for_count(
        "SELECT count(*) FROM mailbox WHERE kind = 'CONFIRMATION'",
        2,
        WAIT,
    )
    .await;
    // Each activation's task, run once more, mails nothing new.
    app.run_sql(&format!(
        "INSERT INTO fang_tasks (metadata, task_type) VALUES
           (jsonb_build_object('type', 'ConfirmRegistration', 'registration_id', '{id}', 'activation', 1), 'confirmation'),
           (jsonb_build_object('type', 'ConfirmRegistration', 'registration_id', '{id}', 'activation', 2), 'confirmation')"
    ))
    .await;
    app.wait_for_count(
        "SELECT count(*) FROM fang_tasks WHERE task_type = 'confirmation'",
        0,
        WAIT,
    )
    .await;
    assert_eq!(
        app.count("SELECT count(*) FROM mailbox WHERE kind = 'CONFIRMATION'")
            .await,
        2
    );
    assert_eq!(
        app.count("SELECT count(DISTINCT activation) FROM mailbox")
            .await,
        2
    );
}

/// Reads a process's log lines until one contains `needle`.
async fn wait_for_line(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    needle: &str,
) {
    let found = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(needle) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "never logged {needle:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_started_while_postgres_is_down_waits_and_then_works() {
    let cluster = TestPostgres::start().await;
    cluster.stop();
    let database_url = cluster.url("mc_late");
    let mut worker = Command::new(env!("CARGO_BIN_EXE_mini-compete"))
        .arg("worker")
        .env("DATABASE_URL", &database_url)
        .env("JOB_POLL_INTERVAL_MS", "200")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(worker.stdout.take().unwrap()).lines();
    wait_for_line(&mut lines, "database not ready; retrying").await;
    wait_for_line(&mut lines, "database not ready; retrying").await;
    assert!(worker.try_wait().unwrap().is_none(), "the worker gave up");

    cluster.start_again().await;
    let mut config = test_config();
    config.database_url = database_url;
    config.jobs.worker_concurrency = 0;
    let app = TestApp::spawn_with(config).await;
    wait_for_line(&mut lines, "workers started").await;
    let competition = competition(&app, 5).await;
    let participant = app.bulk_participants(1).await.remove(0);
    register(&app, &participant, &competition, "late").await;
    app.wait_for_count(CONFIRMED, 1, WAIT).await;
    worker.kill().await.unwrap();
}

/// Runs `mini-compete <command>` and expects it to give up at once, saying `cause`.
async fn fails_fast(command: &str, env: &[(&str, String)], cause: &str) {
    let mut process = Command::new(env!("CARGO_BIN_EXE_mini-compete"));
    process
        .arg(command)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in env {
        process.env(name, value);
    }
    let output = tokio::time::timeout(WAIT, process.output())
        .await
        .unwrap_or_else(|_| panic!("{command} kept waiting instead of failing"))
        .unwrap();
    assert!(!output.status.success(), "{command} succeeded");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains(cause),
        "{command} did not name {cause:?}: {said}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn start_up_fails_fast_naming_what_waiting_will_not_fix() {
    let unknown_role = "postgres://nobody@127.0.0.1:5432/mc_nobody".to_owned();
    for command in ["serve", "worker"] {
        fails_fast(
            command,
            &[
                ("DATABASE_URL", unknown_role.clone()),
                ("BIND_ADDR", "127.0.0.1:0".into()),
            ],
            "role \"nobody\" does not exist",
        )
        .await;
        fails_fast(
            command,
            &[("DATABASE_URL", "postgres://127.0.0.1:5432".into())],
            "DATABASE_URL names no database",
        )
        .await;
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = test_config();
    fails_fast(
        "serve",
        &[
            ("DATABASE_URL", config.database_url.clone()),
            ("BIND_ADDR", taken.local_addr().unwrap().to_string()),
        ],
        "BIND_ADDR",
    )
    .await;
    mini_compete::db::drop_database(&config.database_url)
        .await
        .unwrap();
    let _ = free_port();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scheduled_job_prunes_old_idempotency_records() {
    let app = TestApp::spawn_without_workers().await;
    let competition = competition(&app, 5).await;
    let (old, recent) = (
        app.signup("PARTICIPANT").await,
        app.signup("PARTICIPANT").await,
    );
    register(&app, &old, &competition, "old").await;
    register(&app, &recent, &competition, "recent").await;
    app.run_sql(
        "UPDATE idempotency_keys SET created_at = now() - interval '2 hours' WHERE key = 'old'",
    )
    .await;
    let mut settings = test_jobs_config();
    settings.prune_cron = "* * * * * * *".into();
    settings.idempotency_ttl_secs = 3600;
    let workers = app.start_workers(settings);
    app.wait_for_count(
        "SELECT count(*) FROM idempotency_keys WHERE key = 'old'",
        0,
        WAIT,
    )
    .await;
    workers.stop().await;
    assert_eq!(
        app.count("SELECT count(*) FROM idempotency_keys WHERE key = 'recent'")
            .await,
        1
    );
}
