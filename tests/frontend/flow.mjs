// A frontend's flow through graphql-request, the client library: sign up, log in, list with
// cursors, register with the Idempotency-Key header, replay, read the mailbox; plus GET
// queries, error codes and automatic persisted queries as Apollo's link sends them.
import { createHash } from 'node:crypto';
import { ClientError, GraphQLClient, gql } from 'graphql-request';

const url = process.argv[2];
const unique = () => `${Date.now()}-${Math.random().toString(16).slice(2)}`;
const password = 'Correct-Horse-1';
const check = (condition, what) => {
  if (!condition) throw new Error(`failed: ${what}`);
};
const codeOf = async (promise) => {
  try {
    await promise;
    return null;
  } catch (error) {
    if (!(error instanceof ClientError)) throw error;
    return error.response.errors?.[0]?.extensions?.code;
  }
};

const SIGNUP = gql`mutation Signup($input: SignupInput!) { signup(input: $input) { token user { id } } }`;
const LOGIN = gql`mutation Login($input: LoginInput!) { login(input: $input) { token user { id role } } }`;
const CREATE = gql`mutation Create($input: CreateCompetitionInput!) { createCompetition(input: $input) { id } }`;
const PAGE = gql`query Page($after: String) {
  competitions(first: 2, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { node { id title } } }
}`;
const REGISTER = gql`mutation Register($id: ID!) { register(competitionId: $id) { id status } }`;
const MAIL = gql`query Mail { myMail { kind subject } }`;

const anonymous = new GraphQLClient(url);
const organizer = await anonymous.request(SIGNUP, {
  input: { name: 'Olga', email: `olga-${unique()}@example.com`, password, role: 'ORGANIZER' },
});
const asOrganizer = new GraphQLClient(url, { headers: { authorization: `Bearer ${organizer.signup.token}` } });
const deadline = new Date(Date.now() + 3 * 24 * 3600 * 1000).toISOString();
const created = [];
for (const title of ['Alpha Cup', 'Beta Cup', 'Gamma Cup']) {
  const { createCompetition } = await asOrganizer.request(CREATE, {
    input: { title, description: 'From graphql-request', capacity: 5, regDeadline: deadline },
  });
  created.push(createCompetition.id);
}

const email = `pia-${unique()}@example.com`;
await anonymous.request(SIGNUP, { input: { name: 'Pia', email, password, role: 'PARTICIPANT' } });
const { login } = await anonymous.request(LOGIN, { input: { email, password } });
check(login.user.role === 'PARTICIPANT', 'login returns the participant');

const seen = [];
let after = null;
let pages = 0;
do {
  const { competitions } = await anonymous.request(PAGE, { after });
  seen.push(...competitions.edges.map((edge) => edge.node.id));
  after = competitions.pageInfo.hasNextPage ? competitions.pageInfo.endCursor : null;
  pages += 1;
} while (after && pages < 10);
check(created.every((id) => seen.includes(id)), 'every competition is listed');
check(new Set(seen).size === seen.length, 'no competition is listed twice');

const key = `key-${unique()}`;
const asParticipant = new GraphQLClient(url, {
  headers: { authorization: `Bearer ${login.token}`, 'idempotency-key': key },
});
const first = await asParticipant.request(REGISTER, { id: created[0] });
const replay = await asParticipant.request(REGISTER, { id: created[0] });
check(first.register.id === replay.register.id, 'the replay returns the same registration');
const reused = await codeOf(asParticipant.request(REGISTER, { id: created[1] }));
check(reused === 'IDEMPOTENCY_KEY_REUSED', `a reused key is refused (${reused})`);

let mail = [];
for (let tries = 0; tries < 100 && mail.length === 0; tries += 1) {
  ({ myMail: mail } = await asParticipant.request(MAIL));
  if (mail.length === 0) await new Promise((resolve) => setTimeout(resolve, 100));
}
check(mail.some((message) => message.kind === 'CONFIRMATION'), 'the confirmation arrives');

const overGet = new GraphQLClient(url, { method: 'GET' });
const { competitions } = await overGet.request(gql`query Count { competitions { totalCount } }`);
check(competitions.totalCount >= 3, 'a GET query runs');
const mutationOverGet = await fetch(`${url}?query=${encodeURIComponent('mutation { __typename }')}`, {
  headers: { accept: 'application/json' },
});
check(mutationOverGet.status === 405, `a mutation over GET is 405 (${mutationOverGet.status})`);
check(mutationOverGet.headers.get('allow') === 'POST', 'with Allow: POST');

const unauthenticated = await codeOf(anonymous.request(MAIL));
check(unauthenticated === 'UNAUTHENTICATED', `myMail needs a token (${unauthenticated})`);

// Apollo's persisted-query link: the hash alone first, then the document with its hash.
const document = 'query Titles { competitions(first: 1) { edges { node { title } } } }';
const sha256Hash = createHash('sha256').update(document).digest('hex');
const extensions = { persistedQuery: { version: 1, sha256Hash } };
const post = (body) => fetch(url, {
  method: 'POST',
  headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json' },
  body: JSON.stringify(body),
}).then((response) => response.json());
const unknown = await post({ extensions });
check(unknown.errors?.[0]?.extensions?.code === 'PERSISTED_QUERY_NOT_FOUND', 'an unknown hash asks for the document');
const registered = await post({ query: document, extensions });
check(registered.data?.competitions, 'the document is run and kept');
const byHash = await fetch(`${url}?extensions=${encodeURIComponent(JSON.stringify(extensions))}`, {
  headers: { accept: 'application/graphql-response+json' },
}).then((response) => response.json());
check(byHash.data?.competitions?.edges?.length === 1, 'the hash alone runs it, over GET too');

console.log(JSON.stringify({ ok: true, pages, listed: seen.length, registration: first.register.id }));
