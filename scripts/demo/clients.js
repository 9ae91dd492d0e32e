// The demo's static client registry and member list, shared by the
// authorization server, the FHIR server and the traffic replay.
// The secrets are demo values, printed by run.sh and listed in README.md.

export const MEMBER_COUNT = 60;

export function memberIds(count = MEMBER_COUNT) {
  return Array.from({ length: count }, (_, i) => `m-${String(i + 1).padStart(5, '0')}`);
}

// OpenID scopes, and the FHIR scopes the Patient Access API accepts (SMART v1
// syntax, as CARIN BB apps use).
export const OIDC_SCOPES = ['openid', 'fhirUser', 'offline_access', 'launch/patient'];
export const FHIR_SCOPES = [
  'patient/*.read',
  'patient/Patient.read',
  'patient/Coverage.read',
  'patient/ExplanationOfBenefit.read',
  'patient/Organization.read',
  'patient/Practitioner.read',
];

const appCallback = (id) => () => [`https://${id}.example/callback`];

export const CLIENTS = [
  {
    id: 'good-app',
    name: 'Good Claims Viewer (confidential, client_secret_basic)',
    auth: 'client_secret_basic',
    secret: 'good-app-secret',
    redirectUris: appCallback('good-app'),
  },
  {
    id: 'writer-app',
    name: 'Writer App (confidential, client_secret_post)',
    auth: 'client_secret_post',
    secret: 'writer-app-secret',
    redirectUris: appCallback('writer-app'),
  },
  {
    id: 'burst-app',
    name: 'Burst App (public, PKCE only)',
    auth: 'none',
    redirectUris: appCallback('burst-app'),
  },
  {
    id: 'abroad-app',
    name: 'Abroad App (confidential, private_key_jwt)',
    auth: 'private_key_jwt',
    redirectUris: appCallback('abroad-app'),
  },
  {
    id: 'popular-app',
    name: 'Popular App (confidential, client_secret_basic)',
    auth: 'client_secret_basic',
    secret: 'popular-app-secret',
    redirectUris: appCallback('popular-app'),
  },
  {
    // for the curl walkthrough: its callback is a page nginx serves
    id: 'demo-app',
    name: 'Walkthrough App (confidential, client_secret_basic)',
    auth: 'client_secret_basic',
    secret: 'demo-app-secret',
    redirectUris: (port) => [`http://127.0.0.1:${port}/callback`],
  },
  {
    // the FHIR server, for token introspection only
    id: 'fhir-rs',
    name: 'FHIR resource server',
    auth: 'client_secret_basic',
    secret: 'fhir-rs-secret',
    resourceServer: true,
  },
];

export function client(id) {
  return CLIENTS.find((c) => c.id === id);
}
