// A real OpenID provider for portal-asgi's tests: panva's oidc-provider (OpenID Certified), on
// loopback, configured with the clients, users and claim shapes the tests need. It checks PKCE,
// state, client secrets, code reuse and redirect URIs itself; nothing here imitates it.
//
//   PORT=0 AUDIENCE=https://api.portal.test node provider.mjs
//
// Prints one line `ready <issuer>` on stdout once it listens.
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';

import Provider, { interactionPolicy } from 'oidc-provider';

const AUDIENCE = process.env.AUDIENCE || 'https://api.portal.test';
const API_SCOPES = 'access:stable access:ea access:devel access:admin read:things';

// Users, one per provider family's claim shape (see docs/providers/). `access` is what the
// provider grants as resource scopes (Auth0's `scope` string in the access token); `at` is added
// to access tokens only (Auth0's RBAC `permissions`); `id` goes into ID tokens and access tokens.
const ACCOUNTS = {
  'auth0-scope': { access: ['access:stable', 'access:ea'], id: {} },
  'auth0-permissions': { access: [], at: { permissions: ['read:things', 'access:devel'] }, id: {} },
  'okta-groups': { access: [], id: { groups: ['Everyone', 'portal-ea', 'portal-stable'] } },
  'cognito-groups': { access: [], id: { 'cognito:groups': ['portal_admin'] } },
  'keycloak-roles': {
    access: [],
    id: { realm_access: { roles: ['offline_access', 'access:devel', 'uma_authorization'] } },
  },
  'no-levels': { access: [], id: {} },
  // Groups in the userinfo answer only, not in the ID token (some providers' default).
  'userinfo-groups': { access: [], id: {}, userinfo: { groups: ['portal-devel'] } },
  // Two users whose preferred_username collides with a local account ("admin").
  'impostor': { access: [], id: { groups: ['portal-admin'] }, username: 'admin' },
  // For allowed_email_domains: an address the provider has not verified, and one elsewhere.
  'unverified-email': { access: [], id: { email_verified: false } },
  'elsewhere': { access: [], id: { email: 'someone@elsewhere.example' } },
};

function profile(id) {
  const account = ACCOUNTS[id] || { access: [], id: {} };
  return {
    sub: id,
    email: `${id}@idp.example`,
    email_verified: true,
    name: `Test ${id}`,
    preferred_username: account.username || id,
    ...account.id,
  };
}

function keys() {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  return [
    { ...rsa.export({ format: 'jwk' }), kid: 'rsa-1', use: 'sig', alg: 'RS256' },
    { ...ec.export({ format: 'jwk' }), kid: 'ec-1', use: 'sig', alg: 'ES256' },
  ];
}

// Confidential clients. `native` makes the loopback redirect URIs port-agnostic (RFC 8252 section
// 7.3), so one provider serves every test portal whatever free port it got.
const redirects = {
  application_type: 'native',
  redirect_uris: ['http://127.0.0.1/auth/callback'],
  post_logout_redirect_uris: ['http://127.0.0.1/', 'http://127.0.0.1/auth/login'],
  grant_types: ['authorization_code'],
  response_types: ['code'],
};
const clients = [
  { client_id: 'portal', client_secret: 'portal-secret', token_endpoint_auth_method: 'client_secret_basic', ...redirects },
  { client_id: 'portal-post', client_secret: 'portal-post-secret', token_endpoint_auth_method: 'client_secret_post', ...redirects },
  { client_id: 'portal-es', client_secret: 'portal-es-secret', id_token_signed_response_alg: 'ES256', ...redirects },
  // Misbehaves on purpose: its ID tokens are issued for `other-app` (an audience mix-up).
  { client_id: 'portal-mixup', client_secret: 'portal-mixup-secret', ...redirects },
  { client_id: 'other-app', client_secret: 'other-app-secret', ...redirects },
  // Asks for no API: its access token is opaque and good at the userinfo endpoint.
  { client_id: 'portal-userinfo', client_secret: 'portal-userinfo-secret', ...redirects },
  // Machine clients: access tokens by client credentials, for the Bearer tests.
  { client_id: 'machine', client_secret: 'machine-secret', grant_types: ['client_credentials'], response_types: [], redirect_uris: [] },
  { client_id: 'machine-es', client_secret: 'machine-es-secret', grant_types: ['client_credentials'], response_types: [], redirect_uris: [] },
  // Amazon Cognito's token shapes (see COGNITO below): a portal's app client, and machine clients.
  { client_id: 'portal-cognito', client_secret: 'portal-cognito-secret', ...redirects },
  ...['cognito-machine', 'cognito-stranger', 'cognito-wrong-use', 'cognito-expired'].map((id) => (
    { client_id: id, client_secret: `${id}-secret`, grant_types: ['client_credentials'], response_types: [], redirect_uris: [] }
  )),
];

