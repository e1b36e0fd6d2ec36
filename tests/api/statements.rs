//! How many statements each read shape sends to Postgres, counted by diesel's
//! instrumentation on every connection this test process opens (per database, so the
//! tests running beside it do not count); and how many commands a registration sends to
//! Redis, counted by a Redis of the test's own.

use std::{
    collections::HashMap,
    sync::{Mutex, Once, PoisonError},
};

use diesel::connection::{Instrumentation, InstrumentationEvent, set_default_instrumentation};
use serde_json::{Value, json};

use crate::helpers::{Account, TestApp, TestRedis, test_config};

/// Statements sent, by database name.
static SENT: Mutex<Option<HashMap<String, Vec<String>>>> = Mutex::new(None);

/// One connection's counter: it learns its database when the connection is made.
struct Counter {
    database: Option<String>,
}

impl Instrumentation for Counter {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartEstablishConnection { url, .. } => {
                self.database = url::Url::parse(url)
                    .ok()
                    .map(|url| url.path().trim_start_matches('/').to_owned());
            }
            InstrumentationEvent::StartQuery { query, .. } => {
                if let Some(database) = &self.database {
                    SENT.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_or_insert_with(HashMap::new)
                        .entry(database.clone())
                        .or_default()
                        .push(query.to_string());
                }
            }
            _ => {}
        }
    }
}

fn count_every_connection() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        set_default_instrumentation(|| Some(Box::new(Counter { database: None })))
            .expect("instrumentation installed");
    });
}

fn database_of(app: &TestApp) -> String {
    url::Url::parse(&app.config.database_url)
        .unwrap()
        .path()
        .trim_start_matches('/')
        .to_owned()
}

/// The statements `app`'s database received while `request` ran, but for the pool's own.
async fn statements_of<F: Future<Output = Value>>(
    app: &TestApp,
    request: F,
) -> (Value, Vec<String>) {
    let database = database_of(app);
    let take = || {
        SENT.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(HashMap::new)
            .remove(&database)
            .unwrap_or_default()
    };
    take();
    let body = request.await;
    // A connection the pool opened meanwhile sets itself up first, and the live-updates
    // publisher sends earlier writes' changes when it will: neither is the request's own
    // statement. (The pool lends a connection without a statement of its own.)
    let sent = take()
        .into_iter()
        .filter(|sql| {
            !sql.starts_with("SET TIME ZONE")
                && !sql.starts_with("SET CLIENT_ENCODING")
                && !sql.starts_with("SELECT pg_notify(")
        })
        .collect();
    (body, sent)
}

