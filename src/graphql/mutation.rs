use async_graphql::{Context, Object};

use super::{
    context::ContextExt,
    model::{
        AuthPayload, CompetitionView, CreateCompetitionInput, LoginInput, SignupInput, UserView,
    },
};
use crate::{auth, competitions};

pub struct Mutation;

#[Object]
impl Mutation {
    async fn signup(
        &self,
        ctx: &Context<'_>,
        input: SignupInput,
    ) -> async_graphql::Result<AuthPayload> {
        let user = auth::signup(&ctx.state().db, input.into()).await?;
        let token = ctx.state().jwt.issue(&user)?;
        Ok(AuthPayload {
            token,
            user: UserView(user),
        })
    }

    /// One error for an unknown email and a wrong password.
    async fn login(
        &self,
        ctx: &Context<'_>,
        input: LoginInput,
    ) -> async_graphql::Result<AuthPayload> {
        let user = auth::login(&ctx.state().db, &input.email, input.password).await?;
        let token = ctx.state().jwt.issue(&user)?;
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
        Ok(CompetitionView(competition))
    }
}