// Clients whose tokens are shaped as Amazon Cognito shapes them: access tokens with `client_id`,
// `token_use = "access"`, `username` and no `aud`; ID tokens with `token_use = "id"`.
// `cognito-wrong-use` gets access tokens marked `token_use = "id"`, `cognito-expired` expired ones.
const COGNITO = new Set(['portal-cognito', 'cognito-machine', 'cognito-stranger', 'cognito-wrong-use', 'cognito-expired']);
const COGNITO_ACCESS_CLAIMS = [
  'sub', 'cognito:groups', 'iss', 'client_id', 'origin_jti', 'event_id', 'token_use', 'scope',
  'auth_time', 'exp', 'iat', 'jti', 'username', 'version',
];

function cognitoShape(token, payload) {
  Object.assign(payload, {
    token_use: token.clientId === 'cognito-wrong-use' ? 'id' : 'access',
    username: token.accountId || token.clientId,
    version: 2,
  });
  if (token.clientId === 'cognito-expired') {
    payload.exp = Math.floor(Date.now() / 1000) - 3600;
    payload.iat = payload.exp - 600;
  }
  // oidc-provider refuses to issue a JWT access token without `aud` (it checks the payload after
  // this customizer), so `aud` stays on the object for that check and is left out of the JSON that
  // is signed: the token the client receives has none, as Cognito's have none.
  payload.toJSON = function toJSON() {
    return Object.fromEntries(COGNITO_ACCESS_CLAIMS.filter((k) => this[k] !== undefined).map((k) => [k, this[k]]));
  };
}

// The provider grants only what the account holds (loadExistingGrant below): no consent screen
// asks for the rest, as a first-party provider set up for the portal would not.
const policy = interactionPolicy.base();
policy.get('consent').checks.remove('native_client_prompt');
policy.get('consent').checks.remove('rs_scopes_missing');

const server = createServer();
await new Promise((resolve) => { server.listen(Number(process.env.PORT || 0), '127.0.0.1', resolve); });
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients,
  interactions: { policy },
  jwks: { keys: keys() },
  cookies: { keys: ['portal-asgi test provider cookie key'] },
  pkce: { required: () => true },
  // Claims of the requested scopes go into the ID token as well as userinfo (as Okta, Cognito and
  // Keycloak do for groups and roles).
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub', 'groups', 'cognito:groups', 'realm_access'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims(use) {
        const extra = use === 'userinfo' ? (ACCOUNTS[id] || {}).userinfo : undefined;
        return { ...profile(id), ...(extra || {}) };
      },
    };
  },
  // A first-party portal: no consent screen; the grant holds what the account may have.
  async loadExistingGrant(ctx) {
    const { client, session, params } = ctx.oidc;
    const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
    if (grantId) {
      const existing = await ctx.oidc.provider.Grant.find(grantId);
      if (existing) return existing;
    }
    const grant = new ctx.oidc.provider.Grant({ accountId: session.accountId, clientId: client.clientId });
    grant.addOIDCScope('openid email profile');
    const allowed = (ACCOUNTS[session.accountId] || { access: [] }).access;
    const requested = String(params.scope || '').split(' ');
    if (client.clientId !== 'portal-userinfo') {
      grant.addResourceScope(AUDIENCE, requested.filter((s) => allowed.includes(s) || s === 'read:things').join(' '));
    }
    await grant.save();
    return grant;
  },
  extraTokenClaims(ctx, token) {
    if (token.kind !== 'AccessToken') return undefined;
    const account = ACCOUNTS[token.accountId];
    if (!account) return undefined;
    const { sub, email, name, preferred_username: username, ...shape } = profile(token.accountId);
    return { ...shape, ...(account.at || {}), preferred_username: username };
  },
  formats: {
    customizers: {
      jwt(ctx, token, jwt) {
        if (COGNITO.has(token.clientId)) cognitoShape(token, jwt.payload);
      },
    },
  },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx, client) => (client && client.clientId === 'portal-userinfo' ? undefined : AUDIENCE),
      useGrantedResource: () => true,
      getResourceServerInfo(ctx, indicator, client) {
        if (indicator !== AUDIENCE) throw new Provider.errors.InvalidTarget();
        const alg = client && client.clientId.endsWith('-es') ? 'ES256' : 'RS256';
        return {
          scope: API_SCOPES,
          audience: AUDIENCE,
          accessTokenTTL: 3600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg } },
        };
      },
    },
  },
  ttl: { AccessToken: 3600, AuthorizationCode: 60, IdToken: 3600, Interaction: 600, Session: 3600, Grant: 3600, ClientCredentials: 600 },
});

// The audience mix-up: ID tokens of `portal-mixup` are issued to `other-app` instead. Cognito's
// ID tokens say what they are: `token_use = "id"`.
const issueIdToken = provider.IdToken.prototype.issue;
provider.IdToken.prototype.issue = async function issue(options) {
  if (options && options.use === 'idtoken' && this.client && this.client.clientId === 'portal-mixup') {
    this.client = await provider.Client.find('other-app');
  }
  if (options && options.use === 'idtoken' && this.client && COGNITO.has(this.client.clientId)) {
    this.set('token_use', 'id');
  }
  return issueIdToken.call(this, options);
};

server.on('request', provider.callback());
process.stdout.write(`ready ${issuer}\n`);
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => { server.close(); process.exit(0); });
}
