//! Registration: idempotent, never oversold, cancellable.
//!
//! Registering is one SQL statement in its own (implicit) transaction: the conditional
//! `UPDATE competitions … RETURNING` takes the competition's row lock and a seat, and the
//! same statement reactivates or inserts the registration and inserts its confirmation task.
//! So the lock is held for exactly one round trip, and a registration exists if and only if
//! its task does. A participant who already holds an active registration makes the INSERT
//! violate `registrations_one_per_user`, which aborts the whole statement, seat included.

use chrono::{DateTime, Utc};
use diesel::{
    deserialize::FromSqlRow,
    dsl::exists,
    expression::AsExpression,
    prelude::*,
    sql_types::{Text, Uuid as SqlUuid},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::{
    auth::Claims,
    competitions::Competition,
    db::{PgPool, prepared},
    error::{AppError, AppResult, bad_input, violates},
    idempotency::{IdempotencyStore, Reservation},
    jobs,
    schema::{competitions, registrations},
    users::Role,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
pub enum RegistrationStatus {
    Pending,
    Confirmed,
    Cancelled,
}

crate::db::text_enum!(RegistrationStatus {
    Pending = "PENDING",
    Confirmed = "CONFIRMED",
    Cancelled = "CANCELLED",
});

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = registrations, check_for_backend(diesel::pg::Pg))]
pub struct Registration {
    pub id: Uuid,
    pub user_id: Uuid,
    pub competition_id: Uuid,
    pub status: RegistrationStatus,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

/// Takes a seat and registers `$2` for competition `$1`, with its confirmation task
/// (`$3` task name, `$4` queue), in one statement. No row: no seat was taken. (Public for
/// the load generator, which measures what Postgres alone does with it.)
pub const REGISTER: &str = "
WITH seat AS (
    UPDATE competitions SET registered_count = registered_count + 1
     WHERE id = $1 AND registered_count < capacity AND reg_deadline > now()
    RETURNING id
), reactivated AS (
    UPDATE registrations
       SET status = 'PENDING', created_at = now(), confirmed_at = NULL, cancelled_at = NULL
     WHERE user_id = $2 AND competition_id = $1 AND status = 'CANCELLED'
       AND EXISTS (SELECT 1 FROM seat)
    RETURNING *
), inserted AS (
    INSERT INTO registrations (user_id, competition_id)
    SELECT $2, id FROM seat WHERE NOT EXISTS (SELECT 1 FROM reactivated)
    RETURNING *
), registered AS (
    SELECT * FROM reactivated UNION ALL SELECT * FROM inserted
), task AS (
    INSERT INTO fang_tasks (metadata, task_type)
    SELECT jsonb_build_object('type', $3::text, 'registration_id', id), $4 FROM registered
)
SELECT id, user_id, competition_id, status, created_at, confirmed_at, cancelled_at
  FROM registered";

/// Registers the caller (a participant) once per idempotency key.
pub async fn register(
    db: &PgPool,
    idempotency: &IdempotencyStore,
    caller: &Claims,
    competition_id: Uuid,
    key: &str,
) -> AppResult<Registration> {
    if caller.role != Role::Participant {
        return Err(AppError::Forbidden("only participants can register"));
    }
    let attempt = match idempotency.reserve(caller.sub, key, competition_id).await? {
        Reservation::Completed(registration_id) => {
            let mut conn = db.get().await?;
            return find(&mut conn, registration_id)
                .await?
                .ok_or(AppError::NotFound("registration"));
        }
        Reservation::Acquired(attempt) => attempt,
    };
    let outcome = take_seat(db, caller.sub, competition_id).await;
    // The registration stands whatever Redis does now; a lost record only means that a
    // replay after the lock TTL gets ALREADY_REGISTERED instead of the registration.
    let recorded = match &outcome {
        Ok(registration) => idempotency.complete(&attempt, registration.id).await,
        Err(_) => idempotency.release(&attempt).await,
    };
    if let Err(error) = recorded {
        tracing::warn!(error = ?error.internal_detail(), "could not record the idempotency outcome");
    }
    outcome
}

async fn take_seat(db: &PgPool, user_id: Uuid, competition_id: Uuid) -> AppResult<Registration> {
    let mut conn = db.get().await?;
    let registered = prepared(REGISTER)
        .bind::<SqlUuid, _>(competition_id)
        .bind::<SqlUuid, _>(user_id)
        .bind::<Text, _>(jobs::CONFIRMATION_TASK)
        .bind::<Text, _>(jobs::CONFIRMATION_QUEUE)
        .get_result::<Registration>(&mut conn)
        .await
        .optional();
    match registered {
        Ok(Some(registration)) => Ok(registration),
        Ok(None) => Err(why_no_seat(&mut conn, user_id, competition_id).await),
        Err(error) if violates(&error, "registrations_one_per_user") => {
            Err(AppError::AlreadyRegistered)
        }
        Err(error) if violates(&error, "registrations_user_id_fkey") => Err(AppError::ACCOUNT_GONE),
        Err(error) => Err(error.into()),
    }
}

/// Explains a registration that took no seat (after the fact, without any lock).
async fn why_no_seat(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    competition_id: Uuid,
) -> AppError {
    let holds_seat = exists(
        registrations::table
            .filter(registrations::user_id.eq(user_id))
            .filter(registrations::competition_id.eq(competition_id))
            .filter(registrations::status.ne(RegistrationStatus::Cancelled)),
    );
    let state = competitions::table
        .find(competition_id)
        .select((
            competitions::capacity,
            competitions::registered_count,
            competitions::reg_deadline,
            holds_seat,
        ))
        .first::<(i32, i32, DateTime<Utc>, bool)>(conn)
        .await
        .optional();
    match state {
        Ok(None) => AppError::NotFound("competition"),
        Ok(Some((_, _, _, true))) => AppError::AlreadyRegistered,
        Ok(Some((_, _, deadline, _))) if deadline <= Utc::now() => AppError::RegistrationClosed,
        Ok(Some((capacity, registered, _, _))) if registered >= capacity => {
            AppError::CompetitionFull
        }
        // A seat freed up in between: the caller may simply retry.
        Ok(Some(_)) => AppError::CompetitionFull,
        Err(error) => error.into(),
    }
}

/// Cancels the caller's registration and frees its seat. Locks the competition row before
/// the registration row, in the same order as registering, so the two cannot deadlock.
pub async fn cancel(
    db: &PgPool,
    caller: &Claims,
    registration_id: Uuid,
) -> AppResult<Registration> {
    let mut conn = db.get().await?;
    let owner = registrations::table
        .find(registration_id)
        .select((registrations::user_id, registrations::competition_id))
        .first::<(Uuid, Uuid)>(&mut conn)
        .await
        .optional()?;
    let Some((owner_id, competition_id)) = owner else {
        return Err(AppError::NotFound("registration"));
    };
    if owner_id != caller.sub {
        return Err(AppError::Forbidden(
            "only the registrant can cancel a registration",
        ));
    }
    conn.transaction(async |conn| {
        competitions::table
            .find(competition_id)
            .select(competitions::id)
            .for_update()
            .execute(conn)
            .await?;
        let cancelled = diesel::update(registrations::table.find(registration_id))
            .filter(registrations::status.ne(RegistrationStatus::Cancelled))
            .set((
                registrations::status.eq(RegistrationStatus::Cancelled),
                registrations::cancelled_at.eq(diesel::dsl::now),
            ))
            .returning(Registration::as_returning())
            .get_result(conn)
            .await
            .optional()?
            .ok_or_else(|| bad_input("the registration is already cancelled"))?;
        diesel::update(competitions::table.find(competition_id))
            .set(competitions::registered_count.eq(competitions::registered_count - 1))
            .execute(conn)
            .await?;
        Ok::<_, AppError>(cancelled)
    })
    .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> AppResult<Option<Registration>> {
    Ok(registrations::table
        .find(id)
        .select(Registration::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// The caller's registrations, newest first.
pub async fn of_user(conn: &mut AsyncPgConnection, user_id: Uuid) -> AppResult<Vec<Registration>> {
    Ok(registrations::table
        .filter(registrations::user_id.eq(user_id))
        .order((registrations::created_at.desc(), registrations::id.desc()))
        .select(Registration::as_select())
        .load(conn)
        .await?)
}

/// A competition's registrations, for its organizer only.
pub async fn of_competition(
    conn: &mut AsyncPgConnection,
    caller: &Claims,
    competition: &Competition,
) -> AppResult<Vec<Registration>> {
    if competition.organizer_id != caller.sub {
        return Err(AppError::Forbidden(
            "only the competition's organizer can see its registrations",
        ));
    }
    Ok(registrations::table
        .filter(registrations::competition_id.eq(competition.id))
        .order((registrations::created_at.desc(), registrations::id.desc()))
        .select(Registration::as_select())
        .load(conn)
        .await?)
}
