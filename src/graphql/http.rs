//! GraphQL over HTTP: POST runs a request, GET shows GraphiQL.
//!
//! Everything before execution happens here, cheapest first: the body is read within its
//! limit, its JSON shape checked, the document checked against the limits and parsed (see
//! `documents`), the bearer token verified against a live account. Every refusal is a JSON
//! body with an `extensions.code`, never a framework's text.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use async_graphql::{
    ServerError, Variables,
    parser::types::{DocumentOperations, ExecutableDocument, OperationType},
};
use axum::{
    Extension,
    body::{Body, Bytes},
    extract::{ConnectInfo, RawQuery, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use ipnet::IpNet;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use super::{
    AppSchema,
    completion::Shapes,
    context::{ClientAddress, IdempotencyKeyHeader, Viewer},
    documents::DocumentCache,
    errors::{classify, refusal},
    limits::{self, DocumentLimits, Refused},
    loaders::DbLoader,
    persisted::PersistedQueries,
};
use crate::{
    auth::{Claims, JwtKeys},
    config::HttpConfig,
    error::{AppError, AppResult, bad_input},
    metrics::{self, GraphqlOutcome},
    state::AppState,
};

/// Largest accepted request body (API.md).
pub const BODY_LIMIT_BYTES: usize = 1024 * 1024;
const IDEMPOTENCY_KEY: &str = "idempotency-key";
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
/// Seconds a client is asked to wait after the server shed its request.
const RETRY_AFTER_SECS: &str = "1";

/// What the GraphQL endpoint shares between requests.
pub struct Endpoint {
    pub app: AppState,
    pub schema: AppSchema,
    /// The same schema without validation's rules (its depth and complexity limits
    /// stay), for documents validation has already passed for good (`Prepared`).
    pub validated_schema: AppSchema,
    /// The schema's types, for spec-exact results.
    pub shapes: Arc<Shapes>,
    pub documents: Arc<DocumentCache>,
    pub persisted: Arc<PersistedQueries>,
    pub limits: Arc<DocumentLimits>,
    pub trusted_proxies: Arc<[IpNet]>,
}

/// The media type of the answer, from the request's `Accept`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Media {
    /// `application/json`: request errors are 200, as legacy clients expect.
    Json,
    /// `application/graphql-response+json`: request errors are 4xx without `data`.
    GraphqlResponse,
}

impl Media {
    /// The type the client prefers by its `Accept` q-values; a tie goes to
    /// `application/graphql-response+json`, no `Accept` or `*/*` to `application/json`.
    pub fn negotiate(headers: &HeaderMap) -> Self {
        let (mut json, mut graphql) = (None::<f32>, None::<f32>);
        for (essence, quality) in accepted(headers) {
            let slot = match essence.as_str() {
                "application/json" | "application/*" | "*/*" => &mut json,
                GRAPHQL_RESPONSE => &mut graphql,
                _ => continue,
            };
            *slot = Some(slot.map_or(quality, |seen| seen.max(quality)));
        }
        match (graphql, json) {
            (Some(graphql), json) if graphql > 0.0 && graphql >= json.unwrap_or(0.0) => {
                Self::GraphqlResponse
            }
            _ => Self::Json,
        }
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::Json => "application/json",
            Self::GraphqlResponse => GRAPHQL_RESPONSE,
        })
    }
}

/// A request refused before execution.
pub struct Refusal {
    status: StatusCode,
    /// The status holds whatever the media type (transport errors); otherwise only under
    /// `application/graphql-response+json`, and `application/json` gets 200.
    transport: bool,
    error: AppError,
    /// The methods to name in `Allow` (a 405).
    allow: Option<&'static str>,
}

impl Refusal {
    /// Refused by HTTP itself (body, content type, method): its status in every case.
    pub fn transport(status: StatusCode, error: AppError) -> Self {
        Self {
            status,
            transport: true,
            error,
            allow: None,
        }
    }

