//! Work the server skips must not change any answer: plain selections are answered
//! without the executor (`graphql/plain.rs`), and a cached document that validation has
//! passed for good is not validated again (`graphql/documents.rs`).

use serde_json::{Value, json};

use crate::helpers::{Account, TestApp};

const USER: &str = "__typename id name email role createdAt";
const COMPETITION: &str = "__typename id title description tags capacity registeredCount
    seatsLeft isOpen waitlistCount regDeadline startDate createdAt cancelledAt";
const REGISTRATION: &str =
    "__typename id status createdAt confirmedAt cancelledAt waitlistPosition";
const MAIL: &str = "__typename id kind to subject body sentAt";

/// The same document with a fragment in every selection set, which sends every object to
/// the executor. (A directive would not: `@skip` and `@include` are gone by then.)
fn through_the_executor(document: &str) -> String {
    document.replace("__typename", "... { __typename }")
}

/// `document` answered both ways: no errors, and the same data.
async fn both_ways_agree(app: &TestApp, who: Option<&Account>, document: &str, variables: Value) {
    let token = who.map(|account| account.token.as_str());
    let plain = app.gql_as(token, document, variables.clone()).await;
    let executed = app
        .gql_as(token, &through_the_executor(document), variables)
        .await;
    assert!(plain["errors"].is_null(), "{plain}");
    assert!(executed["errors"].is_null(), "{executed}");
    assert_eq!(plain["data"], executed["data"], "{document}");
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_selections_answer_what_the_executor_does() {
    let app = TestApp::spawn().await;
    let organizer = app.signup("ORGANIZER").await;
    let seated = app.signup("PARTICIPANT").await;
    let waiting = app.signup("PARTICIPANT").await;
    let competition = app
        .new_competition(
            &organizer,
            json!({ "capacity": 1, "tags": ["chess", "blitz"] }),
        )
        .await;
    let called_off = app.new_competition(&organizer, json!({})).await;
    for (who, key) in [(&seated, "seat"), (&waiting, "wait")] {
        let body = app
            .gql_as(
                Some(&who.token),
                "mutation($id: ID!, $key: String) {
                    register(competitionId: $id, idempotencyKey: $key, waitlist: true) { id } }",
                json!({ "id": competition, "key": key }),
            )
            .await;
        assert!(body["errors"].is_null(), "{body}");
    }
    let body = app
        .gql_as(
            Some(&organizer.token),
            "mutation($id: ID!) { cancelCompetition(id: $id) { id } }",
            json!({ "id": called_off }),
        )
        .await;
    assert!(body["errors"].is_null(), "{body}");
    // Let the confirmation (a status, a time and a mail) land before comparing.
    let within = std::time::Duration::from_secs(30);
    app.wait_for_count(
        "SELECT count(*) FROM registrations WHERE status = 'CONFIRMED'",
        1,
        within,
    )
    .await;
    app.wait_for_count("SELECT count(*) FROM mailbox", 1, within)
        .await;

    both_ways_agree(
        &app,
        None,
        &format!(
            "{{ competitions(first: 20) {{ edges {{ __typename cursor node {{
                {COMPETITION} organizer {{ {USER} }} }} }} }} }}"
        ),
        json!({}),
    )
    .await;
    both_ways_agree(
        &app,
        Some(&organizer),
        &format!(
            "query($id: ID!) {{ competition(id: $id) {{ {COMPETITION} organizer {{ {USER} }}
                registrations {{ {REGISTRATION} user {{ {USER} }} }} }} }}"
        ),
        json!({ "id": competition }),
    )
    .await;
    both_ways_agree(
        &app,
        None,
        &format!("query($id: ID!) {{ competition(id: $id) {{ {COMPETITION} }} }}"),
        json!({ "id": called_off }),
    )
    .await;
    for who in [&seated, &waiting] {
        both_ways_agree(
            &app,
            Some(who),
            &format!(
                "{{ me {{ {USER} }} myMail {{ {MAIL} }} myRegistrations {{ {REGISTRATION}
                    competition {{ {COMPETITION} organizer {{ {USER} }} }} }} }}"
            ),
            json!({}),
        )
        .await;
    }
    // A mutation's result too (a replay of the key answers the same registration).
    for (who, key) in [(&seated, "seat"), (&waiting, "wait")] {
        both_ways_agree(
            &app,
            Some(who),
            &format!(
                "mutation($id: ID!, $key: String) {{
                    register(competitionId: $id, idempotencyKey: $key, waitlist: true) {{
                        {REGISTRATION} }} }}"
            ),
            json!({ "id": competition, "key": key }),
        )
        .await;
    }
    // The answers hold what they should, not merely the same thing twice.
    let mine = app
        .gql_as(
            Some(&waiting.token),
            "{ myRegistrations { status waitlistPosition competition { tags } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        mine["data"]["myRegistrations"],
        json!([{ "status": "WAITLISTED", "waitlistPosition": 1,
                 "competition": { "tags": ["chess", "blitz"] } }]),
        "{mine}"
    );
}

