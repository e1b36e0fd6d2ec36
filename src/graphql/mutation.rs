use async_graphql::{Context, ID, Object};

use super::{
    context::ContextExt,
    model::{
        AuthPayload, CompetitionView, CreateCompetitionInput, LoginInput, RegistrationView,
        SignupInput, UserView,
    },
};
use crate::{auth, competitions, idempotency, registrations, validation};

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

    /// Participants only. Idempotent per key: the `Idempotency-Key` header or this argument.
    async fn register(
        &self,
        ctx: &Context<'_>,
        competition_id: ID,
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<RegistrationView> {
        let caller = ctx.caller()?;
        let competition_id = validation::parse_id("competitionId", &competition_id)?;
        let key =
            idempotency::resolve_key(ctx.idempotency_key_header(), idempotency_key.as_deref())?;
        let state = ctx.state();
        let registration =
            registrations::register(&state.db, &state.idempotency, caller, competition_id, &key)
                .await?;
        state.jobs.wake();
        Ok(RegistrationView(registration))
    }

    /// The registrant only: cancels and frees the seat.
    async fn cancel_registration(
        &self,
        ctx: &Context<'_>,
        registration_id: ID,
    ) -> async_graphql::Result<RegistrationView> {
        let caller = ctx.caller()?;
        let registration_id = validation::parse_id("registrationId", &registration_id)?;
        let registration = registrations::cancel(&ctx.state().db, caller, registration_id).await?;
        Ok(RegistrationView(registration))
    }
}
