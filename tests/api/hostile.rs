//! Hostile input: hundreds of inputs an attacker (or a broken client) sends, across every
//! family — documents, HTTP, tokens, input fields, authorization. For each: no 5xx, every
//! error has a code of API.md and no internal words, a refused input changes no row of any
//! table, and the server still answers afterwards.

use std::fmt::Write as _;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::helpers::{Account, JWT_SECRET, PASSWORD, TestApp, test_config};

/// The codes of API.md's error table.
const CODES: [&str; 16] = [
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "BAD_USER_INPUT",
    "QUERY_TOO_COMPLEX",
    "RATE_LIMITED",
    "PERSISTED_QUERY_NOT_FOUND",
    "NOT_FOUND",
    "CONFLICT",
    "ALREADY_REGISTERED",
    "COMPETITION_FULL",
    "REGISTRATION_CLOSED",
    "REQUEST_IN_PROGRESS",
    "IDEMPOTENCY_KEY_REUSED",
    "SERVICE_UNAVAILABLE",
    "INTERNAL",
    "INTERNAL_SERVER_ERROR",
];
/// Words that betray internals when they reach a client.
const INTERNAL_WORDS: [&str; 16] = [
    "diesel",
    "postgres",
    "sqlstate",
    "panick",
    "thread",
    "Error(",
    "::",
    "unwrap",
    "redis",
    "tokio",
    "hyper",
    "serde",
    "InvalidRequest",
    "Unsupported",
    "violates",
    "constraint",
];

#[derive(Clone, Copy, PartialEq, Debug)]
enum Expect {
    /// Must be refused with an error, and change nothing.
    Refused,
    /// Must succeed.
    Accepted,
    /// Malformed HTTP that hyper answers itself, before any of our code: 4xx, no body.
    Malformed,
}

