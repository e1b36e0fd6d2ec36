use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{JWT_SECRET, PASSWORD, TestApp, error_code};

const SIGNUP: &str = "mutation($input: SignupInput!) { signup(input: $input) { token user { id name email role createdAt } } }";
const LOGIN: &str =
    "mutation($input: LoginInput!) { login(input: $input) { token user { id email } } }";
const ME: &str = "{ me { id email role } }";

fn signup_input(email: &str, password: &str) -> Value {
    json!({ "input": { "name": "Ann", "email": email, "password": password, "role": "PARTICIPANT" } })
}

#[tokio::test(flavor = "multi_thread")]
async fn signup_normalises_email_and_token_identifies_the_user() {
    let app = TestApp::spawn().await;
    let body = app
        .gql(SIGNUP, signup_input("  Ann.Lee@Example.COM ", PASSWORD))
        .await;
    let user = &body["data"]["signup"]["user"];
    assert_eq!(user["email"], "ann.lee@example.com", "{body}");
    assert_eq!(user["role"], "PARTICIPANT");

    let token = body["data"]["signup"]["token"].as_str().unwrap();
    let me = app.gql_as(Some(token), ME, json!({})).await;
    assert_eq!(me["data"]["me"]["id"], user["id"], "{me}");
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_email_in_another_case_is_a_conflict() {
    let app = TestApp::spawn().await;
    let first = app
        .gql(SIGNUP, signup_input("bob@example.com", PASSWORD))
        .await;
    assert!(first["errors"].is_null(), "{first}");
    let again = app
        .gql(SIGNUP, signup_input("BOB@Example.com", PASSWORD))
        .await;
    assert_eq!(error_code(&again), "CONFLICT");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_password_rule_is_enforced() {
    let app = TestApp::spawn().await;
    let long = format!("Aa1!{}", "x".repeat(125));
    let cases = [
        ("Aa1!aaa", "8 to 128"),
        (long.as_str(), "8 to 128"),
        ("AAAA1111!", "lower-case"),
        ("aaaa1111!", "upper-case"),
        ("Aaaaaaaa!", "digit"),
        ("Aaaa11111", "symbol"),
    ];
    for (index, (password, rule)) in cases.into_iter().enumerate() {
        let body = app
            .gql(
                SIGNUP,
                signup_input(&format!("p{index}@example.com"), password),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{password}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(rule), "{password}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_emails_and_names_are_bad_input() {
    let app = TestApp::spawn().await;
    let too_long = format!("{}@example.com", "a".repeat(250));
    for email in [
        "",
        "plain",
        "a@",
        "@example.com",
        "a b@example.com",
        "a@localhost",
        "a@@example.com",
        too_long.as_str(),
    ] {
        let body = app.gql(SIGNUP, signup_input(email, PASSWORD)).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{email:?}: {body}");
    }
    for name in ["", "   ", &"n".repeat(101)] {
        let input = json!({ "input": { "name": name, "email": "ok@example.com", "password": PASSWORD, "role": "ORGANIZER" } });
        let body = app.gql(SIGNUP, input).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{name:?}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn login_succeeds_and_fails_with_one_message() {
    let app = TestApp::spawn().await;
    let account = app.signup("ORGANIZER").await;

    let ok = app
        .gql(
            LOGIN,
            json!({ "input": { "email": account.email.to_uppercase(), "password": PASSWORD } }),
        )
        .await;
    assert_eq!(
        ok["data"]["login"]["user"]["id"],
        account.id.as_str(),
        "{ok}"
    );

    let wrong_password = app
        .gql(
            LOGIN,
            json!({ "input": { "email": account.email, "password": "Wrong-pass-1" } }),
        )
        .await;
    let unknown_email = app
        .gql(
            LOGIN,
            json!({ "input": { "email": "nobody@example.com", "password": PASSWORD } }),
        )
        .await;
    assert_eq!(error_code(&wrong_password), "UNAUTHENTICATED");
    assert_eq!(error_code(&unknown_email), "UNAUTHENTICATED");
    assert_eq!(
        wrong_password["errors"][0]["message"],
        unknown_email["errors"][0]["message"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn me_needs_a_token() {
    let app = TestApp::spawn().await;
    let body = app.gql(ME, json!({})).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
}

fn forged(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tokens_are_refused_even_on_public_queries() {
    let app = TestApp::spawn().await;
    let account = app.signup("PARTICIPANT").await;
    let now = chrono::Utc::now().timestamp();
    let claims = |iat: i64, exp: i64| json!({ "sub": account.id, "role": "ORGANIZER", "iat": iat, "exp": exp });

    let (header, payload, signature) = {
        let mut parts = account.token.split('.');
        (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        )
    };
    let tampered_payload = URL_SAFE_NO_PAD.encode(claims(now, now + 3600).to_string());
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let tokens = [
        (
            "tampered payload",
            format!("{header}.{tampered_payload}.{signature}"),
        ),
        (
            "tampered signature",
            format!("{header}.{payload}.{flipped}{}", &signature[1..]),
        ),
        ("alg none", format!("{none_header}.{payload}.")),
        (
            "expired",
            forged(claims(now - 7200, now - 3600), JWT_SECRET),
        ),
        (
            "other secret",
            forged(
                claims(now, now + 3600),
                "another-secret-entirely-0123456789",
            ),
        ),
        ("garbage", "not-a-jwt".to_owned()),
    ];
    for (what, token) in tokens {
        let body = app
            .gql_as(Some(&token), "{ competitions { totalCount } }", json!({}))
            .await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{what}: {body}");
        assert!(body["data"].is_null(), "{what}: executed anyway: {body}");
    }

    let response = app
        .client
        .post(app.url("/graphql"))
        .header("authorization", format!("Basic {}", account.token))
        .json(&json!({ "query": "{ competitions { totalCount } }" }))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");

    let valid = app.gql_as(Some(&account.token), ME, json!({})).await;
    assert_eq!(valid["data"]["me"]["id"], account.id.as_str(), "{valid}");
}
