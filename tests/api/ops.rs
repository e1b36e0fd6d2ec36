use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, error_code, test_config};

#[tokio::test(flavor = "multi_thread")]
async fn health_and_readiness_when_everything_is_up() {
    let app = TestApp::spawn().await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "status": "ready", "postgres": "up", "redis": "up" })
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_stays_200_naming_redis_when_only_redis_is_unreachable() {
    let mut config = test_config();
    config.redis_url = "redis://127.0.0.1:1".to_owned();
    let app = TestApp::spawn_with(config).await;
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["redis"], "down", "{body}");
    assert_eq!(body["postgres"], "up", "{body}");
    // The API that does not need Redis keeps working.
    let listing = app.gql("{ competitions { totalCount } }", json!({})).await;
    assert_eq!(
        listing["data"]["competitions"]["totalCount"], 0,
        "{listing}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_starts_without_postgres_and_says_so() {
    let mut config = test_config();
    config.database_url = "postgres://postgres@127.0.0.1:1/unreachable".to_owned();
    let app = TestApp::spawn_with(config).await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["postgres"], "down", "{body}");

    let listing = app.gql("{ competitions { totalCount } }", json!({})).await;
    assert_eq!(error_code(&listing), "SERVICE_UNAVAILABLE", "{listing}");
    assert!(
        !listing.to_string().contains("127.0.0.1:1"),
        "leaks connection details: {listing}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_4xx() {
    let app = TestApp::spawn().await;
    let post = |body: String| {
        app.client
            .post(app.url("/graphql"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let malformed = post("{\"query\": ".to_owned()).await.unwrap();
    assert!(
        malformed.status().is_client_error(),
        "{}",
        malformed.status()
    );

    // Announce 2 MiB without sending it: the limit must refuse on the header alone.
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{",
        app.addr,
        2 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut status_line = [0u8; 12];
    stream.read_exact(&mut status_line).await.unwrap();
    assert_eq!(&status_line, b"HTTP/1.1 413");

    let syntax = app.gql("{ competitions { ", json!({})).await;
    assert_eq!(error_code(&syntax), "BAD_USER_INPUT");
    let unknown_field = app.gql("{ nope }", json!({})).await;
    assert_eq!(error_code(&unknown_field), "BAD_USER_INPUT");
}

#[tokio::test(flavor = "multi_thread")]
async fn alias_bombs_and_deep_queries_are_refused_before_resolving() {
    let app = TestApp::spawn().await;
    let aliases: String = (0..2_000)
        .map(|i| format!("a{i}: competitions {{ totalCount }} "))
        .collect();
    let bomb = app.gql(&format!("{{ {aliases} }}"), json!({})).await;
    assert_eq!(error_code(&bomb), "QUERY_TOO_COMPLEX", "{bomb}");
    assert!(bomb["data"].is_null());

    let deep = format!(
        "{{ __schema {{ types {{ {}name{} }} }} }}",
        "ofType { ".repeat(20),
        " }".repeat(20)
    );
    let refused = app.gql(&deep, json!({})).await;
    assert_eq!(error_code(&refused), "QUERY_TOO_COMPLEX", "{refused}");
    assert!(refused["data"].is_null());
}

/// Parsed documents are cached by their text: a repeated text must still be run with each
/// request's variables and checked against the limits, and a syntax error reported each time.
#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_document_is_checked_and_run_afresh_each_time() {
    let app = TestApp::spawn().await;
    let organizer = app.signup("ORGANIZER").await;
    for title in ["First", "Second"] {
        app.create_competition(&organizer, json!({ "title": title }))
            .await;
    }
    let page = "query($first: Int) { competitions(first: $first) { edges { node { title } } } }";
    for (first, expected) in [(1, 1), (2, 2), (0, 0)] {
        let body = app.gql(page, json!({ "first": first })).await;
        let edges = body["data"]["competitions"]["edges"].as_array().cloned();
        assert_eq!(edges.map(|edges| edges.len()), Some(expected), "{body}");
    }
    let too_many = app.gql(page, json!({ "first": 101 })).await;
    assert_eq!(error_code(&too_many), "BAD_USER_INPUT", "{too_many}");

    let deep = format!(
        "{{ __schema {{ types {{ {}name{} }} }} }}",
        "ofType { ".repeat(20),
        " }".repeat(20)
    );
    let broken = "{ competitions { totalCount ";
    for _ in 0..2 {
        let refused = app.gql(&deep, json!({})).await;
        assert_eq!(error_code(&refused), "QUERY_TOO_COMPLEX", "{refused}");
        assert!(refused["data"].is_null());
        let unparsed = app.gql(broken, json!({})).await;
        assert_eq!(error_code(&unparsed), "BAD_USER_INPUT", "{unparsed}");
        assert!(unparsed["data"].is_null());
    }
}

/// GraphiQL's introspection query (graphql-js, with deeper type references) must pass the limits.
#[tokio::test(flavor = "multi_thread")]
async fn graphiql_page_and_its_introspection_work() {
    let app = TestApp::spawn().await;
    let page = app
        .client
        .get(app.url("/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .to_lowercase()
            .contains("graphiql")
    );

    let type_ref = format!(
        "kind name {}",
        "ofType { kind name ".repeat(9) + &"}".repeat(9)
    );
    let introspection = format!(
        "query IntrospectionQuery {{ __schema {{ queryType {{ name }} mutationType {{ name }}
           types {{ ...FullType }} directives {{ name locations args {{ ...InputValue }} }} }} }}
         fragment FullType on __Type {{ kind name description
           fields(includeDeprecated: true) {{ name description args {{ ...InputValue }} type {{ ...TypeRef }} isDeprecated deprecationReason }}
           inputFields {{ ...InputValue }} interfaces {{ ...TypeRef }}
           enumValues(includeDeprecated: true) {{ name isDeprecated deprecationReason }} possibleTypes {{ ...TypeRef }} }}
         fragment InputValue on __InputValue {{ name description type {{ ...TypeRef }} defaultValue }}
         fragment TypeRef on __Type {{ {type_ref} }}"
    );
    let body = app.gql(&introspection, json!({})).await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_runs_twice_without_duplicating() {
    let app = TestApp::spawn().await;
    let seed = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_mini-compete"))
            .arg("seed")
            .env("DATABASE_URL", &app.config.database_url)
            .output()
    };
    let first = seed().await.unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("seeded 7 users and 5 competitions"));
    let second = seed().await.unwrap();
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(String::from_utf8_lossy(&second.stdout).contains("seeded 0 users and 0 competitions"));

    let listing = app
        .gql(
            "{ competitions(openOnly: true) { totalCount edges { node { organizer { role } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listing["data"]["competitions"]["totalCount"], 5,
        "{listing}"
    );
    let login = app
        .gql(
            "mutation($input: LoginInput!) { login(input: $input) { user { role } } }",
            json!({ "input": { "email": "pia@example.com", "password": mini_compete::seed::SEED_PASSWORD } }),
        )
        .await;
    assert_eq!(
        login["data"]["login"]["user"]["role"], "PARTICIPANT",
        "{login}"
    );
}

#[test]
fn schema_graphql_matches_the_code() {
    let checked_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
            .expect("schema.graphql exists");
    assert!(
        checked_in == mini_compete::graphql::sdl(),
        "schema.graphql is stale: run `cargo run -- schema > schema.graphql`"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_creates_its_database_turns_off_huge_pages_and_exits_cleanly_on_sigterm() {
    let config = test_config();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port();
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_mini-compete"))
        .arg("serve")
        .env("DATABASE_URL", &config.database_url)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("REDIS_URL", &config.redis_url)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let ready_url = format!("http://127.0.0.1:{port}/readyz");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !client
        .get(&ready_url)
        .send()
        .await
        .is_ok_and(|response| response.status() == 200)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "serve never became ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let pid = server.id().unwrap().to_string();
    // Huge pages would let an attacker's megabyte documents keep 2 MiB resident per few
    // live bytes (the allocator's settings in `allocator.rs`).
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|line| line.split_whitespace().eq(["THP_enabled:", "0"])),
        "transparent huge pages are on for serve:\n{status}"
    );
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), server.wait())
        .await
        .expect("serve exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    mini_compete::db::drop_database(&config.database_url)
        .await
        .unwrap();
}