enum Probe {
    /// A GraphQL POST with JSON variables, optionally as someone, with extra headers.
    Graphql {
        query: String,
        variables: Value,
        token: Option<String>,
        headers: Vec<(&'static str, String)>,
    },
    /// Any method, path, headers and body bytes.
    Http {
        method: Method,
        path: String,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// Bytes written to the socket as they are (for what an HTTP client will not send).
    Raw(Vec<u8>),
}

struct Case {
    family: &'static str,
    name: String,
    probe: Probe,
    expect: Expect,
}

#[derive(Default)]
struct Cases(Vec<Case>);

impl Cases {
    fn gql(
        &mut self,
        family: &'static str,
        name: impl Into<String>,
        expect: Expect,
        query: impl Into<String>,
        variables: Value,
        token: Option<&str>,
    ) {
        self.0.push(Case {
            family,
            name: name.into(),
            probe: Probe::Graphql {
                query: query.into(),
                variables,
                token: token.map(str::to_owned),
                headers: Vec::new(),
            },
            expect,
        });
    }

    fn refused(&mut self, family: &'static str, name: impl Into<String>, query: impl Into<String>) {
        self.gql(family, name, Expect::Refused, query, json!({}), None);
    }

    fn http(
        &mut self,
        name: impl Into<String>,
        method: Method,
        path: &str,
        headers: &[(&'static str, &str)],
        body: impl Into<Vec<u8>>,
        expect: Expect,
    ) {
        self.0.push(Case {
            family: "http",
            name: name.into(),
            probe: Probe::Http {
                method,
                path: path.to_owned(),
                headers: headers
                    .iter()
                    .map(|(name, value)| (*name, (*value).to_owned()))
                    .collect(),
                body: body.into(),
            },
            expect,
        });
    }

    fn post_json(&mut self, name: impl Into<String>, body: impl Into<Vec<u8>>, expect: Expect) {
        self.http(
            name,
            Method::POST,
            "/graphql",
            &[("content-type", "application/json")],
            body,
            expect,
        );
    }
}

async fn send(app: &TestApp, probe: &Probe) -> (u16, Vec<u8>) {
    match probe {
        Probe::Graphql {
            query,
            variables,
            token,
            headers,
        } => {
            let mut request = app
                .client
                .post(app.url("/graphql"))
                .json(&json!({ "query": query, "variables": variables }));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            let response = request.send().await.expect("request sent");
            (
                response.status().as_u16(),
                response.bytes().await.expect("body").to_vec(),
            )
        }
        Probe::Http {
            method,
            path,
            headers,
            body,
        } => {
            let mut request = app
                .client
                .request(method.clone(), app.url(path))
                .body(body.clone());
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            let response = request.send().await.expect("request sent");
            (
                response.status().as_u16(),
                response.bytes().await.expect("body").to_vec(),
            )
        }
        Probe::Raw(bytes) => {
            let mut stream = tokio::net::TcpStream::connect(app.addr)
                .await
                .expect("connect");
            // The server may answer (and close) before it has read everything.
            let _ = stream.write_all(bytes).await;
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            let text = String::from_utf8_lossy(&answer);
            let status = text
                .get(9..12)
                .and_then(|code| code.parse().ok())
                .unwrap_or(0);
            let body = text
                .split_once("\r\n\r\n")
                .map(|(_, body)| body.as_bytes().to_vec())
                .unwrap_or_default();
            (status, body)
        }
    }
}

/// Checks one answer; returns what is wrong with it, if anything.
fn judge(case: &Case, status: u16, body: &[u8]) -> Result<bool, String> {
    if !(200..500).contains(&status) {
        return Err(format!("HTTP {status}"));
    }
    if case.expect == Expect::Malformed {
        return if status >= 400 {
            Ok(true)
        } else {
            Err(format!("HTTP {status}"))
        };
    }
    let body: Value = serde_json::from_slice(body).map_err(|_| {
        format!(
            "HTTP {status} with a body that is not JSON: {}",
            String::from_utf8_lossy(body)
        )
    })?;
    let errors = body["errors"].as_array().cloned().unwrap_or_default();
    for error in &errors {
        let code = error["extensions"]["code"].as_str().unwrap_or("(none)");
        if !CODES.contains(&code) || code.starts_with("INTERNAL") {
            return Err(format!("code {code}: {body}"));
        }
        let message = error["message"].as_str().unwrap_or_default();
        if let Some(word) = INTERNAL_WORDS.iter().find(|word| message.contains(*word)) {
            return Err(format!("message shows {word:?}: {message}"));
        }
    }
    let refused = !errors.is_empty();
    match (case.expect, refused) {
        (Expect::Refused, false) => Err(format!("accepted: {body}")),
        (Expect::Accepted, true) => Err(format!("refused: {body}")),
        _ => Ok(refused),
    }
}

fn forged(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encodable claims")
}

fn document_cases(cases: &mut Cases) {
    let family = "document";
    for (name, query) in [
        ("empty", ""),
        ("blank", "   "),
        ("open brace", "{"),
        ("close brace", "}"),
        ("unterminated selection", "{ competitions"),
        ("unterminated query", "query {"),
        ("missing close", "{ competitions { totalCount } "),
        ("bare keyword", "mutation"),
        ("fragment only", "fragment F on Query { __typename }"),
        ("unknown fragment", "{ ...Missing }"),
        (
            "duplicate operation names",
            "query A { __typename } query A { __typename }",
        ),
        ("two anonymous operations", "{ __typename } { __typename }"),
        (
            "subscription",
            "subscription { competitions { totalCount } }",
        ),
        ("unknown field", "{ nope }"),
        ("object without selection", "{ competitions }"),
        (
            "scalar with selection",
            "{ competitions { totalCount { a } } }",
        ),
        ("typename with selection", "{ __typename { a } }"),
        ("typename with arguments", "{ __typename(a: 1) }"),
        ("typename with unknown directive", "{ __typename @unknown }"),
        ("missing required argument", "{ competition { id } }"),
        (
            "duplicate argument",
            "{ competition(id: \"a\", id: \"b\") { id } }",
        ),
        (
            "wrong argument type",
            "{ competitions(first: \"x\") { totalCount } }",
        ),
        ("unused variable", "query($a: Int) { __typename }"),
        (
            "undefined variable",
            "{ competitions(first: $undefined) { totalCount } }",
        ),
        (
            "unknown variable type",
            "query($a: Nope) { competitions(first: $a) { totalCount } }",
        ),
        (
            "int overflow",
            "{ competitions(first: 99999999999999999999) { totalCount } }",
        ),
        (
            "float for int",
            "{ competitions(first: 1.5) { totalCount } }",
        ),
        (
            "unknown directive",
            "{ competitions @unknown { totalCount } }",
        ),
        (
            "directive without argument",
            "{ competitions @include { totalCount } }",
        ),
        (
            "repeated directive",
            "{ competitions @include(if: true) @include(if: true) { totalCount } }",
        ),
        (
            "unterminated string",
            "{ competitions(tag: \"abc) { totalCount } }",
        ),
        (
            "bad escape",
            "{ competitions(tag: \"\\q\") { totalCount } }",
        ),
        (
            "lone surrogate",
            "{ competitions(tag: \"\\ud800\") { totalCount } }",
        ),
        (
            "nul escape",
            "{ competitions(tag: \"a\\u0000b\") { totalCount } }",
        ),
        (
            "raw nul",
            "{ competitions(tag: \"a\u{0}b\") { totalCount } }",
        ),
        (
            "nul in block string",
            "{ competitions(tag: \"\"\"a\u{0}\"\"\") { totalCount } }",
        ),
        ("nul outside strings", "{ __typename \u{0} }"),
        (
            "mutation root of a query type",
            "mutation { competitions { totalCount } }",
        ),
        (
            "spread on wrong type",
            "{ ...F } fragment F on Competition { id }",
        ),
        (
            "inline fragment on unknown type",
            "{ ... on Nope { __typename } }",
        ),
    ] {
        cases.refused(family, name, query);
    }
    for (name, query) in [
        ("byte order mark", "\u{feff}{ __typename }"),
        ("commas as whitespace", "{,,__typename,,}"),
        (
            "skip directive",
            "{ __typename @skip(if: true) competitions { totalCount } }",
        ),
        (
            "brackets inside strings",
            "{ competitions(tag: \"}}}]]]((({{{\") { totalCount } }",
        ),
        (
            "brackets inside comments",
            "{ __typename # {{{{[[[[((((\n }",
        ),
        (
            "block string with escaped quotes",
            "{ competitions(tag: \"\"\" \\\"\"\" {[( \"\"\") { totalCount } }",
        ),
        (
            "schema introspection",
            "{ __schema { queryType { name } types { name fields { name } } } }",
        ),
        (
            "ten value levels",
            "{ competition(id: [[[[[[[[[[\"x\"]]]]]]]]]]) { id } }",
        ),
    ] {
        let expect = if name == "ten value levels" {
            Expect::Refused
        } else {
            Expect::Accepted
        };
        cases.gql(family, name, expect, query, json!({}), None);
    }

    let nest = |open: &str, close: &str, levels: usize| {
        format!("{}1{}", open.repeat(levels), close.repeat(levels))
    };
    for levels in [11, 100, 2_000, 20_000] {
        cases.refused(
            family,
            format!("list nested {levels}"),
            format!("{{ competition(id: {}) {{ id }} }}", nest("[", "]", levels)),
        );
        cases.refused(
            family,
            format!("object nested {levels}"),
            format!(
                "{{ competition(id: {}) {{ id }} }}",
                nest("{a:", "}", levels)
            ),
        );
        cases.refused(
            family,
            format!("selections nested {levels}"),
            format!(
                "{{ {}__typename{} }}",
                "me { ".repeat(levels),
                " }".repeat(levels)
            ),
        );
    }
    cases.refused(
        family,
        "variable type nested 2000",
        format!(
            "query($v: {}ID{}) {{ __typename }}",
            "[".repeat(2_000),
            "]".repeat(2_000)
        ),
    );
    let type_ref =
        |levels: usize| format!("{}name{}", "ofType { ".repeat(levels), " }".repeat(levels));
    cases.refused(
        family,
        "introspection 20 deep",
        format!("{{ __schema {{ types {{ {} }} }} }}", type_ref(20)),
    );
    cases.gql(
        family,
        "introspection 12 deep",
        Expect::Accepted,
        format!("{{ __schema {{ types {{ {} }} }} }}", type_ref(12)),
        json!({}),
        None,
    );
    cases.refused(
        family,
        "introspection lists nested 3",
        "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }",
    );
    cases.refused(
        family,
        "type introspection lists nested 3",
        "{ __type(name: \"Query\") { fields { type { fields { type { fields { name } } } } } } }",
    );
    cases.refused(
        family,
        "interfaces and possible types nested",
        "{ __schema { types { interfaces { possibleTypes { fields { name } } } } } }",
    );

    for count in [31, 100, 5_000] {
        let aliases: String = (0..count).map(|i| format!("a{i}: __typename ")).collect();
        cases.refused(
            family,
            format!("{count} aliases"),
            format!("{{ {aliases} }}"),
        );
    }
    let listing_aliases: String = (0..2_000)
        .map(|i| format!("c{i}: competitions {{ totalCount }} "))
        .collect();
    cases.refused(
        family,
        "2000 aliased listings",
        format!("{{ {listing_aliases} }}"),
    );
    let heavy: String = (0..20)
        .map(|i| {
            format!("c{i}: competitions(first: 100) {{ edges {{ node {{ id title tags }} }} }} ")
        })
        .collect();
    cases.refused(
        family,
        "complexity over the limit",
        format!("{{ {heavy} }}"),
    );

    let bomb = |levels: usize, fan_out: usize| {
        let mut text = String::from("query { ...F0 }\n");
        for level in 0..levels {
            let spreads = format!(" ...F{}", level + 1).repeat(fan_out);
            let _ = writeln!(text, "fragment F{level} on Query {{ __typename{spreads} }}");
        }
        let _ = write!(text, "fragment F{levels} on Query {{ __typename }}");
        text
    };
    for (levels, fan_out) in [(23, 2), (30, 2), (64, 2), (10, 10), (5, 100), (1_000, 1)] {
        cases.refused(
            family,
            format!("fragment bomb {levels}x{fan_out}"),
            bomb(levels, fan_out),
        );
    }
    cases.refused(
        family,
        "unused fragment bomb",
        format!(
            "{{ __typename }} {}",
            bomb(40, 2).replacen("query { ...F0 }", "", 1)
        ),
    );
    cases.refused(
        family,
        "fragment cycle",
        "{ ...A } fragment A on Query { ...A }",
    );
    cases.refused(family, "fragment cycle through three", "{ ...A } fragment A on Query { ...B } fragment B on Query { ...C } fragment C on Query { __typename ...A }");
    cases.refused(
        family,
        "inline fragments nested 40",
        format!(
            "{{ {}__typename{} }}",
            "... on Query { ".repeat(40),
            " }".repeat(40)
        ),
    );
    cases.refused(family, "six directives", "{ __typename @skip(if: false) @skip(if: false) @skip(if: false) @skip(if: false) @skip(if: false) @skip(if: false) }");
    cases.refused(
        family,
        "directive flood",
        format!("{{ __typename {} }}", "@include(if: true) ".repeat(1_000)),
    );
    cases.refused(
        family,
        "directive flood on a spread",
        format!(
            "{{ ...F {} }} fragment F on Query {{ __typename }}",
            "@skip(if: false) ".repeat(100)
        ),
    );
    cases.refused(family, "token flood", "{ __typename } ".repeat(2_000));
    cases.refused(
        family,
        "token flood of commas and names",
        format!("{{ {} }}", "__typename, ".repeat(6_000)),
    );
    let logins: String = (0..1_000)
        .map(|i| format!("l{i}: login(input: {{email: \"a@b.co\", password: \"x\"}}) {{ token }} "))
        .collect();
    cases.refused(family, "1000 logins", format!("mutation {{ {logins} }}"));
    cases.refused(family, "two logins", "mutation { a: login(input: {email: \"a@b.co\", password: \"x\"}) { token } b: login(input: {email: \"a@b.co\", password: \"y\"}) { token } }");
    cases.refused(family, "login and signup", "mutation { login(input: {email: \"a@b.co\", password: \"x\"}) { token } signup(input: {name: \"n\", email: \"c@d.co\", password: \"Aa1!aaaa\", role: PARTICIPANT}) { token } }");
    cases.refused(family, "logins through fragments", "mutation { ...L ...L } fragment L on Mutation { login(input: {email: \"a@b.co\", password: \"x\"}) { token } }");
    let registers: String = (0..11)
        .map(|i| {
            format!(
                "r{i}: register(competitionId: \"{}\", idempotencyKey: \"k{i}\") {{ id }} ",
                Uuid::new_v4()
            )
        })
        .collect();
    cases.refused(
        family,
        "eleven mutation fields",
        format!("mutation {{ {registers} }}"),
    );
    cases.gql(
        family,
        "900 KB of whitespace",
        Expect::Accepted,
        format!("{{ __typename {} }}", " ".repeat(900_000)),
        json!({}),
        None,
    );
    cases.gql(
        family,
        "900 KB comment",
        Expect::Accepted,
        format!("{{ __typename }} #{}", "x".repeat(900_000)),
        json!({}),
        None,
    );
    cases.gql(
        family,
        "900 KB string argument",
        Expect::Accepted,
        format!(
            "{{ competitions(tag: \"{}\") {{ totalCount }} }}",
            "t".repeat(900_000)
        ),
        json!({}),
        None,
    );
    cases.refused(
        family,
        "900 KB name",
        format!("{{ {} }}", "n".repeat(900_000)),
    );
}

fn http_cases(cases: &mut Cases) {
    use Expect::{Accepted, Refused};
    let ok_body = br#"{"query":"{ __typename }"}"#;
    for (name, content_type) in [
        ("no content type", None),
        ("empty content type", Some("")),
        ("text/plain", Some("text/plain")),
        ("application/graphql", Some("application/graphql")),
        ("form urlencoded", Some("application/x-www-form-urlencoded")),
        ("multipart", Some("multipart/form-data; boundary=x")),
        ("json lookalike", Some("application/jsonp")),
        ("garbage content type", Some(";;;===")),
    ] {
        let headers: Vec<(&'static str, &str)> = content_type
            .map(|value| vec![("content-type", value)])
            .unwrap_or_default();
        cases.http(
            format!("content type: {name}"),
            Method::POST,
            "/graphql",
            &headers,
            ok_body.to_vec(),
            Refused,
        );
    }
    cases.http(
        "json with charset",
        Method::POST,
        "/graphql",
        &[("content-type", "application/json; charset=utf-8")],
        ok_body.to_vec(),
        Accepted,
    );
    cases.http(
        "json in capitals",
        Method::POST,
        "/graphql",
        &[("content-type", "Application/JSON")],
        ok_body.to_vec(),
        Accepted,
    );
    for (name, body) in [
        ("empty body", &b""[..]),
        ("truncated json", b"{\"query\": "),
        ("batch", br#"[{"query":"{ __typename }"}]"#),
        ("empty batch", b"[]"),
        ("null body", b"null"),
        ("number body", b"5"),
        ("string body", b"\"{ __typename }\""),
        ("query is a number", br#"{"query":5}"#),
        ("query is an object", br#"{"query":{"a":1}}"#),
        ("no query", br#"{}"#),
        ("null query", br#"{"query":null}"#),
        ("variables is a list", br#"{"query":"{ __typename }","variables":[]}"#),
        ("variables is a string", br#"{"query":"{ __typename }","variables":"{}"}"#),
        ("operation name is a number", br#"{"query":"{ __typename }","operationName":5}"#),
        ("extensions is a list", br#"{"query":"{ __typename }","extensions":[1]}"#),
        ("invalid utf-8", b"{\"query\":\"{ __typename \xff\xfe }\"}"),
        ("utf-16", b"\xff\xfe{\x00}\x00"),
        ("trailing garbage", br#"{"query":"{ __typename }"} xyz"#),
        ("deep json variables", &br#"{"query":"{ __typename }","variables":{"a":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}}"#[..]),
        ("nul in a variable", br#"{"query":"query($t: String) { competitions(tag: $t) { totalCount } }","variables":{"t":"a\u0000"}}"#),
        ("nul in a variable name", br#"{"query":"{ __typename }","variables":{"a\u0000":1}}"#),
        ("unknown operation name", br#"{"query":"query A { __typename }","operationName":"B"}"#),
        ("no operation name for two", br#"{"query":"query A { __typename } query B { __typename }"}"#),
    ] {
        cases.post_json(format!("body: {name}"), body.to_vec(), Refused);
    }
    let mut deep = String::from(r#"{"query":"{ __typename }","variables":{"a":"#);
    deep.push_str(&"[".repeat(100_000));
    cases.post_json("body: 100 000 open brackets", deep.into_bytes(), Refused);
    let many: Vec<u32> = (0..100_000).collect();
    cases.post_json(
        "body: 100 000 unused variable items",
        json!({ "query": "{ __typename }", "variables": { "a": many } })
            .to_string()
            .into_bytes(),
        Accepted,
    );
    cases.post_json(
        "body: duplicate keys",
        br#"{"query":"{ nope }","query":"{ __typename }"}"#.to_vec(),
        Accepted,
    );
    cases.post_json(
        "body: over 1 MiB",
        format!(
            r#"{{"query":"{{ __typename }}","x":"{}"}}"#,
            "x".repeat(1_100_000)
        )
        .into_bytes(),
        Refused,
    );

    let host = "Host: 127.0.0.1\r\nContent-Type: application/json\r\n";
    let mut chunked = format!(
        "POST /graphql HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
        chunked.extend(std::iter::repeat_n(b' ', 64 * 1024));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    cases.0.push(Case {
        family: "http",
        name: "chunked body over 1 MiB".into(),
        probe: Probe::Raw(chunked),
        expect: Refused,
    });
    let announced = format!(
        "POST /graphql HTTP/1.1\r\n{host}Content-Length: {}\r\nConnection: close\r\n\r\n{{",
        2 * 1024 * 1024
    );
    cases.0.push(Case {
        family: "http",
        name: "announces 2 MiB".into(),
        probe: Probe::Raw(announced.into_bytes()),
        expect: Refused,
    });
    let huge_length = format!(
        "POST /graphql HTTP/1.1\r\n{host}Content-Length: 99999999999999999999\r\nConnection: close\r\n\r\n{{"
    );
    cases.0.push(Case {
        family: "http",
        name: "absurd content length".into(),
        probe: Probe::Raw(huge_length.into_bytes()),
        expect: Expect::Malformed,
    });
    let garbage = b"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n".to_vec();
    cases.0.push(Case {
        family: "http",
        name: "header line without colon".into(),
        probe: Probe::Raw(garbage),
        expect: Expect::Malformed,
    });

    let mut odd_header = format!("POST /graphql HTTP/1.1\r\n{host}Content-Length: {}\r\nConnection: close\r\nIdempotency-Key: ", ok_body.len()).into_bytes();
    odd_header.extend_from_slice(b"\xe9\xff\r\n\r\n");
    odd_header.extend_from_slice(ok_body);
    cases.0.push(Case {
        family: "http",
        name: "non-ascii idempotency key".into(),
        probe: Probe::Raw(odd_header),
        expect: Accepted,
    });
    for method in [Method::PUT, Method::DELETE, Method::PATCH] {
        cases.http(
            format!("method {method}"),
            method,
            "/graphql",
            &[("content-type", "application/json")],
            ok_body.to_vec(),
            Refused,
        );
    }
    cases.http(
        "unknown path",
        Method::POST,
        "/graphql/nope",
        &[("content-type", "application/json")],
        ok_body.to_vec(),
        Refused,
    );
    cases.http(
        "post to healthz",
        Method::POST,
        "/healthz",
        &[],
        Vec::new(),
        Refused,
    );
    for (name, header, value) in [
        ("empty authorization", "authorization", ""),
        ("bearer without token", "authorization", "Bearer"),
        ("basic scheme", "authorization", "Basic dXNlcjpwYXNz"),
        (
            "bearer of 8 KB",
            "authorization",
            &format!("Bearer {}", "a".repeat(8_000)),
        ),
    ] {
        cases.http(
            format!("header: {name}"),
            Method::POST,
            "/graphql",
            &[("content-type", "application/json"), (header, value)],
            ok_body.to_vec(),
            Refused,
        );
    }
    for (name, header, value) in [
        (
            "garbage forwarded-for",
            "x-forwarded-for",
            "not-an-address, ;;",
        ),
        ("odd accept", "accept", "text/html;q=abc, */*;q=-1"),
    ] {
        cases.http(
            format!("header: {name}"),
            Method::POST,
            "/graphql",
            &[("content-type", "application/json"), (header, value)],
            ok_body.to_vec(),
            Accepted,
        );
    }
}

struct World {
    organizer: Account,
    other_organizer: Account,
    participant: Account,
    other_participant: Account,
    competition: String,
    registration: String,
}

const ME: &str = "{ me { id } }";
const LISTING: &str = "{ competitions { totalCount } }";
const MY_MAIL: &str = "{ myMail { id } }";
const CREATE: &str = "mutation($input: CreateCompetitionInput!) { createCompetition(input: $input) { id title description tags startDate } }";
const REGISTER: &str = "mutation($id: ID!, $key: String) { register(competitionId: $id, idempotencyKey: $key) { id } }";
const CANCEL: &str = "mutation($id: ID!) { cancelRegistration(registrationId: $id) { id } }";
const SIGNUP: &str =
    "mutation($input: SignupInput!) { signup(input: $input) { token user { name email } } }";
const LOGIN: &str = "mutation($input: LoginInput!) { login(input: $input) { token } }";

fn valid_competition() -> Value {
    json!({
        "title": "Hostile Cup", "description": "d", "capacity": 5,
        "regDeadline": (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339(),
    })
}

fn with(base: Value, changes: Value) -> Value {
    let mut base = base;
    if let (Some(base), Some(changes)) = (base.as_object_mut(), changes.as_object()) {
        for (key, value) in changes {
            if value.is_null() {
                base.remove(key);
            } else {
                base.insert(key.clone(), value.clone());
            }
        }
    }
    base
}

fn token_cases(cases: &mut Cases, world: &World, deleted: &str) {
    let now = chrono::Utc::now().timestamp();
    let claims = |sub: &str, role: &str, iat: i64, exp: i64| json!({ "sub": sub, "role": role, "iat": iat, "exp": exp });
    let participant = &world.participant;
    let mut parts = participant.token.split('.');
    let (header, payload, signature) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let role_edited =
        URL_SAFE_NO_PAD.encode(claims(&participant.id, "ORGANIZER", now, now + 3600).to_string());
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let tokens = [
        ("garbage", "not-a-jwt".to_owned()),
        ("three dots", "a.b.c".to_owned()),
        ("alg none", format!("{none_header}.{payload}.")),
        ("role edited", format!("{header}.{role_edited}.{signature}")),
        (
            "other secret",
            forged(
                claims(&participant.id, "PARTICIPANT", now, now + 3600),
                "another-secret-entirely-0123456789",
            ),
        ),
        (
            "expired",
            forged(
                claims(&participant.id, "PARTICIPANT", now - 7200, now - 3600),
                JWT_SECRET,
            ),
        ),
        (
            "no expiry",
            forged(
                json!({ "sub": participant.id, "role": "PARTICIPANT", "iat": now }),
                JWT_SECRET,
            ),
        ),
        (
            "sub not a uuid",
            forged(claims("admin", "ORGANIZER", now, now + 3600), JWT_SECRET),
        ),
        (
            "unknown role",
            forged(
                claims(&participant.id, "ADMIN", now, now + 3600),
                JWT_SECRET,
            ),
        ),
        (
            "deleted account",
            forged(claims(deleted, "ORGANIZER", now, now + 3600), JWT_SECRET),
        ),
        (
            "never existed",
            forged(
                claims(&Uuid::new_v4().to_string(), "PARTICIPANT", now, now + 3600),
                JWT_SECRET,
            ),
        ),
    ];
    for (name, token) in tokens {
        for (operation, query, variables) in [
            ("me", ME, json!({})),
            ("listing", LISTING, json!({})),
            ("myMail", MY_MAIL, json!({})),
            (
                "createCompetition",
                CREATE,
                json!({ "input": valid_competition() }),
            ),
            (
                "register",
                REGISTER,
                json!({ "id": world.competition, "key": "t" }),
            ),
        ] {
            cases.gql(
                "token",
                format!("{name} token on {operation}"),
                Expect::Refused,
                query,
                variables,
                Some(&token),
            );
        }
    }
}

fn input_cases(cases: &mut Cases, world: &World) {
    use Expect::{Accepted, Refused};
    let family = "input";
    let signup = |name: &str, email: &str, password: &str, role: &str| json!({ "input": { "name": name, "email": email, "password": password, "role": role } });
    let fresh = || format!("{}@example.com", Uuid::new_v4().simple());
    for (case, name, email, password, role) in [
        ("empty name", "", fresh(), PASSWORD, "PARTICIPANT"),
        ("blank name", "   ", fresh(), PASSWORD, "PARTICIPANT"),
        (
            "long name",
            &"n".repeat(101),
            fresh(),
            PASSWORD,
            "PARTICIPANT",
        ),
        ("nul in name", "a\u{0}b", fresh(), PASSWORD, "PARTICIPANT"),
        ("empty email", "Ann", String::new(), PASSWORD, "PARTICIPANT"),
        (
            "email without at",
            "Ann",
            "plain".into(),
            PASSWORD,
            "PARTICIPANT",
        ),
        (
            "email without domain dot",
            "Ann",
            "a@localhost".into(),
            PASSWORD,
            "PARTICIPANT",
        ),
        (
            "email with two ats",
            "Ann",
            "a@@example.com".into(),
            PASSWORD,
            "PARTICIPANT",
        ),
        (
            "email with space",
            "Ann",
            "a b@example.com".into(),
            PASSWORD,
            "PARTICIPANT",
        ),
        (
            "email of 255 chars",
            "Ann",
            format!("{}@example.com", "a".repeat(243)),
            PASSWORD,
            "PARTICIPANT",
        ),
        (
            "nul in email",
            "Ann",
            "a\u{0}@example.com".into(),
            PASSWORD,
            "PARTICIPANT",
        ),
        (
            "quoted email",
            "Ann",
            "\"a b\"@example.com".into(),
            PASSWORD,
            "PARTICIPANT",
        ),
        (
            "injection in email",
            "Ann",
            "a'--@example.com; DROP TABLE users".into(),
            PASSWORD,
            "PARTICIPANT",
        ),
        ("short password", "Ann", fresh(), "Aa1!aaa", "PARTICIPANT"),
        (
            "long password",
            "Ann",
            fresh(),
            &format!("Aa1!{}", "a".repeat(125)),
            "PARTICIPANT",
        ),
        (
            "password without upper",
            "Ann",
            fresh(),
            "aaaa1111!",
            "PARTICIPANT",
        ),
        (
            "password without symbol",
            "Ann",
            fresh(),
            "Aaaa11111",
            "PARTICIPANT",
        ),
        (
            "nul in password",
            "Ann",
            fresh(),
            "Aa1!aaaa\u{0}",
            "PARTICIPANT",
        ),
        ("unknown role", "Ann", fresh(), PASSWORD, "ADMIN"),
        ("lower-case role", "Ann", fresh(), PASSWORD, "participant"),
        (
            "taken email",
            "Ann",
            world.participant.email.to_uppercase(),
            PASSWORD,
            "PARTICIPANT",
        ),
    ] {
        cases.gql(
            family,
            format!("signup: {case}"),
            Refused,
            SIGNUP,
            signup(name, &email, password, role),
            None,
        );
    }
    for (case, name) in [
        ("unicode name", "Zoë 李 🚀"),
        (
            "injection name stored verbatim",
            "Robert'); DROP TABLE users;--",
        ),
        ("markup name stored verbatim", "<script>alert(1)</script>"),
    ] {
        cases.gql(
            family,
            format!("signup: {case}"),
            Accepted,
            SIGNUP,
            signup(name, &fresh(), PASSWORD, "PARTICIPANT"),
            None,
        );
    }
    let login =
        |email: &str, password: &str| json!({ "input": { "email": email, "password": password } });
    for (case, variables) in [
        (
            "wrong password",
            login(&world.participant.email, "Wrong-pass-1"),
        ),
        ("unknown email", login("nobody@example.com", PASSWORD)),
        ("nul in email", login("a\u{0}@example.com", PASSWORD)),
        ("nul in password", login(&world.participant.email, "a\u{0}")),
        (
            "megabyte-ish password",
            login(&world.participant.email, &"p".repeat(500_000)),
        ),
        ("empty fields", login("", "")),
    ] {
        cases.gql(
            family,
            format!("login: {case}"),
            Refused,
            LOGIN,
            variables,
            None,
        );
    }

    let organizer = Some(world.organizer.token.as_str());
    let deadline = |days: i64| (chrono::Utc::now() + chrono::Duration::days(days)).to_rfc3339();
    let too_many_tags: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    for (case, changes) in [
        ("empty title", json!({ "title": "" })),
        ("long title", json!({ "title": "t".repeat(201) })),
        ("nul in title", json!({ "title": "a\u{0}" })),
        (
            "long description",
            json!({ "description": "d".repeat(5_001) }),
        ),
        ("nul in description", json!({ "description": "\u{0}" })),
        ("21 tags", json!({ "tags": too_many_tags })),
        ("empty tag", json!({ "tags": [""] })),
        ("long tag", json!({ "tags": ["x".repeat(41)] })),
        ("nul in tag", json!({ "tags": ["a\u{0}"] })),
        ("null tag", json!({ "tags": [null] })),
        ("capacity 0", json!({ "capacity": 0 })),
        ("capacity -1", json!({ "capacity": -1 })),
        ("capacity over a million", json!({ "capacity": 1_000_001 })),
        (
            "capacity over i32",
            json!({ "capacity": 2_147_483_648_i64 }),
        ),
        ("capacity as string", json!({ "capacity": "5" })),
        ("capacity as float", json!({ "capacity": 5.5 })),
        ("missing capacity", json!({ "capacity": null })),
        (
            "deadline in the past",
            json!({ "regDeadline": deadline(-1) }),
        ),
        ("deadline in words", json!({ "regDeadline": "tomorrow" })),
        (
            "deadline year +262142",
            json!({ "regDeadline": "+262142-12-31T23:59:59Z" }),
        ),
        (
            "deadline 9999 (default start 10000)",
            json!({ "regDeadline": "9999-12-31T23:59:59Z" }),
        ),
        (
            "deadline year 0",
            json!({ "regDeadline": "0000-01-01T00:00:00Z" }),
        ),
        (
            "deadline 30 February",
            json!({ "regDeadline": "2030-02-30T00:00:00Z" }),
        ),
        (
            "deadline without offset",
            json!({ "regDeadline": "2030-01-01T00:00:00" }),
        ),
        (
            "deadline as a number",
            json!({ "regDeadline": 1_900_000_000 }),
        ),
        (
            "deadline of 5 digits",
            json!({ "regDeadline": "20300-01-01T00:00:00Z" }),
        ),
        (
            "start before deadline",
            json!({ "regDeadline": deadline(3), "startDate": deadline(2) }),
        ),
        (
            "start year 10000",
            json!({ "regDeadline": deadline(3), "startDate": "10000-01-01T00:00:00Z" }),
        ),
    ] {
        cases.gql(
            family,
            format!("createCompetition: {case}"),
            Refused,
            CREATE,
            json!({ "input": with(valid_competition(), changes) }),
            organizer,
        );
    }
    for (case, changes) in [
        (
            "unicode everywhere",
            json!({ "title": "Ünïcödé 大会 🏆", "tags": ["échecs", "囲碁"] }),
        ),
        (
            "injection title stored verbatim",
            json!({ "title": "x'); DELETE FROM competitions; --", "description": "$$ \\ %s %n {{7*7}}" }),
        ),
        (
            "deadline with offset",
            json!({ "regDeadline": "2031-06-01T12:00:00+05:30" }),
        ),
        (
            "last possible start",
            json!({ "regDeadline": "9999-12-30T00:00:00Z", "startDate": "9999-12-31T23:59:59Z" }),
        ),
        ("duplicate tags", json!({ "tags": ["a", "a", " a "] })),
    ] {
        cases.gql(
            family,
            format!("createCompetition: {case}"),
            Accepted,
            CREATE,
            json!({ "input": with(valid_competition(), changes) }),
            organizer,
        );
    }

    let participant = Some(world.other_participant.token.as_str());
    for (case, variables) in [
        ("id not a uuid", json!({ "id": "42", "key": "k1" })),
        ("empty id", json!({ "id": "", "key": "k2" })),
        ("nul in id", json!({ "id": "\u{0}", "key": "k3" })),
        (
            "id of 10 KB",
            json!({ "id": "a".repeat(10_000), "key": "k4" }),
        ),
        (
            "unknown competition",
            json!({ "id": Uuid::new_v4(), "key": "k5" }),
        ),
        ("empty key", json!({ "id": world.competition, "key": "" })),
        (
            "key of 256",
            json!({ "id": world.competition, "key": "k".repeat(256) }),
        ),
        (
            "non-ascii key",
            json!({ "id": world.competition, "key": "ключ" }),
        ),
        (
            "nul in key",
            json!({ "id": world.competition, "key": "a\u{0}" }),
        ),
        ("no key", json!({ "id": world.competition })),
        ("id as number", json!({ "id": 5, "key": "k6" })),
        (
            "id as list",
            json!({ "id": [world.competition], "key": "k7" }),
        ),
    ] {
        cases.gql(
            family,
            format!("register: {case}"),
            Refused,
            REGISTER,
            variables,
            participant,
        );
    }
    cases.0.push(Case {
        family,
        name: "register: header and argument differ".into(),
        probe: Probe::Graphql {
            query: REGISTER.into(),
            variables: json!({ "id": world.competition, "key": "one" }),
            token: Some(world.other_participant.token.clone()),
            headers: vec![("idempotency-key", "two".into())],
        },
        expect: Refused,
    });
    for (case, id) in [
        ("bad id", json!("x")),
        ("unknown id", json!(Uuid::new_v4())),
        ("nul", json!("\u{0}")),
    ] {
        cases.gql(
            family,
            format!("cancelRegistration: {case}"),
            Refused,
            CANCEL,
            json!({ "id": id }),
            participant,
        );
    }
    let page = "query($first: Int, $after: String, $tag: String) { competitions(first: $first, after: $after, tag: $tag) { totalCount } }";
    let cursor = |text: &str| URL_SAFE_NO_PAD.encode(text);
    for (case, variables) in [
        ("first -1", json!({ "first": -1 })),
        ("first 101", json!({ "first": 101 })),
        ("first 2^31", json!({ "first": 2_147_483_648_i64 })),
        ("garbage cursor", json!({ "after": "!!!" })),
        ("cursor of garbage", json!({ "after": cursor("nope") })),
        ("cursor without id", json!({ "after": cursor("123:") })),
        (
            "cursor year -250000",
            json!({ "after": cursor(&format!("-8000000000000000000:{}", Uuid::nil())) }),
        ),
        (
            "cursor year 10000",
            json!({ "after": cursor(&format!("253402300800000000:{}", Uuid::nil())) }),
        ),
        ("cursor with nul", json!({ "after": cursor("1\u{0}:x") })),
        ("nul in tag", json!({ "tag": "a\u{0}" })),
    ] {
        cases.gql(
            family,
            format!("competitions: {case}"),
            Refused,
            page,
            variables,
            None,
        );
    }
    for (case, variables) in [
        ("first 0", json!({ "first": 0 })),
        ("unicode tag", json!({ "tag": "échecs 🏆" })),
        ("injection tag", json!({ "tag": "' OR 1=1 --" })),
    ] {
        cases.gql(
            family,
            format!("competitions: {case}"),
            Accepted,
            page,
            variables,
            None,
        );
    }
    let one = "query($id: ID!) { competition(id: $id) { id } }";
    for (case, id) in [
        ("bad uuid", "not-a-uuid"),
        ("nul", "\u{0}"),
        ("too long", "0000000000000000000000000000000000000000000000"),
    ] {
        cases.gql(
            family,
            format!("competition: {case}"),
            Refused,
            one,
            json!({ "id": id }),
            None,
        );
    }
    let mail = "query($first: Int) { myMail(first: $first) { id } }";
    for first in [-1, 101, 1_000_000] {
        cases.gql(
            family,
            format!("myMail: first {first}"),
            Refused,
            mail,
            json!({ "first": first }),
            Some(&world.participant.token),
        );
    }
}

fn authorization_cases(cases: &mut Cases, world: &World) {
    use Expect::Refused;
    let family = "authorization";
    let registrations =
        "query($id: ID!) { competition(id: $id) { registrations { id user { email } } } }";
    let competition = json!({ "id": world.competition });
    let tokens = [
        ("participant", Some(world.participant.token.as_str())),
        (
            "other organizer",
            Some(world.other_organizer.token.as_str()),
        ),
        ("anonymous", None),
    ];
    for (who, token) in tokens {
        cases.gql(
            family,
            format!("{who} reads another's registrations"),
            Refused,
            registrations,
            competition.clone(),
            token,
        );
    }
    cases.gql(
        family,
        "participant creates a competition",
        Refused,
        CREATE,
        json!({ "input": valid_competition() }),
        Some(&world.participant.token),
    );
    cases.gql(
        family,
        "anonymous creates a competition",
        Refused,
        CREATE,
        json!({ "input": valid_competition() }),
        None,
    );
    cases.gql(
        family,
        "organizer registers",
        Refused,
        REGISTER,
        json!({ "id": world.competition, "key": "o" }),
        Some(&world.organizer.token),
    );
    cases.gql(
        family,
        "anonymous registers",
        Refused,
        REGISTER,
        json!({ "id": world.competition, "key": "a" }),
        None,
    );
    cases.gql(
        family,
        "another participant cancels",
        Refused,
        CANCEL,
        json!({ "id": world.registration }),
        Some(&world.other_participant.token),
    );
    cases.gql(
        family,
        "organizer cancels a participant",
        Refused,
        CANCEL,
        json!({ "id": world.registration }),
        Some(&world.organizer.token),
    );
    cases.gql(
        family,
        "anonymous cancels",
        Refused,
        CANCEL,
        json!({ "id": world.registration }),
        None,
    );
    cases.gql(family, "anonymous reads me", Refused, ME, json!({}), None);
    cases.gql(
        family,
        "anonymous reads mail",
        Refused,
        MY_MAIL,
        json!({}),
        None,
    );
    cases.gql(
        family,
        "anonymous reads registrations",
        Refused,
        "{ myRegistrations { id } }",
        json!({}),
        None,
    );
    cases.gql(
        family,
        "registrations through a listing",
        Refused,
        "{ competitions { edges { node { registrations { id } } } } }",
        json!({}),
        Some(&world.participant.token),
    );
    cases.gql(
        family,
        "registrations through my registration",
        Refused,
        "{ myRegistrations { competition { registrations { user { email } } } } }",
        json!({}),
        Some(&world.participant.token),
    );
    cases.gql(family, "organizer registers through a fragment", Refused, "mutation($id: ID!) { ...R } fragment R on Mutation { register(competitionId: $id, idempotencyKey: \"f\") { id } }", competition, Some(&world.organizer.token));
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_inputs_are_refused_cleanly_and_change_nothing() {
    let mut config = test_config();
    config.jobs.worker_concurrency = 0;
    // Rate limits have their own tests; here they would refuse the login cases early.
    config.rate_limits.per_address = 100_000;
    config.rate_limits.per_account = 100_000;
    let app = TestApp::spawn_with(config).await;

    let organizer = app.signup("ORGANIZER").await;
    let other_organizer = app.signup("ORGANIZER").await;
    let participant = app.signup("PARTICIPANT").await;
    let other_participant = app.signup("PARTICIPANT").await;
    let created = app
        .create_competition(&organizer, json!({ "capacity": 5 }))
        .await;
    let competition = created["data"]["createCompetition"]["id"]
        .as_str()
        .expect("competition")
        .to_owned();
    let registered = app
        .gql_as(
            Some(&participant.token),
            REGISTER,
            json!({ "id": competition, "key": "first" }),
        )
        .await;
    let registration = registered["data"]["register"]["id"]
        .as_str()
        .expect("registration")
        .to_owned();
    // An account with a valid token, then deleted (tokens of a reset database look alike).
    let deleted = app.bulk_participants(1).await.remove(0);
    app.run_sql(&format!("DELETE FROM users WHERE id = '{}'", deleted.id))
        .await;
    let world = World {
        organizer,
        other_organizer,
        participant,
        other_participant,
        competition,
        registration,
    };

    let mut cases = Cases::default();
    document_cases(&mut cases);
    http_cases(&mut cases);
    token_cases(&mut cases, &world, &deleted.id);
    input_cases(&mut cases, &world);
    authorization_cases(&mut cases, &world);
    let names: std::collections::HashSet<_> = cases
        .0
        .iter()
        .map(|case| (case.family, case.name.as_str()))
        .collect();
    assert_eq!(names.len(), cases.0.len(), "case names must be distinct");
    assert!(cases.0.len() >= 200, "only {} cases", cases.0.len());

    let mut failures = Vec::new();
    let mut baseline = app.checksums().await;
    for case in &cases.0 {
        let (status, body) = send(&app, &case.probe).await;
        match judge(case, status, &body) {
            Ok(true) => {
                let now = app.checksums().await;
                if now != baseline {
                    failures.push(format!(
                        "[{}] {}: refused but wrote: {} → {}",
                        case.family, case.name, baseline, now
                    ));
                    baseline = now;
                }
            }
            Ok(false) => baseline = app.checksums().await,
            Err(problem) => failures.push(format!("[{}] {}: {problem}", case.family, case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.0.len(),
        failures.join("\n")
    );

    // Stored verbatim: what the injection cases wrote reads back unchanged.
    let titles = app
        .count(
            "SELECT count(*) FROM competitions WHERE title = 'x''); DELETE FROM competitions; --'",
        )
        .await;
    assert_eq!(titles, 1);
    let names = app
        .count("SELECT count(*) FROM users WHERE name = 'Robert''); DROP TABLE users;--'")
        .await;
    assert_eq!(names, 1);
    let alive = app.gql("{ __typename }", json!({})).await;
    assert_eq!(alive["data"]["__typename"], "Query", "{alive}");
}
