//! Ready for frontends: GraphQL over HTTP as the spec and its reference audits want it,
//! spec-exact results, GET, CORS, persisted queries, and GraphiQL and client libraries of
//! the ecosystem (run by Node from `tests/frontend/`) against a real server.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{TestApp, debian_package, error_code, test_config};

fn frontend_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/frontend")
}

/// Installs the pinned Node packages once (`.ci/run` does it ahead of time).
pub fn node_packages() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        if frontend_dir().join("node_modules").exists() {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(frontend_dir())
            .status()
            .expect("npm runs");
        assert!(status.success(), "npm ci in tests/frontend failed");
    });
}

/// Runs a script of `tests/frontend/`; its stdout, or a panic with what it said.
async fn node(script: &str, args: &[&str]) -> String {
    node_packages();
    let output = tokio::process::Command::new("node")
        .arg(frontend_dir().join(script))
        .args(args)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn graphql_http_audits_pass_every_must_and_should() {
    let app = TestApp::spawn_without_workers().await;
    let report = node("audit.mjs", &[&app.url("/graphql")]).await;
    assert!(report.contains("all MUSTs and SHOULDs pass"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn full_introspection_reports_exactly_schema_graphql() {
    let app = TestApp::spawn_without_workers().await;
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    let report = node(
        "introspect.mjs",
        &[&app.url("/graphql"), &schema.to_string_lossy()],
    )
    .await;
    assert!(report.contains("introspection matches"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frontend_flow_works_through_graphql_request() {
    let app = TestApp::spawn().await;
    let report = node("flow.mjs", &[&app.url("/graphql")]).await;
    let summary: Value = serde_json::from_str(report.trim()).expect("one JSON line");
    assert_eq!(summary["ok"], true, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn graphiql_runs_a_query_in_a_real_browser_without_other_hosts() {
    debian_package("/usr/bin/chromium", "chromium");
    let app = TestApp::spawn_without_workers().await;
    let organizer = app.signup("ORGANIZER").await;
    app.create_competition(&organizer, json!({ "title": "Browser Cup" }))
        .await;
    let report = node(
        "browser.mjs",
        &[
            &app.url(""),
            "{ competitions { edges { node { title } } } }",
            "Browser Cup",
        ],
    )
    .await;
    let seen: Value = serde_json::from_str(report.trim()).expect("one JSON line");
    assert_eq!(
        seen["result"]["data"]["competitions"]["edges"][0]["node"]["title"], "Browser Cup",
        "{report}"
    );
    assert_eq!(seen["elsewhere"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn graphiql_subscribes_over_the_websocket() {
    debian_package("/usr/bin/chromium", "chromium");
    let app = TestApp::spawn_without_workers().await;
    let organizer = app.signup("ORGANIZER").await;
    let id = app
        .new_competition(&organizer, json!({ "title": "Live Cup" }))
        .await;
    // Over HTTP a subscription is refused: the title shows only if GraphiQL used the socket.
    let report = node(
        "browser.mjs",
        &[
            &app.url(""),
            &format!(r#"subscription {{ competitionChanged(id: "{id}") {{ title }} }}"#),
            "Live Cup",
        ],
    )
    .await;
    let seen: Value = serde_json::from_str(report.trim()).expect("one JSON line");
    assert_eq!(
        seen["result"]["data"]["competitionChanged"]["title"], "Live Cup",
        "{report}"
    );
}

/// POSTs as an application/graphql-response+json client; (status, raw body).
async fn post_raw(
    app: &TestApp,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> (u16, String) {
    let mut request = app
        .client
        .post(app.url("/graphql"))
        .header("accept", "application/graphql-response+json")
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn position(body: &str, key: &str) -> usize {
    body.find(&format!("\"{key}\""))
        .unwrap_or_else(|| panic!("no {key} in {body}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_non_null_field_nulls_its_nearest_nullable_parent() {
    let app = TestApp::spawn_without_workers().await;
    let organizer = app.signup("ORGANIZER").await;
    let id = app.new_competition(&organizer, json!({})).await;

    // A nullable parent: `competition` becomes null, the error stays, nothing is dropped.
    let (_, body) = post_raw(
        &app,
        None,
        "query($id: ID!) { competition(id: $id) { title registrations { id } } }",
        json!({ "id": id }),
    )
    .await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["data"], json!({ "competition": null }), "{body}");
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    assert_eq!(
        body["errors"][0]["path"],
        json!(["competition", "registrations"])
    );
    assert_eq!(body["errors"].as_array().map(Vec::len), Some(1));

    // A list of non-null items under non-null fields: the null climbs to `data`.
    let (_, body) = post_raw(
        &app,
        None,
        "{ competitions { edges { node { title registrations { id } } } } }",
        json!({}),
    )
    .await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["data"], Value::Null, "{body}");
    assert!(
        body.get("data").is_some(),
        "execution ran: data must be present"
    );
    assert_eq!(
        body["errors"][0]["path"],
        json!(["competitions", "edges", 0, "node", "registrations"])
    );

    // A non-null root field beside a healthy one.
    let (_, body) = post_raw(
        &app,
        None,
        "{ me { id } competitions { totalCount } }",
        json!({}),
    )
    .await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["data"], Value::Null, "{body}");

    // The organizer may see them: nothing is nulled.
    let (_, body) = post_raw(
        &app,
        Some(&organizer.token),
        "query($id: ID!) { competition(id: $id) { title registrations { id } } }",
        json!({ "id": id }),
    )
    .await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body["data"]["competition"]["registrations"],
        json!([]),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_come_in_the_order_of_the_selection_set() {
    let app = TestApp::spawn_without_workers().await;
    let organizer = app.signup("ORGANIZER").await;
    let id = app.new_competition(&organizer, json!({})).await;
    // `organizer` is loaded after the others complete; it must still come first.
    let (_, body) = post_raw(
        &app,
        None,
        "query($id: ID!) { competition(id: $id) { organizer { name } title cid: id ...More } }
         fragment More on Competition { capacity b: title }",
        json!({ "id": id }),
    )
    .await;
    let order = ["organizer", "title", "cid", "capacity", "b"].map(|key| position(&body, key));
    assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "{body}");
    let (_, body) = post_raw(
        &app,
        None,
        "{ z: __typename competitions { totalCount } a: __typename }",
        json!({}),
    )
    .await;
    let order = ["z", "competitions", "a"].map(|key| position(&body, key));
    assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn media_types_and_status_codes_follow_the_accept_header() {
    let app = TestApp::spawn_without_workers().await;
    let send = |accept: Option<&'static str>, query: &'static str, token: Option<&'static str>| {
        let mut request = app
            .client
            .post(app.url("/graphql"))
            .json(&json!({ "query": query }));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    for (accept, content_type) in [
        (None, "application/json"),
        (Some("*/*"), "application/json"),
        (Some("application/json"), "application/json"),
        (
            Some("application/graphql-response+json, application/json;q=0.9"),
            "application/graphql-response+json",
        ),
    ] {
        let response = send(accept, "{ __typename }", None).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            content_type,
            "{accept:?}"
        );
    }
    // Request errors: 4xx without data under graphql-response+json, 200 under json.
    let graphql_response = Some("application/graphql-response+json");
    for query in [
        "{ nope }",
        "{ __typename ",
        "query($a: Int!) { competitions(first: $a) { totalCount } }",
    ] {
        let response = send(graphql_response, query, None).await.unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert!(body.get("data").is_none(), "{body}");
        let legacy = send(Some("application/json"), query, None).await.unwrap();
        assert_eq!(legacy.status(), 200, "{query}");
    }
    let bad_token = send(graphql_response, "{ __typename }", Some("not-a-token"))
        .await
        .unwrap();
    assert_eq!(bad_token.status(), 401);
    let body: Value = bad_token.json().await.unwrap();
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
}

#[tokio::test(flavor = "multi_thread")]
async fn get_runs_queries_shows_browsers_graphiql_and_refuses_mutations() {
    let app = TestApp::spawn_without_workers().await;
    let get = |query: &str, accept: &'static str| {
        app.client
            .get(app.url("/graphql"))
            .query(&[("query", query)])
            .header("accept", accept)
            .send()
    };
    let ran = get("{ __typename }", "application/json").await.unwrap();
    assert_eq!(ran.status(), 200);
    let body: Value = ran.json().await.unwrap();
    assert_eq!(body["data"]["__typename"], "Query");

    let mutation = get("mutation { __typename }", "application/json")
        .await
        .unwrap();
    assert_eq!(mutation.status(), 405);
    assert_eq!(mutation.headers()["allow"], "POST");

    let browser = app
        .client
        .get(app.url("/graphql"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(browser.status(), 200);
    let page = browser.text().await.unwrap();
    assert!(page.contains("/graphiql/graphiql-4.1.2.min.js"), "{page}");
    assert!(
        !page.contains("unpkg") && !page.contains("cdn"),
        "loads from elsewhere"
    );
    for asset in [
        "graphiql-4.1.2.min.js",
        "graphiql-4.1.2.min.css",
        "react-18.3.1.production.min.js",
        "LICENSES.txt",
    ] {
        let response = app
            .client
            .get(app.url(&format!("/graphiql/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{asset}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_lets_the_configured_origins_in_and_no_one_else() {
    let mut config = test_config();
    config.jobs.worker_concurrency = 0;
    config.http.cors_allowed_origins = Some("https://app.example, https://admin.example".into());
    let app = TestApp::spawn_with(config).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, idempotency-key",
            )
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let headers = allowed.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    let allowed_headers = headers["access-control-allow-headers"].to_str().unwrap();
    for header in [
        "authorization",
        "content-type",
        "idempotency-key",
        "apollographql-client-name",
    ] {
        assert!(allowed_headers.contains(header), "{allowed_headers}");
    }
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    // Unset: same-origin only, no CORS headers at all.
    let plain = TestApp::spawn_without_workers().await;
    let response = plain
        .client
        .post(plain.url("/graphql"))
        .header("origin", "https://app.example")
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn persisted_queries_follow_apollos_protocol() {
    let app = TestApp::spawn_without_workers().await;
    let document = "{ competitions { totalCount } }";
    let hash = hex::encode(Sha256::digest(document));
    let post = |body: Value| app.client.post(app.url("/graphql")).json(&body).send();
    let extensions = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    let unknown: Value = post(json!({ "extensions": extensions }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        error_code(&unknown),
        "PERSISTED_QUERY_NOT_FOUND",
        "{unknown}"
    );
    assert_eq!(unknown["errors"][0]["message"], "PersistedQueryNotFound");

    let wrong = json!({ "persistedQuery": { "version": 1, "sha256Hash": "0".repeat(64) } });
    let mismatch: Value = post(json!({ "query": document, "extensions": wrong }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(error_code(&mismatch), "BAD_USER_INPUT", "{mismatch}");
    let still_unknown: Value = post(json!({ "extensions": wrong }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(error_code(&still_unknown), "PERSISTED_QUERY_NOT_FOUND");

    let first: Value = post(json!({ "query": document, "extensions": extensions }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["data"]["competitions"]["totalCount"], 0, "{first}");
    let by_hash: Value = post(json!({ "extensions": extensions }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        by_hash["data"]["competitions"]["totalCount"], 0,
        "{by_hash}"
    );
    let old_version = json!({ "persistedQuery": { "version": 2, "sha256Hash": hash } });
    let refused: Value = post(json!({ "extensions": old_version }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(error_code(&refused), "BAD_USER_INPUT");
}
