//! The GraphQL API of API.md: thin resolvers over the domain modules.

mod context;
pub mod documents;
mod errors;
pub mod http;
pub mod limits;
mod loaders;
mod model;
mod mutation;
mod query;
mod scalars;

use async_graphql::{EmptySubscription, Schema, SchemaBuilder};

use crate::{config::DocumentLimits, state::AppState};

pub type AppSchema = Schema<query::Query, mutation::Mutation, EmptySubscription>;

fn builder() -> SchemaBuilder<query::Query, mutation::Mutation, EmptySubscription> {
    Schema::build(query::Query, mutation::Mutation, EmptySubscription)
}

/// The executable schema. Documents reach it only through `limits`' checks, which bound
/// what async-graphql's own depth and complexity checks (applied here too) may cost.
pub fn schema(state: AppState, limits: &DocumentLimits) -> AppSchema {
    builder()
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .limit_recursive_depth(limits.max_nesting)
        .data(state)
        .finish()
}

/// The SDL that `schema.graphql` holds.
pub fn sdl() -> String {
    builder().finish().sdl()
}
