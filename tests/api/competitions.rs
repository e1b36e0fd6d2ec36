use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use diesel::sql_query;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_code};

fn in_days(days: i64) -> String {
    (Utc::now() + Duration::days(days)).to_rfc3339()
}

#[tokio::test(flavor = "multi_thread")]
async fn organizer_creates_a_competition_with_defaults() {
    let app = TestApp::spawn().await;
    let organizer = app.signup("ORGANIZER").await;
    let deadline = in_days(3);
    let body = app
        .create_competition(
            &organizer,
            json!({ "regDeadline": deadline, "tags": ["rust", "rust", " chess "] }),
        )
        .await;
    let created = &body["data"]["createCompetition"];
    assert_eq!(created["organizer"]["id"], organizer.id.as_str(), "{body}");
    assert_eq!(created["tags"], json!(["rust", "chess"]));
    assert_eq!(created["seatsLeft"], 10);
    assert_eq!(created["registeredCount"], 0);
    assert_eq!(created["isOpen"], true);
    let parse = |value: &Value| DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap();
    assert_eq!(
        parse(&created["startDate"]) - parse(&created["regDeadline"]),
        Duration::days(1)
    );

    let fetched = app
        .gql(
            "query($id: ID!) { competition(id: $id) { id title organizer { email } } }",
            json!({ "id": created["id"] }),
        )
        .await;
    assert_eq!(
        fetched["data"]["competition"]["title"], "Test Cup",
        "{fetched}"
    );
    assert_eq!(
        fetched["data"]["competition"]["organizer"]["email"],
        organizer.email.as_str()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_organizers_create_competitions() {
    let app = TestApp::spawn().await;
    let participant = app.signup("PARTICIPANT").await;
    let body = app.create_competition(&participant, json!({})).await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body}");

    let anonymous = app
        .gql(
            "mutation($input: CreateCompetitionInput!) { createCompetition(input: $input) { id } }",
            json!({ "input": { "title": "x", "description": "", "capacity": 1, "regDeadline": in_days(1) } }),
        )
        .await;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED", "{anonymous}");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_competitions_are_bad_input_and_write_nothing() {
    let app = TestApp::spawn().await;
    let organizer = app.signup("ORGANIZER").await;
    let too_many_tags: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    let deadline = in_days(3);
    let cases = [
        json!({ "capacity": 0 }),
        json!({ "capacity": -5 }),
        json!({ "capacity": 1_000_001 }),
        json!({ "regDeadline": in_days(-1) }),
        json!({ "regDeadline": in_days(3), "startDate": in_days(2) }),
        json!({ "regDeadline": deadline, "startDate": deadline }),
        json!({ "title": "  " }),
        json!({ "title": "t".repeat(201) }),
        json!({ "description": "d".repeat(5001) }),
        json!({ "tags": too_many_tags }),
        json!({ "tags": [""] }),
        json!({ "tags": ["x".repeat(41)] }),
        json!({ "regDeadline": "tomorrow" }),
    ];
    for case in cases {
        let body = app.create_competition(&organizer, case.clone()).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{case}: {body}");
    }
    let count = app.gql("{ competitions { totalCount } }", json!({})).await;
    assert_eq!(count["data"]["competitions"]["totalCount"], 0, "{count}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_id_is_null_and_malformed_id_is_bad_input() {
    let app = TestApp::spawn().await;
    let query = "query($id: ID!) { competition(id: $id) { id } }";
    let unknown = app.gql(query, json!({ "id": uuid::Uuid::new_v4() })).await;
    assert!(unknown["errors"].is_null(), "{unknown}");
    assert!(unknown["data"]["competition"].is_null());

    let malformed = app.gql(query, json!({ "id": "42" })).await;
    assert_eq!(error_code(&malformed), "BAD_USER_INPUT");
}

const PAGE: &str = "query($first: Int, $after: String, $tag: String, $openOnly: Boolean) {
    competitions(first: $first, after: $after, tag: $tag, openOnly: $openOnly) {
        totalCount
        pageInfo { hasNextPage endCursor }
        edges { cursor node { id title organizer { id email } } }
    } }";

#[tokio::test(flavor = "multi_thread")]
async fn pagination_visits_each_competition_exactly_once() {
    let app = TestApp::spawn().await;
    let organizers = [app.signup("ORGANIZER").await, app.signup("ORGANIZER").await];
    let mut organizer_of = HashMap::new();
    for index in 0..7 {
        let organizer = &organizers[index % 2];
        let body = app
            .create_competition(organizer, json!({ "title": format!("Cup {index}") }))
            .await;
        let id = body["data"]["createCompetition"]["id"].as_str().unwrap();
        organizer_of.insert(id.to_owned(), organizer);
    }

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let body = app.gql(PAGE, json!({ "first": 3, "after": after })).await;
        let connection = &body["data"]["competitions"];
        assert_eq!(connection["totalCount"], 7, "{body}");
        for edge in connection["edges"].as_array().unwrap() {
            let id = edge["node"]["id"].as_str().unwrap();
            let organizer = organizer_of[id];
            assert_eq!(edge["node"]["organizer"]["id"], organizer.id, "{body}");
            assert_eq!(edge["node"]["organizer"]["email"], organizer.email);
            seen.push(id.to_owned());
        }
        pages += 1;
        if connection["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = connection["pageInfo"]["endCursor"]
            .as_str()
            .map(str::to_owned);
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 7, "a competition was visited twice: {seen:?}");
    assert_eq!(
        seen.iter().collect::<HashSet<_>>(),
        organizer_of.keys().collect()
    );

    let bad_cursor = app.gql(PAGE, json!({ "after": "bm9wZQ" })).await;
    assert_eq!(error_code(&bad_cursor), "BAD_USER_INPUT");
    // A well-formed cursor 250 000 years BC: a valid date for chrono, not for Postgres.
    let ancient = "LTgwMDAwMDAwMDAwMDAwMDAwMDA6MDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAw";
    let out_of_range = app.gql(PAGE, json!({ "after": ancient })).await;
    assert_eq!(
        error_code(&out_of_range),
        "BAD_USER_INPUT",
        "{out_of_range}"
    );
    let too_many = app.gql(PAGE, json!({ "first": 101 })).await;
    assert_eq!(error_code(&too_many), "BAD_USER_INPUT");
}

#[tokio::test(flavor = "multi_thread")]
async fn tag_and_open_filters() {
    let app = TestApp::spawn().await;
    let organizer = app.signup("ORGANIZER").await;
    app.create_competition(&organizer, json!({ "title": "Chess", "tags": ["chess"] }))
        .await;
    app.create_competition(
        &organizer,
        json!({ "title": "Both", "tags": ["chess", "go"] }),
    )
    .await;
    let closed = app
        .create_competition(&organizer, json!({ "title": "Closed", "tags": ["go"] }))
        .await;
    let closed_id = closed["data"]["createCompetition"]["id"].as_str().unwrap();
    sql_query(
        "UPDATE competitions SET reg_deadline = now() - interval '1 hour' WHERE id = $1::uuid",
    )
    .bind::<diesel::sql_types::Text, _>(closed_id)
    .execute(&mut app.db().await)
    .await
    .unwrap();

    let titles = |body: &Value| -> HashSet<String> {
        body["data"]["competitions"]["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|edge| edge["node"]["title"].as_str().unwrap().to_owned())
            .collect()
    };
    let chess = app.gql(PAGE, json!({ "tag": "chess" })).await;
    assert_eq!(
        titles(&chess),
        HashSet::from(["Chess".into(), "Both".into()])
    );
    assert_eq!(chess["data"]["competitions"]["totalCount"], 2);

    let go_open = app
        .gql(PAGE, json!({ "tag": "go", "openOnly": true }))
        .await;
    assert_eq!(titles(&go_open), HashSet::from(["Both".into()]));

    let all = app.gql(PAGE, json!({})).await;
    assert_eq!(all["data"]["competitions"]["totalCount"], 3);
    let closed_view = app
        .gql(
            "query($id: ID!) { competition(id: $id) { isOpen } }",
            json!({ "id": closed_id }),
        )
        .await;
    assert_eq!(closed_view["data"]["competition"]["isOpen"], false);
}
