//! Prints a token for `api://vault` from the official Rust SDK's `ManagedIdentityCredential`,
//! configured with nothing, as an application on an Azure VM would get one: the SDK goes to IMDS
//! at 169.254.169.254 (run it in `ficus sandbox`; tests/sdk/test_sandbox.py does). A failure is
//! the SDK's own error on standard error, with exit status 1.

use std::process::ExitCode;

use azure_core::credentials::TokenCredential;
use azure_identity::ManagedIdentityCredential;

#[tokio::main]
async fn main() -> ExitCode {
    let token = match ManagedIdentityCredential::new(None) {
        Ok(credential) => credential.get_token(&["api://vault/.default"], None).await,
        Err(e) => Err(e),
    };
    match token {
        Ok(token) => {
            print!("{}", token.token.secret());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("azure_identity: {e}");
            ExitCode::FAILURE
        }
    }
}
