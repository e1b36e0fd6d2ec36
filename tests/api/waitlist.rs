//! The waiting list and the organizer's controls, with concurrent HTTP clients: first come,
//! first served, exact positions, promotion in the transaction that frees the seat, the
//! list closed at the deadline, updates and cancellation, and no deadlock between any two
//! operations on one competition.

use std::{collections::HashSet, sync::Arc, time::Duration};

use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Account, TestApp, error_code, test_jobs_config};

const REGISTER: &str = "mutation($id: ID!, $key: String, $waitlist: Boolean) {
    register(competitionId: $id, idempotencyKey: $key, waitlist: $waitlist) {
        id status waitlistPosition } }";
const CANCEL: &str = "mutation($id: ID!) { cancelRegistration(registrationId: $id) { id status } }";
const UPDATE: &str = "mutation($id: ID!, $input: UpdateCompetitionInput!) {
    updateCompetition(id: $id, input: $input) {
        id title capacity registeredCount waitlistCount seatsLeft regDeadline startDate } }";
const CANCEL_COMPETITION: &str = "mutation($id: ID!) { cancelCompetition(id: $id) { id cancelledAt isOpen registeredCount waitlistCount } }";
const WAIT: Duration = Duration::from_secs(60);
/// Concurrent clients of the big races.
const CLIENTS: usize = 64;

async fn competition(app: &TestApp, organizer: &Account, capacity: i64) -> String {
    app.new_competition(organizer, json!({ "capacity": capacity }))
        .await
}

async fn register(app: &TestApp, who: &Account, competition: &str, waitlist: bool) -> Value {
    app.gql_as(
        Some(&who.token),
        REGISTER,
        json!({ "id": competition, "key": Uuid::new_v4().to_string(), "waitlist": waitlist }),
    )
    .await
}

/// Every participant registers (or queues), `CLIENTS` at a time; their registration ids.
async fn register_all(app: &TestApp, who: &[Account], competition: &str) -> Vec<String> {
    stream::iter(who)
        .map(|account| async move {
            let body = register(app, account, competition, true).await;
            body["data"]["register"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{body}"))
                .to_owned()
        })
        .buffered(CLIENTS)
        .collect()
        .await
}

/// The invariants that hold at every instant, checked from the rows.
async fn assert_consistent(app: &TestApp, competition: &str) {
    let counts = format!(
        "SELECT (registered_count = (SELECT count(*) FROM registrations
                   WHERE competition_id = c.id AND status IN ('PENDING', 'CONFIRMED'))
             AND waitlist_count = (SELECT count(*) FROM registrations
                   WHERE competition_id = c.id AND status = 'WAITLISTED')
             AND registered_count <= capacity)::int
           FROM competitions c WHERE id = '{competition}'"
    );
    assert_eq!(
        app.count(&counts).await,
        1,
        "counters disagree with the rows"
    );
    // A waiting list only exists while there is no free seat (or registration closed).
    let starved = format!(
        "SELECT count(*) FROM competitions WHERE id = '{competition}' AND waitlist_count > 0
            AND registered_count < capacity AND reg_deadline > now() AND cancelled_at IS NULL"
    );
    assert_eq!(
        app.count(&starved).await,
        0,
        "a free seat while people wait"
    );
}

/// Waiting registration ids in list order.
async fn waiting(app: &TestApp, competition: &str) -> Vec<String> {
    use diesel::{QueryableByName, sql_types::Text};
    use diesel_async::RunQueryDsl;
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = Text)]
        id: String,
    }
    diesel::sql_query(format!(
        "SELECT id::text AS id FROM registrations
          WHERE competition_id = '{competition}' AND status = 'WAITLISTED' ORDER BY waitlist_seq"
    ))
    .load::<Id>(&mut app.db().await)
    .await
    .unwrap()
    .into_iter()
    .map(|row| row.id)
    .collect()
}

