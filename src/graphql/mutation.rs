use async_graphql::{Context, ID, Object};

use super::{
    context::ContextExt,
    model::{
        AuthPayload, CompetitionView, CreateCompetitionInput, LoginInput, RegistrationView,
        SignupInput, UpdateCompetitionInput, UserView,
    },
    plain::Plain,
};
use crate::{auth, competitions, idempotency, metrics, registrations, validation};

pub struct Mutation;

#[Object]
impl Mutation {
    async fn signup(
        &self,
        ctx: &Context<'_>,
        input: SignupInput,
    ) -> async_graphql::Result<AuthPayload> {
        let state = ctx.state();
        let user = auth::signup(
            &state.db,
            &state.throttle,
            ctx.client_address(),
            input.into(),
        )
        .await?;
        state.accounts.remember(&user);
        let token = state.jwt.issue(&user)?;
        Ok(AuthPayload {
            token,
            user: UserView(user),
        })
    }

    /// One error for an unknown email and a wrong password. Rate-limited per client and
    /// account (`RATE_LIMITED`, with `extensions.retryAfter`).
    async fn login(
        &self,
        ctx: &Context<'_>,
        input: LoginInput,
    ) -> async_graphql::Result<AuthPayload> {
        let state = ctx.state();
        let user = auth::login(
            &state.db,
            &state.throttle,
            ctx.client_address(),
            &input.email,
            input.password,
        )
        .await?;
        state.accounts.remember(&user);
        let token = state.jwt.issue(&user)?;
        Ok(AuthPayload {
            token,
            user: UserView(user),
        })
    }

    /// Organizers only.
    async fn create_competition(
        &self,
        ctx: &Context<'_>,
        input: CreateCompetitionInput,
    ) -> async_graphql::Result<CompetitionView> {
        let caller = ctx.caller()?;
        let mut conn = ctx.db().await?;
        let competition = competitions::create(&mut conn, caller, input.into()).await?;
        Ok(CompetitionView::from(competition))
    }

    /// Its organizer only: absent fields stay as they are; raising the capacity promotes
    /// from the waiting list.
    async fn update_competition(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateCompetitionInput,
    ) -> async_graphql::Result<CompetitionView> {
        let caller = ctx.caller()?;
        let id = validation::parse_id("id", &id)?;
        let state = ctx.state();
        let competition =
            competitions::update(&state.db, &state.changes, caller, id, input.into()).await?;
        state.jobs.wake();
        Ok(CompetitionView::from(competition))
    }

    /// Its organizer only: every registration and waiting entry is cancelled and mailed;
    /// registration closes and no reminders go out.
    async fn cancel_competition(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<CompetitionView> {
        let caller = ctx.caller()?;
        let id = validation::parse_id("id", &id)?;
        let state = ctx.state();
        let competition = competitions::cancel(&state.db, &state.changes, caller, id).await?;
        Ok(CompetitionView::from(competition))
    }

    /// Participants only. Idempotent per key: the `Idempotency-Key` header or this argument.
    /// A full competition answers COMPETITION_FULL, or — with `waitlist: true` — a place on
    /// its waiting list (status WAITLISTED).
    async fn register(
        &self,
        ctx: &Context<'_>,
        competition_id: ID,
        idempotency_key: Option<String>,
        #[graphql(default = false)] waitlist: bool,
    ) -> async_graphql::Result<Plain<RegistrationView>> {
        let caller = ctx.caller()?;
        let competition_id = validation::parse_id("competitionId", &competition_id)?;
        let key =
            idempotency::resolve_key(ctx.idempotency_key_header(), idempotency_key.as_deref())?;
        let state = ctx.state();
        let registered = registrations::register(
            &state.registrar,
            &state.idempotency,
            &state.changes,
            caller,
            competition_id,
            &key,
            waitlist,
        )
        .await;
        metrics::registration(match &registered {
            Ok(registration) => registration.status.as_str(),
            Err(error) => error.code(),
        });
        let registration = registered?;
        state.jobs.wake();
        Ok(Plain(RegistrationView::from(registration)))
    }

    /// The registrant only: cancels; a freed seat goes to the first on the waiting list.
    async fn cancel_registration(
        &self,
        ctx: &Context<'_>,
        registration_id: ID,
    ) -> async_graphql::Result<Plain<RegistrationView>> {
        let caller = ctx.caller()?;
        let registration_id = validation::parse_id("registrationId", &registration_id)?;
        let state = ctx.state();
        let registration =
            registrations::cancel(&state.db, &state.changes, caller, registration_id).await?;
        // A freed seat may have gone to the waiting list, with a confirmation to send.
        state.jobs.wake();
        Ok(Plain(RegistrationView::from(registration)))
    }
}
