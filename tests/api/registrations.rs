use std::{collections::HashSet, sync::Arc};

use serde_json::{Value, json};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::helpers::{Account, TestApp, error_code, test_config};

const REGISTER: &str = "mutation($id: ID!, $key: String) {
    register(competitionId: $id, idempotencyKey: $key) {
        id status createdAt confirmedAt user { id } competition { id registeredCount seatsLeft }
    } }";
const CANCEL: &str = "mutation($id: ID!) { cancelRegistration(registrationId: $id) {
    id status competition { registeredCount seatsLeft } } }";

async fn open_competition(app: &TestApp, capacity: i64) -> String {
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

/// Registers through the `Idempotency-Key` header instead of the argument.
async fn register_with_header(app: &TestApp, who: &Account, competition: &str, key: &str) -> Value {
    app.client
        .post(app.url("/graphql"))
        .bearer_auth(&who.token)
        .header("Idempotency-Key", key)
        .json(&json!({ "query": REGISTER, "variables": { "id": competition } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_participant_registers_and_the_job_is_written_with_it() {
    let app = TestApp::spawn_without_workers().await;
    let competition = open_competition(&app, 5).await;
    let participant = app.signup("PARTICIPANT").await;

    let body = register_with_header(&app, &participant, &competition, "first-try").await;
    let registration = &body["data"]["register"];
    assert_eq!(registration["status"], "PENDING", "{body}");
    assert!(registration["confirmedAt"].is_null());
    assert_eq!(registration["user"]["id"], participant.id.as_str());
    assert_eq!(registration["competition"]["registeredCount"], 1);
    assert_eq!(registration["competition"]["seatsLeft"], 4);

    let id = registration["id"].as_str().unwrap();
    let tasks = app
        .count(&format!(
            "SELECT count(*) FROM fang_tasks WHERE task_type = 'confirmation' AND state = 'new'
               AND metadata = jsonb_build_object('type', 'ConfirmRegistration', 'registration_id', '{id}', 'activation', 1)"
        ))
        .await;
    assert_eq!(tasks, 1);

    let mine = app
        .gql_as(
            Some(&participant.token),
            "{ myRegistrations { id status competition { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(mine["data"]["myRegistrations"][0]["id"], id, "{mine}");
    assert_eq!(
        mine["data"]["myRegistrations"][0]["competition"]["id"],
        competition.as_str()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_register_requests_get_their_codes_and_write_nothing() {
    let app = TestApp::spawn_without_workers().await;
    let competition = open_competition(&app, 5).await;
    let participant = app.signup("PARTICIPANT").await;
    let organizer = app.signup("ORGANIZER").await;

    let no_key = app
        .gql_as(
            Some(&participant.token),
            REGISTER,
            json!({ "id": competition }),
        )
        .await;
    assert_eq!(error_code(&no_key), "BAD_USER_INPUT", "{no_key}");

    let both_differ = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&participant.token)
        .header("Idempotency-Key", "header-key")
        .json(&json!({ "query": REGISTER, "variables": { "id": competition, "key": "argument-key" } }))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(error_code(&both_differ), "BAD_USER_INPUT", "{both_differ}");

    for key in ["", &"k".repeat(256), "tab\there", "ключ"] {
        let body = register(&app, &participant, &competition, key).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{key:?}: {body}");
    }
    let cases = [
        (
            register(&app, &organizer, &competition, "k1").await,
            "FORBIDDEN",
        ),
        (
            app.gql(REGISTER, json!({ "id": competition, "key": "k2" }))
                .await,
            "UNAUTHENTICATED",
        ),
        (
            register(&app, &participant, &Uuid::new_v4().to_string(), "k3").await,
            "NOT_FOUND",
        ),
        (
            register(&app, &participant, "not-a-uuid", "k4").await,
            "BAD_USER_INPUT",
        ),
    ];
    for (body, code) in cases {
        assert_eq!(error_code(&body), code, "{body}");
    }
    assert_eq!(app.count("SELECT count(*) FROM registrations").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM fang_tasks").await, 0);
    assert_eq!(
        app.count("SELECT sum(registered_count) FROM competitions")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replaying_a_key_returns_the_same_registration_once() {
    let app = TestApp::spawn_without_workers().await;
    let competition = open_competition(&app, 5).await;
    let other = open_competition(&app, 5).await;
    let participant = app.signup("PARTICIPANT").await;

    let first = register(&app, &participant, &competition, "replay-me").await;
    let replay = register_with_header(&app, &participant, &competition, "replay-me").await;
    assert_eq!(
        first["data"]["register"]["id"], replay["data"]["register"]["id"],
        "{replay}"
    );
    assert!(first["data"]["register"]["id"].is_string(), "{first}");
    assert_eq!(app.count("SELECT count(*) FROM registrations").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM fang_tasks").await, 1);

    let reused = register(&app, &participant, &other, "replay-me").await;
    assert_eq!(error_code(&reused), "IDEMPOTENCY_KEY_REUSED", "{reused}");

    let again = register(&app, &participant, &competition, "a-new-key").await;
    assert_eq!(error_code(&again), "ALREADY_REGISTERED", "{again}");
    assert_eq!(
        app.count("SELECT sum(registered_count) FROM competitions")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_attempt_releases_its_key() {
    let app = TestApp::spawn_without_workers().await;
    let full = open_competition(&app, 1).await;
    let open = open_competition(&app, 1).await;
    let [first, second] = <[Account; 2]>::try_from(app.bulk_participants(2).await)
        .ok()
        .unwrap();

    assert!(register(&app, &first, &full, "k").await["errors"].is_null());
    let refused = register(&app, &second, &full, "retry-key").await;
    assert_eq!(error_code(&refused), "COMPETITION_FULL", "{refused}");

    let missing = register(&app, &second, &Uuid::new_v4().to_string(), "retry-key").await;
    assert_eq!(error_code(&missing), "NOT_FOUND", "{missing}");

    let corrected = register(&app, &second, &open, "retry-key").await;
    assert_eq!(
        corrected["data"]["register"]["status"], "PENDING",
        "{corrected}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn registration_closes_at_the_deadline() {
    let app = TestApp::spawn_without_workers().await;
    let competition = open_competition(&app, 5).await;
    let participant = app.signup("PARTICIPANT").await;
    let closed = app
        .run_sql(&format!(
            "UPDATE competitions SET reg_deadline = now() - interval '1 second' WHERE id = '{competition}'"
        ))
        .await;
    assert_eq!(closed, 1);
    let body = register(&app, &participant, &competition, "late").await;
    assert_eq!(error_code(&body), "REGISTRATION_CLOSED", "{body}");
    assert_eq!(app.count("SELECT count(*) FROM registrations").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_frees_one_seat_and_registering_again_reactivates() {
    let app = TestApp::spawn_without_workers().await;
    let competition = open_competition(&app, 1).await;
    let [owner, other] = <[Account; 2]>::try_from(app.bulk_participants(2).await)
        .ok()
        .unwrap();

    let registered = register(&app, &owner, &competition, "k1").await;
    let id = registered["data"]["register"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let full = register(&app, &other, &competition, "k1").await;
    assert_eq!(error_code(&full), "COMPETITION_FULL");

    let not_mine = app
        .gql_as(Some(&other.token), CANCEL, json!({ "id": id }))
        .await;
    assert_eq!(error_code(&not_mine), "FORBIDDEN", "{not_mine}");
    let unknown = app
        .gql_as(Some(&owner.token), CANCEL, json!({ "id": Uuid::new_v4() }))
        .await;
    assert_eq!(error_code(&unknown), "NOT_FOUND");

    let cancelled = app
        .gql_as(Some(&owner.token), CANCEL, json!({ "id": id }))
        .await;
    let view = &cancelled["data"]["cancelRegistration"];
    assert_eq!(view["status"], "CANCELLED", "{cancelled}");
    assert_eq!(view["competition"]["registeredCount"], 0);
    assert_eq!(view["competition"]["seatsLeft"], 1);

    let twice = app
        .gql_as(Some(&owner.token), CANCEL, json!({ "id": id }))
        .await;
    assert_eq!(error_code(&twice), "BAD_USER_INPUT", "{twice}");
    assert_eq!(
        app.count("SELECT registered_count FROM competitions").await,
        0
    );

    let back = register(&app, &owner, &competition, "k2").await;
    assert_eq!(back["data"]["register"]["id"], id.as_str(), "{back}");
    assert_eq!(back["data"]["register"]["status"], "PENDING");
    assert_eq!(
        app.count("SELECT registered_count FROM competitions").await,
        1
    );
    assert_eq!(app.count("SELECT count(*) FROM registrations").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM fang_tasks").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_organizer_sees_a_competitions_registrations() {
    let app = TestApp::spawn_without_workers().await;
    let organizer = app.signup("ORGANIZER").await;
    let created = app.create_competition(&organizer, json!({})).await;
    let competition = created["data"]["createCompetition"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let participants = app.bulk_participants(3).await;
    for participant in &participants {
        register(&app, participant, &competition, "k").await;
    }
    let query = "query($id: ID!) { competition(id: $id) { registrations { id user { id } } } }";
    let own = app
        .gql_as(Some(&organizer.token), query, json!({ "id": competition }))
        .await;
    let users: HashSet<_> = own["data"]["competition"]["registrations"]
        .as_array()
        .unwrap_or_else(|| panic!("{own}"))
        .iter()
        .map(|registration| registration["user"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(users, participants.iter().map(|p| p.id.clone()).collect());

    let stranger = app.signup("ORGANIZER").await;
    for token in [&stranger.token, &participants[0].token] {
        let body = app
            .gql_as(Some(token), query, json!({ "id": competition }))
            .await;
        assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
    }
}

/// Sends every request at once, at most `parallel` in flight.
async fn concurrently<F, Fut>(parallel: usize, count: usize, request: F) -> Vec<Value>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Value> + Send + 'static,
{
    let gate = Arc::new(Semaphore::new(parallel));
    let tasks: Vec<_> = (0..count)
        .map(|index| {
            let gate = gate.clone();
            let future = request(index);
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.unwrap();
                future.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(count);
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

fn register_request(
    app: &TestApp,
    who: &Account,
    competition: &str,
    key: &str,
) -> impl Future<Output = Value> + Send + 'static {
    let request = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&who.token)
        .json(&json!({ "query": REGISTER, "variables": { "id": competition, "key": key } }));
    async move { request.send().await.unwrap().json().await.unwrap() }
}

fn codes(results: &[Value]) -> Vec<String> {
    results
        .iter()
        .map(
            |body| match body["errors"][0]["extensions"]["code"].as_str() {
                Some(code) => code.to_owned(),
                None => "OK".to_owned(),
            },
        )
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_hundred_racing_for_a_hundred_seats_never_oversell() {
    let app = TestApp::spawn_without_workers().await;
    let competition = open_competition(&app, 100).await;
    let participants = app.bulk_participants(300).await;

    let results = concurrently(64, participants.len(), |index| {
        register_request(&app, &participants[index], &competition, "race")
    })
    .await;
    let codes = codes(&results);
    let ok = codes.iter().filter(|code| *code == "OK").count();
    let full = codes
        .iter()
        .filter(|code| *code == "COMPETITION_FULL")
        .count();
    assert_eq!((ok, full), (100, 200), "{codes:?}");

    assert_eq!(
        app.count("SELECT registered_count FROM competitions").await,
        100
    );
    assert_eq!(app.count("SELECT count(*) FROM registrations").await, 100);
    assert_eq!(
        app.count(
            "SELECT count(*) FROM fang_tasks t JOIN registrations r
               ON r.id = (t.metadata->>'registration_id')::uuid"
        )
        .await,
        100
    );
    assert_eq!(app.count("SELECT count(*) FROM fang_tasks").await, 100);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_key_sent_thirty_times_at_once_registers_once() {
    let app = TestApp::spawn_without_workers().await;
    let competition = open_competition(&app, 10).await;
    let participant = app.bulk_participants(1).await.remove(0);

    let results = concurrently(30, 30, |_| {
        register_request(&app, &participant, &competition, "same-key")
    })
    .await;
    let ids: HashSet<_> = results
        .iter()
        .filter_map(|body| body["data"]["register"]["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    for (body, code) in results.iter().zip(codes(&results)) {
        assert!(code == "OK" || code == "REQUEST_IN_PROGRESS", "{body}");
    }
    assert_eq!(app.count("SELECT count(*) FROM registrations").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM fang_tasks").await, 1);
    assert_eq!(
        app.count("SELECT registered_count FROM competitions").await,
        1
    );
}

/// Coming back after a cancellation takes a second statement (the first meets the old
/// registration): twenty cancelled participants race back for ten seats, each with two keys
/// at once.
#[tokio::test(flavor = "multi_thread")]
async fn cancelled_participants_racing_back_for_fewer_seats_never_oversell() {
    let app = TestApp::spawn_without_workers().await;
    let competition = open_competition(&app, 20).await;
    let people = app.bulk_participants(20).await;
    for who in &people {
        let body = register(&app, who, &competition, "first").await;
        let id = body["data"]["register"]["id"].clone();
        let cancelled = app
            .gql_as(Some(&who.token), CANCEL, json!({ "id": id }))
            .await;
        assert_eq!(
            cancelled["data"]["cancelRegistration"]["status"], "CANCELLED",
            "{cancelled}"
        );
    }
    app.run_sql("UPDATE competitions SET capacity = 10").await;

    let results = concurrently(40, 40, |index| {
        let key = if index < 20 { "back" } else { "back-again" };
        register_request(&app, &people[index % 20], &competition, key)
    })
    .await;
    let mut back = HashSet::new();
    for (body, code) in results.iter().zip(codes(&results)) {
        match code.as_str() {
            "OK" => {
                assert_eq!(body["data"]["register"]["status"], "PENDING", "{body}");
                let user = body["data"]["register"]["user"]["id"].as_str().unwrap();
                assert!(back.insert(user.to_owned()), "registered twice: {body}");
            }
            "COMPETITION_FULL" | "ALREADY_REGISTERED" | "REQUEST_IN_PROGRESS" => {}
            _ => panic!("{body}"),
        }
    }
    assert_eq!(back.len(), 10, "{:?}", codes(&results));
    assert_eq!(
        app.count("SELECT registered_count FROM competitions").await,
        10
    );
    assert_eq!(
        app.count("SELECT count(*) FROM registrations WHERE status = 'PENDING'")
            .await,
        10
    );
    assert_eq!(app.count("SELECT count(*) FROM registrations").await, 20);
    // One task per activation: twenty first ones, ten again.
    assert_eq!(app.count("SELECT count(*) FROM fang_tasks").await, 30);
    assert_eq!(app.count("SELECT count(*) FROM idempotency_keys").await, 30);
}

#[tokio::test(flavor = "multi_thread")]
async fn cancellations_racing_registrations_never_oversell() {
    let app = TestApp::spawn_without_workers().await;
    let competition = open_competition(&app, 50).await;
    let holders = app.bulk_participants(50).await;
    let mut held = Vec::new();
    for holder in &holders {
        let body = register(&app, holder, &competition, "hold").await;
        held.push(
            body["data"]["register"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{body}"))
                .to_owned(),
        );
    }
    let newcomers = app.bulk_participants(100).await;

    // 25 cancellations interleaved with 100 registrations: every fifth request cancels.
    enum Step {
        Cancel(usize),
        Join(usize),
    }
    let plan: Vec<Step> = (0..125)
        .map(|index| match index % 5 {
            0 => Step::Cancel(index / 5),
            _ => Step::Join(index - index / 5 - 1),
        })
        .collect();
    let results = concurrently(
        64,
        plan.len(),
        |index| -> std::pin::Pin<Box<dyn Future<Output = Value> + Send>> {
            match plan[index] {
                Step::Cancel(holder) => {
                    let request = app
                        .client
                        .post(app.url("/graphql"))
                        .bearer_auth(&holders[holder].token)
                        .json(&json!({ "query": CANCEL, "variables": { "id": held[holder] } }));
                    Box::pin(
                        async move { request.send().await.unwrap().json::<Value>().await.unwrap() },
                    )
                }
                Step::Join(newcomer) => Box::pin(register_request(
                    &app,
                    &newcomers[newcomer],
                    &competition,
                    "join",
                )),
            }
        },
    )
    .await;
    let cancelled = results
        .iter()
        .filter(|body| body["data"]["cancelRegistration"]["status"] == "CANCELLED")
        .count();
    let joined = results
        .iter()
        .filter(|body| body["data"]["register"]["status"] == "PENDING")
        .count();
    for (body, code) in results.iter().zip(codes(&results)) {
        assert!(code == "OK" || code == "COMPETITION_FULL", "{body}");
    }
    assert_eq!(cancelled, 25);
    assert!(joined <= 25, "{joined} joined but only 25 seats were freed");

    let count = app.count("SELECT registered_count FROM competitions").await;
    let active = app
        .count("SELECT count(*) FROM registrations WHERE status <> 'CANCELLED'")
        .await;
    assert_eq!(count, active);
    assert_eq!(count, 50 - 25 + joined as i64);
    assert!(count <= 50);
}

/// A server without workers whose Redis is unreachable.
async fn spawn_without_redis() -> TestApp {
    let mut config = test_config();
    config.jobs.worker_concurrency = 0;
    config.redis_url = "redis://127.0.0.1:1".to_owned();
    TestApp::spawn_with(config).await
}

/// Redis accelerates, Postgres decides: with Redis unreachable, registering keeps every
/// promise on the Postgres path alone.
#[tokio::test(flavor = "multi_thread")]
async fn without_redis_registration_keeps_its_promises_on_postgres_alone() {
    let app = spawn_without_redis().await;
    let competition = open_competition(&app, 5).await;
    let other = open_competition(&app, 5).await;
    let participant = app.signup("PARTICIPANT").await;

    // Eight concurrent requests with one key: one registration, the others replay it.
    let bodies = futures_util::future::join_all(
        (0..8).map(|_| register(&app, &participant, &competition, "same-key")),
    )
    .await;
    let ids: HashSet<&str> = bodies
        .iter()
        .map(|body| {
            body["data"]["register"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{body}"))
        })
        .collect();
    assert_eq!(ids.len(), 1, "{bodies:?}");
    let replay = register(&app, &participant, &competition, "same-key").await;
    assert_eq!(
        replay["data"]["register"]["id"].as_str(),
        ids.iter().next().copied()
    );
    let reused = register(&app, &participant, &other, "same-key").await;
    assert_eq!(error_code(&reused), "IDEMPOTENCY_KEY_REUSED", "{reused}");

    assert_eq!(app.count("SELECT count(*) FROM registrations").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM fang_tasks").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM idempotency_keys").await, 1);
    assert_eq!(
        app.count("SELECT sum(registered_count) FROM competitions")
            .await,
        1
    );
}

/// Concurrent first attempts are registered together (one statement takes every attempt
/// queued meanwhile); each must still get what it would have got alone. Without Redis, so
/// that duplicates of one key reach Postgres too: a crowd for three seats, participants
/// trying twice with two keys, and keys sent for two competitions at once, all in flight
/// together.
#[tokio::test(flavor = "multi_thread")]
async fn a_crowd_registered_together_gets_what_each_would_alone() {
    let app = spawn_without_redis().await;
    let (small, big, other) = (
        open_competition(&app, 3).await,
        open_competition(&app, 50).await,
        open_competition(&app, 50).await,
    );
    let crowd = app.bulk_participants(8).await;
    let doubles = app.bulk_participants(6).await;
    let reusers = app.bulk_participants(4).await;
    let mut attempts: Vec<(&Account, &str, String)> = Vec::new();
    for (index, who) in crowd.iter().enumerate() {
        attempts.push((who, &small, format!("crowd-{index}")));
    }
    for who in &doubles {
        attempts.push((who, &big, "first".to_owned()));
        attempts.push((who, &big, "second".to_owned()));
    }
    for who in &reusers {
        attempts.push((who, &big, "shared".to_owned()));
        attempts.push((who, &other, "shared".to_owned()));
    }
    let bodies = futures_util::future::join_all(
        attempts
            .iter()
            .map(|(who, competition, key)| register(&app, who, competition, key)),
    )
    .await;

    // Every registration answered went to the request that asked for it.
    for ((who, competition, _), body) in attempts.iter().zip(&bodies) {
        let registration = &body["data"]["register"];
        if !registration.is_null() {
            assert_eq!(registration["user"]["id"], who.id.as_str(), "{body}");
            assert_eq!(registration["competition"]["id"], *competition, "{body}");
        }
    }
    let codes = codes(&bodies);
    let mut crowd_codes = codes[..8].to_vec();
    crowd_codes.sort();
    assert_eq!(
        crowd_codes,
        [vec!["COMPETITION_FULL"; 5], vec!["OK"; 3]].concat(),
        "{bodies:?}"
    );
    for pair in codes[8..20].chunks(2) {
        let mut pair = pair.to_vec();
        pair.sort();
        assert_eq!(pair, ["ALREADY_REGISTERED", "OK"], "{bodies:?}");
    }
    for pair in codes[20..].chunks(2) {
        let mut pair = pair.to_vec();
        pair.sort();
        assert_eq!(pair, ["IDEMPOTENCY_KEY_REUSED", "OK"], "{bodies:?}");
    }

    let registered = 3 + 6 + 4;
    assert_eq!(
        app.count("SELECT count(*) FROM registrations").await,
        registered
    );
    assert_eq!(
        app.count("SELECT count(*) FROM fang_tasks").await,
        registered
    );
    assert_eq!(
        app.count("SELECT count(*) FROM idempotency_keys").await,
        registered
    );
    assert_eq!(
        app.count(
            "SELECT count(*) FROM competitions c
              WHERE registered_count <> (SELECT count(*) FROM registrations r
                                          WHERE r.competition_id = c.id)"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_attempt_blocks_its_key_only_until_the_lock_expires() {
    let mut config = test_config();
    config.jobs.worker_concurrency = 0;
    config.idempotency_lock_secs = 1;
    let app = TestApp::spawn_with(config).await;
    let competition = open_competition(&app, 5).await;
    let participant = app.bulk_participants(1).await.remove(0);

    // A process that reserved the key and died before finishing.
    let store = mini_compete::idempotency::IdempotencyStore::new(
        mini_compete::redis::pool(&app.config.redis_url).unwrap(),
        mini_compete::redis::Breaker::default(),
        mini_compete::db::pool(&app.config.database_url, 2),
        &app.config.redis_key_prefix,
        60,
        1,
    );
    let crashed = store
        .reserve(
            participant.id.parse().unwrap(),
            "crash-key",
            competition.parse().unwrap(),
        )
        .await
        .unwrap();
    assert!(matches!(
        crashed,
        mini_compete::idempotency::Reservation::Acquired(_)
    ));

    let blocked = register(&app, &participant, &competition, "crash-key").await;
    assert_eq!(error_code(&blocked), "REQUEST_IN_PROGRESS", "{blocked}");
    assert_eq!(
        blocked["errors"][0]["message"],
        "Request already in progress"
    );

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let body = register(&app, &participant, &competition, "crash-key").await;
        if body["data"]["register"]["status"] == "PENDING" {
            break;
        }
        assert_eq!(error_code(&body), "REQUEST_IN_PROGRESS", "{body}");
        assert!(
            std::time::Instant::now() < deadline,
            "the key stayed blocked"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