/// A document that passed validation skips it later only when that cannot change the
/// outcome: a document with variables must still refuse bad values as a request error (no
/// `data`), however often it ran before, rather than as a field error with `data`.
#[tokio::test(flavor = "multi_thread")]
async fn a_document_that_ran_before_still_refuses_bad_variables() {
    let app = TestApp::spawn_without_workers().await;
    let organizer = app.signup("ORGANIZER").await;
    let competition = app.new_competition(&organizer, json!({})).await;
    let document = "query($id: ID!) { competition(id: $id) { title } }";
    for _ in 0..3 {
        let body = app.gql(document, json!({ "id": competition })).await;
        assert_eq!(body["data"]["competition"]["title"], "Test Cup", "{body}");
    }
    // Settled documents skip validation only for values validation would accept.
    for bad in [
        json!({ "id": true }),
        json!({ "id": 1.5 }),
        json!({ "id": [competition] }),
        json!({ "id": { "id": competition } }),
    ] {
        let body = app.gql(document, bad).await;
        assert!(body.get("data").is_none(), "{body}");
        assert_eq!(
            crate::helpers::error_code(&body),
            "BAD_USER_INPUT",
            "{body}"
        );
    }
    // And a document without variables that fails validation keeps failing.
    for _ in 0..2 {
        let body = app
            .gql("{ competitions { edges { node { nope } } } }", json!({}))
            .await;
        assert!(body.get("data").is_none(), "{body}");
        assert_eq!(
            crate::helpers::error_code(&body),
            "BAD_USER_INPUT",
            "{body}"
        );
    }
    let listed = "{ competitions { edges { node { title } } } }";
    for _ in 0..3 {
        let body = app.gql(listed, json!({})).await;
        assert_eq!(
            body["data"]["competitions"]["edges"][0]["node"]["title"], "Test Cup",
            "{body}"
        );
    }
}

/// Nullable variables settle too, for values of their scalar; `null` (or a missing value)
/// is validated every time, as a non-null argument with a default may refuse it.
#[tokio::test(flavor = "multi_thread")]
async fn a_document_with_nullable_variables_that_ran_before_still_refuses_bad_values() {
    let app = TestApp::spawn_without_workers().await;
    let organizer = app.signup("ORGANIZER").await;
    let participant = app.signup("PARTICIPANT").await;
    let competition = app.new_competition(&organizer, json!({})).await;
    // `waitlist: Boolean! = false` takes a nullable variable, because of its default.
    let document = "mutation($id: ID!, $key: String, $waitlist: Boolean) {
        register(competitionId: $id, idempotencyKey: $key, waitlist: $waitlist) { id } }";
    // What a null for the non-null argument gets before the document ever ran: the same
    // text with a trailing space is another cache entry.
    let unsettled = format!("{document} ");
    let refused = |key: &str| json!({ "id": competition, "key": key, "waitlist": null });
    let first = app
        .gql_as(Some(&participant.token), &unsettled, refused("first"))
        .await;
    assert!(first.get("data").is_none(), "{first}");

    for _ in 0..3 {
        let body = app
            .gql_as(
                Some(&participant.token),
                document,
                json!({ "id": competition, "key": "valid", "waitlist": false }),
            )
            .await;
        assert!(body["data"]["register"]["id"].is_string(), "{body}");
    }
    let again = app
        .gql_as(Some(&participant.token), document, refused("again"))
        .await;
    assert_eq!(
        again, first,
        "null for a non-null argument, after the document ran"
    );
    for bad in [
        json!({ "id": competition, "key": 5, "waitlist": false }),
        json!({ "id": competition, "key": "other", "waitlist": "yes" }),
        json!({ "id": competition, "key": ["other"], "waitlist": false }),
    ] {
        let body = app.gql_as(Some(&participant.token), document, bad).await;
        assert!(body.get("data").is_none(), "{body}");
        assert_eq!(
            crate::helpers::error_code(&body),
            "BAD_USER_INPUT",
            "{body}"
        );
    }
    assert_eq!(
        app.count("SELECT count(*) FROM registrations").await,
        1,
        "only the valid requests registered"
    );
}