    /// A GraphQL request error (document, limits, token): 4xx under
    /// `application/graphql-response+json`.
    pub fn request(error: AppError) -> Self {
        let status = match &error {
            AppError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            AppError::Unavailable(_) | AppError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        let transport = matches!(
            error,
            AppError::Unavailable(_) | AppError::Overloaded(_) | AppError::Internal(_)
        );
        Self {
            status,
            transport,
            error,
            allow: None,
        }
    }

    pub fn respond(self, media: Media) -> Response {
        let status = if self.transport || media == Media::GraphqlResponse {
            self.status
        } else {
            StatusCode::OK
        };
        let errors = refusal(self.error).errors;
        let mut response = json_response(status, media, &ResponseBody::errors(&errors));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        if let Some(allow) = self.allow {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

impl From<Refused> for Refusal {
    fn from(refused: Refused) -> Self {
        Self::request(match refused {
            Refused::TooComplex(message) => AppError::TooComplex(message),
            Refused::Invalid(message) => AppError::BadInput(message),
        })
    }
}

#[derive(Serialize)]
struct ResponseBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a async_graphql::Value>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [ServerError],
}

impl<'a> ResponseBody<'a> {
    fn errors(errors: &'a [ServerError]) -> Self {
        Self { data: None, errors }
    }
}

fn json_response(status: StatusCode, media: Media, body: &ResponseBody<'_>) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(header::CONTENT_TYPE, media.content_type())],
            Extension(ResultCode(result_code(body.errors))),
            Bytes::from(bytes),
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "could not serialise a response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The first error's `extensions.code` ("OK" without errors), left in the response for
/// the metrics.
#[derive(Clone, Copy)]
struct ResultCode(&'static str);

fn result_code(errors: &[ServerError]) -> &'static str {
    let Some(error) = errors.first() else {
        return "OK";
    };
    match error
        .extensions
        .as_ref()
        .and_then(|values| values.get("code"))
    {
        Some(async_graphql::Value::String(code)) => AppError::CODES
            .into_iter()
            .find(|known| known == code)
            .unwrap_or("OTHER"),
        _ => "OTHER",
    }
}

/// The fields of a GraphQL-over-HTTP request.
pub struct GraphqlRequest {
    pub query: Option<String>,
    pub operation_name: Option<String>,
    pub variables: Map<String, Value>,
    pub extensions: Map<String, Value>,
}

/// How the request came: a GET may only run queries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

pub async fn post(
    State(endpoint): State<Arc<Endpoint>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let media = Media::negotiate(&headers);
    let request = match read_post(&headers, body, &endpoint.limits).await {
        Ok(request) => request,
        Err(refusal) => return refusal.respond(media),
    };
    run(&endpoint, peer.ip(), &headers, media, Method::Post, request).await
}

/// GET: GraphiQL for a browser (its `Accept` prefers HTML), the query of the URL executed
/// for anyone else (queries only: a mutation is 405, `Allow: POST`).
pub async fn get(
    State(endpoint): State<Arc<Endpoint>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if prefers_html(&headers) {
        return super::graphiql::page().await.into_response();
    }
    let media = Media::negotiate(&headers);
    match parse_url(raw.as_deref().unwrap_or_default(), &endpoint.limits) {
        Ok(request) => run(&endpoint, peer.ip(), &headers, media, Method::Get, request).await,
        Err(refusal) => refusal.respond(media),
    }
}

/// Every media range of `Accept`: (type, lowercased; its q-value, 1 when absent).
fn accepted(headers: &HeaderMap) -> impl Iterator<Item = (String, f32)> + '_ {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|range| {
            let mut parts = range.split(';');
            let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let quality = parts
                .filter_map(|param| param.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (essence, quality)
        })
}

/// True when `Accept` names `text/html` at least as warmly as any JSON type (browsers;
/// `*/*` alone does not count).
fn prefers_html(headers: &HeaderMap) -> bool {
    let (mut html, mut json) = (None::<f32>, 0.0_f32);
    for (essence, quality) in accepted(headers) {
        match essence.as_str() {
            "text/html" => html = Some(html.map_or(quality, |seen| seen.max(quality))),
            "application/json" | GRAPHQL_RESPONSE => json = json.max(quality),
            _ => {}
        }
    }
    html.is_some_and(|html| html > 0.0 && html >= json)
}

/// The parameters of a GET: `query`, `operationName`, and `variables` and `extensions`
/// as URL-encoded JSON.
fn parse_url(raw: &str, limits: &DocumentLimits) -> Result<GraphqlRequest, Refusal> {
    let mut request = GraphqlRequest {
        query: None,
        operation_name: None,
        variables: Map::new(),
        extensions: Map::new(),
    };
    for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        match name.as_ref() {
            "query" => request.query = Some(value.into_owned()),
            "operationName" => request.operation_name = Some(value.into_owned()),
            "variables" => request.variables = json_object("variables", &value, limits)?,
            "extensions" => request.extensions = json_object("extensions", &value, limits)?,
            _ => {}
        }
    }
    if contains_nul(&request.variables) {
        return Err(Refusal::request(bad_input(
            "text must not contain NUL characters",
        )));
    }
    Ok(request)
}

/// A JSON object given as a URL parameter, its nesting bounded before it is decoded.
fn json_object(
    name: &str,
    text: &str,
    limits: &DocumentLimits,
) -> Result<Map<String, Value>, Refusal> {
    if limits::json_nesting(text.as_bytes()) > limits.max_value_depth + 1 {
        return Err(Refusal::request(AppError::TooComplex(format!(
            "{name} nest deeper than {}",
            limits.max_value_depth
        ))));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(Value::Null) => Ok(Map::new()),
        _ => Err(bad_request(&format!("{name} must be a JSON object"))),
    }
}

/// Reads a POST body: JSON, within `BODY_LIMIT_BYTES` (whether announced or chunked).
async fn read_post(
    headers: &HeaderMap,
    body: Body,
    limits: &DocumentLimits,
) -> Result<GraphqlRequest, Refusal> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(Refusal::transport(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            bad_input("a GraphQL POST must have Content-Type: application/json"),
        ));
    }
    let too_large = || {
        Refusal::transport(
            StatusCode::PAYLOAD_TOO_LARGE,
            AppError::TooComplex(format!("the body is larger than {BODY_LIMIT_BYTES} bytes")),
        )
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|length| length > BODY_LIMIT_BYTES as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, BODY_LIMIT_BYTES)
        .await
        .map_err(|error| {
            let over = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            if over {
                too_large()
            } else {
                Refusal::transport(
                    StatusCode::BAD_REQUEST,
                    bad_input("the request body could not be read"),
                )
            }
        })?;
    parse_body(&bytes, limits)
}

