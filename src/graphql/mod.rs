//! The GraphQL API of API.md: thin resolvers over the domain modules.

mod context;
pub mod documents;
mod errors;
pub mod http;
mod loaders;
mod model;
mod mutation;
mod query;

use async_graphql::{EmptySubscription, Schema, SchemaBuilder};

use crate::startup::AppState;

pub type AppSchema = Schema<query::Query, mutation::Mutation, EmptySubscription>;

/// Deep enough for GraphiQL's introspection query, shallow enough to stop nesting attacks.
const MAX_DEPTH: usize = 16;
/// Every field counts 1, lists count `first` times their fields: stops alias bombs.
const MAX_COMPLEXITY: usize = 2_000;

fn builder() -> SchemaBuilder<query::Query, mutation::Mutation, EmptySubscription> {
    Schema::build(query::Query, mutation::Mutation, EmptySubscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
}

pub fn schema(state: AppState) -> AppSchema {
    builder().data(state).finish()
}

/// The SDL that `schema.graphql` holds.
pub fn sdl() -> String {
    builder().finish().sdl()
}
