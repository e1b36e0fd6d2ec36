//! Integration tests: a real server over HTTP, real Postgres and Redis, one database each.

mod auth;
mod competitions;
mod faults;
mod frontend;
mod helpers;
mod hostile;
mod jobs;
mod live;
mod operating;
mod ops;
mod protection;
mod registrations;
mod selections;
mod statements;
mod waitlist;
