// The token plane with the official JavaScript clients, as tests/sdk/test_node.py drives it:
// `node token-plane.mjs <flow>` gets a token for api://vault and prints its claims as JSON, after
// validating it with `jose` through the broker's discovery document and JWKS (trusting the
// development CA through NODE_EXTRA_CA_CERTS). Flows:
//   managed-identity   @azure/identity ManagedIdentityCredential (IMDS through
//                      AZURE_POD_IDENTITY_AUTHORITY_HOST, or App Service through IDENTITY_ENDPOINT
//                      and IDENTITY_HEADER, whichever the environment names; CLIENT_ID optional)
//   client-assertion   @azure/identity ClientAssertionCredential: APP_ID, ASSERTION
//   msal-node          @azure/msal-node ConfidentialClientApplication with clientAssertion
import { ClientAssertionCredential, ManagedIdentityCredential } from "@azure/identity";
import { ConfidentialClientApplication } from "@azure/msal-node";
import { createRemoteJWKSet, jwtVerify } from "jose";

const { AZURE_AUTHORITY_HOST: authorityHost, AZURE_TENANT_ID: tenant } = process.env;
const scope = "api://vault/.default";

async function token(flow) {
  switch (flow) {
    case "managed-identity": {
      const clientId = process.env.CLIENT_ID;
      const credential = clientId ? new ManagedIdentityCredential({ clientId }) : new ManagedIdentityCredential();
      return (await credential.getToken(scope)).token;
    }
    case "client-assertion": {
      const credential = new ClientAssertionCredential(tenant, process.env.APP_ID, async () => process.env.ASSERTION, {
        authorityHost,
        disableInstanceDiscovery: true,
      });
      return (await credential.getToken(scope)).token;
    }
    case "msal-node": {
      const app = new ConfidentialClientApplication({
        auth: {
          clientId: process.env.APP_ID,
          authority: `${authorityHost}/${tenant}`,
          clientAssertion: process.env.ASSERTION,
          knownAuthorities: [new URL(authorityHost).host],
        },
      });
      const result = await app.acquireTokenByClientCredential({ scopes: [scope] });
      return result.accessToken;
    }
    default:
      throw new Error(`unknown flow ${flow}`);
  }
}

const jwt = await token(process.argv[2]);
const discovery = await (await fetch(`${authorityHost}/${tenant}/v2.0/.well-known/openid-configuration`)).json();
const keys = createRemoteJWKSet(new URL(discovery.jwks_uri));
const { payload } = await jwtVerify(jwt, keys, { issuer: discovery.issuer, audience: "api://vault", algorithms: ["RS256"] });
process.stdout.write(JSON.stringify({ token: jwt, claims: payload }));