async fn query(app: &TestApp, who: Option<&Account>, document: &str, variables: Value) -> Value {
    let body = app
        .gql_as(
            who.map(|account| account.token.as_str()),
            document,
            variables,
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn each_read_shape_costs_the_statements_it_should() {
    count_every_connection();
    let app = TestApp::spawn_without_workers().await;
    let organizer = app.signup("ORGANIZER").await;
    let participant = app.signup("PARTICIPANT").await;
    let competition = app.new_competition(&organizer, json!({})).await;
    query(
        &app,
        Some(&participant),
        "mutation($id: ID!) { register(competitionId: $id, idempotencyKey: \"count-1\") { id } }",
        json!({ "id": competition }),
    )
    .await;
    // Warm: the token's account is confirmed once per process and cached, and every
    // statement is prepared once per connection.
    for _ in 0..3 {
        query(
            &app,
            Some(&participant),
            "query($id: ID!) { competition(id: $id) { title organizer { name } } }",
            json!({ "id": competition }),
        )
        .await;
    }

    let (body, sent) = statements_of(
        &app,
        query(
            &app,
            None,
            "query($id: ID!) { competition(id: $id) { title organizer { name } } }",
            json!({ "id": competition }),
        ),
    )
    .await;
    assert_eq!(
        body["data"]["competition"]["organizer"]["name"], "Test User",
        "{body}"
    );
    // One statement: no second lookup for the organizer.
    assert_eq!(
        sent.len(),
        1,
        "competition with its organizer: one statement, sent {sent:#?}"
    );
    assert!(sent[0].contains("JOIN users"), "{sent:#?}");

    for _ in 0..2 {
        app.new_competition(&organizer, json!({})).await;
    }
    // The other shapes, as they are today (a regression adds statements; fewer is the
    // goal): (document, who asks, statements).
    let shapes = [
        ("{ me { id name } }", Some(&participant), 1),
        ("{ myMail { subject } }", Some(&participant), 1),
        (
            "{ competitions(first: 20) { edges { node { title organizer { name } } } } }",
            None,
            1,
        ),
        (
            "{ myRegistrations { status competition { title organizer { name } } } }",
            Some(&participant),
            1,
        ),
        (
            "query($id: ID!) { competition(id: $id) { registrations { status user { name } } } }",
            Some(&organizer),
            1,
        ),
        // The page, then the registrations of all its competitions (three here).
        (
            "{ competitions { edges { node { title registrations { status user { name } } } } } }",
            Some(&organizer),
            2,
        ),
    ];
    let mut counted = Vec::new();
    for (document, who, _) in &shapes {
        let (_, sent) = statements_of(
            &app,
            query(&app, *who, document, json!({ "id": competition })),
        )
        .await;
        counted.push(sent);
    }
    let wrong: Vec<String> = shapes
        .iter()
        .zip(&counted)
        .filter(|((_, _, expected), sent)| sent.len() != *expected)
        .map(|((document, _, expected), sent)| {
            format!("{document}: {expected} expected, sent {sent:#?}")
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // And the joined shape reads what the batched one did.
    let mine = query(
        &app,
        Some(&participant),
        "{ myRegistrations { status competition { id title organizer { id name } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        mine["data"]["myRegistrations"],
        json!([{
            "status": "PENDING",
            "competition": {
                "id": competition,
                "title": "Test Cup",
                "organizer": { "id": organizer.id, "name": "Test User" },
            },
        }]),
        "{mine}"
    );
    let seen = query(
        &app,
        Some(&organizer),
        "query($id: ID!) { competition(id: $id) { registrations { status user { id name } } } }",
        json!({ "id": competition }),
    )
    .await;
    assert_eq!(
        seen["data"]["competition"]["registrations"],
        json!([{ "status": "PENDING", "user": { "id": participant.id, "name": "Test User" } }]),
        "{seen}"
    );
    let listed = query(
        &app,
        Some(&organizer),
        "{ competitions { edges { node { id registrations { status user { id } } } } } }",
        json!({}),
    )
    .await;
    let edges = listed["data"]["competitions"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(edges.len(), 3, "{listed}");
    for edge in edges {
        let expected = if edge["node"]["id"] == competition.as_str() {
            json!([{ "status": "PENDING", "user": { "id": participant.id } }])
        } else {
            json!([])
        };
        assert_eq!(edge["node"]["registrations"], expected, "{listed}");
    }
}

/// No competition carries a tag of more than 40 characters, so a filter by a longer one
/// (up to a megabyte of it) finds nothing without a statement; one of 40 still finds its
/// competition.
#[tokio::test(flavor = "multi_thread")]
async fn a_tag_longer_than_any_finds_nothing_without_a_statement() {
    const TAGGED: &str = "query($tag: String) {
        competitions(tag: $tag) { totalCount edges { node { tags } } } }";
    count_every_connection();
    let app = TestApp::spawn_without_workers().await;
    let organizer = app.signup("ORGANIZER").await;
    let longest = "t".repeat(40);
    app.new_competition(&organizer, json!({ "tags": [longest] }))
        .await;

    let (found, sent) =
        statements_of(&app, query(&app, None, TAGGED, json!({ "tag": longest }))).await;
    assert_eq!(found["data"]["competitions"]["totalCount"], 1, "{found}");
    assert_eq!(
        found["data"]["competitions"]["edges"][0]["node"]["tags"][0],
        longest.as_str()
    );
    assert!(!sent.is_empty());

    for tag in ["t".repeat(41), "t".repeat(900_000)] {
        let (none, sent) =
            statements_of(&app, query(&app, None, TAGGED, json!({ "tag": tag }))).await;
        let listing = &none["data"]["competitions"];
        assert_eq!(listing["totalCount"], 0, "{listing}");
        assert_eq!(listing["edges"], json!([]), "{listing}");
        assert_eq!(sent, Vec::<String>::new());
    }
}

/// Places on waiting lists cost no statement per WAITLISTED row: an organizer's listing
/// holds the whole list, so it tells each place itself; a participant's places (each on
/// another competition's list) are read together, in one statement more.
#[tokio::test(flavor = "multi_thread")]
async fn waiting_list_places_cost_no_statement_per_row() {
    count_every_connection();
    let app = TestApp::spawn_without_workers().await;
    let organizer = app.signup("ORGANIZER").await;
    let people = app.bulk_participants(4).await;
    let mut competitions = Vec::new();
    for _ in 0..3 {
        competitions.push(
            app.new_competition(&organizer, json!({ "capacity": 1 }))
                .await,
        );
    }
    // Everyone queues behind the first, in order, on the first competition; the last one
    // also on the other two, behind the first there.
    let join = "mutation($id: ID!, $key: String) {
        register(competitionId: $id, idempotencyKey: $key, waitlist: true) { id } }";
    for (n, person) in people.iter().enumerate() {
        query(
            &app,
            Some(person),
            join,
            json!({ "id": competitions[0], "key": "a" }),
        )
        .await;
        if n == 0 || n == 3 {
            for (m, competition) in competitions[1..].iter().enumerate() {
                let key = format!("b{m}");
                query(
                    &app,
                    Some(person),
                    join,
                    json!({ "id": competition, "key": key }),
                )
                .await;
            }
        }
    }
    // Warm, as in the test above.
    for who in [&organizer, &people[3]] {
        query(&app, Some(who), "{ me { id } }", json!({})).await;
    }

    let organizer_shapes = [
        (
            "query($id: ID!) { competition(id: $id) { registrations { waitlistPosition user { id } } } }",
            1,
        ),
        (
            "query($id: ID!) { competition(id: $id) { registrations { waitlistPosition } } }",
            1,
        ),
        (
            "{ competitions { edges { node { id registrations { waitlistPosition user { id } } } } } }",
            2,
        ),
    ];
    let expected_places = json!([3, 2, 1, null]);
    for (document, statements) in organizer_shapes {
        let (body, sent) = statements_of(
            &app,
            query(
                &app,
                Some(&organizer),
                document,
                json!({ "id": competitions[0] }),
            ),
        )
        .await;
        assert_eq!(sent.len(), statements, "{document}: sent {sent:#?}");
        let listings: Vec<&Value> = match &body["data"] {
            data if data["competition"].is_object() => vec![&data["competition"]],
            data if data["competitions"].is_object() => data["competitions"]["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|edge| &edge["node"])
                .filter(|node| node["id"] == competitions[0].as_str())
                .collect(),
            _ => panic!("{document}: {body}"),
        };
        for listing in listings {
            let places: Vec<&Value> = listing["registrations"]
                .as_array()
                .unwrap_or_else(|| panic!("{body}"))
                .iter()
                .map(|registration| &registration["waitlistPosition"])
                .collect();
            assert_eq!(json!(places), expected_places, "{document}: {body}");
        }
    }

    let (body, sent) = statements_of(
        &app,
        query(
            &app,
            Some(&people[3]),
            "{ myRegistrations { waitlistPosition competition { id } } }",
            json!({}),
        ),
    )
    .await;
    assert_eq!(sent.len(), 2, "{body}: sent {sent:#?}");
    let mut places: Vec<(String, i64)> = body["data"]["myRegistrations"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|mine| {
            let competition = mine["competition"]["id"].as_str().unwrap().to_owned();
            (competition, mine["waitlistPosition"].as_i64().unwrap())
        })
        .collect();
    places.sort();
    let mut expected: Vec<(String, i64)> = vec![
        (competitions[0].clone(), 3),
        (competitions[1].clone(), 1),
        (competitions[2].clone(), 1),
    ];
    expected.sort();
    assert_eq!(places, expected, "{body}");
}

/// Confirming a registration changes its status: no index may cover `status` (in its
/// columns or its predicate), or every confirmation writes each index of the table again
/// instead of being a HOT update.
///
/// HOT also needs room on the row's page. Twenty rows fit on the table's first page with
/// every confirmed version beside them, so the count does not depend on when Postgres prunes
/// the old versions; with forty, the confirmations of one burst could fill the page before
/// any old version was dead, and a couple of updates went elsewhere.
#[tokio::test(flavor = "multi_thread")]
async fn confirmations_are_hot_updates() {
    const ROWS: i64 = 20;
    let app = TestApp::spawn().await;
    let organizer = app.signup("ORGANIZER").await;
    let competition = app
        .new_competition(&organizer, json!({ "capacity": 100 }))
        .await;
    let participants = app.bulk_participants(ROWS as usize).await;
    for (n, participant) in participants.iter().enumerate() {
        query(
            &app,
            Some(participant),
            "mutation($id: ID!, $key: String) { register(competitionId: $id, idempotencyKey: $key) { id } }",
            json!({ "id": competition, "key": format!("hot-{n}") }),
        )
        .await;
    }
    let within = std::time::Duration::from_secs(30);
    app.wait_for_count(
        "SELECT count(*) FROM registrations WHERE status = 'CONFIRMED'",
        ROWS,
        within,
    )
    .await;
    // Postgres publishes its table statistics within a second or so of each transaction.
    app.wait_for_count(
        "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'registrations'",
        ROWS,
        within,
    )
    .await;
    assert_eq!(
        app.count("SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'registrations'")
            .await,
        ROWS
    );
}

/// Commands Redis has run since it started, by name (`INFO commandstats`).
async fn commands_run(redis: &TestRedis) -> HashMap<String, u64> {
    let client = bb8_redis::redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = bb8_redis::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

const REGISTER: &str = "mutation($id: ID!, $key: String) {
    register(competitionId: $id, idempotencyKey: $key) { id user { id } competition { id } } }";

/// `who` registers for `competition` with the `index`th key.
async fn register(app: &TestApp, who: &Account, competition: &str, index: usize) -> Value {
    let variables = json!({ "id": competition, "key": format!("key-{index}") });
    query(app, Some(who), REGISTER, variables).await
}

/// A server without workers on a Redis of the test's own, an organizer's competition of 100
/// seats, and `participants` participants to register for it.
struct Registering {
    redis: TestRedis,
    app: TestApp,
    competition: String,
    participants: Vec<Account>,
}

async fn registering_beside_own_redis(participants: usize) -> Registering {
    let redis = TestRedis::start().await;
    let mut config = test_config();
    config.jobs.worker_concurrency = 0;
    config.redis_url = redis.url();
    let app = TestApp::spawn_with(config).await;
    let organizer = app.signup("ORGANIZER").await;
    let competition = app
        .new_competition(&organizer, json!({ "capacity": 100 }))
        .await;
    let participants = app.bulk_participants(participants).await;
    Registering {
        redis,
        app,
        competition,
        participants,
    }
}

/// A registration asks Redis twice: it reserves its key, then records the outcome. The pool
/// lends a connection that answered a moment ago without a `PING` of its own first.
#[tokio::test(flavor = "multi_thread")]
async fn a_registration_costs_redis_two_commands() {
    let Registering {
        redis,
        app,
        competition,
        participants,
    } = registering_beside_own_redis(21).await;
    // Warm: the first registration may find only a connection that has been idle a while.
    query(
        &app,
        Some(&participants[0]),
        REGISTER,
        json!({ "id": competition, "key": "warm" }),
    )
    .await;
    // Its outcome is recorded after the answer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !commands_run(&redis).await.contains_key("setex") {
        assert!(std::time::Instant::now() < deadline, "no outcome recorded");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let before = commands_run(&redis).await;
    for (index, who) in participants[1..].iter().enumerate() {
        register(&app, who, &competition, index).await;
    }
    // Each outcome is recorded after the answer: wait for the last one.
    let expected = HashMap::from([("set".to_owned(), 20), ("setex".to_owned(), 20)]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let sent: HashMap<String, u64> = commands_run(&redis)
            .await
            .into_iter()
            // Not the test's own, nor what a new connection sends to set itself up.
            .filter(|(name, _)| name != "info" && !name.starts_with("client"))
            .map(|(name, calls)| {
                let calls = calls - before.get(&name).copied().unwrap_or(0);
                (name, calls)
            })
            .filter(|(_, calls)| *calls > 0)
            .collect();
        if sent == expected {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline && sent.get("set") == Some(&20),
            "20 registrations sent {sent:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Registrations that arrive together are registered together: a first registration alone
/// is one registering statement, and 48 at once (on three competitions) take far fewer than 48, each
/// answered with its own registration.
#[tokio::test(flavor = "multi_thread")]
async fn registrations_at_once_share_their_statements() {
    const AT_ONCE: usize = 48;
    count_every_connection();
    let Registering {
        app,
        competition,
        participants,
        ..
    } = registering_beside_own_redis(AT_ONCE + 1).await;
    let organizer = app.signup("ORGANIZER").await;
    let mut competitions = vec![competition];
    for _ in 0..2 {
        competitions.push(
            app.new_competition(&organizer, json!({ "capacity": 100 }))
                .await,
        );
    }
    let registering = |sent: &[String]| {
        sent.iter()
            .filter(|sql| sql.contains("INSERT INTO registrations"))
            .count()
    };
    let (_, sent) = statements_of(
        &app,
        register(&app, &participants[AT_ONCE], &competitions[0], 0),
    )
    .await;
    assert_eq!(registering(&sent), 1, "{sent:#?}");

    let (app, competitions) = (&app, &competitions);
    let at_once = participants[..AT_ONCE]
        .iter()
        .enumerate()
        .map(|(index, who)| {
            let competition = &competitions[index % competitions.len()];
            async move {
                json!([
                    who.id,
                    competition,
                    register(app, who, competition, index).await
                ])
            }
        });
    let (bodies, sent) = statements_of(app, async {
        json!(futures_util::future::join_all(at_once).await)
    })
    .await;
    for answer in bodies.as_array().unwrap() {
        let registration = &answer[2]["data"]["register"];
        assert_eq!(registration["user"]["id"], answer[0], "{answer}");
        assert_eq!(registration["competition"]["id"], answer[1], "{answer}");
    }
    let statements = registering(&sent);
    assert!(
        statements <= AT_ONCE / 2,
        "{AT_ONCE} registrations at once took {statements} registering statements"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM registrations").await,
        AT_ONCE as i64 + 1
    );
}

/// What Redis says about its connections: the client list, and how many it ever accepted.
async fn redis_connections(
    conn: &mut bb8_redis::redis::aio::MultiplexedConnection,
) -> (String, u64) {
    let clients: String = bb8_redis::redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(conn)
        .await
        .unwrap();
    let stats: String = bb8_redis::redis::cmd("INFO")
        .arg("stats")
        .query_async(conn)
        .await
        .unwrap();
    let accepted = stats
        .lines()
        .find_map(|line| line.strip_prefix("total_connections_received:"))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("{stats}"));
    (clients, accepted)
}

/// Requests share one Redis connection, whose commands leave together, rather than a
/// connection each: 32 registrations at once open no connection to Redis, and leave it with
/// one client beside the test's.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_registrations_share_one_redis_connection() {
    const AT_ONCE: usize = 32;
    // Signing up goes through Redis's rate limits: the server is connected from here on.
    let Registering {
        redis,
        app,
        competition,
        participants,
    } = registering_beside_own_redis(AT_ONCE).await;
    let client = bb8_redis::redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (_, accepted_before) = redis_connections(&mut conn).await;

    futures_util::future::join_all(
        participants
            .iter()
            .enumerate()
            .map(|(index, who)| register(&app, who, &competition, index)),
    )
    .await;
    assert_eq!(
        app.count("SELECT count(*) FROM registrations").await,
        AT_ONCE as i64
    );
    let (clients, accepted_after) = redis_connections(&mut conn).await;
    assert_eq!(
        accepted_after, accepted_before,
        "connections opened meanwhile"
    );
    assert_eq!(clients.lines().count(), 2, "{clients}");
}