fn bad_request(message: &str) -> Refusal {
    Refusal::transport(StatusCode::BAD_REQUEST, bad_input(message))
}

/// The JSON body of a POST: an object with `query`, `operationName`, `variables`,
/// `extensions`. Its nesting is bounded before it is decoded.
fn parse_body(bytes: &[u8], limits: &DocumentLimits) -> Result<GraphqlRequest, Refusal> {
    // The body object and `variables` are two levels above the deepest variable value.
    if limits::json_nesting(bytes) > limits.max_value_depth + 2 {
        return Err(Refusal::request(AppError::TooComplex(format!(
            "variables nest deeper than {}",
            limits.max_value_depth
        ))));
    }
    let mut body = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(body)) => body,
        Ok(Value::Array(_)) => return Err(bad_request("batched requests are not supported")),
        Ok(_) => return Err(bad_request("the body must be a JSON object")),
        Err(_) => return Err(bad_request("the body is not valid JSON")),
    };
    // Taken out of the body rather than copied: a document can be a megabyte.
    let mut text = |name: &str| match body.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(bad_request(&format!("{name} must be a string"))),
    };
    let (query, operation_name) = (text("query")?, text("operationName")?);
    let mut object = |name: &str| match body.remove(name) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(object)) => Ok(object),
        Some(_) => Err(bad_request(&format!("{name} must be an object"))),
    };
    let request = GraphqlRequest {
        query,
        operation_name,
        variables: object("variables")?,
        extensions: object("extensions")?,
    };
    if contains_nul(&request.variables) {
        return Err(Refusal::request(bad_input(
            "text must not contain NUL characters",
        )));
    }
    Ok(request)
}

/// True when a string anywhere in `variables` (keys included) holds a NUL character:
/// Postgres cannot store one, and no input of API.md allows it.
fn contains_nul(variables: &Map<String, Value>) -> bool {
    let mut pending: Vec<&Value> = Vec::new();
    for (key, value) in variables {
        if key.contains('\0') {
            return true;
        }
        pending.push(value);
    }
    while let Some(value) = pending.pop() {
        match value {
            Value::String(text) if text.contains('\0') => return true,
            Value::Array(items) => pending.extend(items),
            Value::Object(fields) => {
                if fields.keys().any(|key| key.contains('\0')) {
                    return true;
                }
                pending.extend(fields.values());
            }
            _ => {}
        }
    }
    false
}