/// Every run of the cron task schedules the next one: from now on, they are counted.
async fn count_cron_runs(app: &TestApp) {
    for sql in [
        "CREATE TABLE cron_runs (at timestamptz NOT NULL DEFAULT now())",
        "CREATE FUNCTION log_cron_run() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO cron_runs DEFAULT VALUES; RETURN NEW; END $$",
        "CREATE TRIGGER log_cron_run AFTER INSERT ON fang_tasks FOR EACH ROW
         WHEN (NEW.task_type = 'reminders') EXECUTE FUNCTION log_cron_run()",
    ] {
        app.run_sql(sql).await;
    }
}

/// Waits for `more` runs of the cron task from now.
async fn wait_for_cron_runs(app: &TestApp, more: i64) {
    let runs = app.count("SELECT count(*) FROM cron_runs").await;
    app.wait_for_count(
        &format!("SELECT (count(*) >= {runs} + {more})::int FROM cron_runs"),
        1,
        WAIT,
    )
    .await;
}

async fn position_of(app: &TestApp, who: &Account) -> Value {
    let body = app
        .gql_as(
            Some(&who.token),
            "{ myRegistrations { status waitlistPosition } }",
            json!({}),
        )
        .await;
    body["data"]["myRegistrations"][0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flash_crowd_queues_in_order_and_freed_seats_go_first_come_first_served() {
    let app = TestApp::spawn().await;
    let organizer = app.signup("ORGANIZER").await;
    let competition = competition(&app, &organizer, 1_000).await;
    let people = Arc::new(app.bulk_participants(3_000).await);

    // 3 000 at once for 1 000 seats.
    let ids = register_all(&app, &people, &competition).await;
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 3_000);
    let held = |status: &str| {
        format!(
            "SELECT count(*) FROM registrations WHERE competition_id = '{competition}' AND status IN ({status})"
        )
    };
    assert_eq!(app.count(&held("'PENDING', 'CONFIRMED'")).await, 1_000);
    assert_eq!(app.count(&held("'WAITLISTED'")).await, 2_000);
    assert_consistent(&app, &competition).await;
    let queue = waiting(&app, &competition).await;
    let account_of = |registration: &str| {
        let index = ids.iter().position(|id| id == registration).expect("known");
        &people[index]
    };
    for (place, registration) in [(1, &queue[0]), (1_000, &queue[999]), (2_000, &queue[1_999])] {
        let mine = position_of(&app, account_of(registration)).await;
        assert_eq!(
            mine,
            json!({ "status": "WAITLISTED", "waitlistPosition": place })
        );
    }
    let seated = ids.iter().find(|id| !queue.contains(id)).expect("a seat");
    let seated_view = position_of(&app, account_of(seated)).await;
    assert!(seated_view["waitlistPosition"].is_null(), "{seated_view}");

    // 300 seat holders cancel at once: exactly the first 300 waiting get their seats.
    let leaving: Vec<&String> = ids
        .iter()
        .filter(|id| !queue.contains(id))
        .take(300)
        .collect();
    stream::iter(&leaving)
        .map(|registration| {
            let app = &app;
            async move {
                let body = app
                    .gql_as(
                        Some(&account_of(registration).token),
                        CANCEL,
                        json!({ "id": registration }),
                    )
                    .await;
                assert_eq!(
                    body["data"]["cancelRegistration"]["status"], "CANCELLED",
                    "{body}"
                );
            }
        })
        .buffer_unordered(CLIENTS)
        .collect::<Vec<()>>()
        .await;
    let promoted: HashSet<&String> = queue[..300].iter().collect();
    let now_waiting = waiting(&app, &competition).await;
    assert_eq!(
        now_waiting,
        queue[300..].to_vec(),
        "promotions out of order"
    );
    assert_eq!(app.count(&held("'PENDING', 'CONFIRMED'")).await, 1_000);
    assert_consistent(&app, &competition).await;
    let first_left = position_of(&app, account_of(&now_waiting[0])).await;
    assert_eq!(first_left["waitlistPosition"], 1, "{first_left}");
    app.wait_for_count(
        "SELECT count(*) FROM mailbox WHERE kind = 'PROMOTED'",
        300,
        WAIT,
    )
    .await;
    let promoted_mailed = app
        .count(&format!(
            "SELECT count(DISTINCT registration_id) FROM mailbox
              WHERE kind = 'PROMOTED' AND registration_id::text IN ({})",
            promoted
                .iter()
                .map(|id| format!("'{id}'"))
                .collect::<Vec<_>>()
                .join(",")
        ))
        .await;
    assert_eq!(promoted_mailed, 300);

    // The organizer adds 50 seats while 100 more holders cancel: the next 150 move up.
    let more_leaving: Vec<String> = ids
        .iter()
        .filter(|id| !queue.contains(id) && !leaving.contains(id))
        .take(100)
        .cloned()
        .collect();
    let raise = app.gql_as(
        Some(&organizer.token),
        UPDATE,
        json!({ "id": competition, "input": { "capacity": 1_050 } }),
    );
    let cancels = stream::iter(&more_leaving)
        .map(|registration| {
            let app = &app;
            async move {
                app.gql_as(
                    Some(&account_of(registration).token),
                    CANCEL,
                    json!({ "id": registration }),
                )
                .await
            }
        })
        .buffer_unordered(CLIENTS)
        .collect::<Vec<Value>>();
    let (raised, cancelled) = tokio::join!(raise, cancels);
    assert_eq!(
        raised["data"]["updateCompetition"]["capacity"], 1_050,
        "{raised}"
    );
    assert!(
        cancelled
            .iter()
            .all(|body| body["data"]["cancelRegistration"]["status"] == "CANCELLED")
    );
    assert_eq!(waiting(&app, &competition).await, queue[450..].to_vec());
    assert_eq!(app.count(&held("'PENDING', 'CONFIRMED'")).await, 1_050);
    assert_consistent(&app, &competition).await;
    app.wait_for_count(
        "SELECT count(*) FROM mailbox WHERE kind = 'PROMOTED'",
        450,
        WAIT,
    )
    .await;
    assert_eq!(
        app.count("SELECT count(*) FROM mailbox WHERE kind = 'PROMOTED'")
            .await,
        app.count("SELECT count(DISTINCT registration_id) FROM mailbox WHERE kind = 'PROMOTED'")
            .await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_list_registrations_keep_the_idempotency_promise() {
    let app = TestApp::spawn_without_workers().await;
    let organizer = app.signup("ORGANIZER").await;
    let competition = competition(&app, &organizer, 1).await;
    let people = app.bulk_participants(3).await;
    register(&app, &people[0], &competition, false).await;
    let full = register(&app, &people[1], &competition, false).await;
    assert_eq!(error_code(&full), "COMPETITION_FULL");
    let variables = json!({ "id": competition, "key": "queue-once", "waitlist": true });
    let first = app
        .gql_as(Some(&people[1].token), REGISTER, variables.clone())
        .await;
    assert_eq!(first["data"]["register"]["status"], "WAITLISTED", "{first}");
    assert_eq!(first["data"]["register"]["waitlistPosition"], 1);
    let replay = app
        .gql_as(Some(&people[1].token), REGISTER, variables)
        .await;
    assert_eq!(
        replay["data"]["register"]["id"],
        first["data"]["register"]["id"]
    );
    let again = register(&app, &people[1], &competition, true).await;
    assert_eq!(error_code(&again), "ALREADY_REGISTERED", "{again}");
    let second = register(&app, &people[2], &competition, true).await;
    assert_eq!(
        second["data"]["register"]["waitlistPosition"], 2,
        "{second}"
    );
    // Leaving the list moves those behind up.
    let left = app
        .gql_as(
            Some(&people[1].token),
            CANCEL,
            json!({ "id": first["data"]["register"]["id"] }),
        )
        .await;
    assert_eq!(left["data"]["cancelRegistration"]["status"], "CANCELLED");
    assert_eq!(position_of(&app, &people[2]).await["waitlistPosition"], 1);
    assert_consistent(&app, &competition).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deadline_closes_the_list_once_whatever_the_ticks_and_workers() {
    let app = TestApp::spawn_without_workers().await;
    let organizer = app.signup("ORGANIZER").await;
    let competition = competition(&app, &organizer, 2).await;
    let people = app.bulk_participants(7).await;
    register_all(&app, &people, &competition).await;
    app.run_sql(&format!(
        "UPDATE competitions SET reg_deadline = now() - interval '1 second' WHERE id = '{competition}'"
    ))
    .await;
    count_cron_runs(&app).await;
    let mut settings = test_jobs_config();
    settings.reminder_cron = "* * * * * * *".into();
    let pools = [
        app.start_workers(settings.clone()),
        app.start_workers(settings),
    ];
    app.wait_for_count(
        "SELECT count(*) FROM mailbox WHERE kind = 'WAITLIST_CLOSED'",
        5,
        WAIT,
    )
    .await;
    // Three more ticks find nothing left to close.
    wait_for_cron_runs(&app, 3).await;
    for pool in pools {
        pool.stop().await;
    }
    assert_eq!(
        app.count("SELECT count(*) FROM mailbox WHERE kind = 'WAITLIST_CLOSED'")
            .await,
        5
    );
    assert_eq!(
        app.count("SELECT count(*) FROM registrations WHERE status = 'WAITLISTED'")
            .await,
        0
    );
    assert_consistent(&app, &competition).await;
    let listed = app
        .gql(
            "query($id: ID!) { competition(id: $id) { waitlistCount registeredCount } }",
            json!({ "id": competition }),
        )
        .await;
    assert_eq!(
        listed["data"]["competition"],
        json!({ "waitlistCount": 0, "registeredCount": 2 })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_competition_cancels_and_mails_everyone_once_and_closes_it() {
    let app = TestApp::spawn().await;
    let organizer = app.signup("ORGANIZER").await;
    // Starts within a day: reminders would be due.
    let competition = app
        .new_competition(
            &organizer,
            json!({
                "capacity": 10,
                "regDeadline": (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339(),
                "startDate": (chrono::Utc::now() + chrono::Duration::hours(5)).to_rfc3339(),
            }),
        )
        .await;
    let people = app.bulk_participants(40).await;
    register_all(&app, &people[..15], &competition).await;
    app.wait_for_count(
        &format!("SELECT count(*) FROM registrations WHERE competition_id = '{competition}' AND status = 'CONFIRMED'"),
        10,
        WAIT,
    )
    .await;

    // Registrations keep arriving while the organizer cancels.
    let late = stream::iter(&people[15..])
        .map(|who| register(&app, who, &competition, true))
        .buffer_unordered(CLIENTS)
        .collect::<Vec<Value>>();
    let cancel = app.gql_as(
        Some(&organizer.token),
        CANCEL_COMPETITION,
        json!({ "id": competition }),
    );
    let (late, cancelled) = tokio::join!(late, cancel);
    let view = &cancelled["data"]["cancelCompetition"];
    assert!(view["cancelledAt"].is_string(), "{cancelled}");
    assert_eq!(view["isOpen"], false);
    assert_eq!(view["registeredCount"], 0);
    assert_eq!(view["waitlistCount"], 0);
    for body in &late {
        let ok = body["data"]["register"]["status"].is_string();
        assert!(ok || error_code(body) == "REGISTRATION_CLOSED", "{body}");
    }
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM registrations WHERE competition_id = '{competition}' AND status <> 'CANCELLED'"
        ))
        .await,
        0
    );
    let everyone = app
        .count(&format!(
            "SELECT count(*) FROM registrations WHERE competition_id = '{competition}'"
        ))
        .await;
    assert_eq!(
        app.count("SELECT count(*) FROM mailbox WHERE kind = 'COMPETITION_CANCELLED'")
            .await,
        everyone
    );
    let closed = register(&app, &people[39], &competition, true).await;
    assert_eq!(error_code(&closed), "REGISTRATION_CLOSED", "{closed}");
    let twice = app
        .gql_as(
            Some(&organizer.token),
            CANCEL_COMPETITION,
            json!({ "id": competition }),
        )
        .await;
    assert_eq!(error_code(&twice), "BAD_USER_INPUT", "{twice}");
    let update = app
        .gql_as(
            Some(&organizer.token),
            UPDATE,
            json!({ "id": competition, "input": { "title": "Back" } }),
        )
        .await;
    assert_eq!(error_code(&update), "BAD_USER_INPUT", "{update}");
    let open_only = app
        .gql("{ competitions(openOnly: true) { totalCount } }", json!({}))
        .await;
    assert_eq!(open_only["data"]["competitions"]["totalCount"], 0);

    // No reminders for it, however often the job runs.
    count_cron_runs(&app).await;
    let mut settings = test_jobs_config();
    settings.reminder_cron = "* * * * * * *".into();
    let reminders = app.start_workers(settings);
    wait_for_cron_runs(&app, 2).await;
    reminders.stop().await;
    assert_eq!(
        app.count("SELECT count(*) FROM mailbox WHERE kind = 'REMINDER'")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_its_organizer_updates_or_cancels_and_every_rule_holds() {
    let app = TestApp::spawn_without_workers().await;
    let organizer = app.signup("ORGANIZER").await;
    let other = app.signup("ORGANIZER").await;
    let participant = app.signup("PARTICIPANT").await;
    let competition = competition(&app, &organizer, 3).await;
    let people = app.bulk_participants(2).await;
    register_all(&app, &people, &competition).await;
    let update = async |token: Option<&str>, input: Value| {
        app.gql_as(token, UPDATE, json!({ "id": competition, "input": input }))
            .await
    };
    let before = app.checksums().await;
    for (who, token, code) in [
        ("another organizer", Some(other.token.as_str()), "FORBIDDEN"),
        (
            "a participant",
            Some(participant.token.as_str()),
            "FORBIDDEN",
        ),
        ("anonymous", None, "UNAUTHENTICATED"),
    ] {
        let body = update(token, json!({ "title": "Mine now" })).await;
        assert_eq!(error_code(&body), code, "{who}: {body}");
        let body = app
            .gql_as(token, CANCEL_COMPETITION, json!({ "id": competition }))
            .await;
        assert_eq!(error_code(&body), code, "{who}: {body}");
    }
    let in_days = |days: i64| (chrono::Utc::now() + chrono::Duration::days(days)).to_rfc3339();
    for input in [
        json!({ "capacity": 1 }),
        json!({ "capacity": 0 }),
        json!({ "capacity": 1_000_001 }),
        json!({ "title": " " }),
        json!({ "title": "t".repeat(201) }),
        json!({ "description": "d".repeat(5_001) }),
        json!({ "tags": [""] }),
        json!({ "regDeadline": in_days(-1) }),
        json!({ "regDeadline": in_days(10) }),
        json!({ "startDate": in_days(1) }),
        json!({ "regDeadline": in_days(5), "startDate": in_days(4) }),
        json!({ "regDeadline": "9999-12-31T23:59:59Z" }),
    ] {
        let body = update(Some(&organizer.token), input.clone()).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{input}: {body}");
    }
    for (what, id) in [
        ("unknown", Uuid::new_v4().to_string()),
        ("malformed", "nope".to_owned()),
    ] {
        let body = app
            .gql_as(
                Some(&organizer.token),
                UPDATE,
                json!({ "id": id, "input": {} }),
            )
            .await;
        let expected = if what == "unknown" {
            "NOT_FOUND"
        } else {
            "BAD_USER_INPUT"
        };
        assert_eq!(error_code(&body), expected, "{what}: {body}");
    }
    assert_eq!(app.checksums().await, before, "a refused update wrote");

    // Absent fields stay; the rest change, the start may move with the deadline.
    let body = update(
        Some(&organizer.token),
        json!({ "title": "Renamed Cup", "capacity": 2, "regDeadline": in_days(4), "startDate": in_days(6) }),
    )
    .await;
    let updated = &body["data"]["updateCompetition"];
    assert_eq!(updated["title"], "Renamed Cup", "{body}");
    assert_eq!(updated["capacity"], 2);
    assert_eq!(updated["seatsLeft"], 0);
    let listing = app
        .gql(
            "query($o: ID) { competitions(organizerId: $o) { totalCount edges { node { title } } } }",
            json!({ "o": organizer.id }),
        )
        .await;
    assert_eq!(
        listing["data"]["competitions"]["totalCount"], 1,
        "{listing}"
    );
    let none = app
        .gql(
            "query($o: ID) { competitions(organizerId: $o) { totalCount } }",
            json!({ "o": other.id }),
        )
        .await;
    assert_eq!(none["data"]["competitions"]["totalCount"], 0);
}

/// One operation on a competition, as a participant or its organizer would send it.
#[derive(Clone, Copy, Debug)]
enum Operation {
    Seat,
    Queue,
    CancelSeat,
    CancelWaiting,
    RaiseCapacity,
    Rename,
}

const OPERATIONS: [Operation; 6] = [
    Operation::Seat,
    Operation::Queue,
    Operation::CancelSeat,
    Operation::CancelWaiting,
    Operation::RaiseCapacity,
    Operation::Rename,
];

#[tokio::test(flavor = "multi_thread")]
async fn every_pair_of_operations_on_one_competition_races_without_deadlock() {
    let app = TestApp::spawn().await;
    let organizer = app.signup("ORGANIZER").await;
    let competition = competition(&app, &organizer, 20).await;
    let people = app.bulk_participants(500).await;
    // A full competition with a waiting list, so that every operation has work to do.
    let ids = register_all(&app, &people[..60], &competition).await;
    let mut seated: Vec<(usize, String)> = Vec::new();
    let mut queued: Vec<(usize, String)> = Vec::new();
    let waiting_now = waiting(&app, &competition).await;
    for (index, id) in ids.into_iter().enumerate() {
        if waiting_now.contains(&id) {
            queued.push((index, id));
        } else {
            seated.push((index, id));
        }
    }
    let mut fresh = 60..people.len();
    let mut capacity = 20;
    for (i, first) in OPERATIONS.iter().enumerate() {
        for second in &OPERATIONS[i..] {
            let mut requests = Vec::new();
            for operation in [first, second] {
                for _ in 0..4 {
                    let request: (Option<String>, &str, Value) = match operation {
                        Operation::Seat | Operation::Queue => {
                            let who = &people[fresh.next().expect("enough people")];
                            let waitlist = matches!(operation, Operation::Queue);
                            (
                                Some(who.token.clone()),
                                REGISTER,
                                json!({ "id": competition, "key": Uuid::new_v4().to_string(), "waitlist": waitlist }),
                            )
                        }
                        Operation::CancelSeat | Operation::CancelWaiting => {
                            let pool = if matches!(operation, Operation::CancelSeat) {
                                &mut seated
                            } else {
                                &mut queued
                            };
                            let Some((who, id)) = pool.pop() else {
                                continue;
                            };
                            (Some(people[who].token.clone()), CANCEL, json!({ "id": id }))
                        }
                        Operation::RaiseCapacity => {
                            capacity += 1;
                            (
                                Some(organizer.token.clone()),
                                UPDATE,
                                json!({ "id": competition, "input": { "capacity": capacity } }),
                            )
                        }
                        Operation::Rename => (
                            Some(organizer.token.clone()),
                            UPDATE,
                            json!({ "id": competition, "input": { "title": format!("Cup {}", Uuid::new_v4().simple()) } }),
                        ),
                    };
                    requests.push(request);
                }
            }
            let answers =
                futures_util::future::join_all(requests.iter().map(|(token, query, variables)| {
                    app.gql_as(token.as_deref(), query, variables.clone())
                }))
                .await;
            for answer in &answers {
                if let Some(code) = answer["errors"][0]["extensions"]["code"].as_str() {
                    // Capacity raises race each other: a lower one may come second.
                    assert!(
                        ["COMPETITION_FULL", "ALREADY_REGISTERED", "BAD_USER_INPUT"]
                            .contains(&code),
                        "{first:?} × {second:?}: {answer}"
                    );
                }
            }
            assert_consistent(&app, &competition).await;
        }
    }
    // Whatever happened, the waiting list still comes out in order and gap-free.
    let queue = waiting(&app, &competition).await;
    let positions = app
        .count(&format!(
            "SELECT count(*) FROM (SELECT waitlist_seq, row_number() OVER (ORDER BY waitlist_seq) AS place
               FROM registrations WHERE competition_id = '{competition}' AND status = 'WAITLISTED') ranked"
        ))
        .await;
    assert_eq!(positions as usize, queue.len());
}
