//! Mini-Compete: a competitions service with a GraphQL API.
//!
//! Domain modules (`auth`, `users`, `competitions`, `registrations`, `idempotency`, `mail`) hold
//! the rules and the SQL and know nothing of HTTP or GraphQL; `graphql` exposes them;
//! `jobs` runs the background tasks; `startup` wires pools, schema, router and workers together.

pub mod accounts;
pub mod allocator;
pub mod auth;
pub mod competitions;
pub mod config;
pub mod db;
pub mod error;
pub mod graphql;
pub mod idempotency;
pub mod jobs;
pub mod live;
pub mod mail;
pub mod metrics;
pub mod redis;
pub mod registrar;
pub mod registrations;
pub mod request_log;
pub mod schema;
pub mod seed;
pub mod startup;
pub mod state;
pub mod throttle;
pub mod users;
pub mod validation;
