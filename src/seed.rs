//! Demo data: 2 organizers, 5 participants and 5 upcoming competitions. Rows have fixed ids
//! (UUIDv5 of their name), so running it again inserts nothing twice.

use chrono::{Duration, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::{
    auth,
    competitions::NewCompetition,
    error::AppResult,
    schema::{competitions, users},
    users::Role,
};

/// The password of every seeded account (documented in the README).
pub const SEED_PASSWORD: &str = "Compete-2026!";

const NAMESPACE: Uuid = Uuid::from_u128(0x5eed_0000_6d69_6e69_636f_6d70_6574_6500);

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seeded {
    pub users: usize,
    pub competitions: usize,
}

pub async fn run(conn: &mut AsyncPgConnection) -> AppResult<Seeded> {
    let mut seeded = Seeded::default();
    let accounts = [
        ("Olga Organizer", "olga@example.com", Role::Organizer),
        ("Omar Organizer", "omar@example.com", Role::Organizer),
        ("Pia Participant", "pia@example.com", Role::Participant),
        ("Paul Participant", "paul@example.com", Role::Participant),
        ("Priya Participant", "priya@example.com", Role::Participant),
        ("Pedro Participant", "pedro@example.com", Role::Participant),
        ("Petra Participant", "petra@example.com", Role::Participant),
    ];
    for (name, email, role) in accounts {
        let exists = users::table
            .filter(users::email.eq(email))
            .select(users::id)
            .first::<Uuid>(conn)
            .await
            .optional()?
            .is_some();
        if exists {
            continue;
        }
        let hash = auth::hash_password(SEED_PASSWORD.to_owned()).await?;
        seeded.users += diesel::insert_into(users::table)
            .values((
                users::id.eq(Uuid::new_v5(&NAMESPACE, email.as_bytes())),
                users::name.eq(name),
                users::email.eq(email),
                users::password_hash.eq(hash),
                users::role.eq(role),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
    }

    let organizers = ["olga@example.com", "omar@example.com"]
        .map(|email| Uuid::new_v5(&NAMESPACE, email.as_bytes()));
    let events = [
        (
            "Spring Coding Sprint",
            "A four-hour algorithms contest.",
            &["coding", "algorithms"][..],
            100,
            7,
        ),
        (
            "Data Science Cup",
            "Predict the unpredictable.",
            &["data", "ml"],
            50,
            10,
        ),
        (
            "Rust Hack Night",
            "Build something fast and safe.",
            &["coding", "rust"],
            30,
            14,
        ),
        (
            "City Chess Open",
            "Swiss system, seven rounds.",
            &["chess"],
            64,
            21,
        ),
        (
            "Photo Marathon",
            "Twelve themes in twelve hours.",
            &["photo", "outdoor"],
            200,
            30,
        ),
    ];
    let now = Utc::now();
    for (index, (title, description, tags, capacity, days)) in events.into_iter().enumerate() {
        let input = NewCompetition {
            title: title.to_owned(),
            description: description.to_owned(),
            tags: tags.iter().map(|tag| tag.to_string()).collect(),
            capacity,
            reg_deadline: now + Duration::days(days),
            start_date: None,
        };
        let row = input.validate(
            Uuid::new_v5(&NAMESPACE, title.as_bytes()),
            organizers[index % organizers.len()],
        )?;
        seeded.competitions += diesel::insert_into(competitions::table)
            .values(&row)
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
    }
    Ok(seeded)
}
