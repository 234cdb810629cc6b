// Prints a token for api://vault from @azure/identity's ManagedIdentityCredential, or from
// DefaultAzureCredential with `default`, as an application on an Azure VM would get one: no
// endpoint is configured, so the SDK finds IMDS at 169.254.169.254 (run it in `ficus sandbox`).
import { DefaultAzureCredential, ManagedIdentityCredential } from "@azure/identity";

const credential = process.argv[2] === "default" ? new DefaultAzureCredential() : new ManagedIdentityCredential();
const token = await credential.getToken("api://vault/.default");
process.stdout.write(token.token);