/// Checks the document and the caller, then executes.
/// Runs a request, leaving what it was and how it ended for the metrics.
async fn run(
    endpoint: &Endpoint,
    peer: IpAddr,
    headers: &HeaderMap,
    media: Media,
    method: Method,
    request: GraphqlRequest,
) -> Response {
    let mut selected = Selected {
        kind: "unknown",
        name: request.operation_name.clone(),
    };
    let mut response = execute(
        endpoint,
        peer,
        headers,
        media,
        method,
        request,
        &mut selected,
    )
    .await;
    let operation = metrics::operation_label(selected.name.as_deref());
    tracing::Span::current().record("operation", operation.as_str());
    let code = response
        .extensions()
        .get::<ResultCode>()
        .map_or("OTHER", |code| code.0);
    response.extensions_mut().insert(GraphqlOutcome {
        operation,
        kind: selected.kind,
        code,
    });
    response
}

/// The operation a request selected, once its document is parsed.
struct Selected {
    kind: &'static str,
    name: Option<String>,
}

async fn execute(
    endpoint: &Endpoint,
    peer: IpAddr,
    headers: &HeaderMap,
    media: Media,
    method: Method,
    request: GraphqlRequest,
    selected: &mut Selected,
) -> Response {
    if request.query.is_none() && !request.extensions.contains_key("persistedQuery") {
        return Refusal::transport(StatusCode::BAD_REQUEST, bad_input("a query is required"))
            .respond(media);
    }
    let query = match endpoint
        .persisted
        .resolve(request.query, &request.extensions)
    {
        Ok(query) => query,
        Err(error) => return Refusal::request(error).respond(media),
    };
    let document = match endpoint.documents.prepare(&query, &endpoint.limits).await {
        Ok(document) => document,
        Err(refused) => return Refusal::from(refused).respond(media),
    };
    let operation_name = request.operation_name;
    let operation = selected_operation(&document.document, operation_name.as_deref());
    if let Some((name, kind)) = operation {
        selected.kind = match kind {
            OperationType::Query => "query",
            OperationType::Mutation => "mutation",
            OperationType::Subscription => "subscription",
        };
        selected.name = name.map(str::to_owned);
    }
    if method == Method::Get && operation.is_some_and(|(_, kind)| kind == OperationType::Mutation) {
        let mut refusal = Refusal::transport(
            StatusCode::METHOD_NOT_ALLOWED,
            bad_input("mutations must be sent with POST"),
        );
        refusal.allow = Some("POST");
        return refusal.respond(media);
    }
    let viewer = match caller(&endpoint.app, headers).await {
        Ok(viewer) => viewer,
        Err(error) => return Refusal::request(error).respond(media),
    };
    // A header that is not visible ASCII becomes "", which the key rules refuse.
    let idempotency_key = headers
        .get(IDEMPOTENCY_KEY)
        .map(|value| value.to_str().unwrap_or_default().to_owned());
    let variables = Variables::from_json(Value::Object(request.variables));
    let mut graphql = async_graphql::Request::new(query)
        .variables(variables.clone())
        .data(Viewer(viewer))
        .data(IdempotencyKeyHeader(idempotency_key))
        .data(ClientAddress(client_address(
            peer,
            headers,
            &endpoint.trusted_proxies,
        )))
        .data(DbLoader::for_request(endpoint.app.db.clone()));
    if let Some(name) = &operation_name {
        graphql = graphql.operation_name(name.clone());
    }
    graphql.set_parsed_query(document.document.clone());
    let schema = if document.validated(&variables) {
        &endpoint.validated_schema
    } else {
        &endpoint.schema
    };
    let mut response = schema.execute(graphql).await;
    response.errors.iter_mut().for_each(classify);
    // Nothing ran: a request error (validation, coercion) rather than a field error.
    let not_executed = response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|error| error.path.is_empty());
    if not_executed {
        let status = match media {
            Media::GraphqlResponse => StatusCode::BAD_REQUEST,
            Media::Json => StatusCode::OK,
        };
        return json_response(status, media, &ResponseBody::errors(&response.errors));
    }
    document.passed_validation();
    let data = endpoint.shapes.complete(
        &document.document,
        operation_name.as_deref(),
        &variables,
        std::mem::take(&mut response.data),
        !response.errors.is_empty(),
    );
    let body = ResponseBody {
        data: Some(&data),
        errors: &response.errors,
    };
    json_response(StatusCode::OK, media, &body)
}

