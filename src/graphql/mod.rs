//! The GraphQL API of API.md: thin resolvers over the domain modules.

mod completion;
mod context;
pub mod documents;
mod errors;
pub mod graphiql;
pub mod http;
pub mod limits;
mod loaders;
mod model;
mod mutation;
mod persisted;
mod plain;
mod query;
mod scalars;
mod subscription;
pub mod ws;

use std::sync::Arc;

use async_graphql::{SDLExportOptions, Schema, SchemaBuilder, ValidationMode};

use crate::{
    config::{Config, DocumentLimits},
    state::AppState,
};

pub type AppSchema = Schema<query::Query, mutation::Mutation, subscription::Subscription>;

fn builder() -> SchemaBuilder<query::Query, mutation::Mutation, subscription::Subscription> {
    Schema::build(query::Query, mutation::Mutation, subscription::Subscription)
}

/// The executable schema. Documents reach it only through `limits`' checks, which bound
/// what async-graphql's own depth and complexity checks (applied here too) may cost.
/// `Fast` skips validation's rules but keeps the depth and complexity limits: only for
/// documents validation has passed for good (see `documents::Prepared`).
fn schema(state: AppState, limits: &DocumentLimits, mode: ValidationMode) -> AppSchema {
    builder()
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .limit_recursive_depth(limits.max_nesting)
        .validation_mode(mode)
        .data(state)
        .finish()
}

/// The schema's own description (introspection's `__schema { description }`, and the
/// description of `schema` in `schema.graphql`).
pub const DESCRIPTION: &str = "Mini-Compete: competitions with a capacity and a registration \
deadline. Organizers create them; participants sign up, log in and register: idempotently \
(an Idempotency-Key makes retries safe) and never beyond capacity.";

/// The GraphQL endpoint: the executable schema, and what answers and checks requests.
/// Shared, not cloned, by every request (a clone is twenty reference counts).
pub async fn endpoint(app: AppState, config: &Config) -> Arc<http::Endpoint> {
    let schema_of = |mode| schema(app.clone(), &config.limits, mode);
    let (schema, validated_schema) = (
        schema_of(ValidationMode::Strict),
        schema_of(ValidationMode::Fast),
    );
    let shapes = completion::Shapes::read(&schema, DESCRIPTION).await;
    Arc::new(http::Endpoint {
        schema,
        validated_schema,
        shapes: Arc::new(shapes),
        app,
        documents: Arc::default(),
        persisted: Arc::default(),
        limits: Arc::new(config.limits.clone()),
        trusted_proxies: config.http.trusted_proxies.clone().into(),
    })
}

/// The SDL that `schema.graphql` holds: what full introspection reports, `@specifiedBy`
/// and the schema's description included.
pub fn sdl() -> String {
    let sdl = builder()
        .finish()
        .sdl_with_options(SDLExportOptions::new().include_specified_by());
    let description = format!("\"\"\"\n{DESCRIPTION}\n\"\"\"\nschema {{");
    sdl.replacen("schema {", &description, 1)
}
