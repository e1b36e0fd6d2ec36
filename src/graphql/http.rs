//! HTTP handlers: GraphQL over POST, GraphiQL on GET.

use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::{
    extract::State,
    http::{HeaderMap, header::AUTHORIZATION},
    response::Html,
};

use super::{
    context::{IdempotencyKeyHeader, Viewer},
    errors::{classify, refusal},
    loaders::DbLoader,
};
use crate::{
    auth::{Claims, JwtKeys},
    error::{AppError, AppResult},
    startup::HttpState,
};

const IDEMPOTENCY_KEY: &str = "idempotency-key";

pub async fn execute(
    State(state): State<HttpState>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> GraphQLResponse {
    let viewer = match bearer_claims(&state.app.jwt, &headers) {
        Ok(viewer) => viewer,
        Err(error) => return refusal(error).into(),
    };
    // A header that is not visible ASCII becomes "", which the key rules refuse.
    let idempotency_key = headers
        .get(IDEMPOTENCY_KEY)
        .map(|value| value.to_str().unwrap_or_default().to_owned());
    let mut request = request.into_inner();
    state.documents.parse_into(&mut request);
    let request = request
        .data(Viewer(viewer))
        .data(IdempotencyKeyHeader(idempotency_key))
        .data(DbLoader::for_request(state.app.db.clone()));
    let mut response = state.schema.execute(request).await;
    response.errors.iter_mut().for_each(classify);
    response.into()
}

pub async fn graphiql() -> Html<String> {
    Html(GraphiQLSource::build().endpoint("/graphql").finish())
}

/// A request without `Authorization` is anonymous; one with a bad token is refused, never
/// downgraded to anonymous.
fn bearer_claims(jwt: &JwtKeys, headers: &HeaderMap) -> AppResult<Option<Claims>> {
    let Some(value) = headers.get(AUTHORIZATION) else {
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