/// The name and type of the operation the request selects, if it selects one.
fn selected_operation<'a>(
    document: &'a ExecutableDocument,
    operation_name: Option<&str>,
) -> Option<(Option<&'a str>, OperationType)> {
    match (&document.operations, operation_name) {
        (DocumentOperations::Single(operation), _) => Some((None, operation.node.ty)),
        (DocumentOperations::Multiple(operations), Some(name)) => operations
            .get_key_value(name)
            .map(|(name, operation)| (Some(name.as_str()), operation.node.ty)),
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => operations
            .iter()
            .next()
            .map(|(name, operation)| (Some(name.as_str()), operation.node.ty)),
        _ => None,
    }
}

/// The caller named by a valid bearer token, as the account is now. A request without
/// `Authorization` is anonymous; a bad token, or one whose account is gone, is refused,
/// never downgraded to anonymous.
async fn caller(app: &AppState, headers: &HeaderMap) -> AppResult<Option<Claims>> {
    let Some(claims) = bearer_claims(&app.jwt, headers)? else {
        return Ok(None);
    };
    app.accounts.confirm(claims).await.map(Some)
}

fn bearer_claims(jwt: &JwtKeys, headers: &HeaderMap) -> AppResult<Option<Claims>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|value| value.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or(AppError::Unauthenticated(
            "Authorization header must be \"Bearer <token>\"",
        ))?;
    jwt.verify(token).map(Some)
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the nearest
/// address in `X-Forwarded-For` that is not one (entries further left are the client's
/// own say and could be anything).
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |address: &IpAddr| trusted.iter().any(|net| net.contains(address));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .map(|address| address.to_canonical())
        .collect();
    hops.iter()
        .rev()
        .find(|address| !is_trusted(address))
        .or(hops.first())
        .copied()
        .unwrap_or(peer)
}

/// Bounds what the GraphQL endpoint takes on: requests in flight (beyond, refused at once)
/// and each request's time.
#[derive(Clone)]
pub struct Guard {
    in_flight: Arc<Semaphore>,
    budget: Duration,
}

impl Guard {
    pub fn new(config: &HttpConfig) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            budget: Duration::from_secs(config.request_timeout_secs),
        }
    }
}

/// Middleware: shed load past the in-flight limit, and answer 503 when a request runs out
/// of its time budget (its work is dropped; a `register` replayed with its key is safe).
pub async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let media = Media::negotiate(request.headers());
    let Ok(_permit) = guard.in_flight.clone().try_acquire_owned() else {
        crate::metrics::refused("in_flight");
        return Refusal::transport(
            StatusCode::SERVICE_UNAVAILABLE,
            AppError::Overloaded("The server is busy; retry later"),
        )
        .respond(media);
    };
    match tokio::time::timeout(guard.budget, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            crate::metrics::refused("time_budget");
            Refusal::transport(
                StatusCode::SERVICE_UNAVAILABLE,
                AppError::Overloaded("The request ran out of its time budget; retry later"),
            )
            .respond(media)
        }
    }
}

/// The answer to a panic caught by the router: the detail goes to the log only.
pub fn panicked(detail: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = detail
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| detail.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    Refusal::transport(
        StatusCode::INTERNAL_SERVER_ERROR,
        AppError::Internal(format!("panic: {detail}")),
    )
    .respond(Media::Json)
}

/// Unknown paths get JSON too.
pub async fn not_found() -> Response {
    Refusal::transport(StatusCode::NOT_FOUND, AppError::NotFound("route")).respond(Media::Json)
}

/// A known path with a method it does not serve (axum adds the `Allow` header).
pub async fn method_not_allowed() -> Response {
    Refusal::transport(
        StatusCode::METHOD_NOT_ALLOWED,
        bad_input("this method is not allowed here"),
    )
    .respond(Media::Json)
}
