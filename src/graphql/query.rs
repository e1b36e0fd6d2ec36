use std::collections::HashMap;

use async_graphql::{Context, ID, Object};

use super::{
    context::ContextExt,
    model::{CompetitionConnection, CompetitionView, MailView, RegistrationView, UserView},
    plain::Plain,
};
use crate::{
    competitions::{self, Cursor, Filter},
    error::AppError,
    mail,
    registrations::{self, Registration},
    users, validation,
};

pub struct Query;

#[Object]
impl Query {
    /// The caller's account.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Plain<UserView>> {
        let caller = ctx.caller()?;
        let mut conn = ctx.db().await?;
        let user = users::find(&mut conn, caller.sub)
            .await?
            .ok_or(AppError::ACCOUNT_GONE)?;
        Ok(Plain(UserView(user)))
    }

    /// The caller's registrations, newest first.
    async fn my_registrations(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<Plain<RegistrationView>>> {
        let caller = ctx.caller()?;
        let mut conn = ctx.db().await?;
        let look_ahead = ctx.look_ahead();
        // Asked for their competitions: all in one statement rather than a batch more.
        let listing: Vec<(Registration, Option<CompetitionView>)> =
            if look_ahead.field("competition").exists() {
                registrations::of_user_with_competitions(&mut conn, caller.sub)
                    .await?
                    .into_iter()
                    .map(|(registration, competition, organizer)| {
                        let competition = CompetitionView::with_organizer(competition, organizer);
                        (registration, Some(competition))
                    })
                    .collect()
            } else {
                registrations::of_user(&mut conn, caller.sub)
                    .await?
                    .into_iter()
                    .map(|registration| (registration, None))
                    .collect()
            };
        // Asked for places on waiting lists: those of all of them in one statement more
        // (each is on another competition's list), only if one is WAITLISTED.
        let places = if look_ahead.field("waitlistPosition").exists() {
            let read: Vec<&Registration> = listing.iter().map(|(read, _)| read).collect();
            registrations::waitlist_places(&mut conn, &read).await?
        } else {
            HashMap::new()
        };
        Ok(listing
            .into_iter()
            .map(|(registration, competition)| {
                let place = places.get(&registration.id).copied();
                Plain(match competition {
                    Some(competition) => {
                        RegistrationView::with_competition(registration, competition, place)
                    }
                    None => RegistrationView::with_waitlist_place(registration, place),
                })
            })
            .collect())
    }

    /// The caller's mailbox (confirmations and reminders), newest first.
    #[graphql(complexity = "first.unwrap_or(50).clamp(1, 100) as usize * child_complexity")]
    async fn my_mail(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(50)")] first: Option<i32>,
    ) -> async_graphql::Result<Vec<Plain<MailView>>> {
        let caller = ctx.caller()?;
        let mut conn = ctx.db().await?;
        let found = mail::mailbox_of(&mut conn, caller.sub, first.unwrap_or(50).into()).await?;
        Ok(found
            .into_iter()
            .map(|mail| Plain(MailView(mail)))
            .collect())
    }

    /// Null when there is no such competition.
    async fn competition(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<Plain<CompetitionView>>> {
        let id = validation::parse_id("id", &id)?;
        let mut conn = ctx.db().await?;
        let look_ahead = ctx.look_ahead();
        // Its organizer asking for its registrations: all in one statement.
        if let (true, Ok(caller)) = (look_ahead.field("registrations").exists(), ctx.caller()) {
            let found = competitions::find_with_registrations(&mut conn, id, caller.sub).await?;
            return Ok(found.map(|(competition, organizer, registrations)| {
                Plain(CompetitionView::with_registrations(
                    competition,
                    organizer,
                    registrations,
                ))
            }));
        }
        // Asked for its organizer: both in one statement rather than a second lookup.
        if look_ahead.field("organizer").exists() {
            let found = competitions::find_with_organizer(&mut conn, id).await?;
            return Ok(found.map(|(competition, organizer)| {
                Plain(CompetitionView::with_organizer(competition, organizer))
            }));
        }
        Ok(competitions::find(&mut conn, id)
            .await?
            .map(|competition| Plain(CompetitionView::from(competition))))
    }

    /// Newest first; `after` takes a cursor of a previous page; `organizerId` keeps one
    /// organizer's competitions.
    #[graphql(complexity = "first.unwrap_or(20).clamp(1, 100) as usize * child_complexity")]
    async fn competitions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(20)")] first: Option<i32>,
        after: Option<String>,
        tag: Option<String>,
        #[graphql(default_with = "Some(false)")] open_only: Option<bool>,
        organizer_id: Option<ID>,
    ) -> async_graphql::Result<CompetitionConnection> {
        let after = after.as_deref().map(Cursor::decode).transpose()?;
        let organizer_id = organizer_id
            .map(|id| validation::parse_id("organizerId", &id))
            .transpose()?;
        let filter = Filter {
            tag,
            open_only: open_only.unwrap_or(false),
            organizer_id,
        };
        let mut conn = ctx.db().await?;
        let page =
            competitions::list(&mut conn, &filter, first.unwrap_or(20).into(), after).await?;
        let mut connection = CompetitionConnection::new(page, filter);
        // An organizer's listing with each competition's registrations: all of them in
        // one statement more, rather than one per competition.
        let asks_registrations = ctx
            .look_ahead()
            .field("edges")
            .field("node")
            .field("registrations")
            .exists();
        if asks_registrations && let Ok(caller) = ctx.caller() {
            let own = connection.organized_by(caller.sub);
            let read = registrations::of_competitions_with_users(&mut conn, &own).await?;
            connection.attach_registrations(&own, read);
        }
        Ok(connection)
    }
}
